//! The production profile end to end: every role its own OS process (two signers and two
//! senders at once), on SQS and Secrets Manager (moto), Redis and anvil, with a signer
//! killed by SIGKILL mid-batch and Redis restarted while withdrawals are in flight.
//! Also: bad configuration fails at start with one line naming the problem.

use crate::body;
use crate::harness::*;
use futures::future::join_all;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use withdraw_core::adapters::redis_balances::RedisBalances;
use withdraw_core::domain::Amount;
use withdraw_core::ports::Balances;
use withdraw_core::testing::servers::{Moto, Postgres, Redis};
use withdraw_core::testing::{Anvil, DEV_KEYS, eventually};

/// Moto accepts any credentials; these are distinctive so the log check can look for them.
const AWS_KEY_ID: &str = "AKIAWITHDRAWTEST0001";
const AWS_SECRET: &str = "moto-secret-5b1f0c9e";

/// One role process; killed when dropped, after which its logs are checked for secrets.
struct Proc {
    child: Option<Child>,
    dir: PathBuf,
    endpoints: Value,
    secrets: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    async fn start(config: &Path, role: &[&str], dir: &Path, env: &[(String, String)]) -> Proc {
        Self::try_start(config, role, dir, env).await.unwrap_or_else(|log| panic!("{role:?} did not start:\n{log}"))
    }

    async fn try_start(config: &Path, role: &[&str], dir: &Path, env: &[(String, String)]) -> Result<Proc, String> {
        let args: Vec<String> =
            ["--config".to_owned(), config.display().to_string()].into_iter().chain(role.iter().map(|s| s.to_string())).collect();
        let mut env = env.to_vec();
        env.push(("WITHDRAW__DATA_DIR".into(), dir.display().to_string()));
        let (child, endpoints) = spawn_withdrawd(&args, dir, &env).await?;
        Ok(Proc { child: Some(child), dir: dir.to_owned(), endpoints, secrets: secrets_of(&env), args, env })
    }

    fn url(&self, which: &str) -> String {
        format!("http://{}", self.endpoints[which].as_str().unwrap_or_else(|| panic!("no {which} endpoint")))
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn restart(&mut self) {
        self.kill9();
        let (child, endpoints) = spawn_withdrawd(&self.args, &self.dir, &self.env).await.unwrap_or_else(|log| panic!("restart:\n{log}"));
        self.child = Some(child);
        self.endpoints = endpoints;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            assert_no_secrets(&self.dir, &self.secrets);
        }
    }
}

fn aws_env(redis: &Redis) -> Vec<(String, String)> {
    let mut env = fast_env();
    env.retain(|(k, _)| k != "WITHDRAW__QUEUES__VISIBILITY_TIMEOUT_SECS");
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_owned(), AWS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), AWS_SECRET.to_owned()),
        ("WITHDRAW_TEST_REDIS_URL".to_owned(), redis.url.clone()),
    ]);
    env
}

