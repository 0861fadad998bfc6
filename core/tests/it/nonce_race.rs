//! A real anvil behind a wrapper that acts at the worst moment, on the real store:
//! - the nonce check racing a signer: transfers signed between the check's read of the
//!   owners and its raise of the next nonce past a foreign one must not look like gaps (the
//!   "money safety under attack" issue, item 4);
//! - with finality "finalized", an endpoint that calls its head finalized must not finish a
//!   withdrawal the endpoint vouching for its block hash has not finalized.

use super::store_contract::{fake_sign, new_w, wid};
use alloy::primitives::{Address, B256, Bytes, U256};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use withdraw_core::adapters::evm::{EvmChain, LocalKeys};
use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::{AssetRegistry, Status};
use withdraw_core::ports::*;
use withdraw_core::ports::{PortTypes, Ports};
use withdraw_core::stages::{NonceKeeper, NonceKeeperConfig};
use withdraw_core::testing::{Anvil, DEV_ADDRESS, DEV_KEY};
use zeroize::Zeroizing;

type Hook = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// The real chain, with a hook run once, just before the first pending-count read, and
/// optionally a lie: `finalized()` answering the head (as a misconfigured or lying endpoint
/// would), while the batched read stays the real node's.
struct HookChain {
    inner: EvmChain,
    hook: Mutex<Option<Hook>>,
    finalized_is_head: bool,
}

impl Chain for HookChain {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    fn available(&self) -> bool {
        self.inner.available()
    }
    fn endpoints(&self) -> Vec<EndpointHealth> {
        self.inner.endpoints()
    }
    fn max_fee_cap(&self) -> u128 {
        self.inner.max_fee_cap()
    }
    fn finality(&self) -> Finality {
        self.inner.finality()
    }
    async fn head(&self) -> Result<u64, ChainError> {
        self.inner.head().await
    }
    async fn finalized(&self) -> Result<u64, ChainError> {
        if self.finalized_is_head {
            return self.inner.head().await;
        }
        self.inner.finalized().await
    }
    async fn fees(&self) -> Result<Fees, ChainError> {
        self.inner.fees().await
    }
    async fn send_raw(&self, raws: Vec<Bytes>) -> Result<Vec<SendResult>, ChainError> {
        self.inner.send_raw(raws).await
    }
    async fn block_receipts(&self, from: u64, to: u64) -> Result<Vec<BlockReceipts>, ChainError> {
        self.inner.block_receipts(from, to).await
    }
    async fn block_hashes(&self, numbers: Vec<u64>) -> Result<Vec<Option<B256>>, ChainError> {
        self.inner.block_hashes(numbers).await
    }
    async fn block_hashes_and_finalized(&self, numbers: Vec<u64>) -> Result<(Vec<Option<B256>>, u64), ChainError> {
        self.inner.block_hashes_and_finalized(numbers).await
    }
    async fn receipts(&self, hashes: Vec<B256>) -> Result<Vec<Option<TxReceipt>>, ChainError> {
        self.inner.receipts(hashes).await
    }
    async fn nonce(&self, address: Address, pending: bool) -> Result<u64, ChainError> {
        let hook = if pending { self.hook.lock().unwrap().take() } else { None };
        if let Some(h) = hook {
            h().await;
        }
        self.inner.nonce(address, pending).await
    }
    async fn nonce_at(&self, address: Address, block: u64) -> Result<u64, ChainError> {
        self.inner.nonce_at(address, block).await
    }
    async fn balance(&self, address: Address) -> Result<U256, ChainError> {
        self.inner.balance(address).await
    }
    async fn token_balance(&self, token: Address, holder: Address) -> Result<U256, ChainError> {
        self.inner.token_balance(token, holder).await
    }
}

struct Hooked;

impl PortTypes for Hooked {
    type Store = RecordStore;
    type Queue = SqliteQueue;
    type Balances = SqliteBalances;
    type Chain = HookChain;
}

