//! The console's model and its update function (Elm-like): every key press, tick and API
//! answer is a `Msg`; `App::update` changes the model and returns the `Cmd`s (API calls, a
//! clipboard copy) for the runtime to carry out off the UI loop. No I/O here, so the whole
//! behaviour is unit-tested without a terminal or a server.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeSet, HashMap, VecDeque};
use withdraw_core::wire::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqKind {
    Invalid,
    Tx,
}

impl DlqKind {
    pub fn path(self) -> &'static str {
        match self {
            DlqKind::Invalid => "invalid",
            DlqKind::Tx => "tx",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Withdrawals,
    Detail(String),
    Dlq(DlqKind),
    Approvals,
    Alerts,
    Audit,
    Health,
    Help,
}

impl View {
    pub fn title(&self) -> String {
        match self {
            View::Dashboard => "dashboard".into(),
            View::Withdrawals => "withdrawals".into(),
            View::Detail(id) => format!("withdrawal {id}"),
            View::Dlq(DlqKind::Invalid) => "invalid DLQ".into(),
            View::Dlq(DlqKind::Tx) => "tx DLQ".into(),
            View::Approvals => "approvals".into(),
            View::Alerts => "alerts".into(),
            View::Audit => "audit log".into(),
            View::Health => "health".into(),
            View::Help => "help".into(),
        }
    }

    /// Parses `--goto` targets and alerts' console links: `tx/<id>`, `dlq/invalid`,
    /// `dlq/tx`, `approvals`, `alerts`, `health` (and the other view names).
    pub fn from_goto(s: &str) -> Option<View> {
        let s = s.trim();
        if let Some(id) = s.strip_prefix("tx/") {
            return (!id.is_empty()).then(|| View::Detail(id.to_owned()));
        }
        Some(match s {
            "dlq/invalid" | "dlq" => View::Dlq(DlqKind::Invalid),
            "dlq/tx" => View::Dlq(DlqKind::Tx),
            "approvals" => View::Approvals,
            "alerts" => View::Alerts,
            "health" => View::Health,
            "audit" => View::Audit,
            "withdrawals" => View::Withdrawals,
            "dashboard" => View::Dashboard,
            _ => return None,
        })
    }
}

/// What the runtime fetches from the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fetch {
    Me,
    Stats,
    Rpc,
    Wallets,
    Signing,
    Alerts,
    Audit,
    Withdrawals(String),
    Dlq(DlqKind),
    Approvals,
    Detail(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reprocess(DlqKind),
    Discard(DlqKind),
    Approve,
    Reject,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Reprocess(_) => "Reprocess",
            Action::Discard(_) => "Discard",
            Action::Approve => "Approve",
            Action::Reject => "Reject",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Fetch(Fetch),
    Act {
        action: Action,
        ids: Vec<String>,
        reason: String,
    },
    /// Put text on the clipboard (OSC 52).
    Copy(String),
}

#[derive(Debug, Clone)]
pub enum Loaded {
    Me(MeV1),
    Stats(StatsV1),
    Rpc(Vec<RpcEndpointV1>),
    Wallets(Vec<HotWalletV1>),
    Signing(SigningStateV1),
    Alerts(Vec<AlertV1>),
    Audit(Vec<AuditEntryV1>),
    Withdrawals(Vec<WithdrawalSummaryV1>),
    Dlq(DlqKind, Vec<WithdrawalSummaryV1>),
    Approvals(Vec<WithdrawalSummaryV1>),
    Detail(Box<WithdrawalV1>),
}

#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    /// Wall clock, every second.
    Tick(i64),
    Loaded(Fetch, Loaded),
    Failed(Fetch, String),
    /// An action finished: a summary line for the status bar.
    Acted(String),
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Cancel,
    Reason,
    Confirm,
}

/// A confirm dialog for a destructive action: focus starts on Cancel, a reason is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub action: Action,
    pub ids: Vec<String>,
    pub reason: String,
    pub focus: Focus,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Command(String),
    Filter(String),
    Dialog(Dialog),
}

/// How the terminal can draw: colours (not with NO_COLOR) and Unicode (not on a dumb one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub color: bool,
    pub unicode: bool,
}

