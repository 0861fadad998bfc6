//! The record store, written once for both database backends. `record_store!` expands to
//! the store type and its `Store` implementation for one diesel connection type; the
//! backends differ only in what [`WriteTx`] does (how a write transaction begins, and the
//! row locks PostgreSQL needs where SQLite's single writer already serialises) and in the
//! connection handling of their `$Db` type (`write`, `run`, `blocking`, `conn`,
//! `lock_writer`).
//!
//! Rules every query here follows, so that both backends give the same answers: portable
//! diesel DSL only (no `replace_into`, no raw SQL); read-then-write decisions only inside a
//! write transaction that first locks what it decides on.

use crate::ports::StoreError;

/// The write-transaction behaviour of one backend.
pub(crate) trait WriteTx: Sized {
    /// Whether several connections write at once, so decisions take row locks (PostgreSQL),
    /// or one writer holds the whole database (SQLite).
    const LOCKS_ROWS: bool;

    /// Runs `f` in a transaction that may write.
    fn write_tx<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>;

    /// Locks a wallet's nonce row until the transaction ends.
    fn lock_wallet(&mut self, wallet: &str, chain_id: u64) -> Result<(), StoreError>;

    /// Locks withdrawal rows until the transaction ends (in id order, so two transactions
    /// locking overlapping sets cannot deadlock).
    fn lock_withdrawals(&mut self, ids: &[&str]) -> Result<(), StoreError>;

    /// Takes the signing brake's lock until the transaction ends: shared by every
    /// transaction that records a signature, exclusive for a pause change. A pause therefore
    /// commits only after every signing transaction that read "not paused" has committed,
    /// and every signing transaction after it reads the pause (DESIGN §5, invariant 8).
    fn lock_brake(&mut self, exclusive: bool) -> Result<(), StoreError>;
}

