//! The metrics catalogue: every `withdraw_*` series with its help text and unit, described
//! once at start, and the label sets known in advance set to zero, so dashboards and alerts
//! see a value (not an absent series) before the first event.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use withdraw_core::domain::Status;
use withdraw_core::ports::QueueName;

pub fn describe() {
    describe_gauge!("withdraw_build_info", "Build of this process (value 1; the version is a label).");
    describe_counter!(
        "withdraw_intake_requests_total",
        "Withdrawal requests at the intake API, by outcome (accepted, duplicate, or the problem type)."
    );
    describe_histogram!("withdraw_intake_request_seconds", Unit::Seconds, "Intake request latency, from arrival to answer.");
    describe_histogram!("withdraw_intake_commit_seconds", Unit::Seconds, "Duration of the intake's group commit.");
    describe_histogram!("withdraw_intake_batch_size", Unit::Count, "Requests recorded per intake group commit.");
    describe_histogram!("withdraw_stage_batch_seconds", Unit::Seconds, "Duration of one batch of a pipeline stage.");
    describe_gauge!(
        "withdraw_stage_last_processed_timestamp_seconds",
        Unit::Seconds,
        "When a stage last finished a unit of work (unix seconds)."
    );
    describe_counter!("withdraw_transitions_total", "Withdrawal status changes, by status reached.");
    describe_gauge!("withdraw_withdrawals", "Withdrawals by current status.");
    describe_counter!("withdraw_signed_total", "Transfers signed (first attempts).");
    describe_gauge!(
        "withdraw_fee_max_fee_per_gas_wei",
        "Max fee per gas (or legacy gas price) the fee oracle offers now, per chain, in wei."
    );
    describe_gauge!("withdraw_fee_priority_fee_per_gas_wei", "Priority fee per gas the fee oracle offers now, per chain, in wei.");
    describe_gauge!("withdraw_fee_base_fee_wei", "The next block's base fee per gas as the fee oracle read it, per chain, in wei.");
    describe_counter!(
        "withdraw_signer_sign_errors_total",
        "Withdrawals the hot-wallet keys refused to sign (held and offered again), per chain."
    );
    describe_counter!("withdraw_kms_signatures_total", "Signatures asked of AWS KMS, by outcome (signed, failed).");
    describe_histogram!("withdraw_kms_batch_seconds", Unit::Seconds, "Time to sign one batch with AWS KMS.");
    describe_counter!("withdraw_sent_total", "Withdrawals whose transfer a node accepted.");
    describe_counter!("withdraw_completed_total", "Withdrawals completed (deep enough on the canonical chain).");
    describe_counter!("withdraw_signer_invalid_total", "Requests the signer refused (balance, limit), sent to the invalid DLQ.");
    describe_gauge!("withdraw_signer_held_withdrawals", "Withdrawals held because a hot wallet cannot fund them.");
    describe_gauge!("withdraw_signer_paused", "1 while signing is paused by an operator (scope all or a chain id).");
    describe_gauge!("withdraw_queue_visible_messages", "Messages waiting in a queue.");
    describe_gauge!("withdraw_queue_inflight_messages", "Messages received and not yet deleted.");
    describe_gauge!("withdraw_queue_oldest_message_age_seconds", Unit::Seconds, "Age of a queue's oldest message.");
    describe_gauge!("withdraw_sent_oldest_age_seconds", Unit::Seconds, "How long the oldest SENT withdrawal has waited to be mined.");
    describe_gauge!("withdraw_hot_wallet_short", "1 while a hot wallet cannot fund the withdrawals waiting for it.");
    describe_gauge!("withdraw_hot_wallet_balance_base_units", "A hot wallet's on-chain balance in the asset's base units.");
    describe_gauge!(
        "withdraw_hot_wallet_in_flight_base_units",
        "What a hot wallet's unmined transfers will still spend, in base units (gas included for the native coin)."
    );
    describe_gauge!("withdraw_nonce_lag", "Nonces signed but not yet mined, per wallet.");
    describe_gauge!("withdraw_nonce_gaps", "Nonces below a wallet's next one that nothing of ours fills (being filled).");
    describe_gauge!("withdraw_nonce_blocked", "Nonces held by withdrawals in the tx DLQ, blocking every later one.");
    describe_counter!("withdraw_nonce_foreign_total", "Nonces found used outside withdrawd.");
    describe_counter!("withdraw_nonce_resigned_total", "Transfers re-signed at a new nonce because a foreign transaction took theirs.");
    describe_counter!("withdraw_nonce_fills_total", "0-value self-transfers signed to fill nonce gaps.");
    describe_counter!(
        "withdraw_nonce_restored_total",
        "Finished withdrawals' transactions broadcast again after a reorg deeper than the confirmations removed them."
    );
    describe_counter!(
        "withdraw_nonce_conflicts_total",
        "Broadcasts answered 'nonce too low' with none of the withdrawal's attempts on chain."
    );
    describe_counter!(
        "withdraw_nonce_displacement_unproven_total",
        "Nonces passed by the chain without our receipt where no foreign transaction was found: nothing re-signed."
    );
    describe_counter!(
        "withdraw_signing_refused_paused_total",
        "Signing writes (transfers, bumps, cancels, fills, re-signs) refused inside their transaction because signing is paused."
    );
    describe_counter!(
        "withdraw_token_transfer_unproven_total",
        "Token transfers mined with a successful receipt but no matching Transfer log: FAILED, funds released."
    );
    describe_gauge!("withdraw_tracker_lease_held", "1 while this tracker holds the tracker lease (one tracker works at a time).");
    describe_counter!(
        "withdraw_tracker_lease_lost_total",
        "Times this tracker lost the lease it held (another took it, or the database did not answer)."
    );
    describe_counter!("withdraw_settlements_total", "Balance changes (commits, releases) carried out after their status change.");
    describe_counter!(
        "withdraw_reservation_missing_total",
        "Settles that found no reservation where one must exist: the balance store lost writes."
    );
    describe_counter!(
        "withdraw_dlq_stale_messages_total",
        "Dead-letter messages older than their withdrawal's last change, dropped unacted."
    );
    describe_counter!("withdraw_intake_overloaded_total", "Requests answered 503 because the intake writer's queue was full.");
    describe_counter!("withdraw_http_connections_refused_total", "Connections closed on accept because a listener was at its cap.");
    describe_histogram!("withdraw_nonce_check_seconds", Unit::Seconds, "Duration of one wallet's nonce check.");
    describe_histogram!("withdraw_nonce_owners_seconds", Unit::Seconds, "Duration of the nonce check's read of open nonces.");
    describe_counter!("withdraw_fee_bumps_total", "Stuck transfers replaced with higher fees.");
    describe_counter!("withdraw_fee_cap_reached_total", "Replacements not signed because the fee cap was reached.");
    describe_counter!("withdraw_cancels_signed_total", "Cancels (0-value self-transfers) signed for discarded withdrawals.");
    describe_gauge!("withdraw_chain_head_block", "The chain head the tracker last saw.");
    describe_gauge!(
        "withdraw_rpc_endpoint_state",
        "1 for an RPC endpoint's current state (healthy, lagging, down, quarantined), 0 for the others."
    );
    describe_gauge!("withdraw_rpc_endpoint_head", "The head an RPC endpoint last reported.");
    describe_gauge!("withdraw_rpc_endpoint_lag_blocks", "Corroborated head minus an endpoint's head (negative: ahead).");
    describe_histogram!("withdraw_rpc_request_seconds", Unit::Seconds, "Latency of calls to an RPC endpoint.");
    describe_counter!("withdraw_rpc_errors_total", "Failed calls to an RPC endpoint, by kind.");
    describe_counter!("withdraw_rpc_failovers_total", "Times reads moved to another RPC endpoint.");
    describe_histogram!("withdraw_sqlite_write_wait_seconds", Unit::Seconds, "Time a write waited for the SQLite writer.");
    describe_histogram!("withdraw_sqlite_write_hold_seconds", Unit::Seconds, "Time a write held the SQLite writer.");
    describe_histogram!("withdraw_sqlite_checkpoint_seconds", Unit::Seconds, "Duration of a WAL checkpoint.");
}

