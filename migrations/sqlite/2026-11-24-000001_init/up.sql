-- The record of every withdrawal. Money amounts are base-unit decimal strings (U256 does
-- not fit an SQLite integer); arithmetic on them happens in Rust inside a transaction.
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

-- Every signed transaction of a withdrawal (first transfer, fee bumps, cancels).
CREATE TABLE attempts (
    tx_hash TEXT PRIMARY KEY NOT NULL,
    withdrawal_id TEXT NOT NULL REFERENCES withdrawals (id),
    wallet TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    nonce BIGINT NOT NULL,
    kind TEXT NOT NULL,
    raw BLOB NOT NULL,
    max_fee_per_gas TEXT NOT NULL,
    max_priority_fee_per_gas TEXT NOT NULL,
    gas_limit BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX attempts_withdrawal ON attempts (withdrawal_id, created_at);
CREATE INDEX attempts_wallet_nonce ON attempts (chain_id, wallet, nonce);

-- Where a withdrawal's attempt was mined, until it is deep enough to finish it.
CREATE TABLE inclusions (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    chain_id BIGINT NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    success BOOLEAN NOT NULL
);
CREATE INDEX inclusions_chain_block ON inclusions (chain_id, block_number);

-- Append-only: every status change.
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    withdrawal_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX history_withdrawal ON history (withdrawal_id, id);

-- The next nonce of each hot wallet; allocated in the transaction that records attempts.
CREATE TABLE wallet_nonces (
    chain_id BIGINT NOT NULL,
    wallet TEXT NOT NULL,
    next_nonce BIGINT NOT NULL,
    PRIMARY KEY (chain_id, wallet)
);

CREATE TABLE balances (
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    credited TEXT NOT NULL,
    reserved TEXT NOT NULL,
    spent TEXT NOT NULL,
    PRIMARY KEY (user_id, asset)
);

-- One reservation per withdrawal: what makes reserve/commit/release idempotent.
CREATE TABLE reservations (
    withdrawal_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Durable queues with SQS semantics.
CREATE TABLE queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    visible_at BIGINT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0
);
-- Receivers take the oldest visible messages: walk a queue in id order, skipping the few
-- in flight, instead of sorting the whole backlog on every receive.
CREATE INDEX queue_messages_order ON queue_messages (queue, id);

CREATE TABLE chain_cursors (
    chain_id BIGINT PRIMARY KEY NOT NULL,
    block_number BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL
);

-- What the signer last saw of each hot wallet's funds, for operators.
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
