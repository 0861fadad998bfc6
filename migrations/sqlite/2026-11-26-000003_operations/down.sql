DROP INDEX withdrawals_to;
DROP INDEX audit_log_at;
DROP TABLE alerts;
DROP TABLE signing_controls;
DROP TABLE approvals;