/// Intake outcomes: accepted, duplicate, and every problem type the intake answers.
pub const INTAKE_OUTCOMES: [&str; 9] = [
    "accepted",
    "duplicate",
    "invalid-request",
    "unauthorized",
    "idempotency-key-missing",
    "idempotency-key-reused",
    "unsupported-media-type",
    "unavailable",
    "not-found",
];

/// Zero for every series whose labels are known at start.
pub fn preinit() {
    for action in ["commit", "release"] {
        metrics::counter!("withdraw_reservation_missing_total", "action" => action).absolute(0);
    }
    for o in INTAKE_OUTCOMES {
        metrics::counter!("withdraw_intake_requests_total", "outcome" => o).absolute(0);
    }
    for s in Status::ALL {
        metrics::counter!("withdraw_transitions_total", "to" => s.as_str()).absolute(0);
        metrics::gauge!("withdraw_withdrawals", "status" => s.as_str()).set(0.0);
    }
    for q in QueueName::ALL {
        metrics::gauge!("withdraw_queue_visible_messages", "queue" => q.as_str()).set(0.0);
        metrics::gauge!("withdraw_queue_inflight_messages", "queue" => q.as_str()).set(0.0);
        metrics::gauge!("withdraw_queue_oldest_message_age_seconds", "queue" => q.as_str()).set(0.0);
    }
    for c in [
        "withdraw_signed_total",
        "withdraw_sent_total",
        "withdraw_completed_total",
        "withdraw_signer_invalid_total",
        "withdraw_fee_bumps_total",
        "withdraw_fee_cap_reached_total",
        "withdraw_cancels_signed_total",
    ] {
        metrics::counter!(c).absolute(0);
    }
    metrics::gauge!("withdraw_sent_oldest_age_seconds").set(0.0);
}
