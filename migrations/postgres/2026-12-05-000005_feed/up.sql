-- The change feed (GET /v1/withdrawals?updated_after=): every history row carries the id of
-- the transaction that wrote it. History ids are drawn when a row is inserted, not when its
-- transaction commits, so a row can become visible after one with a higher id; the feed
-- serves only rows of transactions older than every transaction still running, in (tx, id)
-- order, and a cursor past a row is never passed by one committed later.
ALTER TABLE history ADD COLUMN tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX history_feed ON history (tx, id);

-- A transaction's id is taken at its first write, which need not be its lock on the
-- withdrawal (a signer locks its wallet first): one that took its id early can write a
-- withdrawal's next change after a later transaction wrote the previous one. So a row's tx is
-- at least the tx of the withdrawal's previous change, which is committed and visible here
-- because every writer of a withdrawal's history holds that withdrawal's row lock. A raised
-- tx only serves a row later, never earlier: the feed's horizon rule still holds.
CREATE FUNCTION history_feed_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx := GREATEST(
        pg_current_xact_id()::text::bigint,
        COALESCE((SELECT max(h.tx) FROM history h WHERE h.withdrawal_id = NEW.withdrawal_id), 0)
    );
    RETURN NEW;
END
$$;
CREATE TRIGGER history_feed_tx BEFORE INSERT ON history FOR EACH ROW EXECUTE FUNCTION history_feed_tx();