#[derive(Debug, Default)]
pub struct Data {
    pub stats: Option<StatsV1>,
    /// Visible messages per queue, one sample per stats answer (oldest first).
    pub depth_history: HashMap<String, VecDeque<u64>>,
    /// Withdrawals completed between stats answers.
    pub completed_history: VecDeque<u64>,
    pub last_completed: Option<i64>,
    pub rpc: Vec<RpcEndpointV1>,
    pub wallets: Vec<HotWalletV1>,
    pub signing: Option<SigningStateV1>,
    pub alerts: Vec<AlertV1>,
    pub audit: Vec<AuditEntryV1>,
    pub withdrawals: Vec<WithdrawalSummaryV1>,
    pub dlq: HashMap<DlqKind, Vec<WithdrawalSummaryV1>>,
    pub approvals: Vec<WithdrawalSummaryV1>,
    pub detail: Option<WithdrawalV1>,
}

#[derive(Debug, Default)]
pub struct ApiHealth {
    pub last_ok_ms: Option<i64>,
    /// The last failure, and since when calls fail.
    pub error: Option<(String, i64)>,
}

/// Samples kept for sparklines.
pub const HISTORY: usize = 60;
/// A call on its way longer than this shows the API as slow.
pub const SLOW_MS: i64 = 2_000;
/// Seconds between refreshes of the current view.
pub const REFRESH_SECS: i64 = 2;

#[derive(Debug)]
pub struct App {
    pub api_url: String,
    pub view: View,
    back: Vec<View>,
    pub mode: Mode,
    pub me: Option<MeV1>,
    /// Client-side filter of list views; for the withdrawals view, the server-side query.
    pub filter: String,
    pub selected: usize,
    pub marks: BTreeSet<String>,
    pub frozen: bool,
    pub data: Data,
    pub api: ApiHealth,
    pub now_ms: i64,
    last_refresh_ms: i64,
    pub status: Option<String>,
    pub look: Look,
    pub quit: bool,
    /// Calls on their way, and since when (ms): none is repeated, and a slow API shows.
    in_flight: std::collections::BTreeMap<String, i64>,
}

impl App {
    pub fn new(api_url: &str, view: View, look: Look, now_ms: i64) -> App {
        App {
            api_url: api_url.to_owned(),
            view,
            back: Vec::new(),
            mode: Mode::Normal,
            me: None,
            filter: String::new(),
            selected: 0,
            marks: BTreeSet::new(),
            frozen: false,
            data: Data::default(),
            api: ApiHealth::default(),
            now_ms,
            last_refresh_ms: now_ms,
            status: None,
            look,
            quit: false,
            in_flight: std::collections::BTreeMap::new(),
        }
    }

    /// What to fetch at start: who we are, and the first view.
    pub fn init(&mut self) -> Vec<Cmd> {
        let mut cmds = vec![Cmd::Fetch(Fetch::Me)];
        cmds.extend(self.refresh());
        cmds
    }

    fn has_role(&self, role: &str) -> bool {
        self.me.as_ref().is_some_and(|m| m.roles.iter().any(|r| r == role))
    }

    /// May this token act in the current view? Viewers see no actions at all.
    pub fn can(&self, action: Action) -> bool {
        match action {
            Action::Reprocess(_) | Action::Discard(_) => self.has_role("operator"),
            Action::Approve | Action::Reject => self.has_role("approver"),
        }
    }

    /// How long the oldest call still on its way has waited, if over `SLOW_MS`.
    pub fn slow_for_ms(&self) -> Option<i64> {
        self.in_flight.values().map(|since| self.now_ms - since).max().filter(|ms| *ms >= SLOW_MS)
    }

    pub fn read_only(&self) -> bool {
        !self.has_role("operator") && !self.has_role("approver")
    }

