//! The admin API an operator's console drives: search, dead-letter queues in bulk,
//! approvals with four eyes, signing pauses, the audit log and Alertmanager's webhook. Each
//! mutating call is refused without the right role and leaves an audit entry when it acts.

use super::body;
use super::harness::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use withdraw_core::testing::Anvil;

const ANN: &str = "ann-token";
const BOB: &str = "bob-token";
const VIC: &str = "vic-token";
const AM: &str = "alertmanager-token";

/// A config with four people: ann (operator and approver), bob (approver), vic (viewer),
/// Alertmanager (alerts only), plus the harness's all-roles token; ETH needs approval above 1.
fn people(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>) {
    let toml = r#"
[[assets]]
symbol = "ETH"
chain_id = 31337
decimals = 18
approval_threshold = "1"

credit_approval_threshold = "50"

[[admin.tokens]]
name = "dev-admin"
roles = ["viewer", "operator", "approver", "alerts"]
token = { env = "WITHDRAW_DEV_ADMIN_TOKEN" }
[[admin.tokens]]
name = "ann"
roles = ["viewer", "operator", "approver"]
token = { env = "ANN" }
[[admin.tokens]]
name = "bob"
roles = ["viewer", "approver"]
token = { env = "BOB" }
[[admin.tokens]]
name = "vic"
roles = ["viewer"]
token = { env = "VIC" }
[[admin.tokens]]
name = "alertmanager"
roles = ["alerts"]
token = { env = "AM" }
"#;
    let path = dir.join("withdrawd.toml");
    std::fs::write(&path, toml).unwrap();
    let mut env = fast_env();
    env.extend([("ANN", ANN), ("BOB", BOB), ("VIC", VIC), ("AM", AM)].map(|(k, v)| (k.to_owned(), v.to_owned())));
    (path, env)
}

async fn start(anvil: &Anvil, dir: &Path) -> Daemon {
    let (cfg, env) = people(dir);
    Daemon::start(anvil, &dir.join("data"), &env, &["--config", cfg.to_str().unwrap()]).await
}

async fn submit(d: &Daemon, key: &str, user: &str, to: &str, amount: &str) -> String {
    let (s, v) = d.submit(key, &body(user, to, amount)).await;
    assert_eq!(s, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn settle(d: &Daemon, id: &str, want: &str) -> Value {
    withdraw_core::testing::eventually(Duration::from_secs(30), &format!("{id} {want}"), || async {
        let w = d.get(id).await;
        (w["status"] == want).then_some(w)
    })
    .await
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn approvals_need_a_second_person() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    d.credit("u", "0.5").await;
    let big = submit(&d, "big-1", "u", &dest(50, 0), "2").await;
    settle(&d, &big, "INVALID").await;

    // ann funds the user and releases it from the dead-letter queue; over the threshold, it
    // waits for an approver, its funds reserved.
    d.credit("u", "5").await;
    let (s, v) = d.admin_post(&format!("/admin/v1/withdrawals/{big}/reprocess"), &json!({"reason": "funded"}), ANN).await;
    assert_eq!(s, 200, "{v}");
    settle(&d, &big, "PENDING_APPROVAL").await;
    assert_eq!(ids_of(&d.admin_get("/admin/v1/approvals").await), vec![big.clone()]);
    let b = d.admin_get("/admin/v1/balances/u/ETH").await;
    assert_eq!(b["reserved"], "2", "{b}");

    let approve = |token: &'static str| {
        let d = &d;
        let big = big.clone();
        async move { d.admin_post(&format!("/admin/v1/approvals/{big}/approve"), &json!({"reason": "known customer"}), token).await }
    };
    let (s, v) = approve(VIC).await;
    assert_eq!(s, 403, "a viewer cannot approve: {v}");
    let (s, v) = approve(ANN).await;
    assert_eq!(s, 409, "who released it cannot approve it: {v}");
    assert!(v["detail"].as_str().unwrap().contains("another approver"), "{v}");
    assert_eq!(d.get(&big).await["status"], "PENDING_APPROVAL");
    let (s, v) = approve(BOB).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("RECEIVED")), "{v}");
    let w = settle(&d, &big, "COMPLETED").await;
    assert_eq!(anvil.balance(&dest(50, 0)).await, wei("2"), "paid once, after approval");
    assert!(w["history"].as_array().unwrap().iter().any(|h| h["actor"] == "bob" && h["from"] == "PENDING_APPROVAL"), "{w}");

    // A rejection releases the reservation.
    let other = submit(&d, "big-2", "u", &dest(50, 1), "1.5").await;
    settle(&d, &other, "PENDING_APPROVAL").await;
    let (s, v) = d.admin_post(&format!("/admin/v1/approvals/{other}/reject"), &json!({"reason": "unknown address"}), BOB).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("REJECTED")), "{v}");
    let b = d.admin_get("/admin/v1/balances/u/ETH").await;
    assert_eq!((b["reserved"].as_str(), b["spent"].as_str(), b["available"].as_str()), (Some("0"), Some("2"), Some("3.5")), "{b}");
    assert!(anvil.balance(&dest(50, 1)).await.is_zero());
    let (s, v) = d.admin_post(&format!("/admin/v1/approvals/{other}/approve"), &json!({"reason": "late"}), BOB).await;
    assert_eq!(s, 409, "{v}");

    let audit = d.admin_get("/admin/v1/audit?limit=10").await;
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["actor"].as_str().unwrap().to_owned(), a["action"].as_str().unwrap().to_owned()))
        .collect();
    for want in [("ann", "withdrawal.reprocess"), ("bob", "withdrawal.approve"), ("bob", "withdrawal.reject")] {
        assert!(actions.contains(&(want.0.to_owned(), want.1.to_owned())), "{want:?} in {actions:?}");
    }
}

