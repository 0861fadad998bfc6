//! A pool of JSON-RPC endpoints for one chain: several providers and own nodes, each
//! health-checked, so the system keeps working when one dies, stalls, lags, lies about its
//! chain id or rate-limits us.
//!
//! - A health loop probes every endpoint (`eth_chainId` + `eth_blockNumber` in one batch).
//!   Lag is measured against a *corroborated* head, the second-highest head reported: one
//!   node wrongly ahead cannot make every honest node look lagged, it is itself out of step.
//! - States: healthy, lagging (behind or ahead of the corroborated head by more than
//!   `max_lag`), down (a circuit breaker opened after consecutive failures; half-open probes
//!   with doubling back-off), quarantined (wrong chain id).
//! - Reads go to one healthy endpoint and stay there while it is healthy (two honest nodes
//!   can disagree for a block; flapping between them would look like reorgs), failing over
//!   to the next on transport errors, timeouts, 5xx and 429. Only healthy endpoints serve
//!   reads: the tracker finishes withdrawals on what a node says, so a node out of step must
//!   not be believed.
//! - Broadcasts go to every healthy or lagging endpoint at once.
//! - State changes go to the log (on change only) and to metrics (`withdraw_rpc_*`).

use super::rpc::{RpcClient, RpcResult};
use crate::ports::{ChainError, EndpointHealth, EndpointState, EndpointTier, TransportKind};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct EndpointSpec {
    pub url: String,
    /// Shown in logs, metrics and the admin API; defaults to scheme://host:port.
    pub name: Option<String>,
    pub tier: EndpointTier,
    pub weight: u32,
}

impl std::fmt::Debug for EndpointSpec {
    /// The URL may carry a provider's API key: shown as scheme://host:port only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("url", &super::rpc::redact_url(&self.url))
            .field("name", &self.name)
            .field("tier", &self.tier)
            .field("weight", &self.weight)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub chain_id: u64,
    pub timeout: Duration,
    pub health_every: Duration,
    /// Blocks behind (or ahead of) the corroborated head before an endpoint is lagging.
    pub max_lag: u64,
    /// Consecutive failures that open an endpoint's circuit.
    pub fail_threshold: u32,
}

struct Endpoint {
    name: String,
    tier: EndpointTier,
    weight: u32,
    rpc: RpcClient,
    health: Mutex<Health>,
}

#[derive(Debug, Clone)]
struct Health {
    state: EndpointState,
    head: Option<u64>,
    lag: i64,
    latency_ms: Option<f64>,
    failures: u32,
    /// While down: no calls before this instant; then one half-open probe.
    open_until: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
    since_ms: i64,
}

const STATES: [EndpointState; 4] = [EndpointState::Healthy, EndpointState::Lagging, EndpointState::Down, EndpointState::Quarantined];

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct RpcPool {
    cfg: PoolConfig,
    endpoints: Vec<Endpoint>,
    /// Index of the endpoint reads stick to.
    current: Mutex<usize>,
}

impl std::fmt::Debug for RpcPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: URLs may carry a provider's API key.
        let names: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("RpcPool").field("chain_id", &self.cfg.chain_id).field("endpoints", &names).finish()
    }
}

impl RpcPool {
    /// Builds the pool, probes every endpoint once, and starts the health loop (which ends
    /// when the pool is dropped). Fails only if no endpoint is usable, naming each one's
    /// problem.
    pub async fn start(cfg: PoolConfig, specs: Vec<EndpointSpec>) -> Result<Arc<RpcPool>, ChainError> {
        Self::start_with(cfg, specs, true).await
    }

