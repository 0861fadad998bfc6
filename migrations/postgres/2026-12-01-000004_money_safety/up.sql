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
