-- Why a mined transfer does not count as paid (a token whose transfer returned false).
ALTER TABLE inclusions ADD COLUMN failure TEXT;

-- Balance changes owed by status changes, written in the same transaction as the status
-- (so a crash between the two cannot lose one) and deleted once the settler has carried
-- them out. At most one per withdrawal: it does not change status until it is settled.
CREATE TABLE settlements (
    withdrawal_id TEXT PRIMARY KEY NOT NULL,
    action TEXT NOT NULL,
    from_status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX settlements_created ON settlements (created_at);

-- Leases: one holder at a time for work that must not run twice at once (the tracker).
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Operators' credits, journaled (with their audit row, in one transaction) before the
-- balance store is changed; the key makes a retried credit land once.
CREATE TABLE credits (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    request_hash TEXT NOT NULL,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approved_by TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    applied_at BIGINT
);
CREATE INDEX credits_state ON credits (state);

-- Credits the embedded balance store has applied (Redis keeps the same marker as a key).
CREATE TABLE balance_credits (
    credit_id TEXT PRIMARY KEY NOT NULL,
    applied_at BIGINT NOT NULL
);
