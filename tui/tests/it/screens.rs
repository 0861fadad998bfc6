//! Every view at 80x24 (what `kubectl exec` usually gets), plus the checks that are not a
//! picture: NO_COLOR draws no colour, a dumb terminal gets only ASCII, any size renders.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use serde_json::json;
use std::collections::BTreeMap;
use withdraw_console::app::*;
use withdraw_core::wire::*;

/// 2026-11-24T03:00:00Z, the screens' "now".
const NOW: i64 = 1_795_489_200_000;

fn summary(id: &str, status: &str, user: &str, amount: &str, reason: Option<&str>) -> WithdrawalSummaryV1 {
    WithdrawalSummaryV1 {
        id: id.into(),
        status: status.into(),
        reason: reason.map(str::to_owned),
        user_id: user.into(),
        asset: "ETH".into(),
        chain_id: 31337,
        to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        amount: amount.into(),
        created_at_ms: NOW - 300_000,
        updated_at_ms: NOW - 60_000,
    }
}

fn load(app: &mut App, f: Fetch, l: Loaded) {
    app.update(Msg::Loaded(f, l));
}

fn app(view: View, roles: &[&str], look: Look) -> App {
    // Stats answers every 2 s up to NOW, so sparklines and rates have a history.
    let mut a = App::new("http://127.0.0.1:8081", view, look, NOW - 12_000);
    load(&mut a, Fetch::Me, Loaded::Me(MeV1 { name: "ann".into(), roles: roles.iter().map(|r| r.to_string()).collect() }));
    let mut statuses = BTreeMap::new();
    for (k, v) in [("COMPLETED", 18_211), ("SENT", 42), ("INVALID", 3), ("PENDING_APPROVAL", 1)] {
        statuses.insert(k.to_owned(), v);
    }
    // A few stats samples so sparklines have a history.
    for (i, depth) in [0, 4, 9, 3, 12, 7].iter().enumerate() {
        a.update(Msg::Tick(NOW - 10_000 + 2_000 * i as i64));
        let mut st = statuses.clone();
        st.insert("COMPLETED".into(), 18_000 + 40 * i as i64);
        let queues = vec![
            QueueStatsV1 { name: "requests".into(), visible: *depth, in_flight: 2, oldest_age_seconds: Some(1.2) },
            QueueStatsV1 { name: "signed".into(), visible: depth / 2, in_flight: 0, oldest_age_seconds: None },
            QueueStatsV1 { name: "invalid-dlq".into(), visible: 3, in_flight: 0, oldest_age_seconds: Some(340.0) },
            QueueStatsV1 { name: "tx-dlq".into(), visible: 0, in_flight: 0, oldest_age_seconds: None },
        ];
        load(&mut a, Fetch::Stats, Loaded::Stats(StatsV1 { statuses: st, queues }));
    }
    a.update(Msg::Tick(NOW));
    let ep = |name: &str, tier: &str, state: &str, head: u64, lag: i64, reads: bool, err: Option<&str>| RpcEndpointV1 {
        chain_id: 31337,
        name: name.into(),
        tier: tier.into(),
        weight: 1,
        state: state.into(),
        head: Some(head),
        lag,
        latency_ms: Some(3.4),
        consecutive_failures: 0,
        last_error: err.map(str::to_owned),
        since_ms: NOW - 90_000,
        serving_reads: reads,
    };
    load(
        &mut a,
        Fetch::Rpc,
        Loaded::Rpc(vec![
            ep("own-node", "primary", "healthy", 21_004_118, 0, true, None),
            ep("provider-a", "primary", "lagging", 21_004_109, 9, false, None),
            ep("provider-b", "backup", "down", 21_003_990, 0, false, Some("HTTP 429 Too Many Requests")),
        ]),
    );
    load(
        &mut a,
        Fetch::Wallets,
        Loaded::Wallets(vec![HotWalletV1 {
            chain_id: 31337,
            wallet: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
            next_nonce: Some(18_256),
            nonces: Some(NonceLaneV1 {
                chain_latest: 18_214,
                chain_pending: 18_256,
                in_flight: 42,
                gaps: vec![],
                blocked: vec![],
                checked_at_ms: NOW - 4_000,
            }),
            funds: vec![WalletAssetV1 {
                asset: "ETH".into(),
                balance: "812.5".into(),
                in_flight: "4.2".into(),
                short_by: "0".into(),
                held: 0,
                updated_at_ms: NOW - 1_000,
            }],
        }]),
    );
    load(&mut a, Fetch::Signing, Loaded::Signing(SigningStateV1 { paused_all: false, paused_chains: vec![], controls: vec![] }));
    load(
        &mut a,
        Fetch::Alerts,
        Loaded::Alerts(vec![
            AlertV1 {
                fingerprint: "8a1f".into(),
                status: "firing".into(),
                name: "WithdrawInvalidDLQNotEmpty".into(),
                severity: Some("page".into()),
                summary: Some("3 withdrawals in the invalid DLQ".into()),
                console: Some("withdraw-console --goto dlq/invalid".into()),
                labels: json!({}),
                annotations: json!({}),
                starts_at: "2026-11-24T02:55:00Z".into(),
                ends_at: None,
                received_at_ms: NOW - 240_000,
            },
            AlertV1 {
                fingerprint: "77c0".into(),
                status: "resolved".into(),
                name: "WithdrawEndpointDown".into(),
                severity: Some("ticket".into()),
                summary: Some("RPC endpoint provider-b down".into()),
                console: Some("withdraw-console --goto health".into()),
                labels: json!({}),
                annotations: json!({}),
                starts_at: "2026-11-24T01:00:00Z".into(),
                ends_at: Some("2026-11-24T01:20:00Z".into()),
                received_at_ms: NOW - 7_200_000,
            },
        ]),
    );
    let invalid = vec![
        summary(
            "0193a1f0-aaaa-7000-8000-00000000aaaa",
            "INVALID",
            "alice",
            "2.5",
            Some("insufficient balance: available 0.5, requested 2.5"),
        ),
        summary("0193a1f0-bbbb-7000-8000-00000000bbbb", "INVALID", "bob", "150", Some("amount 150 ETH exceeds the per-asset maximum 100")),
        summary(
            "0193a1f0-cccc-7000-8000-00000000cccc",
            "INVALID",
            "carol",
            "0.3",
            Some("insufficient balance: available 0, requested 0.3"),
        ),
    ];
    load(&mut a, Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, invalid.clone()));
    load(&mut a, Fetch::Dlq(DlqKind::Tx), Loaded::Dlq(DlqKind::Tx, vec![]));
    load(
        &mut a,
        Fetch::Approvals,
        Loaded::Approvals(vec![summary("0193a1f0-dddd-7000-8000-00000000dddd", "PENDING_APPROVAL", "dave", "12", None)]),
    );
    let mut all = invalid;
    all.push(summary("0193a1f0-eeee-7000-8000-00000000eeee", "COMPLETED", "erin", "0.25", None));
    load(&mut a, Fetch::Withdrawals(String::new()), Loaded::Withdrawals(all));
    load(
        &mut a,
        Fetch::Audit,
        Loaded::Audit(vec![
            AuditEntryV1 {
                id: 2,
                at_ms: NOW - 30_000,
                actor: "ann".into(),
                action: "withdrawal.reprocess".into(),
                target: "withdrawal/0193a1f0-aaaa".into(),
                reason: Some("user topped up".into()),
                detail: "INVALID -> RECEIVED".into(),
            },
            AuditEntryV1 {
                id: 1,
                at_ms: NOW - 600_000,
                actor: "bob".into(),
                action: "balance.credit".into(),
                target: "user/alice/ETH".into(),
                reason: None,
                detail: "credited 5 ETH".into(),
            },
        ]),
    );
    load(&mut a, Fetch::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()), Loaded::Detail(Box::new(detail())));
    a
}

