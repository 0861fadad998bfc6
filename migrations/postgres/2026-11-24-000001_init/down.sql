DROP TABLE alerts, signing_controls, approvals, cancel_requests, nonce_fills, hot_wallets, audit_log, chain_cursors,
    queue_messages, reservations, balances, wallet_nonces, history, inclusions, attempts, withdrawals;
