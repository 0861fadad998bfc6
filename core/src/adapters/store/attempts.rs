//! Attempts and nonces: each hot wallet's next nonce, the signed transactions recorded per
//! withdrawal (transfers, replacements, cancels, re-signs of a displaced nonce), nonce
//! fills, the nonce check's findings, and the funds a wallet has in flight.

use super::conn::{AnyConn, insert_ignore, lock_wallet, lock_withdrawals, write_tx};
use super::operations::brake_on;
use super::rows::*;
use super::withdrawals::load_rows;
use crate::adapters::schema::*;
use crate::domain::{Amount, Status, WithdrawalId};
use crate::ports::*;
use alloy::primitives::{Address, B256, Bytes};
use diesel::prelude::*;

/// Which of a withdrawal's attempts is its newest (the one sent): latest signed, highest
/// fee on a tie. Every reader that picks "the" attempt orders by this.
pub(super) fn newest_key(created_at_ms: i64, max_fee_per_gas: u128) -> (i64, u128) {
    (created_at_ms, max_fee_per_gas)
}

/// The newest attempt of each withdrawal (see `newest_key`).
pub(super) fn latest_attempts(conn: &mut AnyConn, ids: &[String]) -> Result<Vec<Attempt>, StoreError> {
    let mut best: std::collections::HashMap<WithdrawalId, Attempt> = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<AttemptRow> =
            attempts::table.filter(attempts::withdrawal_id.eq_any(chunk)).select(AttemptRow::as_select()).load(conn)?;
        for r in rows {
            let a = r.into_domain()?;
            let newer = best
                .get(&a.withdrawal_id)
                .is_none_or(|b| newest_key(a.created_at_ms, a.max_fee_per_gas) > newest_key(b.created_at_ms, b.max_fee_per_gas));
            if newer {
                best.insert(a.withdrawal_id.clone(), a);
            }
        }
    }
    Ok(best.into_values().collect())
}

pub(super) fn init_nonce(conn: &mut AnyConn, wallet: Address, chain_id: u64, chain_next: u64) -> Result<u64, StoreError> {
    write_tx(conn, |conn| {
        insert_ignore!(
            conn,
            wallet_nonces::table,
            (
                wallet_nonces::chain_id.eq(chain_id as i64),
                wallet_nonces::wallet.eq(hex_addr(&wallet)),
                wallet_nonces::next_nonce.eq(chain_next as i64),
            )
        )?;
        let n: i64 = wallet_nonces::table
            .filter(wallet_nonces::chain_id.eq(chain_id as i64))
            .filter(wallet_nonces::wallet.eq(hex_addr(&wallet)))
            .select(wallet_nonces::next_nonce)
            .first(conn)?;
        Ok(n as u64)
    })
}

pub(super) fn wallets(conn: &mut AnyConn, chain_id: u64) -> Result<Vec<Address>, StoreError> {
    let rows: Vec<String> =
        wallet_nonces::table.filter(wallet_nonces::chain_id.eq(chain_id as i64)).select(wallet_nonces::wallet).load(conn)?;
    rows.iter().map(|w| w.parse().map_err(|_| StoreError::Corrupt(format!("wallet {w}")))).collect()
}

pub(super) fn next_nonce(conn: &mut AnyConn, wallet: Address, chain_id: u64) -> Result<Option<u64>, StoreError> {
    let n: Option<i64> = wallet_nonces::table
        .filter(wallet_nonces::chain_id.eq(chain_id as i64))
        .filter(wallet_nonces::wallet.eq(hex_addr(&wallet)))
        .select(wallet_nonces::next_nonce)
        .first(conn)
        .optional()?;
    Ok(n.map(|n| n as u64))
}

pub(super) fn advance_nonce(conn: &mut AnyConn, wallet: Address, chain_id: u64, at_least: u64) -> Result<(u64, u64), StoreError> {
    write_tx(conn, |conn| {
        let w = hex_addr(&wallet);
        lock_wallet(conn, &w, chain_id)?;
        let cur: i64 = nonce_row(&w, chain_id).select(wallet_nonces::next_nonce).first(conn)?;
        let next = cur.max(at_least as i64);
        if next != cur {
            diesel::update(nonce_row(&w, chain_id)).set(wallet_nonces::next_nonce.eq(next)).execute(conn)?;
        }
        Ok((cur as u64, next as u64))
    })
}