macro_rules! record_store {
    ($Store:ident, $Db:ident, $Conn:ty) => {
#[derive(Clone)]
pub struct $Store {
    db: $Db,
    clock: Arc<dyn Clock>,
}

impl $Store {
    pub fn new(db: $Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = withdrawals)]
struct WithdrawalRow {
    id: String,
    client_id: String,
    idempotency_key: String,
    request_hash: String,
    user_id: String,
    asset: String,
    chain_id: i64,
    to_address: String,
    amount: String,
    status: String,
    reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    nudged_at: Option<i64>,
}

impl WithdrawalRow {
    fn into_domain(self) -> Result<Withdrawal, StoreError> {
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
struct AttemptRow {
    tx_hash: String,
    withdrawal_id: String,
    wallet: String,
    chain_id: i64,
    nonce: i64,
    kind: String,
    raw: Vec<u8>,
    max_fee_per_gas: String,
    max_priority_fee_per_gas: String,
    gas_limit: i64,
    created_at: i64,
    sent_at: Option<i64>,
}

impl AttemptRow {
    fn into_domain(self) -> Result<Attempt, StoreError> {
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
struct InclusionRow {
    withdrawal_id: String,
    chain_id: i64,
    tx_hash: String,
    block_number: i64,
    block_hash: String,
    success: bool,
    failure: Option<String>,
}

impl InclusionRow {
    fn into_domain(self) -> Result<Inclusion, StoreError> {
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
struct NewHistory<'a> {
    withdrawal_id: &'a str,
    from_status: Option<&'a str>,
    to_status: &'a str,
    reason: Option<&'a str>,
    actor: &'a str,
    at: i64,
}

fn hex_addr(a: &Address) -> String {
    format!("{a:#x}")
}

fn hex_hash(h: &B256) -> String {
    format!("{h:#x}")
}

/// The `wallet_nonces` row of one wallet on one chain.
type NonceRow<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<wallet_nonces::table, diesel::dsl::Eq<wallet_nonces::chain_id, i64>>,
    diesel::dsl::Eq<wallet_nonces::wallet, &'a str>,
>;

fn nonce_row(wallet: &str, chain_id: u64) -> NonceRow<'_> {
    wallet_nonces::table.filter(wallet_nonces::chain_id.eq(chain_id as i64)).filter(wallet_nonces::wallet.eq(wallet))
}

/// Applies many transitions with a few statements per distinct (from, to, reason, actor)
/// instead of two per withdrawal; returns, in order, whether each applied.
/// Whether signing is paused for `chain_id` (or everywhere), read under the brake's shared
/// lock inside the caller's write transaction: the check and the signature it allows commit
/// together, so a pause that has answered holds for every replica.
fn brake_on(conn: &mut $Conn, chain_id: u64) -> Result<bool, StoreError> {
    conn.lock_brake(false)?;
    let paused: i64 = signing_controls::table
        .filter(signing_controls::paused.eq(true))
        .filter(signing_controls::scope.eq_any(["all".to_owned(), chain_id.to_string()]))
        .count()
        .get_result(conn)?;
    if paused > 0 {
        metrics::counter!("withdraw_signing_refused_paused_total", "chain_id" => chain_id.to_string()).increment(1);
    }
    Ok(paused > 0)
}

fn insert_audit(conn: &mut $Conn, entry: &AuditEntry, now: i64) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now),
            audit_log::actor.eq(&entry.actor),
            audit_log::action.eq(&entry.action),
            audit_log::target.eq(&entry.target),
            audit_log::reason.eq(&entry.reason),
            audit_log::detail.eq(&entry.detail),
        ))
        .execute(conn)?;
    Ok(())
}

fn load_credit(conn: &mut $Conn, key: &str) -> Result<Option<CreditRecord>, StoreError> {
    type Row = (String, String, String, String, String, String, String, Option<String>, String, i64);
    let row: Option<Row> = credits::table
        .filter(credits::idempotency_key.eq(key))
        .select((
            credits::idempotency_key,
            credits::request_hash,
            credits::user_id,
            credits::asset,
            credits::amount,
            credits::reason,
            credits::requested_by,
            credits::approved_by,
            credits::state,
            credits::created_at,
        ))
        .first(conn)
        .optional()?;
    let Some((idempotency_key, request_hash, user_id, asset, amount, reason, requested_by, approved_by, state, created_at_ms)) = row
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("credit {idempotency_key}: bad {what}"));
    Ok(Some(CreditRecord {
        amount: Amount::from_base_units(&amount).ok_or_else(|| corrupt("amount"))?,
        state: CreditState::parse(&state).ok_or_else(|| corrupt("state"))?,
        idempotency_key,
        request_hash,
        user_id,
        asset,
        reason,
        requested_by,
        approved_by,
        created_at_ms,
    }))
}

fn transition_many(conn: &mut $Conn, batch: &[Transition], now: i64) -> Result<Vec<bool>, StoreError> {
    conn.lock_withdrawals(&batch.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())?;
    let mut applied = vec![false; batch.len()];
    type Group<'a> = (Status, Status, Option<&'a str>, &'a str, Option<Settle>);
    let mut groups: std::collections::HashMap<Group, Vec<usize>> = std::collections::HashMap::new();
    for (i, t) in batch.iter().enumerate() {
        groups.entry((t.from, t.to, t.reason.as_deref(), t.actor.as_str(), t.settle)).or_default().push(i);
    }
    for ((from, to, reason, actor, settle), idx) in groups {
        for chunk in idx.chunks(500) {
            let ids: Vec<&str> = chunk.iter().map(|&i| batch[i].id.as_str()).collect();
            // A withdrawal whose last balance change is still owed stays where it is until
            // the settler has carried it out: a reprocess must not reserve anew while the
            // release of the old reservation is pending (it would release the new one).
            let movable: std::collections::HashSet<String> = withdrawals::table
                .filter(withdrawals::id.eq_any(&ids))
                .filter(withdrawals::status.eq(from.as_str()))
                .filter(diesel::dsl::not(diesel::dsl::exists(settlements::table.filter(settlements::withdrawal_id.eq(withdrawals::id)))))
                .select(withdrawals::id)
                .load::<String>(conn)?
                .into_iter()
                .collect();
            if movable.is_empty() {
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            let moving: Vec<&str> = ids.iter().copied().filter(|id| movable.contains(*id) && seen.insert(*id)).collect();
            diesel::update(withdrawals::table.filter(withdrawals::id.eq_any(&moving)))
                .set((
                    withdrawals::status.eq(to.as_str()),
                    withdrawals::reason.eq(reason),
                    withdrawals::updated_at.eq(now),
                    withdrawals::nudged_at.eq(None::<i64>),
                ))
                .execute(conn)?;
            let history: Vec<NewHistory> = moving
                .iter()
                .map(|id| NewHistory {
                    withdrawal_id: id,
                    from_status: Some(from.as_str()),
                    to_status: to.as_str(),
                    reason,
                    actor,
                    at: now,
                })
                .collect();
            diesel::insert_into(history::table).values(&history).execute(conn)?;
            for &i in chunk {
                if let Some(a) = &batch[i].audit
                    && movable.contains(batch[i].id.as_str())
                {
                    insert_audit(conn, a, now)?;
                }
            }
            if let Some(settle) = settle {
                let owed: Vec<_> = moving
                    .iter()
                    .map(|id| {
                        (
                            settlements::withdrawal_id.eq(*id),
                            settlements::action.eq(settle.as_str()),
                            settlements::from_status.eq(from.as_str()),
                            settlements::created_at.eq(now),
                        )
                    })
                    .collect();
                diesel::insert_into(settlements::table).values(&owed).execute(conn)?;
            }
            for &i in chunk {
                // A withdrawal listed twice in one batch moves once.
                if movable.contains(batch[i].id.as_str()) && !chunk.iter().any(|&j| j < i && batch[j].id == batch[i].id) {
                    applied[i] = true;
                }
            }
        }
    }
    Ok(applied)
}

fn attempt_row(a: &Attempt) -> AttemptRow {
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

/// Which of a withdrawal's attempts is its newest (the one sent): latest signed, highest
/// fee on a tie. Every reader that picks "the" attempt orders by this.
fn newest_key(created_at_ms: i64, max_fee_per_gas: u128) -> (i64, u128) {
    (created_at_ms, max_fee_per_gas)
}

/// The newest attempt of each withdrawal (see `newest_key`).
fn latest_attempts(conn: &mut $Conn, ids: &[String]) -> Result<Vec<Attempt>, StoreError> {
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

fn load_rows(conn: &mut $Conn, ids: &[String]) -> Result<Vec<Withdrawal>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    // SQLite caps bound parameters (32766 since 3.32); chunk well below it.
    for chunk in ids.chunks(500) {
        let rows: Vec<WithdrawalRow> =
            withdrawals::table.filter(withdrawals::id.eq_any(chunk)).select(WithdrawalRow::as_select()).load(conn)?;
        for r in rows {
            out.push(r.into_domain()?);
        }
    }
    Ok(out)
}

impl Store for $Store {
    async fn submit(&self, batch: Vec<NewWithdrawal>) -> Result<Vec<SubmitOutcome>, StoreError> {
        let now = self.clock.now_ms();
        self.db
            .write_urgent(move |conn| {
                conn.write_tx(|conn| {
                    let mut out = Vec::with_capacity(batch.len());
                    for w in batch {
                        let existing: Option<(String, String, String)> = withdrawals::table
                            .filter(withdrawals::client_id.eq(&w.client_id))
                            .filter(withdrawals::idempotency_key.eq(&w.idempotency_key))
                            .select((withdrawals::id, withdrawals::request_hash, withdrawals::status))
                            .first(conn)
                            .optional()?;
                        if let Some((id, hash, status)) = existing {
                            let id = WithdrawalId::from_stored(id);
                            if hash == w.request_hash {
                                let status = status.parse().map_err(|_| StoreError::Corrupt(format!("status {status}")))?;
                                out.push(SubmitOutcome::Existing { id, status });
                            } else {
                                out.push(SubmitOutcome::Conflict { id });
                            }
                            continue;
                        }
                        diesel::insert_into(withdrawals::table)
                            .values(WithdrawalRow {
                                id: w.id.as_str().to_owned(),
                                client_id: w.client_id,
                                idempotency_key: w.idempotency_key,
                                request_hash: w.request_hash,
                                user_id: w.user_id,
                                asset: w.asset,
                                chain_id: w.chain_id as i64,
                                to_address: hex_addr(&w.to),
                                amount: w.amount.base_units(),
                                status: Status::Received.as_str().to_owned(),
                                reason: None,
                                created_at: now,
                                updated_at: now,
                                nudged_at: None,
                            })
                            .execute(conn)?;
                        diesel::insert_into(history::table)
                            .values(NewHistory {
                                withdrawal_id: w.id.as_str(),
                                from_status: None,
                                to_status: Status::Received.as_str(),
                                reason: None,
                                actor: "intake",
                                at: now,
                            })
                            .execute(conn)?;
                        out.push(SubmitOutcome::Created { id: w.id });
                    }
                    Ok(out)
                })
            })
            .await
    }

    async fn get(&self, id: &WithdrawalId) -> Result<Option<WithdrawalDetail>, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .run(move |conn| {
                let Some(row) =
                    withdrawals::table.filter(withdrawals::id.eq(&id)).select(WithdrawalRow::as_select()).first(conn).optional()?
                else {
                    return Ok(None);
                };
                let attempts = attempts::table
                    .filter(attempts::withdrawal_id.eq(&id))
                    .order(attempts::created_at.asc())
                    .select(AttemptRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(AttemptRow::into_domain)
                    .collect::<Result<Vec<_>, _>>()?;
                let history = history::table
                    .filter(history::withdrawal_id.eq(&id))
                    .order(history::id.asc())
                    .select((history::from_status, history::to_status, history::reason, history::actor, history::at))
                    .load::<(Option<String>, String, Option<String>, String, i64)>(conn)?
                    .into_iter()
                    .map(|(from, to, reason, actor, at)| {
                        Ok(HistoryEntry {
                            from: from.map(|f| f.parse()).transpose().map_err(|_| StoreError::Corrupt("history status".into()))?,
                            to: to.parse().map_err(|_| StoreError::Corrupt("history status".into()))?,
                            reason,
                            actor,
                            at_ms: at,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let inclusion = inclusions::table
                    .filter(inclusions::withdrawal_id.eq(&id))
                    .select(InclusionRow::as_select())
                    .first(conn)
                    .optional()?
                    .map(InclusionRow::into_domain)
                    .transpose()?;
                let cancel = cancel_requests::table
                    .filter(cancel_requests::withdrawal_id.eq(&id))
                    .select((cancel_requests::actor, cancel_requests::reason, cancel_requests::requested_at))
                    .first::<(String, String, i64)>(conn)
                    .optional()?
                    .map(|(actor, reason, at)| CancelRequest {
                        withdrawal_id: WithdrawalId::from_stored(id.clone()),
                        actor,
                        reason,
                        requested_at_ms: at,
                    });
                Ok(Some(WithdrawalDetail { withdrawal: row.into_domain()?, attempts, history, inclusion, cancel }))
            })
            .await
    }

    async fn load(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Withdrawal>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db.run(move |conn| load_rows(conn, &ids)).await
    }

    async fn transition(&self, batch: Vec<Transition>) -> Result<Vec<bool>, StoreError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| conn.write_tx(|conn| transition_many(conn, &batch, now))).await
    }

    async fn pending_settlements(
        &self,
        older_than_ms: i64,
        ids: Option<Vec<WithdrawalId>>,
        limit: i64,
    ) -> Result<Vec<PendingSettlement>, StoreError> {
        self.db
            .run(move |conn| {
                let mut q = settlements::table
                    .filter(settlements::created_at.lt(older_than_ms))
                    .order(settlements::created_at.asc())
                    .limit(limit)
                    .select((settlements::withdrawal_id, settlements::action, settlements::from_status, settlements::created_at))
                    .into_boxed();
                if let Some(ids) = &ids {
                    q = q.filter(settlements::withdrawal_id.eq_any(ids.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>()));
                }
                let rows: Vec<(String, String, String, i64)> = q.load(conn)?;
                rows.into_iter()
                    .map(|(id, action, from, at)| {
                        let settle = match action.as_str() {
                            "commit" => Settle::Commit,
                            "release" => Settle::Release,
                            _ => return Err(StoreError::Corrupt(format!("settlement of {id}: action {action}"))),
                        };
                        let from = from.parse().map_err(|_| StoreError::Corrupt(format!("settlement of {id}: status {from}")))?;
                        Ok(PendingSettlement { withdrawal_id: WithdrawalId::from_stored(id), settle, from, created_at_ms: at })
                    })
                    .collect()
            })
            .await
    }

    async fn settled(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db
            .write(move |conn| {
                for chunk in ids.chunks(500) {
                    diesel::delete(settlements::table.filter(settlements::withdrawal_id.eq_any(chunk))).execute(conn)?;
                }
                Ok(())
            })
            .await
    }

    async fn init_nonce(&self, wallet: Address, chain_id: u64, chain_next: u64) -> Result<u64, StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    diesel::insert_into(wallet_nonces::table)
                        .values((
                            wallet_nonces::chain_id.eq(chain_id as i64),
                            wallet_nonces::wallet.eq(hex_addr(&wallet)),
                            wallet_nonces::next_nonce.eq(chain_next as i64),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                    let n: i64 = wallet_nonces::table
                        .filter(wallet_nonces::chain_id.eq(chain_id as i64))
                        .filter(wallet_nonces::wallet.eq(hex_addr(&wallet)))
                        .select(wallet_nonces::next_nonce)
                        .first(conn)?;
                    Ok(n as u64)
                })
            })
            .await
    }

    async fn wallets(&self, chain_id: u64) -> Result<Vec<Address>, StoreError> {
        self.db
            .run(move |conn| {
                let rows: Vec<String> =
                    wallet_nonces::table.filter(wallet_nonces::chain_id.eq(chain_id as i64)).select(wallet_nonces::wallet).load(conn)?;
                rows.iter().map(|w| w.parse().map_err(|_| StoreError::Corrupt(format!("wallet {w}")))).collect()
            })
            .await
    }

    async fn sign_first_attempts(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<WithdrawalId>,
        mut sign: SignFn,
    ) -> Result<Vec<SignOutcome>, StoreError> {
        let now = self.clock.now_ms();
        self.db
            .blocking(move |db| {
                let wallet_s = hex_addr(&wallet);
                let ids: Vec<String> = batch.iter().map(|i| i.as_str().to_owned()).collect();
                let read_start = |conn: &mut $Conn| -> Result<i64, StoreError> {
                    nonce_row(&wallet_s, chain_id).select(wallet_nonces::next_nonce).first(conn).optional()?.ok_or_else(|| {
                        StoreError::Query(format!("nonce of wallet {wallet_s} on chain {chain_id} was never initialised"))
                    })
                };
                // Signs, in the caller's order (submission order), every withdrawal still
                // RECEIVED, at consecutive nonces from `start`; returns the outcomes, the
                // attempt rows and the next nonce after them.
                let mut plan = |start: i64, loaded: &[Withdrawal]| -> Result<(Vec<SignOutcome>, Vec<AttemptRow>, i64), StoreError> {
                    let mut out = Vec::with_capacity(batch.len());
                    let mut rows = Vec::new();
                    let mut next = start;
                    let mut taken: std::collections::HashSet<&WithdrawalId> = std::collections::HashSet::new();
                    for id in &batch {
                        let Some(w) = loaded.iter().find(|w| &w.id == id) else {
                            return Err(StoreError::Query(format!("withdrawal {id} does not exist")));
                        };
                        if w.status != Status::Received || taken.contains(id) {
                            out.push(SignOutcome::Skipped { id: id.clone(), status: w.status });
                            continue;
                        }
                        match sign(w, next as u64) {
                            Ok(tx) => {
                                taken.insert(id);
                                rows.push(AttemptRow {
                                    tx_hash: hex_hash(&tx.hash),
                                    withdrawal_id: id.as_str().to_owned(),
                                    wallet: wallet_s.clone(),
                                    chain_id: chain_id as i64,
                                    nonce: next,
                                    kind: AttemptKind::Transfer.as_str().to_owned(),
                                    raw: tx.raw.to_vec(),
                                    max_fee_per_gas: tx.max_fee_per_gas.to_string(),
                                    max_priority_fee_per_gas: tx.max_priority_fee_per_gas.to_string(),
                                    gas_limit: tx.gas_limit as i64,
                                    created_at: now,
                                    sent_at: None,
                                });
                                out.push(SignOutcome::Signed { id: id.clone(), hash: tx.hash, raw: tx.raw, nonce: next as u64 });
                                next += 1;
                            }
                            Err(error) => out.push(SignOutcome::SignError { id: id.clone(), error }),
                        }
                    }
                    Ok((out, rows, next))
                };
                // Records the attempts, moves their withdrawals RECEIVED -> SIGNED and
                // advances the wallet's nonce, inside the caller's transaction.
                let record = |conn: &mut $Conn, rows: &[AttemptRow], next: i64| -> Result<(), StoreError> {
                    let moved: Vec<&str> = rows.iter().map(|r| r.withdrawal_id.as_str()).collect();
                    for chunk in rows.chunks(200) {
                        diesel::insert_into(attempts::table).values(chunk).execute(conn)?;
                    }
                    for chunk in moved.chunks(500) {
                        diesel::update(withdrawals::table.filter(withdrawals::id.eq_any(chunk)))
                            .set((
                                withdrawals::status.eq(Status::Signed.as_str()),
                                withdrawals::reason.eq(None::<String>),
                                withdrawals::updated_at.eq(now),
                                withdrawals::nudged_at.eq(None::<i64>),
                            ))
                            .execute(conn)?;
                    }
                    let history: Vec<NewHistory> = moved
                        .iter()
                        .map(|id| NewHistory {
                            withdrawal_id: id,
                            from_status: Some(Status::Received.as_str()),
                            to_status: Status::Signed.as_str(),
                            reason: None,
                            actor: "signer",
                            at: now,
                        })
                        .collect();
                    for chunk in history.chunks(500) {
                        diesel::insert_into(history::table).values(chunk).execute(conn)?;
                    }
                    diesel::update(nonce_row(&wallet_s, chain_id)).set(wallet_nonces::next_nonce.eq(next)).execute(conn)?;
                    Ok(())
                };

                if <$Conn as WriteTx>::LOCKS_ROWS {
                    // Several writers (PostgreSQL): lock the wallet's nonce row first, then
                    // plan, sign and commit under it. Replicas signing for one wallet queue
                    // on the lock instead of re-planning against each other; other wallets
                    // and other writers are not held up.
                    let id_strs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    return db.lock_writer()?.write_tx(|conn| {
                        conn.lock_wallet(&wallet_s, chain_id)?;
                        if brake_on(conn, chain_id)? {
                            return Ok(batch.iter().map(|id| SignOutcome::Paused { id: id.clone() }).collect());
                        }
                        conn.lock_withdrawals(&id_strs)?;
                        let start = read_start(conn)?;
                        let loaded = load_rows(conn, &ids)?;
                        let (out, rows, next) = plan(start, &loaded)?;
                        if !rows.is_empty() {
                            record(conn, &rows, next)?;
                        }
                        Ok(out)
                    });
                }
                // One writer (SQLite): signing is the expensive part (ECDSA per transaction),
                // so it happens outside the write lock: plan on a reader (nonce, statuses),
                // sign, then commit only if the wallet's nonce and every status are still
                // what the plan saw. A single signer per wallet never conflicts; concurrent
                // signers re-plan and re-sign.
                for _round in 0..8 {
                    let (start, loaded) = {
                        let mut conn = db.conn()?;
                        (read_start(&mut conn)?, load_rows(&mut conn, &ids)?)
                    };
                    let (out, rows, next) = plan(start, &loaded)?;
                    if rows.is_empty() {
                        return Ok(out);
                    }
                    let moved: Vec<&str> = rows.iter().map(|r| r.withdrawal_id.as_str()).collect();
                    let started = std::time::Instant::now();
                    // None: paused meanwhile (nothing recorded, the signatures are dropped).
                    let committed = db.lock_writer()?.write_tx(|conn| -> Result<Option<bool>, StoreError> {
                        if brake_on(conn, chain_id)? {
                            return Ok(None);
                        }
                        let cur: i64 = nonce_row(&wallet_s, chain_id).select(wallet_nonces::next_nonce).first(conn)?;
                        let still: i64 = withdrawals::table
                            .filter(withdrawals::id.eq_any(&moved))
                            .filter(withdrawals::status.eq(Status::Received.as_str()))
                            .count()
                            .get_result(conn)?;
                        if cur != start || still != moved.len() as i64 {
                            return Ok(Some(false));
                        }
                        record(conn, &rows, next)?;
                        Ok(Some(true))
                    })?;
                    $Db::record_write_hold(started.elapsed());
                    match committed {
                        Some(true) => return Ok(out),
                        None => return Ok(batch.iter().map(|id| SignOutcome::Paused { id: id.clone() }).collect()),
                        Some(false) => {}
                    }
                    tracing::info!(wallet = %wallet_s, chain_id, "nonce or statuses moved while signing; signing the batch again");
                }
                Err(StoreError::Unavailable("could not commit signed attempts: another signer keeps taking this wallet's nonces".into()))
            })
            .await
    }

    async fn latest_attempts(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db.run(move |conn| latest_attempts(conn, &ids)).await
    }

    async fn stuck(&self, chain_id: u64, older_than_ms: i64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
        self.db
            .run(move |conn| {
                // SENT (or a discarded SEND_FAILED being cancelled) since before the
                // threshold (status index), not mined; the newest attempt's age decides (a
                // bumped one waits another period).
                let rows: Vec<WithdrawalRow> = withdrawals::table
                    .filter(withdrawals::status.eq_any([Status::Sent.as_str(), Status::SendFailed.as_str()]))
                    .filter(withdrawals::chain_id.eq(chain_id as i64))
                    .filter(withdrawals::updated_at.lt(older_than_ms))
                    .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
                    .order(withdrawals::updated_at.asc())
                    .limit(limit)
                    .select(WithdrawalRow::as_select())
                    .load(conn)?;
                let ws = rows.into_iter().map(WithdrawalRow::into_domain).collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<String> = ws.iter().map(|w| w.id.as_str().to_owned()).collect();
                let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
                    latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
                Ok(ws
                    .into_iter()
                    .filter_map(|w| latest.remove(&w.id).filter(|a| a.created_at_ms < older_than_ms).map(|a| (w, a)))
                    // A dead-lettered transfer waits for an operator; its cancel does not.
                    .filter(|(w, a)| w.status == Status::Sent || a.kind == AttemptKind::Cancel)
                    .collect())
            })
            .await
    }

    async fn record_replacements(&self, batch: Vec<Replacement>) -> Result<Vec<bool>, StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let ids: Vec<String> = batch.iter().map(|r| r.attempt.withdrawal_id.as_str().to_owned()).collect();
                    conn.lock_withdrawals(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
                    let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
                        latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
                    let open: std::collections::HashSet<String> = withdrawals::table
                        .filter(withdrawals::id.eq_any(&ids))
                        .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
                        .filter(diesel::dsl::not(diesel::dsl::exists(
                            inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)),
                        )))
                        .select(withdrawals::id)
                        .load::<String>(conn)?
                        .into_iter()
                        .collect();
                    let mut braked: std::collections::HashMap<u64, bool> = std::collections::HashMap::new();
                    for r in &batch {
                        if !braked.contains_key(&r.attempt.chain_id) {
                            braked.insert(r.attempt.chain_id, brake_on(conn, r.attempt.chain_id)?);
                        }
                    }
                    let mut out = Vec::with_capacity(batch.len());
                    for r in &batch {
                        let a = &r.attempt;
                        let current = latest.get(&a.withdrawal_id);
                        let ok = !braked[&a.chain_id]
                            && open.contains(a.withdrawal_id.as_str())
                            && current.is_some_and(|c| c.tx_hash == r.replaces && c.nonce == a.nonce && c.wallet == a.wallet);
                        if ok {
                            diesel::insert_into(attempts::table).values(attempt_row(a)).execute(conn)?;
                            // A second replacement of the same attempt in this batch loses.
                            latest.insert(a.withdrawal_id.clone(), a.clone());
                        }
                        out.push(ok);
                    }
                    Ok(out)
                })
            })
            .await
    }

    async fn find_attempts(&self, hashes: Vec<B256>) -> Result<Vec<Attempt>, StoreError> {
        let hashes: Vec<String> = hashes.iter().map(hex_hash).collect();
        self.db
            .run(move |conn| {
                let mut out = Vec::new();
                for chunk in hashes.chunks(500) {
                    let rows: Vec<AttemptRow> =
                        attempts::table.filter(attempts::tx_hash.eq_any(chunk)).select(AttemptRow::as_select()).load(conn)?;
                    for r in rows {
                        out.push(r.into_domain()?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn record_inclusions(&self, chain_id: u64, batch: Vec<Inclusion>) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    for i in &batch {
                        diesel::delete(inclusions::table.filter(inclusions::withdrawal_id.eq(i.withdrawal_id.as_str()))).execute(conn)?;
                        diesel::insert_into(inclusions::table)
                            .values(InclusionRow {
                                withdrawal_id: i.withdrawal_id.as_str().to_owned(),
                                chain_id: chain_id as i64,
                                tx_hash: hex_hash(&i.tx_hash),
                                block_number: i.block_number as i64,
                                block_hash: hex_hash(&i.block_hash),
                                success: i.success,
                                failure: i.failure.clone(),
                            })
                            .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn forget_inclusions(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db
            .write(move |conn| {
                diesel::delete(inclusions::table.filter(inclusions::withdrawal_id.eq_any(&ids))).execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn included_up_to(&self, chain_id: u64, max_block: u64) -> Result<Vec<IncludedWithdrawal>, StoreError> {
        // Driven from the status index: only withdrawals that can still finish, so the cost
        // follows what is in flight, not every inclusion ever recorded.
        let open: Vec<&'static str> = [Status::Signed, Status::Sent, Status::SendFailed].into_iter().map(Status::as_str).collect();
        self.db
            .run(move |conn| {
                let rows: Vec<(InclusionRow, WithdrawalRow, String)> = withdrawals::table
                    .inner_join(inclusions::table.on(inclusions::withdrawal_id.eq(withdrawals::id)))
                    .inner_join(attempts::table.on(attempts::tx_hash.eq(inclusions::tx_hash)))
                    .filter(withdrawals::status.eq_any(open))
                    .filter(inclusions::chain_id.eq(chain_id as i64))
                    .filter(inclusions::block_number.le(max_block as i64))
                    .select((InclusionRow::as_select(), WithdrawalRow::as_select(), attempts::kind))
                    .limit(5000)
                    .load(conn)?;
                rows.into_iter()
                    .map(|(i, w, kind)| {
                        Ok(IncludedWithdrawal {
                            inclusion: i.into_domain()?,
                            withdrawal: w.into_domain()?,
                            kind: if kind == "cancel" { AttemptKind::Cancel } else { AttemptKind::Transfer },
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn take_stale(&self, status: Status, older_than_ms: i64, limit: i64) -> Result<Vec<Withdrawal>, StoreError> {
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let rows: Vec<WithdrawalRow> = withdrawals::table
                        .filter(withdrawals::status.eq(status.as_str()))
                        .filter(withdrawals::updated_at.lt(older_than_ms))
                        .filter(withdrawals::nudged_at.is_null().or(withdrawals::nudged_at.lt(older_than_ms)))
                        .order(withdrawals::updated_at.asc())
                        .limit(limit)
                        .select(WithdrawalRow::as_select())
                        .load(conn)?;
                    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                    diesel::update(withdrawals::table.filter(withdrawals::id.eq_any(&ids)))
                        .set(withdrawals::nudged_at.eq(now))
                        .execute(conn)?;
                    rows.into_iter().map(WithdrawalRow::into_domain).collect()
                })
            })
            .await
    }

    async fn cursor(&self, chain_id: u64) -> Result<Option<u64>, StoreError> {
        self.db
            .run(move |conn| {
                let b: Option<i64> = chain_cursors::table
                    .filter(chain_cursors::chain_id.eq(chain_id as i64))
                    .select(chain_cursors::block_number)
                    .first(conn)
                    .optional()?;
                Ok(b.map(|b| b as u64))
            })
            .await
    }

    async fn set_cursor(&self, chain_id: u64, expected: Option<u64>, block: u64) -> Result<bool, StoreError> {
        // One statement each way, so the compare and the set cannot be split by another
        // writer on either backend.
        self.db
            .write(move |conn| {
                let n = match expected {
                    Some(e) => diesel::update(
                        chain_cursors::table
                            .filter(chain_cursors::chain_id.eq(chain_id as i64))
                            .filter(chain_cursors::block_number.eq(e as i64)),
                    )
                    .set(chain_cursors::block_number.eq(block as i64))
                    .execute(conn)?,
                    None => diesel::insert_into(chain_cursors::table)
                        .values((chain_cursors::chain_id.eq(chain_id as i64), chain_cursors::block_number.eq(block as i64)))
                        .on_conflict_do_nothing()
                        .execute(conn)?,
                };
                Ok(n == 1)
            })
            .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                // Renew our own, or take an expired one: one conditional update.
                let n = diesel::update(
                    leases::table
                        .filter(leases::name.eq(&name))
                        .filter(leases::holder.eq(&holder).or(leases::expires_at.lt(now))),
                )
                .set((leases::holder.eq(&holder), leases::expires_at.eq(now + ttl_ms)))
                .execute(conn)?;
                if n == 1 {
                    return Ok(true);
                }
                let n = diesel::insert_into(leases::table)
                    .values((leases::name.eq(&name), leases::holder.eq(&holder), leases::expires_at.eq(now + ttl_ms)))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                Ok(n == 1)
            })
            .await
    }

    async fn counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        self.db
            .run(move |conn| {
                let rows: Vec<(String, i64)> =
                    withdrawals::table.group_by(withdrawals::status).select((withdrawals::status, diesel::dsl::count_star())).load(conn)?;
                rows.into_iter().map(|(s, n)| Ok((s.parse().map_err(|_| StoreError::Corrupt(format!("status {s}")))?, n))).collect()
            })
            .await
    }

    async fn next_nonce(&self, wallet: Address, chain_id: u64) -> Result<Option<u64>, StoreError> {
        self.db
            .run(move |conn| {
                let n: Option<i64> = wallet_nonces::table
                    .filter(wallet_nonces::chain_id.eq(chain_id as i64))
                    .filter(wallet_nonces::wallet.eq(hex_addr(&wallet)))
                    .select(wallet_nonces::next_nonce)
                    .first(conn)
                    .optional()?;
                Ok(n.map(|n| n as u64))
            })
            .await
    }

    async fn in_flight(&self, chain_id: u64, wallet: Address) -> Result<Vec<InFlight>, StoreError> {
        self.db
            .run(move |conn| {
                let ids: Vec<String> = withdrawals::table
                    .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
                    .filter(withdrawals::chain_id.eq(chain_id as i64))
                    .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
                    .select(withdrawals::id)
                    .load(conn)?;
                let ws: std::collections::HashMap<WithdrawalId, Withdrawal> =
                    load_rows(conn, &ids)?.into_iter().map(|w| (w.id.clone(), w)).collect();
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
            })
            .await
    }

    async fn record_wallet_funds(&self, funds: Vec<WalletFunds>) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
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
            })
            .await
    }

    async fn wallet_funds(&self) -> Result<Vec<WalletFunds>, StoreError> {
        self.db
            .run(move |conn| {
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
            })
            .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| insert_audit(conn, &entry, now)).await
    }

    async fn record_credit(&self, c: CreditRecord, audit: AuditEntry) -> Result<CreditOutcome, StoreError> {
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let inserted = diesel::insert_into(credits::table)
                        .values((
                            credits::idempotency_key.eq(&c.idempotency_key),
                            credits::request_hash.eq(&c.request_hash),
                            credits::user_id.eq(&c.user_id),
                            credits::asset.eq(&c.asset),
                            credits::amount.eq(c.amount.base_units()),
                            credits::reason.eq(&c.reason),
                            credits::requested_by.eq(&c.requested_by),
                            credits::approved_by.eq(&c.approved_by),
                            credits::state.eq(c.state.as_str()),
                            credits::created_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                    let stored = load_credit(conn, &c.idempotency_key)?
                        .ok_or_else(|| StoreError::Query(format!("credit {} vanished", c.idempotency_key)))?;
                    if inserted == 1 {
                        insert_audit(conn, &audit, now)?;
                        Ok(CreditOutcome::Created(stored))
                    } else if stored.request_hash == c.request_hash {
                        Ok(CreditOutcome::Existing(stored))
                    } else {
                        Ok(CreditOutcome::Conflict(stored))
                    }
                })
            })
            .await
    }

    async fn approve_credit(&self, key: &str, approver: &str, audit: AuditEntry) -> Result<ApproveCreditOutcome, StoreError> {
        let (key, approver) = (key.to_owned(), approver.to_owned());
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let Some(c) = load_credit(conn, &key)? else { return Ok(ApproveCreditOutcome::NotFound) };
                    if c.requested_by == approver {
                        return Ok(ApproveCreditOutcome::SamePerson);
                    }
                    let n = diesel::update(
                        credits::table
                            .filter(credits::idempotency_key.eq(&key))
                            .filter(credits::state.eq(CreditState::PendingApproval.as_str())),
                    )
                    .set((credits::state.eq(CreditState::Approved.as_str()), credits::approved_by.eq(&approver)))
                    .execute(conn)?;
                    let now_c = load_credit(conn, &key)?.ok_or_else(|| StoreError::Query(format!("credit {key} vanished")))?;
                    if n == 1 {
                        insert_audit(conn, &audit, now)?;
                        Ok(ApproveCreditOutcome::Approved(now_c))
                    } else {
                        Ok(ApproveCreditOutcome::NotPending(now_c))
                    }
                })
            })
            .await
    }

    async fn credits_to_apply(&self, limit: i64) -> Result<Vec<CreditRecord>, StoreError> {
        self.db
            .run(move |conn| {
                let keys: Vec<String> = credits::table
                    .filter(credits::state.eq(CreditState::Approved.as_str()))
                    .order(credits::created_at.asc())
                    .limit(limit)
                    .select(credits::idempotency_key)
                    .load(conn)?;
                let mut out = Vec::with_capacity(keys.len());
                for k in keys {
                    out.extend(load_credit(conn, &k)?);
                }
                Ok(out)
            })
            .await
    }

    async fn credit_applied(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                diesel::update(credits::table.filter(credits::idempotency_key.eq(&key)))
                    .set((credits::state.eq(CreditState::Applied.as_str()), credits::applied_at.eq(now)))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn attempts_of(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db
            .run(move |conn| {
                let mut out = Vec::new();
                for chunk in ids.chunks(500) {
                    let rows: Vec<AttemptRow> =
                        attempts::table.filter(attempts::withdrawal_id.eq_any(chunk)).select(AttemptRow::as_select()).load(conn)?;
                    for r in rows {
                        out.push(r.into_domain()?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn mark_sent(&self, hashes: Vec<B256>) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let hashes: Vec<String> = hashes.iter().map(hex_hash).collect();
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    for chunk in hashes.chunks(500) {
                        diesel::update(attempts::table.filter(attempts::tx_hash.eq_any(chunk)).filter(attempts::sent_at.is_null()))
                            .set(attempts::sent_at.eq(now))
                            .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn advance_nonce(&self, wallet: Address, chain_id: u64, at_least: u64) -> Result<(u64, u64), StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let w = hex_addr(&wallet);
                    conn.lock_wallet(&w, chain_id)?;
                    let cur: i64 = nonce_row(&w, chain_id).select(wallet_nonces::next_nonce).first(conn)?;
                    let next = cur.max(at_least as i64);
                    if next != cur {
                        diesel::update(nonce_row(&w, chain_id)).set(wallet_nonces::next_nonce.eq(next)).execute(conn)?;
                    }
                    Ok((cur as u64, next as u64))
                })
            })
            .await
    }

    async fn nonce_owners(&self, chain_id: u64, wallet: Address) -> Result<Vec<NonceOwner>, StoreError> {
        self.db
            .run(move |conn| {
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
            })
            .await
    }

    async fn resign_displaced(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<(WithdrawalId, u64)>,
        mut sign: SignFn,
    ) -> Result<Vec<SignOutcome>, StoreError> {
        let now = self.clock.now_ms();
        // Rare (a nonce taken behind our back), so it signs inside the write transaction:
        // the checks, the new nonces and the attempts commit together or not at all.
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let w = hex_addr(&wallet);
                    let ids: Vec<String> = batch.iter().map(|(id, _)| id.as_str().to_owned()).collect();
                    conn.lock_wallet(&w, chain_id)?;
                    if brake_on(conn, chain_id)? {
                        return Ok(batch.iter().map(|(id, _)| SignOutcome::Paused { id: id.clone() }).collect());
                    }
                    conn.lock_withdrawals(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
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
                        match sign(wd, next as u64) {
                            Ok(tx) => {
                                let row = AttemptRow {
                                    tx_hash: hex_hash(&tx.hash),
                                    withdrawal_id: id.as_str().to_owned(),
                                    wallet: w.clone(),
                                    chain_id: chain_id as i64,
                                    nonce: next,
                                    kind: AttemptKind::Transfer.as_str().to_owned(),
                                    raw: tx.raw.to_vec(),
                                    max_fee_per_gas: tx.max_fee_per_gas.to_string(),
                                    max_priority_fee_per_gas: tx.max_priority_fee_per_gas.to_string(),
                                    gas_limit: tx.gas_limit as i64,
                                    // Newer than every earlier attempt, so it is the one sent.
                                    created_at: now.max(a.created_at_ms + 1),
                                    sent_at: None,
                                };
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
            })
            .await
    }

    async fn record_fill(&self, fill: NonceFill) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| conn.write_tx(|conn| {
                if brake_on(conn, fill.chain_id)? {
                    return Ok(false);
                }
                diesel::insert_into(nonce_fills::table)
                    .values((
                        nonce_fills::tx_hash.eq(hex_hash(&fill.tx_hash)),
                        nonce_fills::chain_id.eq(fill.chain_id as i64),
                        nonce_fills::wallet.eq(hex_addr(&fill.wallet)),
                        nonce_fills::nonce.eq(fill.nonce as i64),
                        nonce_fills::raw.eq(fill.raw.to_vec()),
                        nonce_fills::max_fee_per_gas.eq(fill.max_fee_per_gas.to_string()),
                        nonce_fills::created_at.eq(fill.created_at_ms),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                Ok(true)
            }))
            .await
    }

    async fn fills(&self, chain_id: u64, wallet: Address, from_nonce: u64) -> Result<Vec<NonceFill>, StoreError> {
        self.db
            .run(move |conn| {
                type Row = (String, i64, Vec<u8>, String, i64);
                let rows: Vec<Row> = nonce_fills::table
                    .filter(nonce_fills::chain_id.eq(chain_id as i64))
                    .filter(nonce_fills::wallet.eq(hex_addr(&wallet)))
                    .filter(nonce_fills::nonce.ge(from_nonce as i64))
                    .order((nonce_fills::nonce.asc(), nonce_fills::created_at.asc()))
                    .select((
                        nonce_fills::tx_hash,
                        nonce_fills::nonce,
                        nonce_fills::raw,
                        nonce_fills::max_fee_per_gas,
                        nonce_fills::created_at,
                    ))
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
            })
            .await
    }

    async fn record_nonce_check(&self, c: NonceCheck) -> Result<(), StoreError> {
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let (gaps, blocked) = (list(&c.gaps), list(&c.blocked));
        self.db
            .write(move |conn| {
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
            })
            .await
    }

    async fn nonce_checks(&self) -> Result<Vec<NonceCheck>, StoreError> {
        self.db
            .run(move |conn| {
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
                    s.split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().map_err(|_| StoreError::Corrupt(format!("nonce list {s}"))))
                        .collect()
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
            })
            .await
    }

    async fn request_cancel(&self, req: CancelRequest, audit: AuditEntry) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| conn.write_tx(|conn| {
                let n = diesel::insert_into(cancel_requests::table)
                    .values((
                        cancel_requests::withdrawal_id.eq(req.withdrawal_id.as_str()),
                        cancel_requests::actor.eq(&req.actor),
                        cancel_requests::reason.eq(&req.reason),
                        cancel_requests::requested_at.eq(req.requested_at_ms),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                if n == 1 {
                    insert_audit(conn, &audit, req.requested_at_ms)?;
                }
                Ok(n == 1)
            }))
            .await
    }

    async fn pending_cancels(&self, chain_id: u64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
        self.db
            .run(move |conn| {
                let rows: Vec<WithdrawalRow> = withdrawals::table
                    .inner_join(cancel_requests::table.on(cancel_requests::withdrawal_id.eq(withdrawals::id)))
                    .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
                    .filter(withdrawals::chain_id.eq(chain_id as i64))
                    .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
                    .order(cancel_requests::requested_at.asc())
                    .limit(limit)
                    .select(WithdrawalRow::as_select())
                    .load(conn)?;
                let ws = rows.into_iter().map(WithdrawalRow::into_domain).collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<String> = ws.iter().map(|w| w.id.as_str().to_owned()).collect();
                let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
                    latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
                Ok(ws
                    .into_iter()
                    .filter_map(|w| latest.remove(&w.id).filter(|a| a.kind == AttemptKind::Transfer).map(|a| (w, a)))
                    .collect())
            })
            .await
    }

    async fn search(&self, f: SearchFilter) -> Result<Vec<Withdrawal>, StoreError> {
        self.db
            .run(move |conn| {
                let mut q = withdrawals::table.into_boxed();
                if let Some(st) = f.status {
                    q = q.filter(withdrawals::status.eq(st.as_str()));
                }
                if let Some(text) = f.query.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                    let lower = text.to_ascii_lowercase();
                    if lower.len() == 66 && lower.starts_with("0x") {
                        let ids = attempts::table.filter(attempts::tx_hash.eq(lower)).select(attempts::withdrawal_id);
                        q = q.filter(withdrawals::id.eq_any(ids));
                    } else if lower.len() == 42 && lower.starts_with("0x") {
                        q = q.filter(withdrawals::to_address.eq(lower));
                    } else {
                        q = q.filter(withdrawals::id.eq(text.to_owned()).or(withdrawals::user_id.eq(text.to_owned())));
                    }
                }
                if let Some(b) = &f.before {
                    // Ids are time-ordered (UUIDv7), so "created before" is "id below".
                    q = q.filter(withdrawals::id.lt(b.as_str().to_owned()));
                }
                let rows: Vec<WithdrawalRow> =
                    q.order(withdrawals::id.desc()).limit(f.limit.clamp(1, 1000)).select(WithdrawalRow::as_select()).load(conn)?;
                rows.into_iter().map(WithdrawalRow::into_domain).collect()
            })
            .await
    }

    async fn record_approval(&self, a: Approval) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| {
                let n = diesel::insert_into(approvals::table)
                    .values((
                        approvals::withdrawal_id.eq(a.withdrawal_id.as_str()),
                        approvals::approver.eq(&a.approver),
                        approvals::reason.eq(&a.reason),
                        approvals::approved_at.eq(a.approved_at_ms),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                Ok(n == 1)
            })
            .await
    }

    async fn revoke_approvals(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db
            .write(move |conn| {
                for chunk in ids.chunks(500) {
                    diesel::delete(approvals::table.filter(approvals::withdrawal_id.eq_any(chunk))).execute(conn)?;
                }
                Ok(())
            })
            .await
    }

    async fn approved(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db
            .run(move |conn| {
                let mut out = Vec::new();
                for chunk in ids.chunks(500) {
                    let rows: Vec<String> =
                        approvals::table.filter(approvals::withdrawal_id.eq_any(chunk)).select(approvals::withdrawal_id).load(conn)?;
                    out.extend(rows.into_iter().map(WithdrawalId::from_stored));
                }
                Ok(out)
            })
            .await
    }

    async fn signing_controls(&self) -> Result<Vec<SigningControl>, StoreError> {
        self.db
            .run(move |conn| {
                let rows: Vec<(String, bool, String, String, i64)> = signing_controls::table
                    .select((
                        signing_controls::scope,
                        signing_controls::paused,
                        signing_controls::actor,
                        signing_controls::reason,
                        signing_controls::updated_at,
                    ))
                    .order(signing_controls::scope.asc())
                    .load(conn)?;
                rows.into_iter()
                    .map(|(scope, paused, actor, reason, at)| {
                        let chain_id = if scope == "all" {
                            None
                        } else {
                            Some(scope.parse().map_err(|_| StoreError::Corrupt(format!("signing control scope {scope}")))?)
                        };
                        Ok(SigningControl { chain_id, paused, actor, reason, updated_at_ms: at })
                    })
                    .collect()
            })
            .await
    }

    async fn set_signing_control(&self, c: SigningControl, audit: AuditEntry) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                let scope = c.chain_id.map_or_else(|| "all".to_owned(), |id| id.to_string());
                conn.write_tx(|conn| {
                    // Waits for every signing transaction in flight: when this commits (and
                    // the API answers), nothing signs any more until resumed.
                    conn.lock_brake(true)?;
                    diesel::delete(signing_controls::table.filter(signing_controls::scope.eq(&scope))).execute(conn)?;
                    diesel::insert_into(signing_controls::table)
                        .values((
                            signing_controls::scope.eq(&scope),
                            signing_controls::paused.eq(c.paused),
                            signing_controls::actor.eq(&c.actor),
                            signing_controls::reason.eq(&c.reason),
                            signing_controls::updated_at.eq(c.updated_at_ms),
                        ))
                        .execute(conn)?;
                    insert_audit(conn, &audit, c.updated_at_ms)?;
                    Ok(())
                })
            })
            .await
    }

    async fn audit_log(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
        self.db
            .run(move |conn| {
                let mut q = audit_log::table.into_boxed();
                if let Some(b) = before {
                    q = q.filter(audit_log::id.lt(b));
                }
                type Row = (i64, i64, String, String, String, Option<String>, String);
                let rows: Vec<Row> = q
                    .order(audit_log::id.desc())
                    .limit(limit.clamp(1, 1000))
                    .select((
                        audit_log::id,
                        audit_log::at,
                        audit_log::actor,
                        audit_log::action,
                        audit_log::target,
                        audit_log::reason,
                        audit_log::detail,
                    ))
                    .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at, actor, action, target, reason, detail)| AuditRecord {
                        id,
                        at_ms: at,
                        actor,
                        action,
                        target,
                        reason,
                        detail,
                    })
                    .collect())
            })
            .await
    }

    async fn record_alerts(&self, batch: Vec<AlertRecord>) -> Result<usize, StoreError> {
        self.db
            .write(move |conn| {
                conn.write_tx(|conn| {
                    let mut new = 0;
                    for a in &batch {
                        let known: Option<String> =
                            alerts::table.filter(alerts::fingerprint.eq(&a.fingerprint)).select(alerts::status).first(conn).optional()?;
                        new += known.is_none() as usize;
                        diesel::delete(alerts::table.filter(alerts::fingerprint.eq(&a.fingerprint))).execute(conn)?;
                        diesel::insert_into(alerts::table)
                            .values((
                                alerts::fingerprint.eq(&a.fingerprint),
                                alerts::status.eq(&a.status),
                                alerts::name.eq(&a.name),
                                alerts::severity.eq(&a.severity),
                                alerts::summary.eq(&a.summary),
                                alerts::console.eq(&a.console),
                                alerts::labels.eq(a.labels.to_string()),
                                alerts::annotations.eq(a.annotations.to_string()),
                                alerts::starts_at.eq(&a.starts_at),
                                alerts::ends_at.eq(&a.ends_at),
                                alerts::received_at.eq(a.received_at_ms),
                            ))
                            .execute(conn)?;
                    }
                    Ok(new)
                })
            })
            .await
    }

    async fn alerts(&self, status: Option<String>, limit: i64) -> Result<Vec<AlertRecord>, StoreError> {
        self.db
            .run(move |conn| {
                let mut q = alerts::table.into_boxed();
                if let Some(st) = status {
                    q = q.filter(alerts::status.eq(st));
                }
                type Row =
                    (String, String, String, Option<String>, Option<String>, Option<String>, String, String, String, Option<String>, i64);
                let rows: Vec<Row> = q
                    .order(alerts::received_at.desc())
                    .limit(limit.clamp(1, 1000))
                    .select((
                        alerts::fingerprint,
                        alerts::status,
                        alerts::name,
                        alerts::severity,
                        alerts::summary,
                        alerts::console,
                        alerts::labels,
                        alerts::annotations,
                        alerts::starts_at,
                        alerts::ends_at,
                        alerts::received_at,
                    ))
                    .load(conn)?;
                let json = |s: &str| serde_json::from_str(s).map_err(|_| StoreError::Corrupt(format!("alert json {s}")));
                rows.into_iter()
                    .map(|(fingerprint, status, name, severity, summary, console, labels, annotations, starts_at, ends_at, at)| {
                        Ok(AlertRecord {
                            fingerprint,
                            status,
                            name,
                            severity,
                            summary,
                            console,
                            labels: json(&labels)?,
                            annotations: json(&annotations)?,
                            starts_at,
                            ends_at,
                            received_at_ms: at,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn oldest_in(&self, status: Status) -> Result<Option<i64>, StoreError> {
        self.db
            .run(move |conn| {
                // The (status, updated_at) index answers this with one seek.
                Ok(withdrawals::table
                    .filter(withdrawals::status.eq(status.as_str()))
                    .order(withdrawals::updated_at.asc())
                    .select(withdrawals::updated_at)
                    .first::<i64>(conn)
                    .optional()?)
            })
            .await
    }

    async fn attempts_at(&self, chain_id: u64, wallet: Address, nonces: Vec<u64>) -> Result<Vec<AttemptAtNonce>, StoreError> {
        self.db
            .run(move |conn| {
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
                            mined_hash: mined
                                .map(|h| h.parse().map_err(|_| StoreError::Corrupt(format!("inclusion hash {h}"))))
                                .transpose()?,
                        })
                    })
                    .collect()
            })
            .await
    }
}

    };
}
pub(crate) use record_store;
