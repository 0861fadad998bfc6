//! Monitoring checked with the real tools: `promtool check metrics` on a real scrape of a
//! daemon that has done work, and the shipped alert rules checked, unit-tested, and querying
//! only metrics withdrawd actually exports.

use super::body;
use super::harness::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use withdraw_core::testing::{Anvil, eventually};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus/withdrawd-rules.yml");
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus/withdrawd-rules.test.yml");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/withdrawd-dashboard.json");

/// The `withdraw_*` metric names a PromQL expression reads (histogram suffixes removed).
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("withdraw_"))
        .map(|w| w.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_owned())
        .collect()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/tools.sh installs Debian's prometheus package)");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_alert_rules_are_valid_and_fire_with_their_console_links() {
    let (ok, out) = promtool(&["check", "rules", RULES], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", RULE_TESTS], None);
    assert!(ok, "{out}");
    let rules = std::fs::read_to_string(RULES).unwrap();
    let alerts = rules.matches("- alert:").count();
    assert_eq!(rules.matches("console: \"withdraw-console --goto ").count(), alerts, "every alert links to a console view");
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_and_has_every_series_the_alerts_query() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("m", "1").await;
    let (s, v) = d.submit("metrics-1", &body("m", &dest(70, 0), "0.1")).await;
    assert_eq!(s, 202, "{v}");
    d.wait_settled(&[v["id"].as_str().unwrap().to_owned()], Duration::from_secs(30)).await;
    // The sampled gauges (statuses, oldest SENT) are refreshed every 5 s.
    let scrape = eventually(Duration::from_secs(15), "sampled gauges", || async {
        let text = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
        text.contains("withdraw_withdrawals{status=\"COMPLETED\"} 1").then_some(text)
    })
    .await;

    let (ok, out) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");

    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| n.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    let rules = std::fs::read_to_string(RULES).unwrap();
    let from_rules: BTreeSet<String> = rules.lines().filter(|l| l.trim_start().starts_with("expr:")).flat_map(metrics_in).collect();
    // The dashboard: valid JSON, and every panel query reads exported series.
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("dashboard JSON");
    let from_dashboard: BTreeSet<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .flat_map(|e| metrics_in(&e))
        .collect();
    assert!(from_rules.len() >= 8 && from_dashboard.len() >= 20, "{from_rules:?} {from_dashboard:?}");
    for (what, m) in from_rules.iter().map(|m| ("alert rules", m)).chain(from_dashboard.iter().map(|m| ("dashboard", m))) {
        // Per-wallet and per-endpoint series appear once a wallet or endpoint reports them;
        // this daemon has both.
        assert!(exported.contains(m.as_str()), "the {what} query {m}, which withdrawd does not export; exported: {exported:?}");
    }
    for stage in ["intake", "signer", "sender", "tracker"] {
        assert!(scrape.contains(&format!("withdraw_stage_last_processed_timestamp_seconds{{stage=\"{stage}\"}}")), "{stage}");
    }
    assert!(scrape.contains("withdraw_build_info{version="), "build info");
    assert!(scrape.contains("withdraw_intake_requests_total{outcome=\"unauthorized\"} 0"), "series pre-initialised");
}

#[tokio::test]
async fn logs_are_ecs_json_lines_with_trace_and_withdrawal_ids() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("l", "1").await;
    let (_, v) = d.submit("logs-1", &body("l", &dest(71, 0), "0.1")).await;
    let id = v["id"].as_str().unwrap().to_owned();
    d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(30)).await;
    // An operator call carrying a W3C trace context: its log lines carry the trace id.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = reqwest::Client::new()
        .post(format!("{}/admin/v1/signing/pause", d.admin))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"reason": "log test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let lines = eventually(Duration::from_secs(10), "the pause logged", || async {
        let text = std::fs::read_to_string(dir.path().join("out0.log")).unwrap_or_default();
        text.contains("signing pause changed").then_some(text)
    })
    .await;
    let mut saw_withdrawal = false;
    let mut saw_trace = false;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["@timestamp", "log.level", "message", "service.name", "log.logger"] {
            assert!(v.get(field).is_some_and(|f| f.is_string()), "{field} missing: {line}");
        }
        assert_eq!(v["service.name"], "withdrawd");
        assert!(v.get("level").is_none() && v.get("timestamp").is_none(), "only ECS names: {line}");
        saw_withdrawal |= v["withdrawal.id"] == id.as_str();
        if v["message"] == "signing pause changed" {
            assert_eq!(v["trace.id"], trace, "{line}");
            assert_eq!(v["log.level"], "WARN");
            saw_trace = true;
        }
    }
    assert!(saw_withdrawal, "a stage logged the withdrawal by its id");
    assert!(saw_trace);
}

/// Probes and metrics are never on the API ports that face clients and operators: they are
/// on the health listener, and `/metrics` can move to a listener of its own
/// (`http.metrics_listen`), leaving the health listener only the probes.
#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = withdraw_core::testing::servers::free_port();
    let mut env = fast_env();
    env.push(("WITHDRAW__HTTP__METRICS_LISTEN".into(), format!("127.0.0.1:{port}")));
    let d = Daemon::start(&anvil, dir.path(), &env, &[]).await;
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("withdraw_transitions_total") || text.contains("withdraw_signer_paused"), "{text}");
    for base in [&d.intake, &d.admin] {
        for path in ["/metrics", "/readyz", "/healthz"] {
            assert_eq!(reqwest::get(format!("{base}{path}")).await.unwrap().status(), 404, "{base}{path}");
        }
    }
    assert_eq!(reqwest::get(format!("{}/metrics", d.health)).await.unwrap().status(), 404, "metrics moved");
    assert_eq!(reqwest::get(format!("{}/readyz", d.health)).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{}/healthz", d.health)).await.unwrap().status(), 200);
}