#[tokio::test]
async fn signing_pauses_for_every_chain_or_one_and_resumes() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    d.credit("u", "1").await;
    for (scope, body) in [("all", json!({"reason": "incident 42"})), ("chain", json!({"reason": "incident 43", "chain_id": 31337}))] {
        let (s, v) = d.admin_post("/admin/v1/signing/pause", &body, VIC).await;
        assert_eq!(s, 403, "{v}");
        let (s, v) = d.admin_post("/admin/v1/signing/pause", &body, ANN).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["paused_all"] == (scope == "all") && (scope == "all" || v["paused_chains"] == json!([31337])), "{v}");
        tokio::time::sleep(Duration::from_millis(1500)).await; // the signer re-reads pauses every second
        let id = submit(&d, &format!("paused-{scope}"), "u", &dest(51, (scope == "all") as usize), "0.1").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let w = d.get(&id).await;
        assert_eq!(w["status"], "RECEIVED", "paused ({scope}): nothing signed: {w}");
        assert!(w["attempts"].as_array().unwrap().is_empty());
        let (s, v) = d.admin_post("/admin/v1/signing/resume", &body, ANN).await;
        assert_eq!((s, v["paused_all"].as_bool(), v["paused_chains"].clone()), (200, Some(false), json!([])), "{v}");
        settle(&d, &id, "COMPLETED").await;
    }
    let (s, v) = d.admin_post("/admin/v1/signing/pause", &json!({"reason": "x", "chain_id": 5}), ANN).await;
    assert_eq!(s, 409, "an unknown chain: {v}");
    let (s, v) = d.admin_post("/admin/v1/signing/pause", &json!({"reason": " "}), ANN).await;
    assert_eq!(s, 400, "a reason is required: {v}");
    let audit = d.admin_get("/admin/v1/audit").await;
    assert_eq!(audit.as_array().unwrap().iter().filter(|a| a["action"] == "signing.pause" && a["actor"] == "ann").count(), 2);
}