/// The production profile's configuration, without the queue URLs. The record is on
/// PostgreSQL when `postgres` is set (its URL comes from WITHDRAW_TEST_DATABASE_URL).
fn config(dir: &Path, anvil: &Anvil, moto: &Moto, postgres: bool, extra: &str) -> PathBuf {
    let database = if postgres { "backend = \"postgres\"\nurl = { env = \"WITHDRAW_TEST_DATABASE_URL\" }\n" } else { "" };
    let toml = format!(
        r#"health_listen = "127.0.0.1:0"

[database]
sqlite_path = "{db}"
{database}

[queues]
visibility_timeout_secs = 6
max_receives = 5
backend = "sqs"

[balances]
backend = "redis"
redis_url = {{ env = "WITHDRAW_TEST_REDIS_URL" }}

[aws]
region = "us-east-1"
endpoint_url = "{moto}"

[signer]
secrets_manager_ids = ["withdraw/hot-1"]
secrets_ttl_secs = 60

[intake]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[chains]]
chain_id = 31337
rpc_url = "{anvil}"
max_fee_cap_wei = 500000000000
rpc_timeout_ms = 3000
{extra}"#,
        db = dir.join("withdrawd.db").display(),
        moto = moto.endpoint,
        anvil = anvil.url,
    );
    let path = dir.join("withdrawd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `withdrawd queues ensure` and appends the [queues.sqs] it prints to the config.
fn ensure_queues(config: &Path, env: &[(String, String)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_withdrawd"))
        .args(["--log-format", "json", "--config"])
        .arg(config)
        .args(["queues", "ensure", "--prefix", "e2e"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "queues ensure: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("[queues.sqs]") && printed.contains("e2e-tx-dlq"), "{printed}");
    let mut toml = std::fs::read_to_string(config).unwrap();
    toml.push_str(&format!("\n{printed}\nwait_secs = 1\n"));
    std::fs::write(config, toml).unwrap();
}

async fn secret(moto: &Moto, id: &str, value: &str) {
    let c = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    c.create_secret().name(id).secret_string(value).send().await.unwrap();
}

#[tokio::test]
async fn every_role_in_its_own_process_on_postgres_pays_each_withdrawal_exactly_once_through_a_signer_kill_and_a_redis_restart() {
    let pg = Postgres::start();
    every_role_in_its_own_process(Some(&pg)).await;
}

/// The same with the record on SQLite (each port chosen on its own: SQS and Redis beside
/// an SQLite file shared by the role processes).
#[tokio::test]
async fn every_role_in_its_own_process_on_sqlite_with_sqs_and_redis() {
    every_role_in_its_own_process(None).await;
}

async fn every_role_in_its_own_process(pg: Option<&Postgres>) {
    let anvil = Anvil::start(&[]);
    let moto = Moto::start();
    let mut redis = Redis::start();
    let root = tempfile::tempdir().unwrap();
    secret(&moto, "withdraw/hot-1", &format!("0x{}", DEV_KEYS[1])).await;
    let mut env = aws_env(&redis);
    if let Some(pg) = pg {
        env.push(("WITHDRAW_TEST_DATABASE_URL".into(), pg.url.clone()));
    }
    let cfg = config(root.path(), &anvil, &moto, pg.is_some(), "");
    ensure_queues(&cfg, &env);

    // The schema first, as a Kubernetes Job would, so the roles do not race to create it.
    let st = Command::new(env!("CARGO_BIN_EXE_withdrawd"))
        .arg("--config")
        .arg(&cfg)
        .arg("migrate")
        .envs(env.clone())
        .env("WITHDRAW__DATA_DIR", root.path())
        .status()
        .unwrap();
    assert!(st.success());
    let dir = |n: &str| root.path().join(n);
    let intake = Proc::start(&cfg, &["intake"], &dir("intake"), &env).await;
    let admin = Proc::start(&cfg, &["admin"], &dir("admin"), &env).await;
    let mut signer_a = Proc::start(&cfg, &["signer"], &dir("signer-a"), &env).await;
    let signer_b = Proc::start(&cfg, &["signer"], &dir("signer-b"), &env).await;
    let sender_a = Proc::start(&cfg, &["sender"], &dir("sender-a"), &env).await;
    let sender_b = Proc::start(&cfg, &["sender"], &dir("sender-b"), &env).await;
    let _tracker = Proc::start(&cfg, &["tracker"], &dir("tracker"), &env).await;
    let api = Daemon::client(&intake.url("intake"), &admin.url("admin"), &admin.url("health"));

    for u in 0..6 {
        api.credit(&format!("user{u}"), "10").await;
    }
    let amount = |i: usize| format!("0.0{}", 1 + i % 9);
    let submit_range = |from: usize, to: usize| {
        let api = &api;
        join_all((from..to).map(move |i| async move {
            let (s, v) = api.submit(&format!("k{i}"), &body(&format!("user{}", i % 6), &dest(0xe2, i), &amount(i))).await;
            assert_eq!(s, 202, "{v}");
            v["id"].as_str().unwrap().to_owned()
        }))
    };
    let mut ids = submit_range(0, 40).await;
    // Signer A dies while requests keep arriving and both signers are working: whatever it
    // held is redelivered (after the visibility timeout) to signer B.
    let (more, ()) = tokio::join!(submit_range(40, 70), async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        signer_a.kill9();
    });
    ids.extend(more);
    // Redis goes away and comes back (its append-only file keeps what it acknowledged).
    redis.restart();
    ids.extend(submit_range(70, 90).await);
    signer_a.restart().await;
    ids.extend(submit_range(90, 100).await);

    assert_eq!(root.path().join("withdrawd.db").exists(), pg.is_none(), "the record is where the config says");
    let settled = api.wait_settled(&ids, Duration::from_secs(120)).await;
    let bad: Vec<&Value> = settled.iter().filter(|w| w["status"] != "COMPLETED").collect();
    assert!(bad.is_empty(), "not all completed: {bad:#?}");
    // Paid exactly once: each destination holds exactly its amount.
    for i in 0..100 {
        assert_eq!(anvil.balance(&dest(0xe2, i)).await, wei(&amount(i)), "destination {i}");
    }
    // The balances in Redis agree: everything spent, nothing left reserved.
    let balances = RedisBalances::connect(&redis.url).await.unwrap();
    for u in 0..6 {
        let spent: alloy::primitives::U256 = (0..100).filter(|i| i % 6 == u).map(|i| wei(&amount(i))).sum();
        let b = balances.get(&format!("user{u}"), "ETH").await.unwrap();
        assert_eq!((b.spent, b.reserved), (Amount(spent), Amount::ZERO), "user{u}");
    }
    // A Redis that lost writes is put right from the database by `balances reconcile`.
    let mut c = ::redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = withdraw_core::adapters::redis_balances::balance_key("user0", "ETH");
    let _: () = ::redis::cmd("HSET").arg(&key).arg("spent").arg("0").query_async(&mut c).await.unwrap();
    let reconcile = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_withdrawd"))
            .args(["--log-format", "json", "--config"])
            .arg(&cfg)
            .args(["balances", "reconcile"])
            .args(args)
            .envs(env.clone())
            .env("WITHDRAW__DATA_DIR", root.path())
            .output()
            .unwrap()
    };
    let refused = reconcile(&[]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("signing is not paused"));
    let dry = reconcile(&["--dry-run"]);
    let listed = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        dry.status.success() && listed.contains("user user0 ETH: spent is 0 base units"),
        "{:?}\n{listed}\n{}",
        dry.status,
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(balances.get("user0", "ETH").await.unwrap().spent, Amount::ZERO, "dry run");
    let fixed = reconcile(&["--force"]);
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    let spent0: alloy::primitives::U256 = (0..100).filter(|i| i % 6 == 0).map(|i| wei(&amount(i))).sum();
    assert_eq!(balances.get("user0", "ETH").await.unwrap().spent, Amount(spent0));

    // The surviving signer and both senders took part (a counter on each one's /metrics).
    for (p, counter) in [(&signer_b, "withdraw_signed_total"), (&sender_a, "withdraw_sent_total"), (&sender_b, "withdraw_sent_total")] {
        let text = reqwest::get(format!("{}/metrics", p.url("health"))).await.unwrap().text().await.unwrap();
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(counter).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{counter} missing on {}", p.dir.display()));
        assert!(n > 0.0, "{} did no work", p.dir.display());
    }
}

#[tokio::test]
async fn bad_production_configuration_fails_at_start_with_one_clear_line() {
    let anvil = Anvil::start(&[]);
    let moto = Moto::start();
    let redis = Redis::start();
    let root = tempfile::tempdir().unwrap();
    let env = aws_env(&redis);
    let cfg = config(root.path(), &anvil, &moto, false, "");
    ensure_queues(&cfg, &env);
    let good = std::fs::read_to_string(&cfg).unwrap();
    secret(&moto, "withdraw/hot-1", DEV_KEYS[1]).await;

    let free = withdraw_core::testing::servers::free_port();
    let pg = Postgres::start();
    let with_env = |env: &[(String, String)], k: &str, v: &str| {
        let mut e = env.to_vec();
        e.push((k.to_owned(), v.to_owned()));
        e
    };
    // (what, config, environment, what the error line must say)
    type Case<'a> = (&'a str, String, Vec<(String, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unreachable Redis",
            good.clone(),
            env.iter()
                .cloned()
                .map(|(k, v)| if k == "WITHDRAW_TEST_REDIS_URL" { (k, format!("redis://127.0.0.1:{free}/")) } else { (k, v) })
                .collect(),
            "Redis",
        ),
        ("missing secret", good.replace("withdraw/hot-1", "withdraw/hot-9"), env.clone(), "secret withdraw/hot-9 does not exist"),
        ("wrong queue URL", good.replace("e2e-signed", "e2e-nope"), env.clone(), "e2e-nope"),
        (
            "unreachable PostgreSQL",
            good.replace("[database]\n", "[database]\nbackend = \"postgres\"\nurl = { env = \"WITHDRAW_TEST_DATABASE_URL\" }\n"),
            with_env(&env, "WITHDRAW_TEST_DATABASE_URL", &format!("postgres://postgres@127.0.0.1:{free}/x")),
            "PostgreSQL connection failed",
        ),
        (
            "PostgreSQL schema not migrated",
            good.replace("[database]\n", "[database]\nbackend = \"postgres\"\nurl = { env = \"WITHDRAW_TEST_DATABASE_URL\" }\n"),
            with_env(&env, "WITHDRAW_TEST_DATABASE_URL", &pg.url),
            "run `withdrawd migrate`",
        ),
        (
            "wrong chain id",
            format!(
                "{}\n[[assets]]\nsymbol = \"ETH\"\nchain_id = 31338\ndecimals = 18\n",
                good.replace("chain_id = 31337", "chain_id = 31338")
            ),
            env.clone(),
            "31338",
        ),
    ];
    for (what, toml, env, expect) in cases {
        let path = root.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&path, toml).unwrap();
        let role = if what == "missing secret" { "signer" } else { "intake" };
        let t = std::time::Instant::now();
        let err = match Proc::try_start(&path, &[role], &root.path().join(what.replace(' ', "-")), &env).await {
            Ok(_) => panic!("{what}: started"),
            Err(log) => log,
        };
        assert!(t.elapsed() < Duration::from_secs(25), "{what}: took {:?}", t.elapsed());
        let last = err.lines().rev().find(|l| l.starts_with("withdrawd: ")).unwrap_or_else(|| panic!("{what}: no error line in\n{err}"));
        assert!(last.contains(expect), "{what}: {last}");
        assert!(!err.contains("panicked"), "{what}: panicked\n{err}");
    }
    drop(anvil);
}