    /// Fetches the current view needs, skipping any already on its way.
    pub fn refresh(&mut self) -> Vec<Cmd> {
        let wanted: Vec<Fetch> = match &self.view {
            View::Dashboard => vec![Fetch::Stats, Fetch::Rpc, Fetch::Wallets, Fetch::Signing, Fetch::Alerts],
            View::Withdrawals => vec![Fetch::Withdrawals(self.filter.clone())],
            View::Detail(id) => vec![Fetch::Detail(id.clone())],
            View::Dlq(k) => vec![Fetch::Dlq(*k)],
            View::Approvals => vec![Fetch::Approvals],
            View::Alerts => vec![Fetch::Alerts],
            View::Audit => vec![Fetch::Audit],
            View::Health => vec![Fetch::Rpc, Fetch::Wallets, Fetch::Signing],
            View::Help => vec![],
        };
        self.last_refresh_ms = self.now_ms;
        let now = self.now_ms;
        wanted
            .into_iter()
            .filter(|f| {
                let key = format!("{f:?}");
                if self.in_flight.contains_key(&key) {
                    return false;
                }
                self.in_flight.insert(key, now);
                true
            })
            .map(Cmd::Fetch)
            .collect()
    }

    fn go(&mut self, view: View) -> Vec<Cmd> {
        if view == self.view {
            return self.refresh();
        }
        let old = std::mem::replace(&mut self.view, view);
        self.back.push(old);
        self.selected = 0;
        self.marks.clear();
        self.filter.clear();
        self.refresh()
    }

    fn back(&mut self) -> Vec<Cmd> {
        match self.back.pop() {
            Some(v) => {
                self.view = v;
                self.selected = 0;
                self.marks.clear();
                self.filter.clear();
                self.refresh()
            }
            None => Vec::new(),
        }
    }

    /// The rows of the current list view, after the client-side filter.
    pub fn rows(&self) -> Vec<&WithdrawalSummaryV1> {
        let all: &[WithdrawalSummaryV1] = match &self.view {
            View::Withdrawals => &self.data.withdrawals,
            View::Dlq(k) => self.data.dlq.get(k).map(Vec::as_slice).unwrap_or(&[]),
            View::Approvals => &self.data.approvals,
            _ => &[],
        };
        let f = self.filter.to_lowercase();
        // The withdrawals view filters on the server; the others here.
        if f.is_empty() || self.view == View::Withdrawals {
            return all.iter().collect();
        }
        all.iter()
            .filter(|w| {
                [&w.id, &w.user_id, &w.to, &w.asset, &w.status].iter().any(|s| s.to_lowercase().contains(&f))
                    || w.reason.as_deref().is_some_and(|r| r.to_lowercase().contains(&f))
            })
            .collect()
    }

    fn row_count(&self) -> usize {
        match &self.view {
            View::Alerts => self.data.alerts.len(),
            View::Audit => self.data.audit.len(),
            View::Health => self.data.rpc.len(),
            _ => self.rows().len(),
        }
    }

