DROP TABLE cancel_requests;
DROP TABLE nonce_fills;
ALTER TABLE wallet_nonces DROP COLUMN checked_at;
ALTER TABLE wallet_nonces DROP COLUMN blocked;
ALTER TABLE wallet_nonces DROP COLUMN gaps;
ALTER TABLE wallet_nonces DROP COLUMN chain_pending;
ALTER TABLE wallet_nonces DROP COLUMN chain_latest;
ALTER TABLE attempts DROP COLUMN sent_at;