/// The brake holds the moment "pause" answers, for new work and for an operator's reprocess
/// alike, and the dead-letter sweep leaves the reprocessed withdrawal alone while it waits:
/// no sleep between the pause and the work, then long enough for the reconciler's sweep to
/// run several times over the reprocessed one's old dead-letter message.
#[tokio::test]
async fn holes_pause_holds_once_answered_and_the_sweep_leaves_a_reprocess_alone() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    d.credit("p", "0.05").await;
    let poor = submit(&d, "brake-poor", "p", &dest(52, 0), "0.1").await;
    settle(&d, &poor, "INVALID").await;
    d.credit("p", "1").await;

    let (s, v) = d.admin_post("/admin/v1/signing/pause", &json!({"reason": "incident 44"}), ANN).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.admin_post(&format!("/admin/v1/withdrawals/{poor}/reprocess"), &json!({"reason": "funded"}), ANN).await;
    assert_eq!(s, 200, "{v}");
    let mut ids = vec![poor.clone()];
    for i in 1..5 {
        ids.push(submit(&d, &format!("brake-{i}"), "p", &dest(52, i), "0.1").await);
    }
    // Visibility 3 s, stale after 4 s, reconcile every second: the sweep has had its chances.
    tokio::time::sleep(Duration::from_secs(9)).await;
    for id in &ids {
        let w = d.get(id).await;
        assert_eq!(w["status"], "RECEIVED", "paused: nothing signed, and the reprocess stands: {w}");
        assert!(w["attempts"].as_array().unwrap().is_empty(), "no signature after the pause answered: {w}");
    }
    let history = d.get(&poor).await["history"].clone();
    assert!(!history.as_array().unwrap().iter().any(|h| h["actor"] == "reconciler"), "the sweep undid nothing: {history}");

    let (s, v) = d.admin_post("/admin/v1/signing/resume", &json!({"reason": "incident 44 over"}), ANN).await;
    assert_eq!(s, 200, "{v}");
    for (i, id) in ids.iter().enumerate() {
        settle(&d, id, "COMPLETED").await;
        assert_eq!(anvil.balance(&dest(52, i)).await, wei("0.1"));
    }
}

/// Operator credits: a reason and an `Idempotency-Key` are required; a retry after a timeout
/// (the same key and body) credits once; the same key for another credit is refused; above
/// the asset's credit threshold a second person approves it (not the requester, not a
/// viewer); every step is in the audit log.
#[tokio::test]
async fn holes_credits_are_idempotent_reasoned_and_four_eyed_above_the_threshold() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    let post = |body: Value, token: &'static str, key: Option<&'static str>| {
        let d = &d;
        async move {
            match key {
                Some(k) => d.admin_post_keyed("/admin/v1/balances/credit", &body, token, k).await,
                None => d.admin_post("/admin/v1/balances/credit", &body, token).await,
            }
        }
    };
    let small = json!({"user_id": "cr", "asset": "ETH", "amount": "5", "reason": "deposit 991"});
    let (s, v) = post(small.clone(), ANN, None).await;
    assert_eq!((s, v["type"].as_str()), (400, Some("urn:withdrawd:problem:idempotency-key-missing")), "{v}");
    let (s, v) = post(json!({"user_id": "cr", "asset": "ETH", "amount": "5"}), ANN, Some("c-1")).await;
    assert_eq!(s, 400, "a reason is required: {v}");
    let (s, v) = post(small.clone(), VIC, Some("c-1")).await;
    assert_eq!(s, 403, "a viewer cannot credit: {v}");
    for _ in 0..3 {
        let (s, v) = post(small.clone(), ANN, Some("c-1")).await;
        assert_eq!((s, v["credited"].as_str()), (200, Some("5")), "retried, credited once: {v}");
    }
    let (s, v) = post(json!({"user_id": "cr", "asset": "ETH", "amount": "6", "reason": "deposit 991"}), ANN, Some("c-1")).await;
    assert_eq!(s, 409, "the same key for another credit: {v}");

    let big = json!({"user_id": "cr", "asset": "ETH", "amount": "500", "reason": "treasury top-up"});
    let (s, v) = post(big.clone(), ANN, Some("c-2")).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("pending_approval")), "{v}");
    assert_eq!(d.admin_get("/admin/v1/balances/cr/ETH").await["credited"], "5", "nothing credited before the second person");
    let approve = |token: &'static str| {
        let d = &d;
        async move { d.admin_post("/admin/v1/credits/c-2/approve", &json!({"reason": "checked the ledger"}), token).await }
    };
    let (s, v) = approve(ANN).await;
    assert_eq!(s, 409, "not by the requester: {v}");
    let (s, v) = approve(VIC).await;
    assert_eq!(s, 403, "not by a viewer: {v}");
    let (s, v) = approve(BOB).await;
    assert_eq!((s, v["credited"].as_str()), (200, Some("505")), "{v}");
    let (s, v) = approve(BOB).await;
    assert_eq!((s, v["credited"].as_str()), (200, Some("505")), "approving twice credits once: {v}");
    let (s, v) = post(big, ANN, Some("c-2")).await;
    assert_eq!((s, v["credited"].as_str()), (200, Some("505")), "the request repeated after approval: {v}");

    let audit = d.admin_get("/admin/v1/audit").await;
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["actor"].as_str().unwrap().to_owned(), a["action"].as_str().unwrap().to_owned()))
        .collect();
    for want in [("ann", "balance.credit"), ("ann", "balance.credit.request"), ("bob", "balance.credit.approve")] {
        assert_eq!(actions.iter().filter(|a| a.0 == want.0 && a.1 == want.1).count(), 1, "{want:?} once in {actions:?}");
    }
}

