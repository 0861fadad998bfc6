DROP TABLE leases;
DROP TABLE settlements;
ALTER TABLE inclusions DROP COLUMN failure;