    /// As [`start`](Self::start); with `require_usable` false a pool with no usable
    /// endpoint starts all the same (warning with each one's problem) and its health loop
    /// brings endpoints in as they answer: for processes whose work does not wait on the
    /// chain, such as the admin API, which must come up during an RPC outage. An endpoint
    /// that serves another chain id still fails the start: that is configuration to fix.
    pub async fn start_with(cfg: PoolConfig, specs: Vec<EndpointSpec>, require_usable: bool) -> Result<Arc<RpcPool>, ChainError> {
        if specs.is_empty() {
            return Err(ChainError::Malformed(format!("chain {}: no RPC endpoints configured", cfg.chain_id)));
        }
        let mut endpoints = Vec::new();
        for s in specs {
            let rpc = RpcClient::new(&s.url, cfg.timeout)?;
            let name = s.name.unwrap_or_else(|| rpc.endpoint_label());
            // Not trusted until its first probe answers.
            let health = Health {
                state: EndpointState::Down,
                head: None,
                lag: 0,
                latency_ms: None,
                failures: 0,
                open_until: None,
                backoff: Duration::from_secs(1),
                last_error: None,
                since_ms: now_ms(),
            };
            endpoints.push(Endpoint { name, tier: s.tier, weight: s.weight.max(1), rpc, health: Mutex::new(health) });
        }
        let pool = Arc::new(RpcPool { cfg, endpoints, current: Mutex::new(0) });
        // Counters start at zero before the first probe can count anything.
        metrics::counter!("withdraw_rpc_failovers_total", "chain_id" => pool.cfg.chain_id.to_string()).absolute(0);
        for e in &pool.endpoints {
            for kind in [TransportKind::RateLimited, TransportKind::ServerError, TransportKind::Timeout, TransportKind::Other] {
                metrics::counter!("withdraw_rpc_errors_total", "chain_id" => pool.cfg.chain_id.to_string(), "endpoint" => e.name.clone(), "kind" => kind.as_str())
                    .absolute(0);
            }
        }
        pool.check().await;
        // Series exist from the start, so "down" is a value, not an absent series.
        for e in &pool.endpoints {
            let state = e.health.lock().unwrap_or_else(|p| p.into_inner()).state;
            for s in STATES {
                metrics::gauge!("withdraw_rpc_endpoint_state", "chain_id" => pool.cfg.chain_id.to_string(), "endpoint" => e.name.clone(), "state" => s.as_str())
                    .set(if s == state { 1.0 } else { 0.0 });
            }
        }
        // Reads start on the best healthy endpoint.
        if let Some(&best) = pool.read_order_by_rank().first() {
            *pool.current.lock().unwrap_or_else(|p| p.into_inner()) = best;
        }
        if !pool.available() {
            let problems: Vec<String> = pool
                .health()
                .into_iter()
                .map(|h| format!("{}: {}", h.name, h.last_error.unwrap_or_else(|| h.state.as_str().to_owned())))
                .collect();
            let msg = format!("chain {}: no usable RPC endpoint ({})", pool.cfg.chain_id, problems.join("; "));
            // An endpoint serving another chain is a configuration error, not an outage:
            // that fails every start.
            let misconfigured = pool.health().iter().any(|h| h.state == EndpointState::Quarantined);
            if require_usable || misconfigured {
                return Err(ChainError::Transport(TransportKind::Other, msg));
            }
            tracing::warn!(chain_id = pool.cfg.chain_id, problem = %msg, "starting without a usable RPC endpoint; probing on");
        }
        let weak = Arc::downgrade(&pool);
        let every = pool.cfg.health_every;
        tokio::spawn(health_loop(weak, every));
        Ok(pool)
    }

    pub fn chain_id(&self) -> u64 {
        self.cfg.chain_id
    }

    /// Whether any endpoint can serve reads now. Stages hold a chain's work while not.
    pub fn available(&self) -> bool {
        self.endpoints.iter().any(|e| self.usable_for_reads(e))
    }

    fn usable_for_reads(&self, e: &Endpoint) -> bool {
        e.health.lock().unwrap_or_else(|p| p.into_inner()).state == EndpointState::Healthy
    }