#[tokio::test]
async fn search_and_dead_letter_queues_in_bulk() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    // Three requests nobody funded: the invalid queue.
    let mut poor = Vec::new();
    for i in 0..3 {
        poor.push(submit(&d, &format!("poor-{i}"), "pauper", &dest(52, i), "0.2").await);
    }
    for id in &poor {
        settle(&d, id, "INVALID").await;
    }
    let dlq = d.admin_get("/admin/v1/dlq/invalid").await;
    let mut listed = ids_of(&dlq);
    listed.sort();
    let mut want = poor.clone();
    want.sort();
    assert_eq!(listed, want);
    assert!(dlq[0]["reason"].as_str().unwrap().contains("insufficient balance"), "{dlq}");
    assert_eq!(d.admin_get("/admin/v1/dlq/tx").await, json!([]));
    let (s, _) = d.admin_get_as("/admin/v1/dlq/nope", TOKEN).await;
    assert_eq!(s, 404);

    // Search by user, destination, status, and paging.
    assert_eq!(ids_of(&d.admin_get("/admin/v1/withdrawals?q=pauper").await).len(), 3);
    assert_eq!(ids_of(&d.admin_get(&format!("/admin/v1/withdrawals?q={}", dest(52, 1))).await), vec![poor[1].clone()]);
    assert_eq!(ids_of(&d.admin_get("/admin/v1/withdrawals?status=invalid&limit=2").await).len(), 2);
    let page = d.admin_get(&format!("/admin/v1/withdrawals?q=pauper&before={}", poor[2])).await;
    assert_eq!(ids_of(&page), vec![poor[1].clone(), poor[0].clone()], "newest first, before the given id");
    let (s, v) = d.admin_get_as("/admin/v1/withdrawals?status=LOST", TOKEN).await;
    assert_eq!(s, 400, "{v}");

    // Bulk: a viewer may not; an operator reprocesses two, discards one; junk is reported per item.
    d.credit("pauper", "1").await;
    let req = json!({"ids": [poor[0], poor[1], "not-an-id"], "reason": "funded"});
    let (s, _) = d.admin_post("/admin/v1/dlq/invalid/reprocess", &req, VIC).await;
    assert_eq!(s, 403);
    let (s, v) = d.admin_post("/admin/v1/dlq/invalid/reprocess", &req, ANN).await;
    assert_eq!(s, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!((r[0]["outcome"].as_str(), r[1]["outcome"].as_str()), (Some("moved"), Some("moved")), "{v}");
    assert!(r[2]["error"].as_str().is_some(), "{v}");
    let (s, v) = d.admin_post("/admin/v1/dlq/tx/discard", &json!({"ids": [poor[2]], "reason": "x"}), ANN).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["results"][0]["error"].as_str().unwrap().contains("not in the tx dead-letter queue"), "{v}");
    let (s, v) = d.admin_post("/admin/v1/dlq/invalid/discard", &json!({"ids": [poor[2]], "reason": "duplicate"}), ANN).await;
    assert_eq!((s, v["results"][0]["status"].as_str()), (200, Some("REJECTED")), "{v}");
    for id in &poor[..2] {
        let w = settle(&d, id, "COMPLETED").await;
        let tx = w["attempts"][0]["tx_hash"].as_str().unwrap().to_owned();
        assert_eq!(ids_of(&d.admin_get(&format!("/admin/v1/withdrawals?q={tx}")).await), vec![id.clone()], "search by tx hash");
    }
    assert_eq!(d.admin_get("/admin/v1/dlq/invalid").await, json!([]));
    // Rejecting an INVALID one that never reserved (insufficient balance) is no lost write.
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    let missing: Vec<&str> = metrics.lines().filter(|l| l.starts_with("withdraw_reservation_missing_total{")).collect();
    assert!(!missing.is_empty() && missing.iter().all(|l| l.ends_with(" 0")), "{missing:?}");
    let (s, me) = d.admin_get_as("/admin/v1/me", VIC).await;
    assert_eq!((s, me["name"].as_str(), me["roles"].clone()), (200, Some("vic"), json!(["viewer"])));
}

