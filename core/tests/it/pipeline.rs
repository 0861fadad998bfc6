//! The stages against a real anvil and a real SQLite file: redelivered and duplicated
//! messages must never produce a second transfer.

use alloy::primitives::U256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::Embedded;
use withdraw_core::adapters::evm::{EvmChain, LocalKeys};
use withdraw_core::adapters::pool::{EndpointSpec, PoolConfig};
use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::{Amount, Asset, AssetKind, AssetRegistry, Status, WithdrawalId};
use withdraw_core::ports::*;
use withdraw_core::stages::*;
use withdraw_core::testing::{Anvil, DEV_ADDRESS, DEV_KEY, eventually};
use zeroize::Zeroizing;

struct Rig {
    _dir: tempfile::TempDir,
    anvil: Anvil,
    ports: Arc<Ports<Embedded>>,
    assets: Arc<AssetRegistry>,
    signer: Signer<Embedded, LocalKeys>,
    sender: Sender<Embedded>,
    tracker: Tracker<Embedded>,
}

/// The real chain port on one anvil endpoint.
pub async fn anvil_chain(anvil: &Anvil) -> EvmChain {
    let pool = PoolConfig {
        chain_id: 31337,
        timeout: Duration::from_secs(10),
        health_every: Duration::from_secs(1),
        max_lag: 5,
        fail_threshold: 3,
    };
    let endpoint = EndpointSpec { url: anvil.url.clone(), name: None, tier: EndpointTier::Primary, weight: 1 };
    EvmChain::connect(pool, vec![endpoint], 500_000_000_000).await.unwrap()
}

/// Records one request for `u1` to `TO` through the intake writer; returns once its request
/// message is queued.
async fn submit_one<T: PortTypes>(ports: &Arc<Ports<T>>, assets: &AssetRegistry, key: &str, amount: &str) -> WithdrawalId {
    let req = WithdrawalRequest { user_id: "u1".into(), asset: "ETH".into(), chain_id: 31337, to: TO.into(), amount: amount.into() };
    let v = validate(&req, assets).unwrap();
    let (intake, writer) = Intake::spawn(ports.clone(), IntakeConfig::default());
    let id = match intake.submit("c", key, &v).await.unwrap() {
        SubmitOutcome::Created { id } | SubmitOutcome::Existing { id, .. } => id,
        other => panic!("{other:?}"),
    };
    // Stopping the writer lets the enqueue beside the commit land.
    drop(intake);
    writer.await.unwrap();
    id
}

/// The one asset these rigs pay: native ETH on anvil's chain.
pub fn eth_only(max_amount: Option<&str>) -> Arc<AssetRegistry> {
    Arc::new(AssetRegistry::new(vec![Asset {
        symbol: "ETH".into(),
        chain_id: 31337,
        kind: AssetKind::Native,
        decimals: 18,
        max_amount: max_amount.map(|m| Amount::parse_positive(m, 18).unwrap()),
        gas_limit: 21_000,
        approval_threshold: None,
    }]))
}

