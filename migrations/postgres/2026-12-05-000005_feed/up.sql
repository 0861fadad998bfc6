-- The change feed (GET /v1/withdrawals?updated_after=): every history row carries the id of
-- the transaction that wrote it. History ids are drawn when a row is inserted, not when its
-- transaction commits, so a row can become visible after one with a higher id; the feed
-- serves only rows of transactions older than every transaction still running, in (tx, id)
-- order, and a cursor past a row is never passed by one committed later.
ALTER TABLE history ADD COLUMN tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX history_feed ON history (tx, id);
