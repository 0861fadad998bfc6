-- Approvals of withdrawals above their asset's threshold: who approved, and when. The
-- signer signs a withdrawal over the threshold only with a row here.
CREATE TABLE approvals (
    withdrawal_id TEXT PRIMARY KEY NOT NULL REFERENCES withdrawals (id),
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    approved_at BIGINT NOT NULL
);

-- Signing pauses: scope 'all' or a chain id. A row with paused = 1 stops the signer for it.
CREATE TABLE signing_controls (
    scope TEXT PRIMARY KEY NOT NULL,
    paused BOOLEAN NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Alerts received from Alertmanager, one row per fingerprint (latest state wins).
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
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX withdrawals_to ON withdrawals (to_address);