pub(super) fn find_attempts(conn: &mut AnyConn, hashes: Vec<String>) -> Result<Vec<Attempt>, StoreError> {
    let mut out = Vec::new();
    for chunk in hashes.chunks(500) {
        let rows: Vec<AttemptRow> = attempts::table.filter(attempts::tx_hash.eq_any(chunk)).select(AttemptRow::as_select()).load(conn)?;
        for r in rows {
            out.push(r.into_domain()?);
        }
    }
    Ok(out)
}

pub(super) fn attempts_of(conn: &mut AnyConn, ids: Vec<String>) -> Result<Vec<Attempt>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<AttemptRow> =
            attempts::table.filter(attempts::withdrawal_id.eq_any(chunk)).select(AttemptRow::as_select()).load(conn)?;
        for r in rows {
            out.push(r.into_domain()?);
        }
    }
    Ok(out)
}

pub(super) fn attempts_at(conn: &mut AnyConn, chain_id: u64, wallet: Address, nonces: Vec<u64>) -> Result<Vec<AttemptAtNonce>, StoreError> {
    let nonces: Vec<i64> = nonces.iter().map(|n| *n as i64).collect();
    let rows: Vec<(AttemptRow, String, Option<String>)> = attempts::table
        .inner_join(withdrawals::table.on(withdrawals::id.eq(attempts::withdrawal_id)))
        .left_join(inclusions::table.on(inclusions::withdrawal_id.eq(attempts::withdrawal_id)))
        .filter(attempts::chain_id.eq(chain_id as i64))
        .filter(attempts::wallet.eq(hex_addr(&wallet)))
        .filter(attempts::nonce.eq_any(&nonces))
        .select((AttemptRow::as_select(), withdrawals::status, inclusions::tx_hash.nullable()))
        .load(conn)?;
    rows.into_iter()
        .map(|(a, status, mined)| {
            Ok(AttemptAtNonce {
                attempt: a.into_domain()?,
                status: status.parse().map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
                mined_hash: mined.map(|h| h.parse().map_err(|_| StoreError::Corrupt(format!("inclusion hash {h}")))).transpose()?,
            })
        })
        .collect()
}

pub(super) fn mark_sent(conn: &mut AnyConn, hashes: Vec<String>, now: i64) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        for chunk in hashes.chunks(500) {
            diesel::update(attempts::table.filter(attempts::tx_hash.eq_any(chunk)).filter(attempts::sent_at.is_null()))
                .set(attempts::sent_at.eq(now))
                .execute(conn)?;
        }
        Ok(())
    })
}

