-- The change feed: on SQLite one writer commits at a time, so history ids are in commit
-- order and every row's tx is 0; the column exists so one schema serves both backends.
ALTER TABLE history ADD COLUMN tx BIGINT NOT NULL DEFAULT 0;
CREATE INDEX history_feed ON history (tx, id);