async fn rig(max_amount: Option<&str>) -> Rig {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("w.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let chain = anvil_chain(&anvil).await;
    let ports = Arc::new(Ports::<Embedded> {
        store: RecordStore::new(db.clone(), clock.clone()),
        queue: SqliteQueue::new(db.clone(), clock.clone(), 5),
        balances: SqliteBalances::new(db, clock.clone()),
        chains: HashMap::from([(31337, chain)]),
        clock,
    });
    let assets = eth_only(max_amount);
    let keys = Arc::new(LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap());
    let signer = Signer::new(ports.clone(), keys, assets.clone(), SignerConfig::default()).await.unwrap();
    let sender = Sender::new(ports.clone(), SenderConfig::default());
    let tracker = Tracker::new(ports.clone(), assets.clone(), TrackerConfig::default());
    Rig { _dir: dir, anvil, ports, assets, signer, sender, tracker }
}

impl Rig {
    async fn submit(&self, key: &str, to: &str, amount: &str) -> WithdrawalId {
        let req = WithdrawalRequest { user_id: "u1".into(), asset: "ETH".into(), chain_id: 31337, to: to.into(), amount: amount.into() };
        let v = validate(&req, &self.assets).unwrap();
        let (intake, writer) = Intake::spawn(self.ports.clone(), IntakeConfig::default());
        let id = match intake.submit("c", key, &v).await.unwrap() {
            SubmitOutcome::Created { id } | SubmitOutcome::Existing { id, .. } => id,
            other => panic!("{other:?}"),
        };
        // The answer comes at commit; the request message is sent beside the next batch.
        // Stopping the writer lets it land, so a test's next receive finds it.
        drop(intake);
        writer.await.unwrap();
        id
    }

    async fn receive(&self, q: QueueName) -> Vec<Delivery> {
        self.ports.queue.receive(q, 100, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap()
    }

    async fn status(&self, id: &WithdrawalId) -> Status {
        self.ports.store.get(id).await.unwrap().unwrap().withdrawal.status
    }
}

const TO: &str = "0x1000000000000000000000000000000000000001";

#[tokio::test]
async fn duplicated_and_redelivered_messages_pay_once() {
    let r = rig(None).await;
    r.ports.balances.credit("t1", "u1", "ETH", Amount::parse_positive("10", 18).unwrap()).await.unwrap();
    let nonce_before = r.anvil.nonce(DEV_ADDRESS).await;
    let id = r.submit("k1", TO, "1.5").await;
    // The intake queued one message; a confused producer (or the reconciler) adds two more.
    r.ports.queue.send(QueueName::Requests, vec![id.to_string(), id.to_string()]).await.unwrap();
    let d = r.receive(QueueName::Requests).await;
    assert_eq!(d.len(), 3);
    r.signer.process(d).await.unwrap();
    assert_eq!(r.status(&id).await, Status::Signed);

    // A late redelivery after signing is acknowledged without a second signature.
    r.ports.queue.send(QueueName::Requests, vec![id.to_string()]).await.unwrap();
    let d = r.receive(QueueName::Requests).await;
    r.signer.process(d).await.unwrap();
    let detail = r.ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(detail.attempts.len(), 1, "exactly one signed transfer");
    assert_eq!(r.ports.store.next_nonce(DEV_ADDRESS.parse().unwrap(), 31337).await.unwrap(), Some(nonce_before + 1));
    assert_eq!(
        r.ports.queue.stats(QueueName::Requests).await.unwrap().visible + r.ports.queue.stats(QueueName::Requests).await.unwrap().in_flight,
        0
    );

    // Broadcast the signed message twice, in two batches.
    r.ports.queue.send(QueueName::Signed, vec![id.to_string()]).await.unwrap();
    let d = r.receive(QueueName::Signed).await;
    assert_eq!(d.len(), 2);
    r.sender.process(d).await.unwrap();
    r.ports.queue.send(QueueName::Signed, vec![id.to_string()]).await.unwrap();
    let d = r.receive(QueueName::Signed).await;
    r.sender.process(d).await.unwrap();

    r.tracker.follow().await.unwrap();
    assert_eq!(r.status(&id).await, Status::Completed);
    assert_eq!(r.anvil.balance(TO).await, U256::from(1_500_000_000_000_000_000u128));
    assert_eq!(r.anvil.nonce(DEV_ADDRESS).await, nonce_before + 1, "one transaction on chain");
    let bal = r.ports.balances.get("u1", "ETH").await.unwrap();
    assert_eq!(bal.spent, Amount::parse_positive("1.5", 18).unwrap());
    assert_eq!(bal.reserved, Amount::ZERO);
    let h: Vec<Status> = r.ports.store.get(&id).await.unwrap().unwrap().history.iter().map(|h| h.to).collect();
    assert_eq!(h, [Status::Received, Status::Signed, Status::Sent, Status::Completed]);
}

#[tokio::test]
async fn signer_dead_letters_insufficient_balance_and_over_limit() {
    let r = rig(Some("2")).await;
    r.ports.balances.credit("t2", "u1", "ETH", Amount::parse_positive("1", 18).unwrap()).await.unwrap();
    let poor = r.submit("k-poor", TO, "1.5").await;
    let big = r.submit("k-big", TO, "3").await;
    let d = r.receive(QueueName::Requests).await;
    r.signer.process(d).await.unwrap();
    for (id, needle) in [(&poor, "insufficient balance: available 1, requested 1.5"), (&big, "exceeds the per-asset maximum 2")] {
        let w = r.ports.store.get(id).await.unwrap().unwrap().withdrawal;
        assert_eq!(w.status, Status::Invalid);
        assert!(w.reason.as_deref().unwrap_or("").contains(needle), "{:?}", w.reason);
    }
    let dlq = r.receive(QueueName::InvalidDlq).await;
    assert_eq!(dlq.len(), 2, "both are on the operators' list");
    let bal = r.ports.balances.get("u1", "ETH").await.unwrap();
    assert_eq!(bal.reserved, Amount::ZERO, "nothing stays reserved for invalid requests");
    assert_eq!(r.ports.store.next_nonce(DEV_ADDRESS.parse().unwrap(), 31337).await.unwrap(), Some(r.anvil.nonce(DEV_ADDRESS).await));
}

#[tokio::test]
async fn reconciler_recovers_lost_messages() {
    let mut r = rig(None).await;
    r.tracker = Tracker::new(
        r.ports.clone(),
        r.assets.clone(),
        TrackerConfig { stale_after: Duration::from_millis(300), ..TrackerConfig::default() },
    );
    r.ports.balances.credit("t3", "u1", "ETH", Amount::parse_positive("1", 18).unwrap()).await.unwrap();
    let id = r.submit("k-lost", TO, "0.25").await;
    // Lose the request message.
    let d = r.receive(QueueName::Requests).await;
    r.ports.queue.ack(QueueName::Requests, d.into_iter().map(|d| d.receipt).collect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    r.tracker.reconcile().await.unwrap();
    let d = r.receive(QueueName::Requests).await;
    assert_eq!(d.len(), 1, "reconciler re-enqueued the RECEIVED withdrawal");
    r.signer.process(d).await.unwrap();
    // Lose the signed message too.
    let d = r.receive(QueueName::Signed).await;
    r.ports.queue.ack(QueueName::Signed, d.into_iter().map(|d| d.receipt).collect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    r.tracker.reconcile().await.unwrap();
    let d = r.receive(QueueName::Signed).await;
    assert_eq!(d.len(), 1, "reconciler re-enqueued the SIGNED withdrawal");
    r.sender.process(d).await.unwrap();
    r.tracker.follow().await.unwrap();
    assert_eq!(r.status(&id).await, Status::Completed);
    assert_eq!(r.anvil.balance(TO).await, U256::from(250_000_000_000_000_000u128));
}

#[tokio::test]
async fn keys_never_print_their_secret() {
    let keys = LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap();
    let dbg = format!("{keys:?}");
    assert!(!dbg.contains(DEV_KEY) && !dbg.to_lowercase().contains(&DEV_KEY[..16]), "{dbg}");
    let err = LocalKeys::from_hex(&[Zeroizing::new("zz-not-a-key-but-secret-material".into())]).unwrap_err().to_string();
    assert!(!err.contains("secret-material"), "{err}");
}

/// A stale SENT withdrawal whose older (pre-bump) attempt was mined in a block the tracker
/// never scanned: the reconciler looks up every attempt, not only the newest, finds the
/// mined one, and the withdrawal completes and settles instead of waiting forever.
#[tokio::test]
async fn holes_the_reconciler_finds_an_older_attempt_mined_outside_the_scan() {
    let mut r = rig(None).await;
    r.tracker = Tracker::new(
        r.ports.clone(),
        r.assets.clone(),
        TrackerConfig { stale_after: Duration::from_millis(300), ..TrackerConfig::default() },
    );
    r.ports.balances.credit("t-old", "u1", "ETH", Amount::parse_positive("1", 18).unwrap()).await.unwrap();
    let id = r.submit("k-old", TO, "0.25").await;
    let d = r.receive(QueueName::Requests).await;
    r.signer.process(d).await.unwrap();
    let d = r.receive(QueueName::Signed).await;
    r.sender.process(d).await.unwrap(); // anvil mines it at once
    assert_eq!(r.status(&id).await, Status::Sent);
    // The tracker starts after that block (as on a first start past its look-back)...
    let head = r.anvil.rpc("eth_blockNumber", serde_json::json!([])).await;
    let head = u64::from_str_radix(head.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(r.ports.store.set_cursor(31337, None, head).await.unwrap());
    // ...and a fee bump was recorded before the mined one was seen: the newest attempt is
    // one that never reached a node.
    let old = r.ports.store.latest_attempts(vec![id.clone()]).await.unwrap().remove(0);
    let bumped = Attempt {
        tx_hash: alloy::primitives::B256::repeat_byte(0x42),
        raw: alloy::primitives::Bytes::from_static(b"never sent"),
        max_fee_per_gas: old.max_fee_per_gas * 2,
        max_priority_fee_per_gas: old.max_priority_fee_per_gas * 2,
        created_at_ms: old.created_at_ms + 1,
        sent_at_ms: None,
        ..old.clone()
    };
    assert_eq!(r.ports.store.record_replacements(vec![Replacement { replaces: old.tx_hash, attempt: bumped }]).await.unwrap(), [true]);

    r.tracker.follow().await.unwrap();
    assert_eq!(r.status(&id).await, Status::Sent, "the scan starts after the block: nothing found yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    r.tracker.reconcile().await.unwrap();
    r.tracker.follow().await.unwrap();
    assert_eq!(r.status(&id).await, Status::Completed, "found by its older attempt's receipt");
    let bal = r.ports.balances.get("u1", "ETH").await.unwrap();
    assert_eq!((bal.spent, bal.reserved), (Amount::parse_positive("0.25", 18).unwrap(), Amount::ZERO));
}

/// The request queue of the embedded profile, holding back what the pipeline sends to the
/// invalid DLQ until released: a send that lands late, after an operator acted.
#[derive(Clone)]
struct LateDlq {
    inner: SqliteQueue,
    held: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Queue for LateDlq {
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        if queue == QueueName::InvalidDlq {
            self.held.lock().unwrap().extend(bodies);
            return Ok(());
        }
        self.inner.send(queue, bodies).await
    }
    async fn receive(&self, queue: QueueName, max: usize, vis: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, max, vis, wait).await
    }
    async fn ack(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        self.inner.ack(queue, receipts).await
    }
    async fn extend(&self, queue: QueueName, receipts: Vec<String>, vis: Duration) -> Result<(), QueueError> {
        self.inner.extend(queue, receipts, vis).await
    }
    async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        self.inner.stats(queue).await
    }
}

struct LateDlqPorts;

impl PortTypes for LateDlqPorts {
    type Store = RecordStore;
    type Queue = LateDlq;
    type Balances = SqliteBalances;
    type Chain = EvmChain;
}

/// Found by the simulation: the signer's dead-letter enqueue runs after its commit, so it
/// can land after an operator has reprocessed the withdrawal; the sweep must not take that
/// message for a poison one and undo the reprocess.
#[tokio::test]
async fn a_dead_letter_notice_landing_after_a_reprocess_does_not_undo_it() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("w.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ports = Arc::new(Ports::<LateDlqPorts> {
        store: RecordStore::new(db.clone(), clock.clone()),
        queue: LateDlq { inner: SqliteQueue::new(db.clone(), clock.clone(), 5), held: held.clone() },
        balances: SqliteBalances::new(db, clock.clone()),
        chains: HashMap::from([(31337, anvil_chain(&anvil).await)]),
        clock,
    });
    let assets = eth_only(None);
    let keys = Arc::new(LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap());
    let signer = Signer::new(ports.clone(), keys, assets.clone(), SignerConfig::default()).await.unwrap();
    let tracker = Tracker::new(ports.clone(), assets.clone(), TrackerConfig::default());

    let id = submit_one(&ports, &assets, "k-late", "1").await;
    // No balance: INVALID, and the dead-letter message is still on its way.
    let d = ports.queue.receive(QueueName::Requests, 10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap();
    signer.process(d).await.unwrap();
    assert_eq!(ports.store.get(&id).await.unwrap().unwrap().withdrawal.status, Status::Invalid);
    assert_eq!(held.lock().unwrap().len(), 1);

    // The operator credits the user and reprocesses; then the message lands.
    ports.balances.credit("late-1", "u1", "ETH", Amount::parse_positive("5", 18).unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(reprocess(&ports, &id, "alice", "credited").await.unwrap(), ActionOutcome::Moved(Status::Received));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late: Vec<String> = std::mem::take(&mut *held.lock().unwrap());
    ports.queue.inner.send(QueueName::InvalidDlq, late).await.unwrap();

    tracker.reconcile().await.unwrap();
    let w = ports.store.get(&id).await.unwrap().unwrap().withdrawal;
    assert_eq!(w.status, Status::Received, "the sweep undid the reprocess: {:?}", w.reason);
    let dlq = ports.queue.stats(QueueName::InvalidDlq).await.unwrap();
    assert_eq!(dlq.visible + dlq.in_flight, 0, "the notice was acknowledged");
}

/// Found by the simulation: a discarded transfer priced at the fee cap gets no cancel (a
/// replacement would pass the cap); when a foreign transaction then takes its nonce it can
/// never be mined. It must end CANCELLED, not sit SENT forever (nor be re-signed: the
/// operator withdrew it).
/// A rig whose fee cap is below what the node suggests, so every transfer is signed at the
/// cap itself and no cancel can outbid it. The withdrawal of 0.4 ETH is SENT and discarded.
struct CapRig {
    anvil: Anvil,
    ports: Arc<Ports<Embedded>>,
    bumper: Bumper<Embedded, LocalKeys>,
    keeper: NonceKeeper<Embedded, LocalKeys>,
    tracker: Tracker<Embedded>,
    id: WithdrawalId,
    _dir: tempfile::TempDir,
}

async fn discarded_at_the_cap() -> CapRig {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("w.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pool = PoolConfig {
        chain_id: 31337,
        timeout: Duration::from_secs(10),
        health_every: Duration::from_secs(1),
        max_lag: 5,
        fail_threshold: 3,
    };
    let endpoint = EndpointSpec { url: anvil.url.clone(), name: None, tier: EndpointTier::Primary, weight: 1 };
    let chain = EvmChain::connect(pool, vec![endpoint], 1_500_000_000).await.unwrap();
    let ports = Arc::new(Ports::<Embedded> {
        store: RecordStore::new(db.clone(), clock.clone()),
        queue: SqliteQueue::new(db.clone(), clock.clone(), 5),
        balances: SqliteBalances::new(db, clock.clone()),
        chains: HashMap::from([(31337, chain)]),
        clock,
    });
    let assets = eth_only(None);
    let keys = Arc::new(LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap());
    let signer = Signer::new(ports.clone(), keys.clone(), assets.clone(), SignerConfig::default()).await.unwrap();
    let sender = Sender::new(ports.clone(), SenderConfig::default());
    let bumper = Bumper::new(ports.clone(), keys.clone(), BumperConfig { stuck_after: Duration::ZERO, ..BumperConfig::default() });
    let keeper = NonceKeeper::new(
        ports.clone(),
        keys,
        assets.clone(),
        NonceKeeperConfig { displaced_after: Duration::ZERO, ..NonceKeeperConfig::default() },
    );
    let tracker = Tracker::new(ports.clone(), assets.clone(), TrackerConfig::default());
    ports.balances.credit("cap-1", "u1", "ETH", Amount::parse_positive("1", 18).unwrap()).await.unwrap();

    let id = submit_one(&ports, &assets, "k-cap", "0.4").await;
    let d = ports.queue.receive(QueueName::Requests, 10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap();
    signer.process(d).await.unwrap();
    let d = ports.queue.receive(QueueName::Signed, 10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap();
    sender.process(d).await.unwrap();
    assert_eq!(ports.store.get(&id).await.unwrap().unwrap().withdrawal.status, Status::Sent);
    assert_eq!(discard(&ports, &id, "alice", "customer cancelled").await.unwrap(), ActionOutcome::CancelRequested(Status::Sent));
    CapRig { anvil, ports, bumper, keeper, tracker, id, _dir: dir }
}

#[tokio::test]
async fn a_discarded_transfer_at_the_fee_cap_whose_nonce_is_taken_ends_cancelled() {
    let CapRig { anvil, ports, bumper, keeper, id, .. } = discarded_at_the_cap().await;
    bumper.tick().await.unwrap();
    // The cancel goes out at the market's fees (capped): it cannot outbid the transfer in
    // this node's pool, which refuses it, but it is signed once and only once.
    let d = ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "one cancel, at the market's fees");
    assert_eq!(d.attempts[1].kind, AttemptKind::Cancel);
    assert!(d.attempts[1].max_fee_per_gas <= d.attempts[0].max_fee_per_gas);
    bumper.tick().await.unwrap();
    assert_eq!(ports.store.get(&id).await.unwrap().unwrap().attempts.len(), 2, "no second cancel");

    // Someone else uses the key at nonce 0, outbidding the transfer, and it is mined.
    let tx = serde_json::json!({
        "from": DEV_ADDRESS, "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1", "gas": "0x5208",
        "nonce": "0x0", "maxFeePerGas": "0x1d1a94a2000", "maxPriorityFeePerGas": "0xe8d4a51000",
    });
    assert!(anvil.rpc("eth_sendTransaction", serde_json::json!([tx])).await.is_string());
    anvil.rpc("evm_mine", serde_json::json!([])).await;
    anvil.rpc("evm_mine", serde_json::json!([])).await;

    keeper.check_all().await.unwrap();
    let d = ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(d.withdrawal.status, Status::Cancelled, "{:?}", d.withdrawal.reason);
    assert_eq!(d.attempts.len(), 2, "nothing signed again");
    let bal = ports.balances.get("u1", "ETH").await.unwrap();
    assert_eq!((bal.reserved, bal.spent), (Amount::ZERO, Amount::ZERO), "the reservation is released");
    assert!(anvil.balance(TO).await.is_zero());
}

/// Found by the simulation (seed 6075): a discarded transfer at the fee cap that no pool
/// holds any more used to keep its nonce forever (no cancel "fits"), and every withdrawal
/// behind it waited, bumped up to the cap. The cancel at the market's fees takes the nonce.
#[tokio::test(flavor = "multi_thread")]
async fn a_discarded_transfer_at_the_fee_cap_that_the_pool_dropped_is_cancelled_at_market_fees() {
    let CapRig { anvil, ports, bumper, tracker, id, .. } = discarded_at_the_cap().await;
    let hash = ports.store.get(&id).await.unwrap().unwrap().attempts[0].tx_hash;
    anvil.rpc("anvil_dropTransaction", serde_json::json!([hash])).await;
    bumper.tick().await.unwrap();
    let d = ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "a cancel was signed");
    let d2 = ports.queue.receive(QueueName::Signed, 10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap();
    Sender::new(ports.clone(), SenderConfig::default()).process(d2).await.unwrap();
    anvil.rpc("evm_mine", serde_json::json!([])).await;
    anvil.rpc("evm_mine", serde_json::json!([])).await;
    for _ in 0..3 {
        tracker.once().await.unwrap();
    }
    let d = ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(d.withdrawal.status, Status::Cancelled, "{:?}", d.withdrawal.reason);
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 1, "the cancel took the nonce: the lane moves on");
    let bal = ports.balances.get("u1", "ETH").await.unwrap();
    assert_eq!((bal.reserved, bal.spent), (Amount::ZERO, Amount::ZERO), "the reservation is released");
    assert!(anvil.balance(TO).await.is_zero());
}

/// Keys that refuse while `refuse` is set, as a KMS outage does.
struct RefusingKeys {
    inner: LocalKeys,
    refuse: std::sync::atomic::AtomicBool,
}

impl Keys for RefusingKeys {
    fn wallets(&self) -> Vec<alloy::primitives::Address> {
        self.inner.wallets()
    }
    fn sign(&self, wallet: alloy::primitives::Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(KeyError::Signing("KMS did not sign within 5s".into()));
        }
        self.inner.sign(wallet, tx)
    }
}

/// A keys outage takes no nonce and signs nothing; the request is left to be redelivered
/// (toward the dead-letter queue if it lasts, where an operator sees it) and is signed once
/// the keys answer again.
#[tokio::test]
async fn a_keys_outage_takes_no_nonce_and_the_request_is_signed_when_the_keys_answer() {
    let r = rig(None).await;
    let keys = Arc::new(RefusingKeys {
        inner: LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap(),
        refuse: std::sync::atomic::AtomicBool::new(true),
    });
    let signer = Signer::new(r.ports.clone(), keys.clone(), r.assets.clone(), SignerConfig::default()).await.unwrap();
    r.ports.balances.credit("t1", "u1", "ETH", Amount::parse_positive("10", 18).unwrap()).await.unwrap();
    let nonce_before = r.ports.store.next_nonce(DEV_ADDRESS.parse().unwrap(), 31337).await.unwrap();
    let id = r.submit("k-outage", TO, "1").await;
    let receive = || r.ports.queue.receive(QueueName::Requests, 100, Duration::from_millis(300), Duration::from_millis(200));
    for round in 0..3 {
        let d = eventually(Duration::from_secs(5), "a (re)delivery", || async { Some(receive().await.unwrap()).filter(|d| !d.is_empty()) })
            .await;
        assert_eq!(d[0].receive_count, round + 1, "redelivered, counting toward the dead-letter queue");
        signer.process(d).await.unwrap();
        assert_eq!(r.status(&id).await, Status::Received);
        assert!(r.ports.store.attempts_of(vec![id.clone()]).await.unwrap().is_empty(), "nothing signed");
        assert_eq!(r.ports.store.next_nonce(DEV_ADDRESS.parse().unwrap(), 31337).await.unwrap(), nonce_before, "no nonce taken");
    }

    keys.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let d = eventually(Duration::from_secs(5), "the next delivery", || async { Some(receive().await.unwrap()).filter(|d| !d.is_empty()) })
        .await;
    signer.process(d).await.unwrap();
    assert_eq!(r.status(&id).await, Status::Signed);
    assert_eq!(r.ports.store.next_nonce(DEV_ADDRESS.parse().unwrap(), 31337).await.unwrap(), nonce_before.map(|n| n + 1));
}
