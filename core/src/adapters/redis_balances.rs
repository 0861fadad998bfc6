//! User balances on Redis (ElastiCache), with reserve, commit and release as Lua scripts.
//!
//! A script runs atomically on the server, so "available >= amount, then reserve" cannot
//! interleave with another caller's check, however many intake or signer replicas there
//! are. Every operation is idempotent per withdrawal id: a reservation is a hash of its
//! own (`state` reserved / committed / released), and a repeat finds it there.
//!
//! Amounts are base units up to 2^256, far past the 2^53 a Lua number holds exactly, so
//! the scripts keep them as decimal strings and do digit arithmetic on them.
//!
//! Keys: `wd:bal:<len>:<user>:<asset>` (hash: credited, reserved, spent) and
//! `wd:res:<withdrawal id>` (hash: user, asset, amount, state). The user id's length is in
//! the key so that no (user, asset) pair can collide with another. Commit and release find
//! the balance key from the reservation, inside the script: that needs every key on one
//! shard, i.e. a non-cluster-mode (primary + replicas) ElastiCache group.

use crate::domain::{Amount, Status, WithdrawalId};
use crate::ports::{Balance, BalanceError, Balances, Reservation, ReserveOutcome};
use alloy::primitives::U256;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Decimal-string arithmetic shared by the scripts. Inputs are canonical (no sign, no
/// leading zeros, "0" for zero); results are too.
const LUA_DECIMAL: &str = r#"
local U256_MAX = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function strip(s)
  s = string.gsub(s, "^0+", "")
  if s == "" then return "0" end
  return s
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
  end
  local s = strip(string.reverse(table.concat(out)))
  if cmp(s, U256_MAX) > 0 then return redis.error_reply("OVERFLOW") end
  return s
end
-- a - b, or "0" when b > a (available never goes negative).
local function sub(a, b)
  if cmp(a, b) <= 0 then return "0" end
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48); j = j - 1 end
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
    i = i - 1
  end
  return strip(string.reverse(table.concat(out)))
end
local function field(key, name)
  local v = redis.call("HGET", key, name)
  if not v then return "0" end
  return v
end
local function checked(v)
  if type(v) == "table" then error(v.err) end
  return v
end
"#;

/// KEYS: reservation key, balance key per item. ARGV: user, asset, amount per item.
/// Returns per item "reserved", "already" or "insufficient:<available>".
const LUA_RESERVE: &str = r#"
local out = {}
for i = 1, #KEYS / 2 do
  local res, bal = KEYS[2 * i - 1], KEYS[2 * i]
  local user, asset, amount = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local state = redis.call("HGET", res, "state")
  if state == "reserved" or state == "committed" then
    out[i] = "already"
  else
    local reserved = field(bal, "reserved")
    local available = sub(sub(field(bal, "credited"), reserved), field(bal, "spent"))
    if cmp(available, amount) < 0 then
      out[i] = "insufficient:" .. available
    else
      redis.call("HSET", bal, "reserved", checked(add(reserved, amount)))
      redis.call("HSET", res, "user", user, "asset", asset, "amount", amount, "state", "reserved")
      out[i] = "reserved"
    end
  end
end
return out
"#;

/// KEYS: reservation keys. ARGV[1]: "commit" or "release". Settles reservations still
/// `reserved`; anything else is left alone. Returns the (1-based) indexes of keys with no
/// reservation at all: never taken, or lost (a failover that dropped writes).
const LUA_SETTLE: &str = r#"
local commit = ARGV[1] == "commit"
local missing = {}
for i = 1, #KEYS do
  local r = redis.call("HMGET", KEYS[i], "user", "asset", "amount", "state")
  if not r[4] then
    missing[#missing + 1] = i
  elseif r[4] == "reserved" then
    local bal = "wd:bal:" .. #r[1] .. ":" .. r[1] .. ":" .. r[2]
    redis.call("HSET", bal, "reserved", sub(field(bal, "reserved"), r[3]))
    if commit then
      redis.call("HSET", bal, "spent", checked(add(field(bal, "spent"), r[3])))
      redis.call("HSET", KEYS[i], "state", "committed")
    else
      redis.call("HSET", KEYS[i], "state", "released")
    end
  end
end
return missing
"#;

/// KEYS[1]: balance key, KEYS[2]: the credit's marker key. ARGV[1]: field, ARGV[2]: amount.
/// Adds to one field once per marker: a repeated credit id changes nothing.
const LUA_ADD: &str = r#"
if redis.call("SET", KEYS[2], "1", "NX") then
  local ok, err = pcall(function()
    redis.call("HSET", KEYS[1], ARGV[1], checked(add(field(KEYS[1], ARGV[1]), ARGV[2])))
  end)
  if not ok then
    redis.call("DEL", KEYS[2])
    error(err)
  end
end
return redis.call("HMGET", KEYS[1], "credited", "reserved", "spent")
"#;

/// KEYS[1]: balance key. ARGV[1]: field, ARGV[2]: the value it must have (reconcile).
const LUA_SET: &str = r#"
local before = field(KEYS[1], ARGV[1])
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return before
"#;

pub fn balance_key(user: &str, asset: &str) -> String {
    format!("wd:bal:{}:{user}:{asset}", user.len())
}

pub fn reservation_key(id: &WithdrawalId) -> String {
    format!("wd:res:{id}")
}

struct Scripts {
    reserve: Script,
    settle: Script,
    add: Script,
    set: Script,
}

#[derive(Clone)]
pub struct RedisBalances {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisBalances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBalances").finish_non_exhaustive()
    }
}