    pub fn health(&self) -> Vec<EndpointHealth> {
        let current = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let h = e.health.lock().unwrap_or_else(|p| p.into_inner()).clone();
                EndpointHealth {
                    name: e.name.clone(),
                    tier: e.tier,
                    weight: e.weight,
                    state: h.state,
                    head: h.head,
                    lag: h.lag,
                    latency_ms: h.latency_ms,
                    consecutive_failures: h.failures,
                    last_error: h.last_error,
                    since_ms: h.since_ms,
                    serving_reads: i == current && h.state == EndpointState::Healthy,
                }
            })
            .collect()
    }

    /// Endpoints to try for a read, best first: the current one if healthy, then the other
    /// healthy ones by tier, weight and latency.
    fn read_order(&self) -> Vec<usize> {
        let current = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut order = self.read_order_by_rank();
        // Stay on the current endpoint unless a better tier is healthy again (back from a
        // backup to the primaries once they recover).
        let better_tier = order.first().is_some_and(|&b| self.endpoints[b].tier < self.endpoints[current].tier);
        if let Some(pos) = order.iter().position(|&i| i == current).filter(|_| !better_tier) {
            order.remove(pos);
            order.insert(0, current);
        }
        order
    }

    /// Healthy endpoints by tier, then weight (higher first), then latency.
    fn read_order_by_rank(&self) -> Vec<usize> {
        let mut healthy: Vec<(usize, EndpointTier, u32, f64)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let h = e.health.lock().unwrap_or_else(|p| p.into_inner());
                (h.state == EndpointState::Healthy).then(|| (i, e.tier, e.weight, h.latency_ms.unwrap_or(f64::MAX)))
            })
            .collect();
        healthy.sort_by(|a, b| (a.1, std::cmp::Reverse(a.2)).cmp(&(b.1, std::cmp::Reverse(b.2))).then(a.3.total_cmp(&b.3)));
        healthy.iter().map(|h| h.0).collect()
    }

    pub async fn call(&self, method: &str, params: Value) -> RpcResult {
        let mut out = self.batch(vec![(method.to_owned(), params)]).await?;
        out.pop().unwrap_or_else(|| Err(ChainError::Malformed("empty batch answer".into())))
    }

    /// A read batch on the best healthy endpoint, failing over on transport errors.
    pub async fn batch(&self, calls: Vec<(String, Value)>) -> Result<Vec<RpcResult>, ChainError> {
        let order = self.read_order();
        if order.is_empty() {
            return Err(ChainError::Transport(TransportKind::Other, format!("chain {}: no healthy RPC endpoint", self.cfg.chain_id)));
        }
        let mut last = None;
        for i in order {
            let e = &self.endpoints[i];
            let started = Instant::now();
            match e.rpc.batch(calls.clone()).await {
                Ok(answers) => {
                    self.record_success(e, started.elapsed());
                    let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
                    if *cur != i {
                        let from = self.endpoints[*cur].name.clone();
                        tracing::warn!(chain_id = self.cfg.chain_id, from = %from, to = %e.name, "RPC reads failed over");
                        metrics::counter!("withdraw_rpc_failovers_total", "chain_id" => self.cfg.chain_id.to_string()).increment(1);
                        *cur = i;
                    }
                    return Ok(answers);
                }
                Err(err @ ChainError::Transport(..)) => {
                    self.record_failure(e, &err);
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| ChainError::Transport(TransportKind::Other, "no endpoint answered".into())))
    }

    /// Sends the same batch to every healthy or lagging endpoint at once; one answer list
    /// per endpoint that answered, primaries first. Fails only if none could be asked.
    pub async fn broadcast(&self, calls: Vec<(String, Value)>) -> Result<Vec<Result<Vec<RpcResult>, ChainError>>, ChainError> {
        let mut targets: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                let h = self.endpoints[i].health.lock().unwrap_or_else(|p| p.into_inner());
                matches!(h.state, EndpointState::Healthy | EndpointState::Lagging)
            })
            .collect();
        targets.sort_by_key(|&i| self.endpoints[i].tier);
        if targets.is_empty() {
            return Err(ChainError::Transport(
                TransportKind::Other,
                format!("chain {}: no RPC endpoint to broadcast to", self.cfg.chain_id),
            ));
        }
        let sends = targets.iter().map(|&i| {
            let e = &self.endpoints[i];
            let calls = calls.clone();
            async move {
                let started = Instant::now();
                let r = e.rpc.batch(calls).await;
                match &r {
                    Ok(_) => self.record_success(e, started.elapsed()),
                    Err(err @ ChainError::Transport(..)) => self.record_failure(e, err),
                    Err(_) => {}
                }
                r
            }
        });
        Ok(futures::future::join_all(sends).await)
    }

    fn labels(&self, e: &Endpoint) -> [(&'static str, String); 2] {
        [("chain_id", self.cfg.chain_id.to_string()), ("endpoint", e.name.clone())]
    }

    fn record_success(&self, e: &Endpoint, took: Duration) {
        metrics::histogram!("withdraw_rpc_request_seconds", &self.labels(e)).record(took.as_secs_f64());
        let mut h = e.health.lock().unwrap_or_else(|p| p.into_inner());
        let ms = took.as_secs_f64() * 1000.0;
        h.latency_ms = Some(h.latency_ms.map_or(ms, |l| l * 0.8 + ms * 0.2));
        h.failures = 0;
    }

    fn record_failure(&self, e: &Endpoint, err: &ChainError) {
        let kind = match err {
            ChainError::Transport(k, _) => *k,
            _ => TransportKind::Other,
        };
        metrics::counter!("withdraw_rpc_errors_total", "chain_id" => self.cfg.chain_id.to_string(), "endpoint" => e.name.clone(), "kind" => kind.as_str())
            .increment(1);
        let mut h = e.health.lock().unwrap_or_else(|p| p.into_inner());
        h.failures += 1;
        h.last_error = Some(err.to_string());
        // A rate limit opens the circuit at once: hammering it only extends the ban.
        if h.failures >= self.cfg.fail_threshold || kind == TransportKind::RateLimited {
            open_circuit(&mut h);
            self.set_state(e, &mut h, EndpointState::Down);
        }
    }

    fn set_state(&self, e: &Endpoint, h: &mut Health, to: EndpointState) {
        if h.state == to {
            return;
        }
        let from = h.state;
        h.state = to;
        h.since_ms = now_ms();
        for s in STATES {
            metrics::gauge!("withdraw_rpc_endpoint_state", "chain_id" => self.cfg.chain_id.to_string(), "endpoint" => e.name.clone(), "state" => s.as_str())
                .set(if s == to { 1.0 } else { 0.0 });
        }
        let (chain_id, name, err) = (self.cfg.chain_id, e.name.as_str(), h.last_error.as_deref().unwrap_or(""));
        match to {
            EndpointState::Healthy => tracing::info!(chain_id, endpoint = name, from = from.as_str(), "RPC endpoint healthy"),
            EndpointState::Lagging => {
                tracing::warn!(chain_id, endpoint = name, lag = h.lag, head = ?h.head, "RPC endpoint out of step; broadcasts only")
            }
            EndpointState::Down => {
                tracing::error!(chain_id, endpoint = name, error = err, retry_in_ms = h.backoff.as_millis() as u64, "RPC endpoint down")
            }
            EndpointState::Quarantined => {
                tracing::error!(chain_id, endpoint = name, error = err, "RPC endpoint serves another chain; quarantined")
            }
        }
    }

    /// One health round over every endpoint (concurrently).
    pub async fn check(&self) {
        let probes = self.endpoints.iter().map(|e| async move {
            let open = e.health.lock().unwrap_or_else(|p| p.into_inner()).open_until;
            if open.is_some_and(|t| Instant::now() < t) {
                return None; // circuit open: wait for the half-open probe
            }
            let started = Instant::now();
            let calls = vec![("eth_chainId".to_owned(), json!([])), ("eth_blockNumber".to_owned(), json!([]))];
            let r = tokio::time::timeout(self.cfg.timeout, e.rpc.batch(calls)).await;
            let answer = match r {
                Err(_) => Err(ChainError::Transport(TransportKind::Timeout, format!("{}: timeout", e.name))),
                Ok(Err(err)) => Err(err),
                Ok(Ok(a)) => {
                    let num = |v: &RpcResult| {
                        v.as_ref().ok().and_then(Value::as_str).and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    };
                    match (num(&a[0]), num(&a[1])) {
                        (Some(id), Some(head)) => Ok((id, head)),
                        _ => Err(ChainError::Transport(TransportKind::Other, format!("{}: unusable health answer", e.name))),
                    }
                }
            };
            Some((answer, started.elapsed()))
        });
        let results = futures::future::join_all(probes).await;
        let mut heads: Vec<u64> = results
            .iter()
            .flatten()
            .filter_map(|(r, _)| r.as_ref().ok())
            .filter(|(id, _)| *id == self.cfg.chain_id)
            .map(|(_, h)| *h)
            .collect();
        heads.sort_unstable_by(|a, b| b.cmp(a));
        let corroborated = heads.get(1).or(heads.first()).copied();
        for (e, r) in self.endpoints.iter().zip(results) {
            let Some((answer, took)) = r else { continue };
            match answer {
                Err(err) => {
                    // A failed probe of an open circuit re-opens it with a longer back-off.
                    let mut h = e.health.lock().unwrap_or_else(|p| p.into_inner());
                    if h.state == EndpointState::Down {
                        h.last_error = Some(err.to_string());
                        open_circuit(&mut h);
                    } else {
                        drop(h);
                        self.record_failure(e, &err);
                    }
                }
                Ok((id, head)) => {
                    self.record_success(e, took);
                    let mut h = e.health.lock().unwrap_or_else(|p| p.into_inner());
                    h.head = Some(head);
                    h.open_until = None;
                    if id != self.cfg.chain_id {
                        h.last_error = Some(format!("serves chain id {id}, expected {}", self.cfg.chain_id));
                        self.set_state(e, &mut h, EndpointState::Quarantined);
                        continue;
                    }
                    h.backoff = Duration::from_secs(1);
                    h.lag = corroborated.map_or(0, |c| c as i64 - head as i64);
                    let labels = self.labels(e);
                    metrics::gauge!("withdraw_rpc_endpoint_head", &labels).set(head as f64);
                    metrics::gauge!("withdraw_rpc_endpoint_lag_blocks", &labels).set(h.lag as f64);
                    let to = if h.lag.unsigned_abs() > self.cfg.max_lag { EndpointState::Lagging } else { EndpointState::Healthy };
                    self.set_state(e, &mut h, to);
                }
            }
        }
    }
}

/// Takes an endpoint out until `backoff` from now, doubling the next wait (up to 30 s).
fn open_circuit(h: &mut Health) {
    h.open_until = Some(Instant::now() + h.backoff);
    h.backoff = (h.backoff * 2).min(Duration::from_secs(30));
}

async fn health_loop(pool: Weak<RpcPool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        p.check().await;
    }
}