pub(super) fn record_replacements(conn: &mut AnyConn, batch: Vec<Replacement>) -> Result<Vec<bool>, StoreError> {
    write_tx(conn, |conn| {
        let ids: Vec<String> = batch.iter().map(|r| r.attempt.withdrawal_id.as_str().to_owned()).collect();
        lock_withdrawals(conn, &ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
            latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
        let open: std::collections::HashSet<String> = withdrawals::table
            .filter(withdrawals::id.eq_any(&ids))
            .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
            .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
            .select(withdrawals::id)
            .load::<String>(conn)?
            .into_iter()
            .collect();
        let mut braked: std::collections::HashMap<u64, bool> = std::collections::HashMap::new();
        for r in &batch {
            if let std::collections::hash_map::Entry::Vacant(e) = braked.entry(r.attempt.chain_id) {
                e.insert(brake_on(conn, r.attempt.chain_id)?);
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        for r in &batch {
            let a = &r.attempt;
            let current = latest.get(&a.withdrawal_id);
            let ok = !braked[&a.chain_id]
                && open.contains(a.withdrawal_id.as_str())
                && current
                    .is_some_and(|c| c.tx_hash == r.replaces && c.nonce == a.nonce && c.wallet == a.wallet && c.chain_id == a.chain_id);
            if ok {
                diesel::insert_into(attempts::table).values(attempt_row(a)).execute(conn)?;
                // A second replacement of the same attempt in this batch loses.
                latest.insert(a.withdrawal_id.clone(), a.clone());
            }
            out.push(ok);
        }
        Ok(out)
    })
}

pub(super) fn resign_displaced(
    conn: &mut AnyConn,
    wallet: Address,
    chain_id: u64,
    batch: Vec<(WithdrawalId, u64)>,
    mut sign: SignFn,
    now: i64,
) -> Result<Vec<SignOutcome>, StoreError> {
    write_tx(conn, |conn| {
        let w = hex_addr(&wallet);
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.as_str().to_owned()).collect();
        lock_wallet(conn, &w, chain_id)?;
        if brake_on(conn, chain_id)? {
            return Ok(batch.iter().map(|(id, _)| SignOutcome::Paused { id: id.clone() }).collect());
        }
        lock_withdrawals(conn, &ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let loaded: std::collections::HashMap<WithdrawalId, Withdrawal> =
            load_rows(conn, &ids)?.into_iter().map(|w| (w.id.clone(), w)).collect();
        let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
            latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
        let mined: std::collections::HashSet<String> = inclusions::table
            .filter(inclusions::withdrawal_id.eq_any(&ids))
            .select(inclusions::withdrawal_id)
            .load::<String>(conn)?
            .into_iter()
            .collect();
        let cancelling: std::collections::HashSet<String> = cancel_requests::table
            .filter(cancel_requests::withdrawal_id.eq_any(&ids))
            .select(cancel_requests::withdrawal_id)
            .load::<String>(conn)?
            .into_iter()
            .collect();
        let mut next: i64 = nonce_row(&w, chain_id).select(wallet_nonces::next_nonce).first(conn)?;
        let mut out = Vec::with_capacity(batch.len());
        for (id, old_nonce) in &batch {
            let (Some(wd), Some(a)) = (loaded.get(id), latest.get(id).cloned()) else {
                return Err(StoreError::Query(format!("withdrawal {id} does not exist")));
            };
            let eligible = matches!(wd.status, Status::Signed | Status::Sent)
                && !mined.contains(id.as_str())
                && !cancelling.contains(id.as_str())
                && a.kind == AttemptKind::Transfer
                && a.nonce == *old_nonce
                && a.wallet == wallet;
            if !eligible {
                out.push(SignOutcome::Skipped { id: id.clone(), status: wd.status });
                continue;
            }
            match crate::ports::sign_one(&mut sign, wd, next as u64) {
                Ok(tx) => {
                    // Newer than every earlier attempt, so it is the one sent.
                    let row = AttemptRow::transfer(&tx, id.as_str(), &w, chain_id, next, now.max(a.created_at_ms + 1));
                    diesel::insert_into(attempts::table).values(&row).execute(conn)?;
                    // Listed twice in one batch: the second sees the new attempt and skips.
                    latest.insert(id.clone(), row.into_domain()?);
                    out.push(SignOutcome::Signed { id: id.clone(), hash: tx.hash, raw: tx.raw, nonce: next as u64 });
                    next += 1;
                }
                Err(error) => out.push(SignOutcome::SignError { id: id.clone(), error }),
            }
        }
        diesel::update(nonce_row(&w, chain_id)).set(wallet_nonces::next_nonce.eq(next)).execute(conn)?;
        Ok(out)
    })
}

pub(super) fn nonce_owners(conn: &mut AnyConn, chain_id: u64, wallet: Address) -> Result<Vec<NonceOwner>, StoreError> {
    // One join over the open withdrawals' attempts, without the raw bytes: this
    // runs every few seconds beside a busy pipeline.
    type Row = (String, String, String, String, i64, String, i64, String, bool);
    let open = [Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()];
    let rows: Vec<Row> = withdrawals::table
        .inner_join(attempts::table.on(attempts::withdrawal_id.eq(withdrawals::id)))
        // Mined ones too: until final, a reorg can hand their nonce back.
        .filter(withdrawals::status.eq_any(open))
        .filter(withdrawals::chain_id.eq(chain_id as i64))
        .select((
            withdrawals::id,
            withdrawals::status,
            attempts::tx_hash,
            attempts::wallet,
            attempts::nonce,
            attempts::kind,
            attempts::created_at,
            attempts::max_fee_per_gas,
            diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id))),
        ))
        .load(conn)?;
    let wallet_s = hex_addr(&wallet);
    // Per withdrawal: its owner entry and the newest attempt's (created, fee).
    let mut owners: std::collections::HashMap<String, (NonceOwner, (i64, u128), String)> = std::collections::HashMap::new();
    for (id, status, hash, w, nonce, kind, created, fee, mined) in rows {
        let corrupt = |what: &str| StoreError::Corrupt(format!("attempt of {id}: bad {what}"));
        let h: B256 = hash.parse().map_err(|_| corrupt("tx_hash"))?;
        let key = newest_key(created, fee.parse::<u128>().map_err(|_| corrupt("max_fee_per_gas"))?);
        let kind = if kind == "cancel" { AttemptKind::Cancel } else { AttemptKind::Transfer };
        match owners.get_mut(&id) {
            Some((o, newest, newest_wallet)) => {
                o.hashes.push(h);
                if key > *newest {
                    (o.nonce, o.kind, o.signed_at_ms, *newest, *newest_wallet) = (nonce as u64, kind, created, key, w);
                }
            }
            None => {
                let o = NonceOwner {
                    withdrawal_id: WithdrawalId::from_stored(id.clone()),
                    status: status.parse().map_err(|_| corrupt("status"))?,
                    nonce: nonce as u64,
                    kind,
                    mined,
                    signed_at_ms: created,
                    hashes: vec![h],
                };
                owners.insert(id, (o, key, w));
            }
        }
    }
    Ok(owners.into_values().filter(|(_, _, w)| w.eq_ignore_ascii_case(&wallet_s)).map(|(o, _, _)| o).collect())
}