fn detail() -> WithdrawalV1 {
    let h = |from: Option<&str>, to: &str, actor: &str, ago_s: i64, reason: Option<&str>| HistoryV1 {
        from: from.map(str::to_owned),
        to: to.into(),
        reason: reason.map(str::to_owned),
        actor: actor.into(),
        at_ms: NOW - ago_s * 1000,
    };
    WithdrawalV1 {
        id: "0193a1f0-eeee-7000-8000-00000000eeee".into(),
        status: "COMPLETED".into(),
        reason: None,
        user_id: "erin".into(),
        asset: "ETH".into(),
        chain_id: 31337,
        to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        amount: "0.25".into(),
        amount_base_units: "250000000000000000".into(),
        created_at_ms: NOW - 120_000,
        updated_at_ms: NOW - 30_000,
        attempts: vec![
            AttemptV1 {
                tx_hash: "0x5c50f4a6e5d6b1e38f0f7d0d6c1f1a1e9d0c8b7a6f5e4d3c2b1a09f8e7d6c5b4".into(),
                kind: "transfer".into(),
                wallet: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
                nonce: 18_120,
                max_fee_per_gas: "3000000000".into(),
                max_priority_fee_per_gas: "1000000000".into(),
                gas_limit: 21_000,
                created_at_ms: NOW - 119_000,
                sent_at_ms: Some(NOW - 118_000),
            },
            AttemptV1 {
                tx_hash: "0x9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6d5c4b".into(),
                kind: "transfer".into(),
                wallet: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
                nonce: 18_120,
                max_fee_per_gas: "3300000001".into(),
                max_priority_fee_per_gas: "1100000001".into(),
                gas_limit: 21_000,
                created_at_ms: NOW - 58_000,
                sent_at_ms: Some(NOW - 57_000),
            },
        ],
        inclusion: Some(InclusionV1 { tx_hash: "0x9e8d…".into(), block_number: 21_004_100, block_hash: "0xabc".into(), success: true }),
        confirmations: 19,
        history: vec![
            h(None, "RECEIVED", "intake", 120, None),
            h(Some("RECEIVED"), "SIGNED", "signer", 119, None),
            h(Some("SIGNED"), "SENT", "sender", 118, None),
            h(Some("SENT"), "COMPLETED", "tracker", 30, None),
        ],
        cancel: None,
    }
}

