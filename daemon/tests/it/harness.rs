//! Black-box harness: runs the real `withdrawd` binary against a real anvil and talks to it
//! over HTTP exactly as a client and an operator would.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use withdraw_core::testing::{Anvil, eventually};

pub const SECRET: &str = "test-hmac-secret";
pub const TOKEN: &str = "test-admin-token";

pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub intake: String,
    pub admin: String,
    /// `/healthz`, `/readyz` and `/metrics`: never on the API ports.
    pub health: String,
    http: reqwest::Client,
    /// Everything secret this daemon was given; checked against its output when dropped.
    secrets: Vec<String>,
    /// False for a client of processes it does not own (nothing of its own to check).
    spawned: bool,
}

/// Settings every test daemon gets: short timeouts so recovery paths run within a test.
pub fn fast_env() -> Vec<(String, String)> {
    [
        ("WITHDRAW__QUEUES__VISIBILITY_TIMEOUT_SECS", "3"),
        ("WITHDRAW__TRACKER__STALE_AFTER_SECS", "4"),
        ("WITHDRAW__TRACKER__RECONCILE_EVERY_SECS", "1"),
        ("WITHDRAW__TRACKER__POLL_MS", "100"),
        ("WITHDRAW__SIGNER__NONCE_CHECK_SECS", "1"),
        ("WITHDRAW__SIGNER__DISPLACED_AFTER_SECS", "1"),
        ("WITHDRAW__TRACKER__LEASE_TTL_SECS", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Daemon {
    pub async fn start(anvil: &Anvil, dir: &Path, env: &[(String, String)], extra_args: &[&str]) -> Daemon {
        Self::try_start(anvil, dir, env, extra_args).await.unwrap_or_else(|log| panic!("withdrawd did not start:\n{log}"))
    }

    /// Starts `withdrawd dev`; on failure returns its output.
    pub async fn try_start(anvil: &Anvil, dir: &Path, env: &[(String, String)], extra_args: &[&str]) -> Result<Daemon, String> {
        Self::try_spawn(Some(&anvil.url), dir, env, extra_args).await
    }

    /// Starts `withdrawd dev` on the endpoints its `--config` lists.
    pub async fn start_on_config(dir: &Path, env: &[(String, String)], extra_args: &[&str]) -> Daemon {
        Self::try_spawn(None, dir, env, extra_args).await.unwrap_or_else(|log| panic!("withdrawd did not start:\n{log}"))
    }

    pub async fn try_spawn(rpc_url: Option<&str>, dir: &Path, env: &[(String, String)], extra_args: &[&str]) -> Result<Daemon, String> {
        let mut args: Vec<String> = vec!["dev".into()];
        if let Some(u) = rpc_url {
            args.extend(["--rpc-url".into(), u.to_owned()]);
        }
        args.extend(["--data-dir".into(), dir.display().to_string()]);
        // Any port the test names itself (e.g. the admin API's, to restart on it) wins.
        for flag in ["--intake-addr", "--admin-addr", "--health-addr"] {
            if !extra_args.contains(&flag) {
                args.extend([flag.to_owned(), "127.0.0.1:0".to_owned()]);
            }
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let (child, v) = spawn_withdrawd(&args, dir, env).await?;
        Ok(Daemon {
            child: Some(child),
            dir: dir.to_owned(),
            intake: format!("http://{}", v["intake"].as_str().unwrap()),
            admin: format!("http://{}", v["admin"].as_str().unwrap()),
            health: format!("http://{}", v["health"].as_str().unwrap()),
            http: reqwest::Client::new(),
            secrets: secrets_of(env),
            spawned: true,
        })
    }

    /// A client of an intake and an admin API run by other processes (the role
    /// subcommands); it owns no process.
    pub fn client(intake: &str, admin: &str, health: &str) -> Daemon {
        Daemon {
            child: None,
            dir: std::env::temp_dir().join("withdraw-client-without-output"),
            intake: intake.to_owned(),
            admin: admin.to_owned(),
            health: health.to_owned(),
            http: reqwest::Client::new(),
            secrets: Vec::new(),
            spawned: false,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        for _ in 0..300 {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        panic!("withdrawd did not stop within 30 s of SIGTERM");
    }

    pub fn output(&self) -> String {
        output_of(&self.dir)
    }

    /// A signed request to the intake API.
    pub async fn intake_call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &[u8],
        ts_offset: i64,
        secret: &str,
    ) -> (u16, String, Value) {
        let ts = (withdraw_now() as i64 + ts_offset).to_string();
        let sig = signature(secret, &ts, method, path, key.unwrap_or(""), body);
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.intake, path))
            .header("content-type", "application/json")
            .header("x-api-key", "dev")
            .header("x-timestamp", &ts)
            .header("x-signature", sig);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let r = req.body(body.to_vec()).send().await.expect("intake request");
        decode(r).await
    }

    pub async fn submit(&self, key: &str, body: &Value) -> (u16, Value) {
        let (s, _, v) = self.intake_call("POST", "/v1/withdrawals", Some(key), &serde_json::to_vec(body).unwrap(), 0, SECRET).await;
        (s, v)
    }

    pub async fn get(&self, id: &str) -> Value {
        let (s, _, v) = self.intake_call("GET", &format!("/v1/withdrawals/{id}"), None, b"", 0, SECRET).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn admin_post(&self, path: &str, body: &Value, token: &str) -> (u16, Value) {
        let r = self.http.post(format!("{}{}", self.admin, path)).bearer_auth(token).json(body).send().await.expect("admin request");
        let (s, _, v) = decode(r).await;
        (s, v)
    }

    /// A mutating admin call with an `Idempotency-Key`.
    pub async fn admin_post_keyed(&self, path: &str, body: &Value, token: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{}", self.admin, path))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("admin request");
        let (s, _, v) = decode(r).await;
        (s, v)
    }

    /// Credits `amount` of `asset` to `user` under a fresh key (the all-roles token).
    pub async fn credit_asset(&self, user: &str, asset: &str, amount: &str) -> Value {
        let key = format!("credit-{}", uuid::Uuid::now_v7());
        let body = json!({"user_id": user, "asset": asset, "amount": amount, "reason": "test funding"});
        let (s, v) = self.admin_post_keyed("/admin/v1/balances/credit", &body, TOKEN, &key).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn credit(&self, user: &str, amount: &str) {
        self.credit_asset(user, "ETH", amount).await;
    }

    pub async fn admin_get_as(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{}", self.admin, path)).bearer_auth(token).send().await.expect("admin request");
        let (s, _, v) = decode(r).await;
        (s, v)
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{}", self.admin, path)).bearer_auth(TOKEN).send().await.expect("admin request");
        let (s, _, v) = decode(r).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    pub async fn stats(&self) -> Value {
        self.admin_get("/admin/v1/stats").await
    }

    /// Waits until every listed withdrawal is in a terminal or dead-letter status.
    pub async fn wait_settled(&self, ids: &[String], timeout: Duration) -> Vec<Value> {
        eventually(timeout, "withdrawals to settle", || async {
            let mut out = Vec::new();
            for id in ids {
                let w = self.get(id).await;
                let st = w["status"].as_str().unwrap();
                if !matches!(st, "COMPLETED" | "FAILED" | "INVALID" | "REJECTED" | "CANCELLED" | "SEND_FAILED") {
                    return None;
                }
                out.push(w);
            }
            Some(out)
        })
        .await
    }
}

/// Everything secret a withdrawd process is given: the hot-wallet keys, the HMAC secret,
/// the admin token, and any extra secret a test passes by environment (config overrides
/// are not secrets).
pub fn secrets_of(env: &[(String, String)]) -> Vec<String> {
    let mut secrets: Vec<String> = withdraw_core::testing::DEV_KEYS.iter().map(|k| k.to_string()).collect();
    secrets.extend([SECRET.to_owned(), TOKEN.to_owned()]);
    secrets.extend(env.iter().filter(|(k, _)| !k.starts_with("WITHDRAW__") && !k.starts_with("AWS_REGION")).map(|(_, v)| v.clone()));
    secrets
}

/// Checks that none of `secrets` reached the output in `dir`.
pub fn assert_no_secrets(dir: &Path, secrets: &[String]) {
    let out = output_of(dir);
    for s in secrets {
        assert!(!out.contains(s.as_str()), "a secret ({:.6}…) reached withdrawd's output in {}", s, dir.display());
    }
}

/// Starts the withdrawd binary with `args` (JSON logs into `dir`/out*.log) and waits for
/// the endpoints.json it writes into `dir`; on failure returns its output.
pub async fn spawn_withdrawd(args: &[String], dir: &Path, env: &[(String, String)]) -> Result<(Child, Value), String> {
    std::fs::create_dir_all(dir).unwrap();
    let endpoints = dir.join("endpoints.json");
    let _ = std::fs::remove_file(&endpoints);
    let n = std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("out")).count();
    let out = std::fs::File::create(dir.join(format!("out{n}.log"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("out{n}.err"))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_withdrawd"))
        .args(["--log-format", "json"])
        .args(args)
        .env("WITHDRAW_DEV_HMAC_SECRET", SECRET)
        .env("WITHDRAW_DEV_ADMIN_TOKEN", TOKEN)
        .env("WITHDRAW_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn withdrawd");
    let start = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&endpoints)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            return Ok((child, v));
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}\n{}", output_of(dir)));
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err(format!("no endpoints.json after 30 s\n{}", output_of(dir)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Daemon {
    /// Stops the daemon, then checks that no secret it was given reached its logs, whatever
    /// the test made it do (cancels, nonce repairs, fail-overs, operator actions, failures).
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() || !self.spawned {
            return;
        }
        assert_no_secrets(&self.dir, &self.secrets);
    }
}

async fn decode(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, v)
}

pub fn output_of(dir: &Path) -> String {
    let mut s = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("out") {
            s.push_str(&format!("--- {name}\n{}\n", std::fs::read_to_string(&p).unwrap_or_default()));
        }
    }
    s
}

pub fn withdraw_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The signing string of DESIGN §6, written out independently of the server's code.
pub fn signature(secret: &str, ts: &str, method: &str, path: &str, idempotency_key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{method}\n{path}\n{idempotency_key}\n").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh destination address per (test tag, index).
pub fn dest(tag: u8, i: usize) -> String {
    let mut b = [0u8; 20];
    b[0] = 0xd0;
    b[1] = tag;
    b[12..20].copy_from_slice(&(i as u64).to_be_bytes());
    format!("0x{}", hex::encode(b))
}

pub fn wei(eth_decimal: &str) -> alloy::primitives::U256 {
    withdraw_core::domain::Amount::parse_positive(eth_decimal, 18).unwrap().0
}
