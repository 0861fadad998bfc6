-- When each attempt was first accepted by a node (NULL: never broadcast).
ALTER TABLE attempts ADD COLUMN sent_at BIGINT;

-- The nonce check's last view of each wallet: the chain's counts and what it found.
ALTER TABLE wallet_nonces ADD COLUMN chain_latest BIGINT;
ALTER TABLE wallet_nonces ADD COLUMN chain_pending BIGINT;
-- Nonces below next_nonce that nothing of ours will fill (comma-separated), and nonces
-- held by withdrawals waiting in the tx dead-letter queue.
ALTER TABLE wallet_nonces ADD COLUMN gaps TEXT NOT NULL DEFAULT '';
ALTER TABLE wallet_nonces ADD COLUMN blocked TEXT NOT NULL DEFAULT '';
ALTER TABLE wallet_nonces ADD COLUMN checked_at BIGINT;

-- 0-value self-transfers that fill a nonce no withdrawal owns any more.
CREATE TABLE nonce_fills (
    tx_hash TEXT PRIMARY KEY NOT NULL,
    chain_id BIGINT NOT NULL,
    wallet TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    raw BLOB NOT NULL,
    max_fee_per_gas TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX nonce_fills_wallet_nonce ON nonce_fills (chain_id, wallet, nonce);

-- An operator's discard of a signed withdrawal: the signer replaces its nonce with a
-- 0-value self-transfer; whichever is mined decides COMPLETED or CANCELLED.
CREATE TABLE cancel_requests (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_at BIGINT NOT NULL
);
