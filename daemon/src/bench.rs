//! `withdrawd bench`: drives a running withdrawd over HTTP the way an exchange back-end
//! would (HMAC-signed POSTs with idempotency keys), then follows the pipeline through the
//! admin stats until every request is finished, and reports throughput per stage and
//! intake latency percentiles.

use crate::http::auth::sign;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use withdraw_core::wire::{AcceptedV1, StatsV1};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    intake: String,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    admin: String,
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct users the requests are spread over.
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value = "0.000001")]
    amount: String,
    #[arg(long, default_value = "dev")]
    client: String,
    #[arg(long, env = "WITHDRAW_DEV_HMAC_SECRET", default_value = "dev-secret", hide_env_values = true)]
    secret: String,
    #[arg(long, env = "WITHDRAW_DEV_ADMIN_TOKEN", default_value = "dev-admin-token", hide_env_values = true)]
    admin_token: String,
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Offered load in requests per second (open loop: requests start on schedule whether or
    /// not earlier ones have finished). 0 = as fast as `concurrency` allows (closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Give up waiting for completion after this long.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// The chain's own rate of taking pre-signed transfers (`withdrawd ceiling`, measured
    /// beside this run): accepted, signed and sent are also printed as a ratio to it.
    #[arg(long)]
    ceiling_accepted: Option<f64>,
    /// The chain's own rate of mining them: completed is also printed as a ratio to it.
    #[arg(long)]
    ceiling_mined: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct CeilingArgs {
    /// A fresh node started the way the bench starts it (anvil: it must serve
    /// `anvil_setBalance`).
    #[arg(long)]
    rpc_url: String,
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Transfers per JSON-RPC batch (the sender's batch).
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

/// The ceiling: how fast the chain itself takes and mines transfers when nothing else is in
/// the way. One fresh key, `count` 1-wei transfers pre-signed before the clock starts, sent
/// in JSON-RPC batches one after another; accepted is until the last batch is answered,
/// mined until the key's mined nonce reaches `count`. withdrawd's rates are reported as
/// ratios to these, measured in the same sitting, since absolute rates on a shared machine
/// drift by half from run to run.
pub async fn ceiling(a: CeilingArgs) -> Result<()> {
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::eip2718::Encodable2718;
    use alloy::primitives::{Address, TxKind, U256, keccak256};
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use serde_json::{Value, json};

    let http = reqwest::Client::new();
    let call = |method: &'static str, params: Value| {
        let http = http.clone();
        let url = a.rpc_url.clone();
        async move {
            let v: Value =
                http.post(&url).json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).send().await?.json().await?;
            v.get("result").cloned().with_context(|| format!("{method}: {v}"))
        }
    };
    let quantity = |v: &Value| u128::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0);
    let chain_id = quantity(&call("eth_chainId", json!([])).await?) as u64;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let signer = PrivateKeySigner::from_bytes(&keccak256(format!("withdrawd ceiling {nanos} {}", std::process::id())))?;
    let from = signer.address();
    call("anvil_setBalance", json!([from, "0xD3C21BCECCEDA1000000"])).await.context("funding the ceiling's key (is this anvil?)")?;
    let base = quantity(&call("eth_getBlockByNumber", json!(["latest", false])).await?["baseFeePerGas"]);
    let tip = 1_000_000_000u128;
    let to = Address::repeat_byte(0xce);
    let raws: Vec<String> = (0..a.count as u64)
        .map(|nonce| {
            let tx = TxEip1559 {
                chain_id,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: base * 4 + tip,
                max_priority_fee_per_gas: tip,
                to: TxKind::Call(to),
                value: U256::from(1),
                access_list: Default::default(),
                input: Default::default(),
            };
            let sig = signer.sign_hash_sync(&tx.signature_hash())?;
            Ok(format!("0x{}", hex::encode(TxEnvelope::from(tx.into_signed(sig)).encoded_2718())))
        })
        .collect::<Result<_>>()?;
    eprintln!("ceiling: {} pre-signed transfers from one key, batches of {}", a.count, a.batch);
    let t0 = Instant::now();
    let mut refused = 0;
    for (b, chunk) in raws.chunks(a.batch.max(1)).enumerate() {
        let body: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, raw)| json!({"jsonrpc": "2.0", "id": b * a.batch + i, "method": "eth_sendRawTransaction", "params": [raw]}))
            .collect();
        let answers: Vec<Value> = http.post(&a.rpc_url).json(&body).send().await?.json().await?;
        refused += answers.iter().filter(|v| v.get("error").is_some()).count();
    }
    let accepted = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mined = quantity(&call("eth_getTransactionCount", json!([from, "latest"])).await?) as usize;
        if mined >= a.count {
            break;
        }
        if Instant::now() > deadline {
            bail!("ceiling: {mined} of {} mined after 10 minutes", a.count);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mined = t0.elapsed();
    let rate = |d: Duration| a.count as f64 / d.as_secs_f64();
    println!("ceiling accepted   {:.0}/s ({:.2} s), {refused} refused", rate(accepted), accepted.as_secs_f64());
    println!("ceiling mined      {:.0}/s ({:.2} s)", rate(mined), mined.as_secs_f64());
    if refused > 0 {
        bail!("{refused} pre-signed transfers were refused: the ceiling is not measured");
    }
    Ok(())
}

