DROP TRIGGER history_feed_tx ON history;
DROP FUNCTION history_feed_tx();
DROP INDEX history_feed;
ALTER TABLE history DROP COLUMN tx;