fn redis_err(what: &str, e: RedisError) -> BalanceError {
    if e.to_string().contains("OVERFLOW") {
        return BalanceError::Failed(format!("Redis {what}: balance arithmetic overflow"));
    }
    let retryable =
        e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error();
    BalanceError::Backend { what: format!("Redis {what}"), retryable, source: Box::new(e) }
}

fn parse_amount(s: &str, what: &str) -> Result<Amount, BalanceError> {
    Amount::from_base_units(s).ok_or_else(|| BalanceError::Failed(format!("Redis holds a malformed {what}: {s:?}")))
}

fn balance_of(v: Vec<Option<String>>) -> Result<Balance, BalanceError> {
    let get = |i: usize, what: &str| parse_amount(v.get(i).cloned().flatten().as_deref().unwrap_or("0"), what);
    Ok(Balance { credited: get(0, "credited")?, reserved: get(1, "reserved")?, spent: get(2, "spent")? })
}

impl RedisBalances {
    /// Connects (failing within seconds if Redis does not answer) and checks with a PING.
    pub async fn connect(url: &str) -> Result<Self, BalanceError> {
        Self::connect_with_ca(url, None).await
    }

    /// As [`connect`](Self::connect); a `rediss://` URL's server is verified against `ca`
    /// (PEM) when given, else against the system's roots. TLS is rustls, as everywhere else.
    pub async fn connect_with_ca(url: &str, ca: Option<&[u8]>) -> Result<Self, BalanceError> {
        let invalid = |e: redis::RedisError| BalanceError::Failed(format!("Redis URL is not valid: {e}"));
        let client = match ca {
            Some(ca) => redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) })
                .map_err(invalid)?,
            None => redis::Client::open(url).map_err(invalid)?,
        };
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let mut conn = tokio::time::timeout(Duration::from_secs(10), client.get_connection_manager_with_config(cfg))
            .await
            .map_err(|_| BalanceError::Unavailable("Redis did not answer within 10 s".into()))?
            .map_err(|e| redis_err("connect", e))?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| redis_err("PING", e))?;
        let with = |body: &str| Script::new(&format!("{LUA_DECIMAL}\n{body}"));
        let scripts = Scripts { reserve: with(LUA_RESERVE), settle: with(LUA_SETTLE), add: with(LUA_ADD), set: with(LUA_SET) };
        Ok(Self { conn, scripts: Arc::new(scripts) })
    }

    /// Readiness: Redis answers a PING.
    pub async fn ping(&self) -> Result<(), BalanceError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| redis_err("PING", e))?;
        Ok(())
    }

    /// Sets one balance field to what the database's journal says it must be; returns the
    /// value it had. For `withdrawd balances reconcile`.
    pub async fn set_field(&self, user: &str, asset: &str, field: BalanceField, value: Amount) -> Result<Amount, BalanceError> {
        let mut conn = self.conn.clone();
        let before: String = self
            .scripts
            .set
            .key(balance_key(user, asset))
            .arg(field.as_str())
            .arg(value.base_units())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("reconcile", e))?;
        parse_amount(&before, field.as_str())
    }

    /// Every (user, asset) with a balance hash: what reconcile compares.
    pub async fn balance_keys(&self) -> Result<Vec<(String, String)>, BalanceError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("wd:bal:*")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("SCAN", e))?;
            out.extend(keys.iter().filter_map(|k| split_balance_key(k)));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

fn split_balance_key(k: &str) -> Option<(String, String)> {
    let rest = k.strip_prefix("wd:bal:")?;
    let (len, rest) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let user = rest.get(..len)?;
    let asset = rest.get(len..)?.strip_prefix(':')?;
    Some((user.to_owned(), asset.to_owned()))
}

/// A reservation hash's user, asset, amount and state, each possibly missing.
type ReservationFields = (Option<String>, Option<String>, Option<String>, Option<String>);

