//! The real `withdraw-console` binary in tmux against a real `withdrawd dev` and anvil: a
//! request fails for insufficient balance, the operator finds it in the invalid DLQ, the
//! user is credited, the operator reprocesses it from the console with a reason, it is paid,
//! and the audit log (in the console and over the API) shows who did it.

use super::body;
use super::harness::*;
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
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux (apt-get install -y tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }
    /// Key names (`Tab`, `Enter`, `r`), each sent on its own.
    fn keys(&self, keys: &[&str]) {
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

    let tmux = Tmux { socket: format!("withdraw-console-test-{}", std::process::id()) };
    let cmd =
        format!("env WITHDRAW_ADMIN_TOKEN={TOKEN} TERM=xterm-256color {} --api {} --goto dlq/invalid", console_bin().display(), d.admin);
    tmux.run(&["new-session", "-d", "-s", "console", "-x", "100", "-y", "30", &cmd]);
    let shown = &id[..13];
    let screen = tmux.until("the failed withdrawal in the invalid DLQ", |s| s.contains(shown)).await;
    assert!(screen.contains("insufficient balance"), "{screen}");
    assert!(screen.contains("r reprocess"), "an operator token sees the actions: {screen}");

    d.credit("broke", "1").await;
    tmux.keys(&["r"]);
    let dialog = tmux.until("the confirm dialog", |s| s.contains("Reprocess 1 withdrawal(s)?")).await;
    assert!(dialog.contains(">[ Cancel ]<"), "focus starts on Cancel: {dialog}");
    tmux.keys(&["Tab"]);
    tmux.type_text("user topped up");
    let typed = tmux.until("the reason typed", |s| s.contains("reason: user topped up")).await;
    assert!(typed.contains("Reprocess 1 withdrawal(s)?"), "{typed}");
    tmux.keys(&["Tab", "Enter"]);

    let w = eventually(Duration::from_secs(30), "the reprocessed withdrawal paid", || async {
        let w = d.get(&id).await;
        (w["status"] == "COMPLETED").then_some(w)
    })
    .await;
    let done = tmux.until("the action's result in the status line", |s| s.contains("reprocess: 1 done")).await;
    assert!(!done.contains("Reprocess 1 withdrawal(s)?"), "the dialog closed: {done}");
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
    let tmux = Tmux { socket: format!("withdraw-console-dumb-{}", std::process::id()) };
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