pub(super) fn record_fill(conn: &mut AnyConn, fill: NonceFill) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        if brake_on(conn, fill.chain_id)? {
            return Ok(false);
        }
        insert_ignore!(
            conn,
            nonce_fills::table,
            (
                nonce_fills::tx_hash.eq(hex_hash(&fill.tx_hash)),
                nonce_fills::chain_id.eq(fill.chain_id as i64),
                nonce_fills::wallet.eq(hex_addr(&fill.wallet)),
                nonce_fills::nonce.eq(fill.nonce as i64),
                nonce_fills::raw.eq(fill.raw.to_vec()),
                nonce_fills::max_fee_per_gas.eq(fill.max_fee_per_gas.to_string()),
                nonce_fills::created_at.eq(fill.created_at_ms),
            )
        )?;
        Ok(true)
    })
}

pub(super) fn fills(conn: &mut AnyConn, chain_id: u64, wallet: Address, from_nonce: u64) -> Result<Vec<NonceFill>, StoreError> {
    type Row = (String, i64, Vec<u8>, String, i64);
    let rows: Vec<Row> = nonce_fills::table
        .filter(nonce_fills::chain_id.eq(chain_id as i64))
        .filter(nonce_fills::wallet.eq(hex_addr(&wallet)))
        .filter(nonce_fills::nonce.ge(from_nonce as i64))
        .order((nonce_fills::nonce.asc(), nonce_fills::created_at.asc()))
        .select((nonce_fills::tx_hash, nonce_fills::nonce, nonce_fills::raw, nonce_fills::max_fee_per_gas, nonce_fills::created_at))
        .load(conn)?;
    rows.into_iter()
        .map(|(h, n, raw, fee, at)| {
            Ok(NonceFill {
                chain_id,
                wallet,
                nonce: n as u64,
                tx_hash: h.parse().map_err(|_| StoreError::Corrupt(format!("fill hash {h}")))?,
                raw: Bytes::from(raw),
                max_fee_per_gas: fee.parse().map_err(|_| StoreError::Corrupt(format!("fill fee {fee}")))?,
                created_at_ms: at,
            })
        })
        .collect()
}

pub(super) fn record_nonce_check(conn: &mut AnyConn, c: NonceCheck, gaps: String, blocked: String) -> Result<(), StoreError> {
    diesel::update(nonce_row(&hex_addr(&c.wallet), c.chain_id))
        .set((
            wallet_nonces::chain_latest.eq(c.chain_latest as i64),
            wallet_nonces::chain_pending.eq(c.chain_pending as i64),
            wallet_nonces::gaps.eq(gaps),
            wallet_nonces::blocked.eq(blocked),
            wallet_nonces::checked_at.eq(c.checked_at_ms),
        ))
        .execute(conn)?;
    Ok(())
}

