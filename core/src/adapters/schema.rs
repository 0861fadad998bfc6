//! Diesel table definitions for `migrations/sqlite`.

diesel::table! {
    withdrawals (id) {
        id -> Text,
        client_id -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        user_id -> Text,
        asset -> Text,
        chain_id -> BigInt,
        to_address -> Text,
        amount -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        nudged_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    attempts (tx_hash) {
        tx_hash -> Text,
        withdrawal_id -> Text,
        wallet -> Text,
        chain_id -> BigInt,
        nonce -> BigInt,
        kind -> Text,
        raw -> Binary,
        max_fee_per_gas -> Text,
        max_priority_fee_per_gas -> Text,
        gas_limit -> BigInt,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    inclusions (withdrawal_id) {
        withdrawal_id -> Text,
        chain_id -> BigInt,
        tx_hash -> Text,
        block_number -> BigInt,
        block_hash -> Text,
        success -> Bool,
        failure -> Nullable<Text>,
    }
}

diesel::table! {
    history (id) {
        id -> BigInt,
        withdrawal_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
        actor -> Text,
        at -> BigInt,
        tx -> BigInt,
    }
}

diesel::table! {
    wallet_nonces (chain_id, wallet) {
        chain_id -> BigInt,
        wallet -> Text,
        next_nonce -> BigInt,
        chain_latest -> Nullable<BigInt>,
        chain_pending -> Nullable<BigInt>,
        gaps -> Text,
        blocked -> Text,
        checked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    balances (user_id, asset) {
        user_id -> Text,
        asset -> Text,
        credited -> Text,
        reserved -> Text,
        spent -> Text,
    }
}

diesel::table! {
    reservations (withdrawal_id) {
        withdrawal_id -> Text,
        user_id -> Text,
        asset -> Text,
        amount -> Text,
        state -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    credits (idempotency_key) {
        idempotency_key -> Text,
        request_hash -> Text,
        user_id -> Text,
        asset -> Text,
        amount -> Text,
        reason -> Text,
        requested_by -> Text,
        approved_by -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        applied_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    balance_credits (credit_id) {
        credit_id -> Text,
        applied_at -> BigInt,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    settlements (withdrawal_id) {
        withdrawal_id -> Text,
        action -> Text,
        from_status -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    queue_messages (id) {
        id -> BigInt,
        queue -> Text,
        body -> Text,
        sent_at -> BigInt,
        visible_at -> BigInt,
        receive_count -> Integer,
    }
}

diesel::table! {
    chain_cursors (chain_id) {
        chain_id -> BigInt,
        block_number -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        reason -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    nonce_fills (tx_hash) {
        tx_hash -> Text,
        chain_id -> BigInt,
        wallet -> Text,
        nonce -> BigInt,
        raw -> Binary,
        max_fee_per_gas -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    cancel_requests (withdrawal_id) {
        withdrawal_id -> Text,
        actor -> Text,
        reason -> Text,
        requested_at -> BigInt,
    }
}

diesel::table! {
    approvals (withdrawal_id) {
        withdrawal_id -> Text,
        approver -> Text,
        reason -> Text,
        approved_at -> BigInt,
    }
}

diesel::table! {
    signing_controls (scope) {
        scope -> Text,
        paused -> Bool,
        actor -> Text,
        reason -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    alerts (fingerprint) {
        fingerprint -> Text,
        status -> Text,
        name -> Text,
        severity -> Nullable<Text>,
        summary -> Nullable<Text>,
        console -> Nullable<Text>,
        labels -> Text,
        annotations -> Text,
        starts_at -> Text,
        ends_at -> Nullable<Text>,
        received_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    withdrawals,
    attempts,
    inclusions,
    history,
    reservations,
    cancel_requests,
    approvals,
    settlements
);

diesel::table! {
    hot_wallets (chain_id, wallet, asset) {
        chain_id -> BigInt,
        wallet -> Text,
        asset -> Text,
        balance -> Text,
        in_flight -> Text,
        short_by -> Text,
        held -> BigInt,
        updated_at -> BigInt,
    }
}