#[tokio::test]
async fn alertmanager_notifications_are_kept_per_fingerprint() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = start(&anvil, dir.path()).await;
    // A real Alertmanager v4 webhook body.
    let payload = |status: &str, ends: &str| {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"WithdrawInvalidDLQNotEmpty\"}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "withdraw-console",
            "groupLabels": {"alertname": "WithdrawInvalidDLQNotEmpty"},
            "commonLabels": {"alertname": "WithdrawInvalidDLQNotEmpty", "severity": "page"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [{
                "status": status,
                "labels": {"alertname": "WithdrawInvalidDLQNotEmpty", "severity": "page", "queue": "invalid-dlq"},
                "annotations": {
                    "summary": "3 withdrawals wait in the invalid dead-letter queue",
                    "console": "withdraw-console --goto dlq/invalid"
                },
                "startsAt": "2026-11-24T03:00:00Z",
                "endsAt": ends,
                "generatorURL": "http://prometheus:9090/graph?g0.expr=withdraw_queue_visible_messages",
                "fingerprint": "8a1f0c2d3e4b5a69"
            }]
        })
    };
    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &payload("firing", "0001-01-01T00:00:00Z"), VIC).await;
    assert_eq!(s, 403, "only the alerts role posts: {v}");
    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &payload("firing", "0001-01-01T00:00:00Z"), AM).await;
    assert_eq!((s, v["new"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &payload("firing", "0001-01-01T00:00:00Z"), AM).await;
    assert_eq!((s, v["new"].as_u64()), (200, Some(0)), "a repeat notification is the same alert: {v}");
    let firing = d.admin_get("/admin/v1/alerts?status=firing").await;
    assert_eq!(firing.as_array().unwrap().len(), 1, "{firing}");
    let a = &firing[0];
    assert_eq!(a["console"], "withdraw-console --goto dlq/invalid", "{a}");
    assert_eq!(
        (a["name"].as_str(), a["severity"].as_str(), a["ends_at"].is_null()),
        (Some("WithdrawInvalidDLQNotEmpty"), Some("page"), true),
        "{a}"
    );

    let (s, _) = d.admin_post("/admin/v1/alerts/alertmanager", &payload("resolved", "2026-11-24T03:10:00Z"), AM).await;
    assert_eq!(s, 200);
    assert_eq!(d.admin_get("/admin/v1/alerts?status=firing").await, json!([]));
    let all = d.admin_get("/admin/v1/alerts").await;
    assert_eq!((all[0]["status"].as_str(), all[0]["ends_at"].as_str()), (Some("resolved"), Some("2026-11-24T03:10:00Z")), "{all}");

    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &json!({"version": "3", "alerts": []}), AM).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &json!({"nonsense": true}), AM).await;
    assert_eq!((s, v["type"].as_str()), (400, Some("urn:withdrawd:problem:invalid-request")), "{v}");
}
