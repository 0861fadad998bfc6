//! The rows of the record's tables as diesel reads and writes them, and their conversion to
//! the stages' records (`ports::records`). A row that does not convert is reported as
//! corrupt, naming the row and the field.

use crate::adapters::schema::{attempts, history, inclusions, wallet_nonces, withdrawals};
use crate::domain::{Amount, WithdrawalId};
use crate::ports::{Attempt, AttemptKind, Inclusion, SignedTx, StoreError, Withdrawal};
use alloy::primitives::{Address, B256, Bytes};
use diesel::prelude::*;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = withdrawals)]
pub(super) struct WithdrawalRow {
    pub(super) id: String,
    pub(super) client_id: String,
    pub(super) idempotency_key: String,
    pub(super) request_hash: String,
    pub(super) user_id: String,
    pub(super) asset: String,
    pub(super) chain_id: i64,
    pub(super) to_address: String,
    pub(super) amount: String,
    pub(super) status: String,
    pub(super) reason: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) nudged_at: Option<i64>,
}

impl WithdrawalRow {
    pub(super) fn into_domain(self) -> Result<Withdrawal, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("withdrawal {}: bad {what}", self.id));
        Ok(Withdrawal {
            to: self.to_address.parse().map_err(|_| corrupt("to_address"))?,
            amount: Amount::from_base_units(&self.amount).ok_or_else(|| corrupt("amount"))?,
            status: self.status.parse().map_err(|_| corrupt("status"))?,
            chain_id: u64::try_from(self.chain_id).map_err(|_| corrupt("chain_id"))?,
            id: WithdrawalId::from_stored(self.id),
            client_id: self.client_id,
            user_id: self.user_id,
            asset: self.asset,
            reason: self.reason,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = attempts)]
pub(super) struct AttemptRow {
    pub(super) tx_hash: String,
    pub(super) withdrawal_id: String,
    pub(super) wallet: String,
    pub(super) chain_id: i64,
    pub(super) nonce: i64,
    pub(super) kind: String,
    pub(super) raw: Vec<u8>,
    pub(super) max_fee_per_gas: String,
    pub(super) max_priority_fee_per_gas: String,
    pub(super) gas_limit: i64,
    pub(super) created_at: i64,
    pub(super) sent_at: Option<i64>,
}

impl AttemptRow {
    /// A new transfer attempt's row, from what the key signed.
    pub(super) fn transfer(tx: &SignedTx, withdrawal_id: &str, wallet: &str, chain_id: u64, nonce: i64, created_at: i64) -> AttemptRow {
        AttemptRow {
            tx_hash: hex_hash(&tx.hash),
            withdrawal_id: withdrawal_id.to_owned(),
            wallet: wallet.to_owned(),
            chain_id: chain_id as i64,
            nonce,
            kind: AttemptKind::Transfer.as_str().to_owned(),
            raw: tx.raw.to_vec(),
            max_fee_per_gas: tx.max_fee_per_gas.to_string(),
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas.to_string(),
            gas_limit: tx.gas_limit as i64,
            created_at,
            sent_at: None,
        }
    }

    pub(super) fn into_domain(self) -> Result<Attempt, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("attempt {}: bad {what}", self.tx_hash));
        Ok(Attempt {
            tx_hash: self.tx_hash.parse().map_err(|_| corrupt("tx_hash"))?,
            wallet: self.wallet.parse().map_err(|_| corrupt("wallet"))?,
            chain_id: self.chain_id as u64,
            nonce: self.nonce as u64,
            kind: match self.kind.as_str() {
                "transfer" => AttemptKind::Transfer,
                "cancel" => AttemptKind::Cancel,
                _ => return Err(corrupt("kind")),
            },
            raw: Bytes::from(self.raw),
            max_fee_per_gas: self.max_fee_per_gas.parse().map_err(|_| corrupt("max_fee_per_gas"))?,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas.parse().map_err(|_| corrupt("max_priority_fee_per_gas"))?,
            gas_limit: self.gas_limit as u64,
            created_at_ms: self.created_at,
            sent_at_ms: self.sent_at,
            withdrawal_id: WithdrawalId::from_stored(self.withdrawal_id),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = inclusions)]
pub(super) struct InclusionRow {
    pub(super) withdrawal_id: String,
    pub(super) chain_id: i64,
    pub(super) tx_hash: String,
    pub(super) block_number: i64,
    pub(super) block_hash: String,
    pub(super) success: bool,
    pub(super) failure: Option<String>,
}

impl InclusionRow {
    pub(super) fn into_domain(self) -> Result<Inclusion, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("inclusion {}: bad {what}", self.withdrawal_id));
        Ok(Inclusion {
            tx_hash: self.tx_hash.parse().map_err(|_| corrupt("tx_hash"))?,
            block_number: self.block_number as u64,
            block_hash: self.block_hash.parse().map_err(|_| corrupt("block_hash"))?,
            success: self.success,
            failure: self.failure,
            withdrawal_id: WithdrawalId::from_stored(self.withdrawal_id),
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = history)]
pub(super) struct NewHistory<'a> {
    pub(super) withdrawal_id: &'a str,
    pub(super) from_status: Option<&'a str>,
    pub(super) to_status: &'a str,
    pub(super) reason: Option<&'a str>,
    pub(super) actor: &'a str,
    pub(super) at: i64,
}

pub(super) fn hex_addr(a: &Address) -> String {
    format!("{a:#x}")
}

pub(super) fn hex_hash(h: &B256) -> String {
    format!("{h:#x}")
}

/// The `wallet_nonces` row of one wallet on one chain.
pub(super) type NonceRow<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<wallet_nonces::table, diesel::dsl::Eq<wallet_nonces::chain_id, i64>>,
    diesel::dsl::Eq<wallet_nonces::wallet, &'a str>,
>;

pub(super) fn nonce_row(wallet: &str, chain_id: u64) -> NonceRow<'_> {
    wallet_nonces::table.filter(wallet_nonces::chain_id.eq(chain_id as i64)).filter(wallet_nonces::wallet.eq(wallet))
}

/// The row an attempt is stored as.
pub(super) fn attempt_row(a: &Attempt) -> AttemptRow {
    AttemptRow {
        tx_hash: hex_hash(&a.tx_hash),
        withdrawal_id: a.withdrawal_id.as_str().to_owned(),
        wallet: hex_addr(&a.wallet),
        chain_id: a.chain_id as i64,
        nonce: a.nonce as i64,
        kind: a.kind.as_str().to_owned(),
        raw: a.raw.to_vec(),
        max_fee_per_gas: a.max_fee_per_gas.to_string(),
        max_priority_fee_per_gas: a.max_priority_fee_per_gas.to_string(),
        gas_limit: a.gas_limit as i64,
        created_at: a.created_at_ms,
        sent_at: a.sent_at_ms,
    }
}
