DROP INDEX history_feed;
ALTER TABLE history DROP COLUMN tx;