const COLOR: Look = Look { color: true, unicode: true };

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| withdraw_console::view::draw(f, app)).unwrap();
    t
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

macro_rules! screen {
    ($name:ident, $view:expr, $roles:expr) => {
        screen!($name, $view, $roles, |_a: &mut App| {});
    };
    ($name:ident, $view:expr, $roles:expr, $setup:expr) => {
        #[test]
        fn $name() {
            let mut a = app($view, $roles, COLOR);
            ($setup)(&mut a);
            insta::assert_snapshot!(render(&a, 80, 24).backend());
        }
    };
}

const OPERATOR: &[&str] = &["viewer", "operator", "approver"];
const VIEWER: &[&str] = &["viewer"];

screen!(dashboard, View::Dashboard, OPERATOR);
screen!(withdrawals, View::Withdrawals, OPERATOR);
screen!(detail_with_history_and_attempts, View::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()), OPERATOR);
screen!(invalid_dlq_with_marks, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char(' '));
    press(a, KeyCode::Char('j'));
    press(a, KeyCode::Char(' '));
});
screen!(invalid_dlq_read_only, View::Dlq(DlqKind::Invalid), VIEWER);
screen!(tx_dlq_empty, View::Dlq(DlqKind::Tx), OPERATOR);
screen!(approvals, View::Approvals, OPERATOR);
screen!(alerts, View::Alerts, OPERATOR);
screen!(audit_log, View::Audit, OPERATOR);
screen!(health, View::Health, OPERATOR);
screen!(help, View::Help, OPERATOR);
screen!(help_read_only, View::Help, VIEWER);
screen!(discard_dialog_starts_on_the_reason, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('d'));
});
screen!(dialog_shows_count_users_totals_and_effect, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('*'));
    press(a, KeyCode::Char('r'));
    for c in "users topped up".chars() {
        press(a, KeyCode::Char(c));
    }
});
screen!(dialog_refuses_an_empty_reason, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('r'));
    press(a, KeyCode::Tab); // to confirm
    press(a, KeyCode::Enter);
});
screen!(pause_signing_dialog, View::Dashboard, OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('p'));
});
screen!(an_action_key_that_cannot_act_says_why_and_swallows_typing, View::Approvals, OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('d'));
    for c in "abuse".chars() {
        press(a, KeyCode::Char(c));
    }
});
screen!(marks_hidden_by_the_filter_are_named_in_the_dialog, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char(' '));
    press(a, KeyCode::Char('j'));
    press(a, KeyCode::Char(' '));
    press(a, KeyCode::Char('/'));
    for c in "carol".chars() {
        press(a, KeyCode::Char(c));
    }
    press(a, KeyCode::Enter);
    press(a, KeyCode::Char('d'));
});
screen!(command_line, View::Dashboard, OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char(':'));
    for c in "dlq tx".chars() {
        press(a, KeyCode::Char(c));
    }
});
screen!(api_down_and_frozen, View::Dashboard, OPERATOR, |a: &mut App| {
    a.update(Msg::Failed(Fetch::Stats, Failure::Down("cannot connect".into())));
    a.update(Msg::Tick(NOW + 12_000));
    press(a, KeyCode::Char('f'));
    a.status = None;
});

