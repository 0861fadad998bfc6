-- The record on PostgreSQL: the same tables and columns as the SQLite migrations (one
-- diesel schema serves both), in one step since this backend starts at that schema.
-- Money amounts are base-unit decimal strings, as on SQLite: U256 exceeds NUMERIC's
-- comfortable range for indexes and every arithmetic happens in Rust.
CREATE TABLE withdrawals (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    to_address TEXT NOT NULL,
    amount TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    nudged_at BIGINT,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX withdrawals_status_updated ON withdrawals (status, updated_at);
CREATE INDEX withdrawals_user ON withdrawals (user_id);
CREATE INDEX withdrawals_to ON withdrawals (to_address);

CREATE TABLE attempts (
    tx_hash TEXT PRIMARY KEY NOT NULL,
    withdrawal_id TEXT NOT NULL REFERENCES withdrawals (id),
    wallet TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    nonce BIGINT NOT NULL,
    kind TEXT NOT NULL,
    raw BYTEA NOT NULL,
    max_fee_per_gas TEXT NOT NULL,
    max_priority_fee_per_gas TEXT NOT NULL,
    gas_limit BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX attempts_withdrawal ON attempts (withdrawal_id, created_at);
CREATE INDEX attempts_wallet_nonce ON attempts (chain_id, wallet, nonce);

CREATE TABLE inclusions (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    chain_id BIGINT NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    success BOOLEAN NOT NULL
);
CREATE INDEX inclusions_chain_block ON inclusions (chain_id, block_number);

CREATE TABLE history (
    id BIGSERIAL PRIMARY KEY,
    withdrawal_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX history_withdrawal ON history (withdrawal_id, id);

-- The next nonce of each hot wallet. Signers lock the row (SELECT … FOR UPDATE) for the
-- transaction that allocates from it, so several signer replicas never share a nonce.
CREATE TABLE wallet_nonces (
    chain_id BIGINT NOT NULL,
    wallet TEXT NOT NULL,
    next_nonce BIGINT NOT NULL,
    chain_latest BIGINT,
    chain_pending BIGINT,
    gaps TEXT NOT NULL DEFAULT '',
    blocked TEXT NOT NULL DEFAULT '',
    checked_at BIGINT,
    PRIMARY KEY (chain_id, wallet)
);

-- Balances and queues live in Redis and SQS in the production profile; the tables exist so
-- the schema is one across backends.
CREATE TABLE balances (
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    credited TEXT NOT NULL,
    reserved TEXT NOT NULL,
    spent TEXT NOT NULL,
    PRIMARY KEY (user_id, asset)
);

CREATE TABLE reservations (
    withdrawal_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE queue_messages (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    visible_at BIGINT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_messages_order ON queue_messages (queue, id);

CREATE TABLE chain_cursors (
    chain_id BIGINT PRIMARY KEY NOT NULL,
    block_number BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE hot_wallets (
    chain_id BIGINT NOT NULL,
    wallet TEXT NOT NULL,
    asset TEXT NOT NULL,
    balance TEXT NOT NULL,
    in_flight TEXT NOT NULL,
    short_by TEXT NOT NULL,
    held BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (chain_id, wallet, asset)
);

CREATE TABLE nonce_fills (
    tx_hash TEXT PRIMARY KEY NOT NULL,
    chain_id BIGINT NOT NULL,
    wallet TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    raw BYTEA NOT NULL,
    max_fee_per_gas TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX nonce_fills_wallet_nonce ON nonce_fills (chain_id, wallet, nonce);

CREATE TABLE cancel_requests (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_at BIGINT NOT NULL
);

CREATE TABLE approvals (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    approved_at BIGINT NOT NULL
);

CREATE TABLE signing_controls (
    scope TEXT PRIMARY KEY NOT NULL,
    paused BOOLEAN NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE alerts (
    fingerprint TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    severity TEXT,
    summary TEXT,
    console TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX alerts_status ON alerts (status, received_at);
