//! The real `withdraw-console` binary in tmux against a real `withdrawd dev` and anvil: a
//! request fails for insufficient balance, the operator finds it in the invalid DLQ, the
//! user is credited, the operator reprocesses it from the console with a reason, it is paid,
//! and the audit log (in the console and over the API) shows who did it. Then the console
//! against an API that is not there yet, dies and comes back; and the on-call's two common
//! tasks, their keystrokes counted.

use super::body;
use super::harness::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use withdraw_core::testing::{Anvil, eventually};

/// The console binary next to this test's binary (built by the workspace test run), built
/// here if this package's tests were run alone.
fn console_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    let bin = dir.join("withdraw-console");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO")).args(["build", "-p", "withdraw-console"]).status().unwrap().success();
        assert!(ok && bin.exists(), "could not build withdraw-console at {}", bin.display());
    }
    bin
}

struct Tmux {
    socket: String,
    /// Keys sent so far (typed text not counted: a reason is the operator's words).
    sent: std::cell::Cell<usize>,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux { socket: format!("withdraw-console-{name}-{}", std::process::id()), sent: std::cell::Cell::new(0) }
    }
    /// Starts the console at 80x24 (what `kubectl exec` usually gets) on the admin API.
    fn console(&self, api: &str, args: &str) {
        let cmd = format!("env WITHDRAW_ADMIN_TOKEN={TOKEN} TERM=xterm-256color {} --api {api} {args}", console_bin().display());
        self.run(&["new-session", "-d", "-s", "console", "-x", "80", "-y", "24", &cmd]);
    }
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux (apt-get install -y tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }
    /// Key names (`Tab`, `Enter`, `r`), each sent on its own.
    fn keys(&self, keys: &[&str]) {
        self.sent.set(self.sent.get() + keys.len());
        for k in keys {
            self.run(&["send-keys", "-t", "console", k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    /// Text typed literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "console", "-l", text]);
        std::thread::sleep(Duration::from_millis(150));
    }
    async fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(20), what, || async {
            let s = self.screen();
            pred(&s).then_some(s)
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

#[tokio::test]
async fn an_operator_reprocesses_a_dead_letter_from_the_console() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let (s, v) = d.submit("console-1", &body("broke", &dest(60, 0), "0.4")).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "INVALID", "{w}");

    let tmux = Tmux::new("test");
    let cmd =
        format!("env WITHDRAW_ADMIN_TOKEN={TOKEN} TERM=xterm-256color {} --api {} --goto dlq/invalid", console_bin().display(), d.admin);
    tmux.run(&["new-session", "-d", "-s", "console", "-x", "100", "-y", "30", &cmd]);
    let shown = &id[..13];
    let screen = tmux.until("the failed withdrawal in the invalid DLQ", |s| s.contains(shown)).await;
    assert!(screen.contains("insufficient balance"), "{screen}");
    assert!(screen.contains("r reprocess"), "an operator token sees the actions: {screen}");

    d.credit("broke", "1").await;
    tmux.keys(&["r"]);
    let dialog = tmux.until("the confirm dialog", |s| s.contains("Reprocess 1 withdrawal?")).await;
    assert!(dialog.contains("1 user: broke") && dialog.contains("total 0.4 ETH"), "who and how much: {dialog}");
    // Focus on the reason: neither button is marked as focused (">[ … ]<").
    assert!(
        dialog.contains(" [ Cancel ] ") && dialog.contains("reason: _") && !dialog.contains(">["),
        "focus starts on the reason: {dialog}"
    );
    tmux.type_text("user topped up");
    let typed = tmux.until("the reason typed", |s| s.contains("reason: user topped up")).await;
    assert!(typed.contains("Reprocess 1 withdrawal?"), "{typed}");
    tmux.keys(&["Enter"]);

    let w = eventually(Duration::from_secs(30), "the reprocessed withdrawal paid", || async {
        let w = d.get(&id).await;
        (w["status"] == "COMPLETED").then_some(w)
    })
    .await;
    let done = tmux.until("the action's result in the status line", |s| s.contains("reprocess: 1 done")).await;
    assert!(!done.contains("Reprocess 1 withdrawal?"), "the dialog closed: {done}");
    assert_eq!(anvil.balance(&dest(60, 0)).await, wei("0.4"), "paid exactly once");
    let by = w["history"].as_array().unwrap().iter().find(|h| h["from"] == "INVALID").cloned().unwrap();
    assert_eq!(by["actor"], "dev-admin", "{w}");
    assert!(by["reason"].as_str().unwrap().contains("user topped up"), "{w}");

    // The audit log, in the console and over the API.
    tmux.keys(&[":"]);
    tmux.type_text("audit");
    tmux.keys(&["Enter"]);
    let audit = tmux.until("the audit log view", |s| s.contains("withdrawal.reprocess")).await;
    assert!(audit.contains("dev-admin") && audit.contains("user topped up"), "{audit}");
    let api = d.admin_get("/admin/v1/audit").await;
    let entry = api.as_array().unwrap().iter().find(|e| e["action"] == "withdrawal.reprocess").cloned().unwrap();
    assert_eq!((entry["actor"].as_str(), entry["target"].as_str()), (Some("dev-admin"), Some(format!("withdrawal/{id}").as_str())));

    // :q leaves, and the console's process is gone.
    tmux.keys(&[":"]);
    tmux.type_text("q");
    tmux.keys(&["Enter"]);
    eventually(Duration::from_secs(10), "the console to exit", || async {
        let panes = tmux.run(&["list-panes", "-a"]);
        panes.trim().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_dumb_terminal_without_colour_gets_a_plain_console_that_follows_resizes() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let tmux = Tmux::new("dumb");
    // As under `kubectl exec` without -t's TERM: dumb, and NO_COLOR set by the operator.
    let cmd = format!("env -u TERM NO_COLOR=1 WITHDRAW_ADMIN_TOKEN={TOKEN} {} --api {} --goto health", console_bin().display(), d.admin);
    tmux.run(&["new-session", "-d", "-s", "console", "-x", "80", "-y", "24", &cmd]);
    let screen = tmux.until("the health view", |s| s.contains("+ health ") && s.contains("healthy")).await;
    assert!(screen.is_ascii(), "{screen}");
    tmux.run(&["resize-window", "-t", "console", "-x", "60", "-y", "16"]);
    let small =
        tmux.until("a redraw at 60x16", |s| s.lines().next().is_some_and(|l| l.trim_end().len() <= 60) && s.contains("+ health ")).await;
    assert!(small.lines().count() <= 16, "{small}");
    tmux.keys(&[":"]);
    tmux.type_text("dlq");
    tmux.keys(&["Enter"]);
    tmux.until("the invalid DLQ, still plain", |s| s.contains("+ invalid DLQ ") && s.is_ascii()).await;
    // SIGTERM (a closing kubectl session, a pod shutting down): the console leaves cleanly.
    let pid = tmux.run(&["list-panes", "-t", "console", "-F", "#{pane_pid}"]).trim().to_owned();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success(), "kill -TERM {pid}");
    eventually(Duration::from_secs(10), "the console to exit", || async {
        tmux.run(&["list-panes", "-a"]).trim().is_empty().then_some(())
    })
    .await;
}

/// A port nothing listens on (yet).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `n` withdrawals by a user with no balance: each lands in the invalid DLQ.
async fn invalid(d: &Daemon, user: &str, tag: u8, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (s, v) = d.submit(&format!("{user}-{i}"), &body(user, &dest(tag, i), "0.1")).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for w in d.wait_settled(&ids, Duration::from_secs(30)).await {
        assert_eq!(w["status"], "INVALID", "{w}");
    }
    ids
}

#[tokio::test]
async fn a_console_started_before_the_api_learns_its_rights_and_keeps_its_marks_across_a_restart() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let admin = free_addr();
    let tmux = Tmux::new("restart");
    tmux.console(&format!("http://{admin}"), "--goto dlq/invalid");
    // No API: the view says so, with the call and its error, and why nothing can be done.
    let down = tmux.until("the list unavailable", |s| s.contains("UNAVAILABLE the list")).await;
    assert!(down.contains("GET /admin/v1/dlq/invalid: cannot connect"), "{down}");
    assert!(down.contains("READ-ONLY: rights unknown, /me: cannot connect"), "{down}");
    assert!(!down.contains("is empty"), "unknown is not empty: {down}");

    let args = ["--admin-addr", admin.as_str()];
    let mut d = Daemon::start(&anvil, dir.path(), &fast_env(), &args).await;
    let up = tmux.until("rights learnt once the API answers", |s| s.contains("r reprocess") && !s.contains("READ-ONLY")).await;
    assert!(up.contains("the invalid dead-letter queue is empty"), "{up}");
    invalid(&d, "broke", 70, 3).await;
    tmux.until("three rows", |s| s.contains("3 rows")).await;

    // Mark two, open the third and come back: the marks are where they were.
    tmux.keys(&["Space", "Space", "Enter"]);
    tmux.until("the third withdrawal opened", |s| s.contains("history") && s.contains("INVALID")).await;
    tmux.keys(&["Escape"]);
    tmux.until("back with the marks", |s| s.contains("3 rows  2 marked")).await;

    // The API dies: the rows stay, marked stale, the marks stay.
    d.kill9();
    let stale = tmux.until("stale rows while the API is down", |s| s.contains("STALE") && s.contains("API DOWN")).await;
    assert!(stale.contains("2 marked") && stale.contains("cannot connect"), "{stale}");
    // Back on the same port: fresh again, marks kept, actions offered.
    let _d = Daemon::start(&anvil, dir.path(), &fast_env(), &args).await;
    let back = tmux.until("fresh after the restart", |s| s.contains("API ok") && !s.contains("STALE")).await;
    assert!(back.contains("3 rows  2 marked") && back.contains("r reprocess"), "{back}");
    tmux.keys(&["q"]);
    eventually(Duration::from_secs(10), "q to quit", || async { tmux.run(&["list-panes", "-a"]).trim().is_empty().then_some(()) }).await;
}

/// From a list of five INVALID withdrawals of `user`: mark all, reprocess, the reason, enter;
/// the dialog names the user, the total and the effect.
async fn reprocess_all_five(tmux: &Tmux, user: &str) {
    tmux.keys(&["*", "r"]);
    let dialog = tmux.until("the dialog for all five", |s| s.contains("Reprocess 5 withdrawals?")).await;
    assert!(dialog.contains(&format!("1 user: {user}")) && dialog.contains("total 0.5 ETH"), "{dialog}");
    assert!(dialog.contains("5 x INVALID -> RECEIVED"), "{dialog}");
    tmux.type_text("users topped up");
    tmux.keys(&["Enter"]);
    tmux.until("the result", |s| s.contains("reprocess: 5 done")).await;
}

/// The on-call's two tasks, counted in keys (the reason's text not counted): 35 withdrawals,
/// 5 of them INVALID, a firing alert; the users are credited, then the five are reprocessed
/// (1) from the alert's `--goto dlq/invalid` link, (2) from the dashboard. README states
/// the counts this test measures.
#[tokio::test]
async fn the_on_call_tasks_take_few_keys() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("rich", "10").await;
    let mut paid = Vec::new();
    for i in 0..30 {
        let (s, v) = d.submit(&format!("rich-{i}"), &body("rich", &dest(71, i), "0.01")).await;
        assert_eq!(s, 202, "{v}");
        paid.push(v["id"].as_str().unwrap().to_owned());
    }
    let first = invalid(&d, "poor", 72, 5).await;
    let alert = json!({
        "version": "4", "status": "firing", "receiver": "withdraw-console",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "WithdrawInvalidDLQNotEmpty", "severity": "page"},
            "annotations": {"summary": "5 withdrawals wait in the invalid DLQ", "console": "withdraw-console --goto dlq/invalid"},
            "startsAt": "2026-12-05T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "5dlq"
        }]
    });
    let (s, v) = d.admin_post("/admin/v1/alerts/alertmanager", &alert, TOKEN).await;
    assert!(s < 300, "{s} {v}");
    d.credit("poor", "1").await;

    // Task 1: from the alert's link.
    let tmux = Tmux::new("task1");
    tmux.console(&d.admin, "--goto dlq/invalid");
    tmux.until("the five in the invalid DLQ", |s| s.contains("5 rows") && s.contains("r reprocess")).await;
    reprocess_all_five(&tmux, "poor").await;
    let task1 = tmux.sent.get();
    for w in d.wait_settled(&first, Duration::from_secs(60)).await {
        assert_eq!(w["status"], "COMPLETED", "{w}");
    }
    assert!(task1 <= 6, "task 1 took {task1} keys");
    drop(tmux);

    // Task 2: five more fail the same way; from the dashboard, where the alert is named.
    let second = invalid(&d, "poorer", 73, 5).await;
    d.credit("poorer", "1").await;
    let tmux = Tmux::new("task2");
    tmux.console(&d.admin, "");
    let dash = tmux.until("the dashboard naming the firing alert", |s| s.contains("WithdrawInvalidDLQNotEmpty")).await;
    assert!(dash.contains("alerts firing 1") && dash.contains("dlq/invalid"), "{dash}");
    assert!(dash.contains("invalid-dlq") && dash.contains("being worked"), "queues say what waits and what is worked: {dash}");
    tmux.keys(&["Enter"]);
    tmux.until("the invalid DLQ from the alert", |s| s.contains("5 rows") && s.contains("r reprocess")).await;
    reprocess_all_five(&tmux, "poorer").await;
    let task2 = tmux.sent.get();
    for w in d.wait_settled(&second, Duration::from_secs(60)).await {
        assert_eq!(w["status"], "COMPLETED", "{w}");
    }
    assert!(task2 <= 10, "task 2 took {task2} keys");
    for w in d.wait_settled(&paid, Duration::from_secs(60)).await {
        assert_eq!(w["status"], "COMPLETED", "{w}");
    }
    println!("keys: task 1 {task1} + the reason, task 2 {task2} + the reason");
}
