//! Test harness shared by the workspace's tests: a real anvil on a loopback port chosen by
//! the OS, stopped when dropped, and a raw JSON-RPC helper for checks and chain controls.
//! `servers` starts the production profile's real servers the same way.

pub mod servers;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The anvil binary: `$ANVIL_BIN`, else the copy `scripts/tools.sh` installs, else PATH.
pub fn anvil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if local.exists() { local } else { PathBuf::from("anvil") }
}

pub struct Anvil {
    child: Child,
    pub url: String,
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Anvil({})", self.url)
    }
}

impl Anvil {
    /// Starts anvil with automine unless `args` say otherwise.
    pub fn start(args: &[&str]) -> Anvil {
        let bin = anvil_bin();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anvil at {} ({e}); run scripts/tools.sh", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && let Some(addr) = line.strip_prefix("Listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(20)).expect("anvil did not report its address");
        Anvil { child, url: format!("http://{addr}") }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        rpc(&self.url, method, params).await
    }

    pub async fn balance(&self, address: &str) -> alloy::primitives::U256 {
        let v = self.rpc("eth_getBalance", json!([address, "latest"])).await;
        v.as_str().and_then(|s| s.parse().ok()).expect("balance")
    }

    pub async fn nonce(&self, address: &str) -> u64 {
        let v = self.rpc("eth_getTransactionCount", json!([address, "latest"])).await;
        u64::from_str_radix(v.as_str().expect("nonce").trim_start_matches("0x"), 16).expect("hex nonce")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JSON-RPC call; panics on any error (for tests).
pub async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let r: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .json()
        .await
        .expect("json answer");
    if let Some(e) = r.get("error") {
        panic!("{method}: {e}");
    }
    r["result"].clone()
}

/// Polls `f` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// anvil's first dev account and its well-known test key.
pub const DEV_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
pub const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Every anvil dev key `withdrawd dev --hot-wallets` may sign with: none may reach any output.
pub const DEV_KEYS: [&str; 4] = [
    DEV_KEY,
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// Creation bytecode of the test ERC-20 (`testdata/contracts/TestToken.sol`, 6 decimals,
/// constructor `(uint256 supply)` minting to the deployer), built by `scripts/tools.sh`.
pub fn test_token_bytecode() -> String {
    contract_bytecode("TestToken")
}

/// Creation bytecode of `FalseToken` (same file and constructor): its `transfer` returns
/// false without reverting and moves nothing.
pub fn false_token_bytecode() -> String {
    contract_bytecode("FalseToken")
}

/// `<name>.bin` beside the test token's bytecode.
fn contract_bytecode(name: &str) -> String {
    let token = std::env::var("WITHDRAW_TEST_TOKEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/TestToken.bin"));
    let p = token.with_file_name(format!("{name}.bin"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("test token bytecode at {} ({e}); run scripts/tools.sh", p.display()))
        .trim()
        .to_owned()
}

impl Anvil {
    /// Deploys the test ERC-20 from `from` (an unlocked anvil account) and returns its address.
    pub async fn deploy_test_token(&self, from: &str, supply: alloy::primitives::U256) -> String {
        self.deploy_token(&test_token_bytecode(), from, supply).await
    }

    /// Deploys `FalseToken` (transfer returns false, moves nothing) and returns its address.
    pub async fn deploy_false_token(&self, from: &str, supply: alloy::primitives::U256) -> String {
        self.deploy_token(&false_token_bytecode(), from, supply).await
    }

    async fn deploy_token(&self, bytecode: &str, from: &str, supply: alloy::primitives::U256) -> String {
        let data = format!("0x{}{}", bytecode, hex::encode(supply.to_be_bytes::<32>()));
        let tx = self.rpc("eth_sendTransaction", json!([{"from": from, "data": data, "gas": "0x2dc6c0"}])).await;
        let receipt = eventually(Duration::from_secs(20), "token deployment", || async {
            let r = self.rpc("eth_getTransactionReceipt", json!([tx])).await;
            (!r.is_null()).then_some(r)
        })
        .await;
        assert_eq!(receipt["status"], "0x1", "token deployment reverted");
        receipt["contractAddress"].as_str().expect("contract address").to_owned()
    }

    /// `balanceOf(holder)` of an ERC-20.
    pub async fn token_balance(&self, token: &str, holder: &str) -> alloy::primitives::U256 {
        let data = format!("0x70a08231{:0>64}", holder.trim_start_matches("0x").to_lowercase());
        let v = self.rpc("eth_call", json!([{"to": token, "data": data}, "latest"])).await;
        v.as_str().and_then(|s| alloy::primitives::U256::from_str_radix(s.trim_start_matches("0x"), 16).ok()).expect("balanceOf")
    }
}