pub(super) fn nonce_checks(conn: &mut AnyConn) -> Result<Vec<NonceCheck>, StoreError> {
    type Row = (i64, String, i64, Option<i64>, Option<i64>, String, String, Option<i64>);
    let rows: Vec<Row> = wallet_nonces::table
        .filter(wallet_nonces::checked_at.is_not_null())
        .select((
            wallet_nonces::chain_id,
            wallet_nonces::wallet,
            wallet_nonces::next_nonce,
            wallet_nonces::chain_latest,
            wallet_nonces::chain_pending,
            wallet_nonces::gaps,
            wallet_nonces::blocked,
            wallet_nonces::checked_at,
        ))
        .order((wallet_nonces::chain_id.asc(), wallet_nonces::wallet.asc()))
        .load(conn)?;
    let list = |s: &str| -> Result<Vec<u64>, StoreError> {
        s.split(',').filter(|p| !p.is_empty()).map(|p| p.parse().map_err(|_| StoreError::Corrupt(format!("nonce list {s}")))).collect()
    };
    rows.into_iter()
        .map(|(c, w, next, latest, pending, gaps, blocked, at)| {
            Ok(NonceCheck {
                chain_id: c as u64,
                wallet: w.parse().map_err(|_| StoreError::Corrupt(format!("wallet {w}")))?,
                next_nonce: next as u64,
                chain_latest: latest.unwrap_or(0) as u64,
                chain_pending: pending.unwrap_or(0) as u64,
                gaps: list(&gaps)?,
                blocked: list(&blocked)?,
                checked_at_ms: at.unwrap_or(0),
            })
        })
        .collect()
}

pub(super) fn in_flight(conn: &mut AnyConn, chain_id: u64, wallet: Address) -> Result<Vec<InFlight>, StoreError> {
    let ids: Vec<String> = withdrawals::table
        .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
        .filter(withdrawals::chain_id.eq(chain_id as i64))
        .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
        .select(withdrawals::id)
        .load(conn)?;
    let ws: std::collections::HashMap<WithdrawalId, Withdrawal> = load_rows(conn, &ids)?.into_iter().map(|w| (w.id.clone(), w)).collect();
    Ok(latest_attempts(conn, &ids)?
        .into_iter()
        .filter(|a| a.wallet == wallet)
        .filter_map(|a| {
            ws.get(&a.withdrawal_id).map(|w| InFlight {
                asset: w.asset.clone(),
                amount: w.amount,
                gas_limit: a.gas_limit,
                max_fee_per_gas: a.max_fee_per_gas,
            })
        })
        .collect())
}

pub(super) fn record_wallet_funds(conn: &mut AnyConn, funds: Vec<WalletFunds>) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        for f in &funds {
            diesel::delete(
                hot_wallets::table
                    .filter(hot_wallets::chain_id.eq(f.chain_id as i64))
                    .filter(hot_wallets::wallet.eq(hex_addr(&f.wallet)))
                    .filter(hot_wallets::asset.eq(&f.asset)),
            )
            .execute(conn)?;
            diesel::insert_into(hot_wallets::table)
                .values((
                    hot_wallets::chain_id.eq(f.chain_id as i64),
                    hot_wallets::wallet.eq(hex_addr(&f.wallet)),
                    hot_wallets::asset.eq(&f.asset),
                    hot_wallets::balance.eq(f.balance.base_units()),
                    hot_wallets::in_flight.eq(f.in_flight.base_units()),
                    hot_wallets::short_by.eq(f.short_by.base_units()),
                    hot_wallets::held.eq(f.held as i64),
                    hot_wallets::updated_at.eq(f.updated_at_ms),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

pub(super) fn wallet_funds(conn: &mut AnyConn) -> Result<Vec<WalletFunds>, StoreError> {
    type Row = (i64, String, String, String, String, String, i64, i64);
    let rows: Vec<Row> = hot_wallets::table
        .select((
            hot_wallets::chain_id,
            hot_wallets::wallet,
            hot_wallets::asset,
            hot_wallets::balance,
            hot_wallets::in_flight,
            hot_wallets::short_by,
            hot_wallets::held,
            hot_wallets::updated_at,
        ))
        .load(conn)?;
    let amount = |s: &str| Amount::from_base_units(s).ok_or_else(|| StoreError::Corrupt(format!("hot wallet amount {s}")));
    rows.into_iter()
        .map(|(c, w, asset, b, i, sh, held, at)| {
            Ok(WalletFunds {
                chain_id: c as u64,
                wallet: w.parse().map_err(|_| StoreError::Corrupt(format!("wallet {w}")))?,
                asset,
                balance: amount(&b)?,
                in_flight: amount(&i)?,
                short_by: amount(&sh)?,
                held: held as u64,
                updated_at_ms: at,
            })
        })
        .collect()
}