#[tokio::test]
async fn holes_transfers_signed_during_a_nonce_check_are_not_gaps() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("w.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let inner = super::pipeline::anvil_chain(&anvil).await;
    let store = RecordStore::new(db.clone(), clock.clone());
    let wallet: Address = DEV_ADDRESS.parse().unwrap();
    store.init_nonce(wallet, 31337, 0).await.unwrap();
    store.submit((1..=3).map(|n| new_w(n, &format!("k{n}"), &format!("h{n}"))).collect()).await.unwrap();

    // Someone else's transaction waits in the pool at nonce 0: the chain's pending count (1)
    // is past the store's next nonce (0), so the check will raise it.
    let foreign =
        json!({"from": DEV_ADDRESS, "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1", "gas": "0x5208", "nonce": "0x0"});
    assert!(anvil.rpc("eth_sendTransaction", json!([foreign])).await.is_string());

    // Between the check's owners read and that raise, the signer commits three transfers.
    let signer_store = store.clone();
    let hook: Hook = Box::new(move || {
        Box::pin(async move {
            let out = signer_store.sign_first_attempts(wallet, 31337, vec![wid(1), wid(2), wid(3)], fake_sign()).await.unwrap();
            assert!(out.iter().all(|o| matches!(o, SignOutcome::Signed { .. })), "{out:?}");
        })
    });
    let chain = HookChain { inner, hook: Mutex::new(Some(hook)), finalized_is_head: false };
    let ports = Arc::new(Ports::<Hooked> {
        store: store.clone(),
        queue: SqliteQueue::new(db.clone(), clock.clone(), 5),
        balances: SqliteBalances::new(db, clock.clone()),
        chains: HashMap::from([(31337, chain)]),
        clock,
    });
    let keys = Arc::new(LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap());
    let keeper = NonceKeeper::new(ports.clone(), keys, Arc::new(AssetRegistry::new(vec![])), NonceKeeperConfig::default());
    let check = keeper.check_wallet(31337, &ports.chains[&31337], wallet).await.unwrap();

    assert!(check.gaps.is_empty(), "nonces our signer took during the check are not gaps: {check:?}");
    assert!(store.fills(31337, wallet, 0).await.unwrap().is_empty(), "no 0-value fill fights our transfers");
    assert_eq!(check.next_nonce, 3, "{check:?}");
}

#[tokio::test]
async fn an_endpoint_calling_its_head_finalized_does_not_finish_a_withdrawal() {
    use withdraw_core::domain::Amount;
    use withdraw_core::stages::*;
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("w.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let inner = super::pipeline::anvil_chain(&anvil).await.with_finality(Finality::Finalized);
    let chain = HookChain { inner, hook: Mutex::new(None), finalized_is_head: true };
    let ports = Arc::new(Ports::<Hooked> {
        store: RecordStore::new(db.clone(), clock.clone()),
        queue: SqliteQueue::new(db.clone(), clock.clone(), 5),
        balances: SqliteBalances::new(db, clock.clone()),
        chains: HashMap::from([(31337, chain)]),
        clock,
    });
    let assets = super::pipeline::eth_only(None);
    let keys = Arc::new(LocalKeys::from_hex(&[Zeroizing::new(DEV_KEY.to_owned())]).unwrap());
    let signer = Signer::new(ports.clone(), keys, assets.clone(), SignerConfig::default()).await.unwrap();
    let sender = Sender::new(ports.clone(), SenderConfig::default());
    let tracker = Tracker::new(ports.clone(), assets.clone(), TrackerConfig::default());
    ports.balances.credit("t1", "u1", "ETH", Amount::parse_positive("10", 18).unwrap()).await.unwrap();

    let req = WithdrawalRequest {
        user_id: "u1".into(),
        asset: "ETH".into(),
        chain_id: 31337,
        to: "0x1000000000000000000000000000000000000001".into(),
        amount: "1".into(),
    };
    let (intake, writer) = Intake::spawn(ports.clone(), IntakeConfig::default());
    let id = match intake.submit("c", "k-final", &validate(&req, &assets).unwrap()).await.unwrap() {
        SubmitOutcome::Created { id } => id,
        other => panic!("{other:?}"),
    };
    drop(intake);
    writer.await.unwrap();
    let receive = |q| ports.queue.receive(q, 10, std::time::Duration::from_secs(30), std::time::Duration::from_millis(200));
    signer.process(receive(QueueName::Requests).await.unwrap()).await.unwrap();
    sender.process(receive(QueueName::Signed).await.unwrap()).await.unwrap();
    let status = || async { ports.store.get(&id).await.unwrap().unwrap().withdrawal.status };

    // Mined (automine), 10 blocks on top; anvil finalizes 64 behind its head.
    anvil.rpc("anvil_mine", json!(["0xa"])).await;
    for _ in 0..3 {
        tracker.follow().await.unwrap();
    }
    assert!(ports.store.get(&id).await.unwrap().unwrap().inclusion.is_some(), "the tracker saw it mined");
    assert_eq!(status().await, Status::Sent, "not finalized by the node that vouches for its block");

    anvil.rpc("anvil_mine", json!(["0x50"])).await;
    tracker.follow().await.unwrap();
    assert_eq!(status().await, Status::Completed);
}