// The states of a view: loading, unavailable, empty, filtered to nothing, stale, read-only.

/// A console that has heard nothing yet.
fn fresh_start(view: View) -> App {
    let mut a = App::new("http://127.0.0.1:8081", view, COLOR, NOW);
    a.init();
    a
}

/// A console started while the API is down: every call failed, for 8 s now.
fn started_while_down(view: View) -> App {
    let mut a = fresh_start(view);
    for f in [Fetch::Me, Fetch::Stats, Fetch::Rpc, Fetch::Wallets, Fetch::Signing, Fetch::Alerts, Fetch::Dlq(DlqKind::Invalid)] {
        a.update(Msg::Failed(f, Failure::Down("cannot connect".into())));
    }
    a.update(Msg::Tick(NOW + 8_000));
    a
}

#[test]
fn invalid_dlq_loading() {
    insta::assert_snapshot!(render(&fresh_start(View::Dlq(DlqKind::Invalid)), 80, 24).backend());
}

#[test]
fn invalid_dlq_unavailable_and_read_only_until_the_api_answers() {
    insta::assert_snapshot!(render(&started_while_down(View::Dlq(DlqKind::Invalid)), 80, 24).backend());
}

#[test]
fn dashboard_unavailable_says_unknown_not_zero() {
    let a = started_while_down(View::Dashboard);
    let text = screen_text(&a);
    assert!(text.contains("alerts UNKNOWN") && !text.contains("alerts firing 0"), "{text}");
    insta::assert_snapshot!(render(&a, 80, 24).backend());
}

screen!(invalid_dlq_empty, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    load(a, Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, vec![]));
});
screen!(invalid_dlq_filtered_to_nothing, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char('/'));
    for c in "mallory".chars() {
        press(a, KeyCode::Char(c));
    }
    press(a, KeyCode::Enter);
});
screen!(invalid_dlq_stale_while_the_api_is_down, View::Dlq(DlqKind::Invalid), OPERATOR, |a: &mut App| {
    press(a, KeyCode::Char(' '));
    a.update(Msg::Tick(NOW + 34_000));
    a.update(Msg::Failed(Fetch::Dlq(DlqKind::Invalid), Failure::Down("cannot connect".into())));
    a.status = None;
});
screen!(detail_not_found_is_not_loading, View::Detail("0193a1f0-ffff-7000-8000-00000000ffff".into()), OPERATOR, |a: &mut App| {
    a.update(Msg::Failed(
        Fetch::Detail("0193a1f0-ffff-7000-8000-00000000ffff".into()),
        Failure::Http { status: 404, detail: "not a withdrawal id".into() },
    ));
});