    fn selected_id(&self) -> Option<String> {
        self.rows().get(self.selected).map(|w| w.id.clone())
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Quit => {
                self.quit = true;
                Vec::new()
            }
            Msg::Tick(now) => {
                self.now_ms = now;
                if !self.frozen && now - self.last_refresh_ms >= REFRESH_SECS * 1000 { self.refresh() } else { Vec::new() }
            }
            Msg::Loaded(f, l) => {
                self.in_flight.remove(&format!("{f:?}"));
                self.api.last_ok_ms = Some(self.now_ms);
                self.api.error = None;
                self.loaded(l);
                Vec::new()
            }
            Msg::Failed(f, e) => {
                self.in_flight.remove(&format!("{f:?}"));
                let since = self.api.error.as_ref().map_or(self.now_ms, |(_, s)| *s);
                self.api.error = Some((e, since));
                Vec::new()
            }
            Msg::Acted(summary) => {
                self.status = Some(summary);
                self.marks.clear();
                self.refresh()
            }
            Msg::Key(k) => self.key(k),
        }
    }

    fn loaded(&mut self, l: Loaded) {
        let d = &mut self.data;
        match l {
            Loaded::Me(m) => self.me = Some(m),
            Loaded::Stats(s) => {
                for q in &s.queues {
                    let h = d.depth_history.entry(q.name.clone()).or_default();
                    h.push_back(q.visible.max(0) as u64);
                    while h.len() > HISTORY {
                        h.pop_front();
                    }
                }
                let completed = s.statuses.get("COMPLETED").copied().unwrap_or(0);
                if let Some(prev) = d.last_completed {
                    d.completed_history.push_back((completed - prev).max(0) as u64);
                    while d.completed_history.len() > HISTORY {
                        d.completed_history.pop_front();
                    }
                }
                d.last_completed = Some(completed);
                d.stats = Some(s);
            }
            Loaded::Rpc(r) => d.rpc = r,
            Loaded::Wallets(w) => d.wallets = w,
            Loaded::Signing(s) => d.signing = Some(s),
            Loaded::Alerts(a) => d.alerts = a,
            Loaded::Audit(a) => d.audit = a,
            Loaded::Withdrawals(w) => d.withdrawals = w,
            Loaded::Dlq(k, w) => {
                d.dlq.insert(k, w);
            }
            Loaded::Approvals(w) => d.approvals = w,
            Loaded::Detail(w) => d.detail = Some(*w),
        }
        // Marks of rows that left the list go with them.
        if matches!(self.view, View::Dlq(_) | View::Approvals) {
            let ids: BTreeSet<String> = self.rows().iter().map(|w| w.id.clone()).collect();
            self.marks.retain(|m| ids.contains(m));
        }
        let n = self.row_count();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Cmd> {
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            return match k.code {
                KeyCode::Char('c') => self.update(Msg::Quit),
                KeyCode::Char('r') => {
                    self.status = Some("refreshed".into());
                    self.refresh()
                }
                _ => Vec::new(),
            };
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(k.code),
            Mode::Command(buf) => self.line_key(k.code, buf, true),
            Mode::Filter(buf) => self.line_key(k.code, buf, false),
            Mode::Dialog(d) => self.dialog_key(k.code, d),
        }
    }

    fn normal_key(&mut self, code: KeyCode) -> Vec<Cmd> {
        self.status = None;
        let n = self.row_count();
        match code {
            KeyCode::Char('?') => return self.go(View::Help),
            KeyCode::Char(':') => self.mode = Mode::Command(String::new()),
            KeyCode::Char('/') if matches!(self.view, View::Withdrawals | View::Dlq(_) | View::Approvals) => {
                self.mode = Mode::Filter(self.filter.clone())
            }
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.selected = 0;
                    return self.refresh();
                }
                return self.back();
            }
            KeyCode::Char('q') if self.back.is_empty() => self.quit = true,
            KeyCode::Char('j') | KeyCode::Down => self.selected = (self.selected + 1).min(n.saturating_sub(1)),
            KeyCode::Char('k') | KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('g') | KeyCode::Home => self.selected = 0,
            KeyCode::Char('G') | KeyCode::End => self.selected = n.saturating_sub(1),
            KeyCode::Char('f') => {
                self.frozen = !self.frozen;
                self.status = Some(if self.frozen { "frozen: no refresh until f" } else { "live" }.into());
            }
            KeyCode::Char(' ') if matches!(self.view, View::Dlq(_) | View::Approvals) && !self.read_only() => {
                if let Some(id) = self.selected_id()
                    && !self.marks.remove(&id)
                {
                    self.marks.insert(id);
                }
                self.selected = (self.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Enter => return self.enter(),
            KeyCode::Char('c') => return self.copy(),
            KeyCode::Char(c) => {
                let action = match (&self.view, c) {
                    (View::Dlq(k), 'r') => Some(Action::Reprocess(*k)),
                    (View::Dlq(k), 'd') => Some(Action::Discard(*k)),
                    (View::Approvals, 'a') => Some(Action::Approve),
                    (View::Approvals, 'x') => Some(Action::Reject),
                    _ => None,
                };
                if let Some(a) = action.filter(|a| self.can(*a)) {
                    let ids: Vec<String> =
                        if self.marks.is_empty() { self.selected_id().into_iter().collect() } else { self.marks.iter().cloned().collect() };
                    if !ids.is_empty() {
                        self.mode = Mode::Dialog(Dialog { action: a, ids, reason: String::new(), focus: Focus::Cancel, error: None });
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn enter(&mut self) -> Vec<Cmd> {
        match &self.view {
            View::Withdrawals | View::Dlq(_) | View::Approvals => match self.selected_id() {
                Some(id) => self.go(View::Detail(id)),
                None => Vec::new(),
            },
            View::Alerts => {
                let target = self.data.alerts.get(self.selected).and_then(|a| a.console.clone());
                match target.as_deref().and_then(|c| c.split("--goto").nth(1)).and_then(View::from_goto) {
                    Some(v) => self.go(v),
                    None => {
                        self.status = Some("this alert has no console link".into());
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    /// Copies the newest transaction hash of the withdrawal at hand.
    fn copy(&mut self) -> Vec<Cmd> {
        let hash = match &self.view {
            View::Detail(_) => self.data.detail.as_ref().and_then(|d| d.attempts.last()).map(|a| a.tx_hash.clone()),
            _ => None,
        };
        match hash {
            Some(h) => {
                self.status = Some(format!("copied {h}"));
                vec![Cmd::Copy(h)]
            }
            None => {
                self.status = Some("no transaction hash here (open a withdrawal first)".into());
                Vec::new()
            }
        }
    }

    /// Command and filter lines: type, backspace, enter to run, esc to drop.
    fn line_key(&mut self, code: KeyCode, mut buf: String, command: bool) -> Vec<Cmd> {
        match code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter if command => self.command(&buf),
            KeyCode::Enter => {
                self.filter = buf.trim().to_owned();
                self.selected = 0;
                self.refresh()
            }
            KeyCode::Backspace => {
                buf.pop();
                self.mode = if command { Mode::Command(buf) } else { Mode::Filter(buf) };
                Vec::new()
            }
            KeyCode::Char(c) => {
                buf.push(c);
                self.mode = if command { Mode::Command(buf) } else { Mode::Filter(buf) };
                Vec::new()
            }
            _ => {
                self.mode = if command { Mode::Command(buf) } else { Mode::Filter(buf) };
                Vec::new()
            }
        }
    }

    fn command(&mut self, line: &str) -> Vec<Cmd> {
        let mut words = line.split_whitespace();
        let view = match (words.next(), words.next()) {
            (Some("q" | "quit"), _) => {
                self.quit = true;
                return Vec::new();
            }
            (Some("dlq"), None | Some("invalid")) => View::Dlq(DlqKind::Invalid),
            (Some("dlq"), Some("tx")) | (Some("txdlq"), _) => View::Dlq(DlqKind::Tx),
            (Some("tx" | "w"), Some(id)) => View::Detail(id.to_owned()),
            (Some("approvals"), _) => View::Approvals,
            (Some("alerts"), _) => View::Alerts,
            (Some("health"), _) => View::Health,
            (Some("audit"), _) => View::Audit,
            (Some("withdrawals" | "tx" | "w"), None) => View::Withdrawals,
            (Some("dash" | "dashboard"), _) => View::Dashboard,
            (Some("help"), _) => View::Help,
            (None, _) => return Vec::new(),
            (Some(other), _) => {
                self.status = Some(format!("unknown command :{other} (try :dlq, :tx <id>, :approvals, :alerts, :health, :q)"));
                return Vec::new();
            }
        };
        self.go(view)
    }

    fn dialog_key(&mut self, code: KeyCode, mut d: Dialog) -> Vec<Cmd> {
        match code {
            KeyCode::Esc => {
                self.status = Some("cancelled".into());
                return Vec::new();
            }
            KeyCode::Tab | KeyCode::Right | KeyCode::Down => {
                d.focus = match d.focus {
                    Focus::Cancel => Focus::Reason,
                    Focus::Reason => Focus::Confirm,
                    Focus::Confirm => Focus::Cancel,
                }
            }
            KeyCode::BackTab | KeyCode::Left | KeyCode::Up => {
                d.focus = match d.focus {
                    Focus::Cancel => Focus::Confirm,
                    Focus::Reason => Focus::Cancel,
                    Focus::Confirm => Focus::Reason,
                }
            }
            KeyCode::Char(c) if d.focus == Focus::Reason => d.reason.push(c),
            KeyCode::Backspace if d.focus == Focus::Reason => {
                d.reason.pop();
            }
            KeyCode::Enter => match d.focus {
                Focus::Cancel => {
                    self.status = Some("cancelled".into());
                    return Vec::new();
                }
                Focus::Reason => d.focus = Focus::Confirm,
                Focus::Confirm if d.reason.trim().is_empty() => {
                    d.error = Some("a reason is required".into());
                    d.focus = Focus::Reason;
                }
                Focus::Confirm => {
                    self.status = Some(format!("{} of {} withdrawal(s) sent…", d.action.verb(), d.ids.len()));
                    return vec![Cmd::Act { action: d.action, ids: d.ids, reason: d.reason.trim().to_owned() }];
                }
            },
            _ => {}
        }
        self.mode = Mode::Dialog(d);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    fn typed(app: &mut App, s: &str) {
        for c in s.chars() {
            app.update(key(KeyCode::Char(c)));
        }
    }

    fn w(id: &str, status: &str) -> WithdrawalSummaryV1 {
        WithdrawalSummaryV1 {
            id: id.into(),
            status: status.into(),
            reason: Some("insufficient balance".into()),
            user_id: format!("user-{id}"),
            asset: "ETH".into(),
            chain_id: 31337,
            to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            amount: "0.5".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn app_as(roles: &[&str], view: View) -> App {
        let mut app = App::new("http://admin", view, Look { color: true, unicode: true }, 1_000_000);
        app.update(Msg::Loaded(Fetch::Me, Loaded::Me(MeV1 { name: "ann".into(), roles: roles.iter().map(|r| r.to_string()).collect() })));
        app.update(Msg::Loaded(
            Fetch::Dlq(DlqKind::Invalid),
            Loaded::Dlq(DlqKind::Invalid, vec![w("a", "INVALID"), w("b", "INVALID"), w("c", "INVALID")]),
        ));
        app
    }

    #[test]
    fn goto_targets_parse() {
        let check = |s: &str, v: Option<View>| assert_eq!(View::from_goto(s), v, "{s}");
        check("tx/abc", Some(View::Detail("abc".into())));
        check("dlq/invalid", Some(View::Dlq(DlqKind::Invalid)));
        check("dlq/tx", Some(View::Dlq(DlqKind::Tx)));
        check("approvals", Some(View::Approvals));
        check("alerts", Some(View::Alerts));
        check("health", Some(View::Health));
        check("tx/", None);
        check("nowhere", None);
    }

    #[test]
    fn destructive_actions_confirm_with_cancel_focused_and_a_reason() {
        let mut app = app_as(&["viewer", "operator"], View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char('d')));
        let Mode::Dialog(d) = &app.mode else { panic!("a dialog opens: {:?}", app.mode) };
        assert_eq!((d.focus, d.ids.clone()), (Focus::Cancel, vec!["a".to_owned()]));
        // Enter on the initial focus cancels: nothing is sent.
        assert!(app.update(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.mode, Mode::Normal);

        app.update(key(KeyCode::Char('r')));
        app.update(key(KeyCode::Tab)); // to the reason
        app.update(key(KeyCode::Tab)); // to confirm, reason empty
        assert!(app.update(key(KeyCode::Enter)).is_empty(), "no reason, no action");
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!((d.focus, d.error.as_deref()), (Focus::Reason, Some("a reason is required")));
        typed(&mut app, "funded");
        app.update(key(KeyCode::Enter)); // reason -> confirm
        let cmds = app.update(key(KeyCode::Enter));
        assert_eq!(cmds, vec![Cmd::Act { action: Action::Reprocess(DlqKind::Invalid), ids: vec!["a".into()], reason: "funded".into() }]);
    }

    #[test]
    fn marks_select_rows_for_bulk_actions() {
        let mut app = app_as(&["viewer", "operator"], View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char(' '))); // marks a, moves to b
        app.update(key(KeyCode::Char('j'))); // c
        app.update(key(KeyCode::Char(' '))); // marks c
        assert_eq!(app.marks.iter().cloned().collect::<Vec<_>>(), ["a", "c"]);
        app.update(key(KeyCode::Char('d')));
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!(d.ids, ["a", "c"]);
        // A refresh without c drops its mark.
        app.update(key(KeyCode::Esc));
        app.update(Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, vec![w("a", "INVALID"), w("b", "INVALID")])));
        assert_eq!(app.marks.iter().cloned().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn viewers_get_no_actions() {
        let mut app = app_as(&["viewer"], View::Dlq(DlqKind::Invalid));
        assert!(app.read_only());
        for c in ['r', 'd', ' '] {
            app.update(key(KeyCode::Char(c)));
            assert_eq!(app.mode, Mode::Normal, "{c}");
        }
        assert!(app.marks.is_empty());
        // An operator without the approver role cannot approve either.
        let mut app = app_as(&["viewer", "operator"], View::Approvals);
        app.update(Msg::Loaded(Fetch::Approvals, Loaded::Approvals(vec![w("p", "PENDING_APPROVAL")])));
        app.update(key(KeyCode::Char('a')));
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn commands_move_between_views_and_esc_goes_back() {
        let mut app = app_as(&["viewer"], View::Dashboard);
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "tx 0190");
        let cmds = app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Detail("0190".into()));
        assert_eq!(cmds, vec![Cmd::Fetch(Fetch::Detail("0190".into()))]);
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "alerts");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Alerts);
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Detail("0190".into()));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Dashboard);
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "bogus");
        app.update(key(KeyCode::Enter));
        assert!(app.status.as_deref().unwrap().contains("unknown command"));
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "q");
        app.update(key(KeyCode::Enter));
        assert!(app.quit);
    }

    #[test]
    fn refresh_is_periodic_unless_frozen_and_never_piles_up() {
        let mut app = app_as(&["viewer"], View::Dashboard);
        let first = app.refresh();
        assert_eq!(first.len(), 5);
        assert!(app.update(Msg::Tick(1_000_000 + 2_500)).is_empty(), "the same fetches are still on their way");
        app.update(Msg::Failed(Fetch::Stats, "connection refused".into()));
        let again = app.update(Msg::Tick(1_000_000 + 5_000));
        assert_eq!(again, vec![Cmd::Fetch(Fetch::Stats)], "only what is not in flight");
        assert!(app.api.error.is_some());
        app.update(key(KeyCode::Char('f')));
        app.update(Msg::Failed(Fetch::Stats, "x".into()));
        assert!(app.update(Msg::Tick(1_000_000 + 60_000)).is_empty(), "frozen");
    }

    #[test]
    fn a_slow_api_shows_before_it_fails() {
        let mut app = app_as(&["viewer"], View::Dashboard);
        app.refresh();
        assert_eq!(app.slow_for_ms(), None);
        app.update(Msg::Tick(1_000_000 + 1_500));
        assert_eq!(app.slow_for_ms(), None, "not yet");
        app.update(Msg::Tick(1_000_000 + 3_000));
        assert_eq!(app.slow_for_ms(), Some(3_000));
        for f in [Fetch::Stats, Fetch::Rpc, Fetch::Wallets, Fetch::Signing, Fetch::Alerts] {
            app.update(Msg::Failed(f, "timed out".into()));
        }
        assert_eq!(app.slow_for_ms(), None, "answered (with an error): no longer waiting");
    }

    #[test]
    fn filter_narrows_lists_and_alert_links_open_views() {
        let mut app = app_as(&["viewer"], View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char('/')));
        typed(&mut app, "user-b");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.rows().iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["b"]);
        app.update(key(KeyCode::Esc));
        assert_eq!(app.rows().len(), 3, "esc clears the filter first");

        let mut app = app_as(&["viewer"], View::Alerts);
        let alert = AlertV1 {
            fingerprint: "f".into(),
            status: "firing".into(),
            name: "WithdrawTxDLQNotEmpty".into(),
            severity: Some("page".into()),
            summary: None,
            console: Some("withdraw-console --goto dlq/tx".into()),
            labels: serde_json::json!({}),
            annotations: serde_json::json!({}),
            starts_at: "2026-11-24T03:00:00Z".into(),
            ends_at: None,
            received_at_ms: 0,
        };
        app.update(Msg::Loaded(Fetch::Alerts, Loaded::Alerts(vec![alert])));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Dlq(DlqKind::Tx));
    }
}
