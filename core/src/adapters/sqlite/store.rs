//! The record store on SQLite (the shared implementation is in `record_store.rs`).

use super::Sqlite;
use crate::adapters::record_store::{WriteTx, record_store};
use crate::adapters::schema::{
    alerts, approvals, attempts, audit_log, cancel_requests, chain_cursors, credits, history, hot_wallets, inclusions, leases, nonce_fills,
    settlements, signing_controls, wallet_nonces, withdrawals,
};
use crate::domain::{Amount, Status, WithdrawalId};
use crate::ports::*;
use alloy::primitives::{Address, B256, Bytes};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use std::sync::Arc;

record_store!(SqliteStore, Sqlite, SqliteConnection);
