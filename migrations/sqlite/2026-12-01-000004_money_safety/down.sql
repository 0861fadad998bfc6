DROP TABLE balance_credits;
DROP TABLE credits;
DROP TABLE leases;
DROP TABLE settlements;
ALTER TABLE inclusions DROP COLUMN failure;