fn now() -> u64 {
    crate::http::now_secs()
}

/// A fresh, valid destination per request index (not a precompile, not a dev account).
fn destination(run: u64, i: usize) -> String {
    let mut b = [0u8; 20];
    b[0] = 0x5e;
    b[4..12].copy_from_slice(&run.to_be_bytes());
    b[12..20].copy_from_slice(&(i as u64).to_be_bytes());
    format!("0x{}", hex::encode(b))
}

pub async fn run(a: BenchArgs) -> Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(a.concurrency).build()?;
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    // Enough for every request to succeed.
    let per_user = format!("{}", a.count / a.users + 1);
    for u in 0..a.users {
        let r = http
            .post(format!("{}/admin/v1/balances/credit", a.admin))
            .bearer_auth(&a.admin_token)
            .header("idempotency-key", format!("bench-credit-{run_id}-{u}"))
            .json(&serde_json::json!({"user_id": format!("bench-{run_id}-{u}"), "asset": "ETH", "amount": per_user, "reason": "bench"}))
            .send()
            .await
            .context("crediting bench users through the admin API")?;
        if r.status() == reqwest::StatusCode::ACCEPTED {
            bail!("crediting {per_user} ETH per user needs a second approver (credit_approval_threshold): use more --users");
        }
        if !r.status().is_success() {
            bail!("credit failed: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
    }
    let before = stats(&http, &a).await?;
    let base_done = done_count(&before);

    match a.rate {
        0 => eprintln!("bench: {} withdrawals, {} in flight, {} users, as fast as possible", a.count, a.concurrency, a.users),
        r => eprintln!("bench: {} withdrawals offered at {r}/s (up to {} in flight), {} users", a.count, a.concurrency, a.users),
    }
    let next = Arc::new(AtomicUsize::new(0));
    let a = Arc::new(a);
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (http, next, a) = (http.clone(), next.clone(), a.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.count {
                    break;
                }
                // Open loop: request i is due at t0 + i/rate, and its latency counts from
                // then, so a backlog in the server (or in this client) counts against it.
                let due = if a.rate > 0 { t0 + Duration::from_secs_f64(i as f64 / a.rate as f64) } else { Instant::now() };
                tokio::time::sleep_until(due.into()).await;
                let body = serde_json::to_vec(&serde_json::json!({
                    "user_id": format!("bench-{run_id}-{}", i % a.users),
                    "asset": "ETH",
                    "chain_id": a.chain_id,
                    "to": destination(run_id, i),
                    "amount": a.amount,
                }))
                .expect("static json");
                let ts = now();
                let key = format!("bench-{run_id}-{i}");
                let sig = sign(a.secret.as_bytes(), ts, "POST", "/v1/withdrawals", &key, &body);
                let started = due;
                let r = http
                    .post(format!("{}/v1/withdrawals", a.intake))
                    .header("content-type", "application/json")
                    .header("x-api-key", &a.client)
                    .header("x-timestamp", ts.to_string())
                    .header("x-signature", sig)
                    .header("idempotency-key", key)
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        let _: AcceptedV1 = r.json().await.unwrap_or(AcceptedV1 { id: String::new(), status: String::new() });
                        lat.push(started.elapsed());
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("bench: request {i}: HTTP {} {}", r.status(), r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("bench: request {i}: {e}");
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(a.count);
    let mut errors = 0;
    // Follow the pipeline while the submissions run.
    let mut marks = Marks::default();
    let follow = async {
        let mut failed_in_a_row = 0;
        loop {
            // A poll that fails under load (a backend slow to answer) is skipped; only a
            // stats endpoint that stays down for 10 s ends the run.
            let s = match stats(&http, &a).await {
                Ok(s) => {
                    failed_in_a_row = 0;
                    s
                }
                Err(e) if failed_in_a_row < 100 => {
                    failed_in_a_row += 1;
                    if failed_in_a_row == 1 {
                        eprintln!("bench: {e:#}; polling again");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            marks.observe(&s, &before, t0.elapsed(), a.count);
            if marks.completed.is_some() || t0.elapsed() > Duration::from_secs(a.timeout_secs) {
                return Ok::<_, anyhow::Error>(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let submit = async {
        for w in workers {
            let (l, e) = w.await?;
            lat.extend(l);
            errors += e;
        }
        Ok::<_, anyhow::Error>(t0.elapsed())
    };
    let (submitted_in, last) = tokio::join!(submit, follow);
    let submitted_in = submitted_in?;
    let last = last?;
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
    // A rate, and its ratio to the chain's own ceiling when one was measured beside.
    let ratio = |r: f64, ceiling: Option<f64>, what: &str| ceiling.map(|c| format!("   {:.2} × ceiling {what}", r / c)).unwrap_or_default();
    let rate = |d: Option<Duration>, ceiling: Option<f64>, what: &str| {
        d.map(|d| {
            let r = a.count as f64 / d.as_secs_f64();
            format!("{r:.0}/s ({:.2} s){}", d.as_secs_f64(), ratio(r, ceiling, what))
        })
        .unwrap_or_else(|| "not reached".into())
    };
    let accepted = lat.len() as f64 / submitted_in.as_secs_f64();
    println!("withdrawals        {}", a.count);
    println!(
        "accepted           {}/s ({:.2} s), {} errors{}",
        accepted as u64,
        submitted_in.as_secs_f64(),
        errors,
        ratio(accepted, a.ceiling_accepted, "accepted")
    );
    println!("signed             {}", rate(marks.signed, a.ceiling_accepted, "accepted"));
    println!("sent               {}", rate(marks.sent, a.ceiling_accepted, "accepted"));
    println!("completed          {}", rate(marks.completed, a.ceiling_mined, "mined"));
    println!(
        "intake latency     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    println!("final statuses     {:?}", last.statuses);
    let done = done_count(&last) - base_done;
    if errors > 0 || done < a.count as i64 {
        bail!("{errors} submissions failed, {done} of {} finished", a.count);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn count(s: &StatsV1, statuses: &[&str]) -> i64 {
    statuses.iter().map(|k| s.statuses.get(*k).copied().unwrap_or(0)).sum()
}

fn done_count(s: &StatsV1) -> i64 {
    count(s, &["COMPLETED", "FAILED", "INVALID", "REJECTED", "CANCELLED", "SEND_FAILED"])
}

/// When each stage had seen every request of this run.
#[derive(Default)]
struct Marks {
    signed: Option<Duration>,
    sent: Option<Duration>,
    completed: Option<Duration>,
}

impl Marks {
    fn observe(&mut self, s: &StatsV1, before: &StatsV1, at: Duration, n: usize) {
        let n = n as i64;
        let past = |st: &[&str]| count(s, st) - count(before, st) >= n;
        if self.signed.is_none() && past(&["SIGNED", "SENT", "COMPLETED", "FAILED"]) {
            self.signed = Some(at);
        }
        if self.sent.is_none() && past(&["SENT", "COMPLETED", "FAILED"]) {
            self.sent = Some(at);
        }
        if self.completed.is_none() && past(&["COMPLETED", "FAILED"]) {
            self.completed = Some(at);
        }
    }
}

async fn stats(http: &reqwest::Client, a: &BenchArgs) -> Result<StatsV1> {
    let r = http.get(format!("{}/admin/v1/stats", a.admin)).bearer_auth(&a.admin_token).send().await.context("admin stats")?;
    if !r.status().is_success() {
        let status = r.status();
        bail!("admin stats: HTTP {status}: {}", r.text().await.unwrap_or_default());
    }
    Ok(r.json().await?)
}