#[tokio::test]
async fn readyz_reports_a_lost_dependency() {
    let anvil = Anvil::start(&[]);
    let moto = Moto::start();
    let mut redis = Redis::start();
    let root = tempfile::tempdir().unwrap();
    let env = aws_env(&redis);
    let cfg = config(root.path(), &anvil, &moto, false, "");
    ensure_queues(&cfg, &env);
    // The tracker settles balances: it needs Redis. The sender does not: it stays ready and
    // reports the loss.
    let tracker = Proc::start(&cfg, &["tracker"], &root.path().join("tracker"), &env).await;
    let sender = Proc::start(&cfg, &["sender"], &root.path().join("sender"), &env).await;
    // The APIs need the database only: an operator must be able to pause signing whatever
    // else is down.
    let intake = Proc::start(&cfg, &["intake"], &root.path().join("intake"), &env).await;
    let admin = Proc::start(&cfg, &["admin"], &root.path().join("admin"), &env).await;
    let api = Daemon::client(&intake.url("intake"), &admin.url("admin"), &admin.url("health"));
    let ready = format!("{}/readyz", tracker.url("health"));
    let sender_ready = format!("{}/readyz", sender.url("health"));
    let http = reqwest::Client::new();
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 200);
    redis.kill();
    let body = eventually(Duration::from_secs(20), "readyz to fail", || async {
        let r = http.get(&ready).send().await.ok()?;
        (r.status() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("balances"), "{body}");
    for (role, p) in [("intake", &intake), ("admin", &admin)] {
        let r = http.get(format!("{}/readyz", p.url("health"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{role} stays ready without Redis");
    }
    let (s, v) = api.admin_post("/admin/v1/signing/pause", &serde_json::json!({"reason": "redis outage drill"}), TOKEN).await;
    assert_eq!(s, 200, "pause answers while Redis is down: {v}");
    // Each process probes on its own period: wait for the sender's to see it too.
    eventually(Duration::from_secs(20), "the sender to report the loss and stay ready", || async {
        let r = http.get(&sender_ready).send().await.ok()?;
        assert_eq!(r.status(), 200, "the sender's work does not need Redis");
        let v: serde_json::Value = r.json().await.ok()?;
        (v["balances"].is_string() && v["balances"] != "ok").then_some(())
    })
    .await;
    redis.start_again();
    eventually(Duration::from_secs(20), "readyz to recover", || async {
        (http.get(&ready).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
}