fn screen_text(a: &App) -> String {
    let t = render(a, 80, 24);
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>().trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn stale_and_read_only_say_so_without_colour() {
    let look = Look { color: false, unicode: true };
    let mut a = app(View::Dlq(DlqKind::Invalid), VIEWER, look);
    a.update(Msg::Tick(NOW + 34_000));
    a.update(Msg::Failed(Fetch::Dlq(DlqKind::Invalid), Failure::Down("cannot connect".into())));
    let text = screen_text(&a);
    assert!(text.contains("STALE 34s"), "{text}");
    assert!(text.contains("[READ-ONLY: no operator or approver role]"), "{text}");
}

#[test]
fn key_hints_fit_80_columns_and_always_offer_back_and_more() {
    for roles in [OPERATOR, VIEWER] {
        for view in [
            View::Dashboard,
            View::Withdrawals,
            View::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()),
            View::Dlq(DlqKind::Invalid),
            View::Dlq(DlqKind::Tx),
            View::Approvals,
            View::Alerts,
            View::Audit,
            View::Health,
        ] {
            let a = app(view.clone(), roles, COLOR);
            let text = screen_text(&a);
            // Hints are dropped whole, never cut: the last one always shows entire.
            let footer = text.lines().last().unwrap();
            assert!(footer.contains("esc back") && footer.ends_with("? more"), "{view:?}: {footer}");
            if roles == OPERATOR && matches!(view, View::Dlq(_)) {
                assert!(footer.contains("r reprocess") && footer.contains("d discard") && footer.contains("mark"), "{footer}");
            }
        }
    }
}

fn assert_uncoloured(t: &Terminal<TestBackend>, view: &View) {
    for cell in t.backend().buffer().content() {
        assert!(matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset), "{view:?}: coloured cell {cell:?}");
    }
}

#[test]
fn no_color_draws_no_colour() {
    let look = Look { color: false, unicode: true };
    for view in [
        View::Dashboard,
        View::Dlq(DlqKind::Invalid),
        View::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()),
        View::Alerts,
        View::Health,
    ] {
        let mut a = app(view.clone(), OPERATOR, look);
        // The dialog on top of every view.
        press(&mut a, KeyCode::Esc);
        a.mode = Mode::Dialog(Dialog {
            action: Action::Discard(DlqKind::Invalid),
            items: vec![Item {
                id: "0193a1f0-aaaa-7000-8000-00000000aaaa".into(),
                user_id: "alice".into(),
                amount: "2.5".into(),
                asset: "ETH".into(),
                chain_id: 31337,
                status: "INVALID".into(),
            }],
            hidden: 1,
            reason: "why".into(),
            focus: Focus::Reason,
            error: Some("a reason is required".into()),
        });
        assert_uncoloured(&render(&a, 80, 24), &view);
        // And a notice on top.
        a.mode = Mode::Notice("d does nothing here".into());
        assert_uncoloured(&render(&a, 80, 24), &view);
    }
}

#[test]
fn a_dumb_terminal_gets_ascii_only() {
    let look = Look { color: false, unicode: false };
    for view in [
        View::Dashboard,
        View::Dlq(DlqKind::Invalid),
        View::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()),
        View::Alerts,
        View::Health,
        View::Help,
    ] {
        let mut a = app(view.clone(), OPERATOR, look);
        press(&mut a, KeyCode::Char(' '));
        let t = render(&a, 80, 24);
        let text: String = t.backend().buffer().content().iter().map(|c| c.symbol()).collect();
        assert!(text.is_ascii(), "{view:?}: {}", text.chars().filter(|c| !c.is_ascii()).collect::<String>());
    }
}

#[test]
fn every_view_renders_at_any_size() {
    for (w, h) in [(80, 24), (120, 40), (40, 10), (20, 5), (200, 60)] {
        for view in [
            View::Dashboard,
            View::Withdrawals,
            View::Detail("0193a1f0-eeee-7000-8000-00000000eeee".into()),
            View::Dlq(DlqKind::Invalid),
            View::Approvals,
            View::Alerts,
            View::Audit,
            View::Health,
            View::Help,
        ] {
            let mut a = app(view, OPERATOR, COLOR);
            render(&a, w, h);
            press(&mut a, KeyCode::Char('a'));
            press(&mut a, KeyCode::Char('d'));
            render(&a, w, h); // with a dialog on top
        }
    }
}