/// What the database says about one withdrawal's reservation: its journal entry.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub withdrawal_id: WithdrawalId,
    pub user_id: String,
    pub asset: String,
    pub amount: Amount,
    pub status: Status,
}

/// The reservation state a withdrawal's status implies. RECEIVED is left as Redis has it:
/// the signer reserves (idempotently) before it signs, so either state is consistent.
fn implied_state(s: Status) -> Option<&'static str> {
    match s {
        Status::PendingApproval | Status::Signed | Status::Sent | Status::SendFailed => Some("reserved"),
        Status::Completed => Some("committed"),
        Status::Invalid | Status::Rejected | Status::Failed | Status::Cancelled => Some("released"),
        Status::Received => None,
    }
}

/// One difference reconcile found (and, unless dry-running, fixed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A withdrawal's reservation record was missing or in the wrong state.
    Reservation { withdrawal_id: WithdrawalId, found: Option<String>, expected: &'static str },
    /// A balance's reserved or spent total differed from the sum of its reservations.
    Total { user_id: String, asset: String, field: BalanceField, found: Amount, expected: Amount },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Reservation { withdrawal_id, found, expected } => {
                write!(f, "withdrawal {withdrawal_id}: reservation {}, the database says {expected}", found.as_deref().unwrap_or("missing"))
            }
            Drift::Total { user_id, asset, field, found, expected } => write!(
                f,
                "user {user_id} {asset}: {} is {} base units, its reservations add up to {}",
                field.as_str(),
                found.base_units(),
                expected.base_units()
            ),
        }
    }
}

impl RedisBalances {
    /// Rebuilds Redis's reservations from the database's journal, then every balance's
    /// reserved and spent totals from the reservations; returns what differed. Credited
    /// amounts are Redis's own (the exchange's ledger feeds them) and are left alone.
    ///
    /// Run it with signing paused: a reservation taken between the scan and the write of a
    /// total would be missed until the next run. Settlements racing it (the tracker's
    /// commits) move an amount between reserved and spent, never into available.
    pub async fn reconcile(&self, journal: Vec<JournalEntry>, dry_run: bool) -> Result<Vec<Drift>, BalanceError> {
        let mut conn = self.conn.clone();
        let mut drift = Vec::new();
        for chunk in journal.chunks(500) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("HGET").arg(reservation_key(&e.withdrawal_id)).arg("state");
            }
            let states: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(|e| redis_err("reconcile read", e))?;
            let mut fix = redis::pipe();
            let mut fixes = 0;
            for (e, found) in chunk.iter().zip(states) {
                let Some(expected) = implied_state(e.status) else { continue };
                if found.as_deref() == Some(expected) {
                    continue;
                }
                drift.push(Drift::Reservation { withdrawal_id: e.withdrawal_id.clone(), found, expected });
                fix.cmd("HSET")
                    .arg(reservation_key(&e.withdrawal_id))
                    .arg("user")
                    .arg(&e.user_id)
                    .arg("asset")
                    .arg(&e.asset)
                    .arg("amount")
                    .arg(e.amount.base_units())
                    .arg("state")
                    .arg(expected)
                    .ignore();
                fixes += 1;
            }
            if fixes > 0 && !dry_run {
                let () = fix.query_async(&mut conn).await.map_err(|e| redis_err("reconcile write", e))?;
            }
        }
        // The totals every reservation implies (as fixed above, when dry-running too).
        let mut want: HashMap<(String, String), (U256, U256)> = HashMap::new();
        let fixed: HashMap<String, &'static str> = drift
            .iter()
            .filter_map(|d| match d {
                Drift::Reservation { withdrawal_id, expected, .. } => Some((reservation_key(withdrawal_id), *expected)),
                Drift::Total { .. } => None,
            })
            .collect();
        let journal_of: HashMap<String, &JournalEntry> = journal.iter().map(|e| (reservation_key(&e.withdrawal_id), e)).collect();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("wd:res:*")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("SCAN", e))?;
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HMGET").arg(k).arg("user").arg("asset").arg("amount").arg("state");
            }
            let rows: Vec<ReservationFields> =
                if keys.is_empty() { Vec::new() } else { pipe.query_async(&mut conn).await.map_err(|e| redis_err("reconcile read", e))? };
            for (k, (user, asset, amount, state)) in keys.iter().zip(rows) {
                let state = fixed.get(k).map(|s| s.to_string()).or(state);
                let (Some(user), Some(asset), Some(amount)) = (user, asset, amount) else { continue };
                let amount = parse_amount(&amount, "reservation amount")?.0;
                let slot = want.entry((user, asset)).or_default();
                match state.as_deref() {
                    Some("reserved") => slot.0 += amount,
                    Some("committed") => slot.1 += amount,
                    _ => {}
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // Journal entries whose record was missing (so not in the scan when dry-running).
        if dry_run {
            for (k, state) in &fixed {
                let Some(e) = journal_of.get(k) else { continue };
                let exists: bool = redis::cmd("EXISTS").arg(k).query_async(&mut conn).await.map_err(|e| redis_err("EXISTS", e))?;
                if exists {
                    continue;
                }
                let slot = want.entry((e.user_id.clone(), e.asset.clone())).or_default();
                match *state {
                    "reserved" => slot.0 += e.amount.0,
                    "committed" => slot.1 += e.amount.0,
                    _ => {}
                }
            }
        }
        for (user, asset) in self.balance_keys().await? {
            want.entry((user, asset)).or_default();
        }
        for ((user, asset), (reserved, spent)) in want {
            let now = self.get(&user, &asset).await?;
            for (field, found, expected) in
                [(BalanceField::Reserved, now.reserved, Amount(reserved)), (BalanceField::Spent, now.spent, Amount(spent))]
            {
                if found == expected {
                    continue;
                }
                drift.push(Drift::Total { user_id: user.clone(), asset: asset.clone(), field, found, expected });
                if !dry_run {
                    self.set_field(&user, &asset, field, expected).await?;
                }
            }
        }
        Ok(drift)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceField {
    Reserved,
    Spent,
}

impl BalanceField {
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceField::Reserved => "reserved",
            BalanceField::Spent => "spent",
        }
    }
}

impl Balances for RedisBalances {
    async fn credit(&self, credit_id: &str, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
        let mut conn = self.conn.clone();
        let v: Vec<Option<String>> = self
            .scripts
            .add
            .key(balance_key(user_id, asset))
            .key(format!("wd:credit:{credit_id}"))
            .arg("credited")
            .arg(amount.base_units())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| match redis_err("credit", e) {
                BalanceError::Failed(m) if m.contains("overflow") => BalanceError::Overflow(user_id.to_owned()),
                other => other,
            })?;
        balance_of(v)
    }

    async fn reserve(&self, batch: Vec<Reservation>) -> Result<Vec<ReserveOutcome>, BalanceError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.reserve.prepare_invoke();
        for r in &batch {
            inv.key(reservation_key(&r.withdrawal_id))
                .key(balance_key(&r.user_id, &r.asset))
                .arg(&r.user_id)
                .arg(&r.asset)
                .arg(r.amount.base_units());
        }
        let mut conn = self.conn.clone();
        let out: Vec<String> = inv.invoke_async(&mut conn).await.map_err(|e| redis_err("reserve", e))?;
        if out.len() != batch.len() {
            return Err(BalanceError::Failed(format!("Redis reserve answered {} outcomes for {} requests", out.len(), batch.len())));
        }
        out.iter()
            .map(|o| match o.as_str() {
                "reserved" => Ok(ReserveOutcome::Reserved),
                "already" => Ok(ReserveOutcome::AlreadyReserved),
                other => match other.strip_prefix("insufficient:") {
                    Some(a) => Ok(ReserveOutcome::Insufficient { available: parse_amount(a, "available amount")? }),
                    None => Err(BalanceError::Failed(format!("Redis reserve answered {other:?}"))),
                },
            })
            .collect()
    }

    async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        self.settle(ids, "commit").await
    }

    async fn release(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        self.settle(ids, "release").await
    }

    async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
        let mut conn = self.conn.clone();
        let v: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(balance_key(user_id, asset))
            .arg("credited")
            .arg("reserved")
            .arg("spent")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("HMGET", e))?;
        balance_of(v)
    }
}

impl RedisBalances {
    async fn settle(&self, ids: Vec<WithdrawalId>, how: &str) -> Result<Vec<WithdrawalId>, BalanceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.settle.prepare_invoke();
        for id in &ids {
            inv.key(reservation_key(id));
        }
        inv.arg(how);
        let mut conn = self.conn.clone();
        let missing: Vec<i64> = inv.invoke_async(&mut conn).await.map_err(|e| redis_err(how, e))?;
        Ok(missing.into_iter().filter_map(|i| ids.get((i as usize).checked_sub(1)?).cloned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_keys_cannot_collide_and_split_back() {
        assert_ne!(balance_key("a:b", "c"), balance_key("a", "b:c"));
        assert_eq!(split_balance_key(&balance_key("a:b", "c")), Some(("a:b".into(), "c".into())));
        assert_eq!(split_balance_key(&balance_key("a", "b:c")), Some(("a".into(), "b:c".into())));
        assert_eq!(split_balance_key("wd:bal:9:short:x"), None);
    }
}
