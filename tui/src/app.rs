//! The console's model and its update function (Elm-like): every key press, tick and API
//! answer is a `Msg`; `App::update` changes the model and returns the `Cmd`s (API calls, a
//! clipboard copy) for the runtime to carry out off the UI loop. No I/O here, so the whole
//! behaviour is unit-tested without a terminal or a server.
//!
//! What the console knows, it says how it knows it: every call's last answer and last
//! failure are kept per call (`Calls`), so a view tells "loading", "unavailable (this call,
//! this error)", "empty", "filtered to nothing" and "stale since" apart, and a failure of one
//! view never paints another. The operator's place (marks, filter, selection, sort) is kept
//! per view across navigation, refreshes and failed actions.

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

    /// The status a withdrawal has while it sits in this queue.
    pub fn status(self) -> &'static str {
        match self {
            DlqKind::Invalid => "INVALID",
            DlqKind::Tx => "SEND_FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Every `--goto` target, as the CLI's help and its error name them.
pub const GOTO_TARGETS: &str = "dashboard, withdrawals, tx/<id>, dlq/invalid, dlq/tx, approvals, alerts, audit or health";

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

    /// Parses `--goto` targets and alerts' console links (see `GOTO_TARGETS`).
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

    fn is_list(&self) -> bool {
        matches!(self, View::Withdrawals | View::Dlq(_) | View::Approvals)
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

impl Fetch {
    /// The call, as the admin API's path (shown to the operator when it fails).
    pub fn path(&self) -> String {
        match self {
            Fetch::Me => "/admin/v1/me".into(),
            Fetch::Stats => "/admin/v1/stats".into(),
            Fetch::Rpc => "/admin/v1/rpc".into(),
            Fetch::Wallets => "/admin/v1/hot-wallets".into(),
            Fetch::Signing => "/admin/v1/signing".into(),
            Fetch::Alerts => "/admin/v1/alerts?limit=200".into(),
            Fetch::Audit => "/admin/v1/audit?limit=200".into(),
            Fetch::Withdrawals(q) if q.is_empty() => "/admin/v1/withdrawals?limit=200".into(),
            Fetch::Withdrawals(q) => format!("/admin/v1/withdrawals?limit=200&q={}", urlencode(q)),
            Fetch::Dlq(k) => format!("/admin/v1/dlq/{}?limit=500", k.path()),
            Fetch::Approvals => "/admin/v1/approvals?limit=500".into(),
            Fetch::Detail(id) => format!("/admin/v1/withdrawals/{}", urlencode(id)),
        }
    }

    /// How many rows a list call asks for: a list that long may have more.
    pub fn limit(&self) -> Option<usize> {
        match self {
            Fetch::Withdrawals(_) | Fetch::Alerts | Fetch::Audit => Some(200),
            Fetch::Dlq(_) | Fetch::Approvals => Some(500),
            _ => None,
        }
    }

    /// The path without its query, for a short label.
    pub fn label(&self) -> String {
        let p = self.path();
        format!("GET {}", p.split('?').next().unwrap_or(&p))
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a call failed. Only `Down` means the API is unreachable; an HTTP answer means it is up
/// and said no (a 404 is "no such thing", a 403 "not with this token"), and is shown as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: cannot connect, timed out, the connection broke.
    Down(String),
    /// An answer, not a success: its status and problem+json detail.
    Http { status: u16, detail: String },
    /// A success whose body the console cannot read (a version skew).
    Unreadable(String),
}

impl Failure {
    /// Could the server have carried out a request that failed this way? Only a connection
    /// never made, or a 4xx refusal, says for sure that nothing was done.
    pub fn maybe_done(&self) -> bool {
        match self {
            Failure::Down(e) => e != CANNOT_CONNECT,
            Failure::Http { status, .. } => *status >= 500,
            Failure::Unreadable(_) => true,
        }
    }
}

/// The `Failure::Down` of a connection never made (nothing reached the server).
pub const CANNOT_CONNECT: &str = "cannot connect";

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down(e) => write!(f, "{e}"),
            Failure::Http { status, detail } if detail.is_empty() => write!(f, "HTTP {status}"),
            Failure::Http { status, detail } => write!(f, "HTTP {status}: {detail}"),
            Failure::Unreadable(e) => write!(f, "unreadable answer: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reprocess(DlqKind),
    Discard(DlqKind),
    Approve,
    Reject,
    /// Pause signing: every chain (None) or one.
    Pause(Option<u64>),
    Resume(Option<u64>),
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Reprocess(_) => "Reprocess",
            Action::Discard(_) => "Discard",
            Action::Approve => "Approve",
            Action::Reject => "Reject",
            Action::Pause(_) => "Pause signing",
            Action::Resume(_) => "Resume signing",
        }
    }

    /// Exactly what the action does to a withdrawal in `status` (the server's semantics).
    pub fn effect(self, status: &str) -> String {
        match (self, status) {
            (Action::Reprocess(_), "INVALID") => "INVALID -> RECEIVED: checked against the balance again, signed if it passes".into(),
            (Action::Reprocess(_), "SEND_FAILED") => {
                "SEND_FAILED -> SIGNED: the same signed tx is broadcast again (same nonce, cannot pay twice)".into()
            }
            (Action::Discard(_), "INVALID") => {
                "INVALID -> REJECTED: nothing is paid; it holds no reservation (freed when it failed)".into()
            }
            (Action::Discard(_), "SEND_FAILED") => {
                "a cancel is signed at its nonce: CANCELLED (funds released), or COMPLETED if the transfer is mined first".into()
            }
            (Action::Approve, "PENDING_APPROVAL") => "PENDING_APPROVAL -> RECEIVED: signed and paid".into(),
            (Action::Reject, "PENDING_APPROVAL") => "PENDING_APPROVAL -> REJECTED: nothing is paid; its reservation is released".into(),
            (Action::Pause(scope), _) => format!(
                "no withdrawal is signed on {} until resumed; sent ones are still tracked",
                scope.map_or_else(|| "any chain".to_owned(), |c| format!("chain {c}"))
            ),
            (Action::Resume(scope), _) => format!(
                "signing starts again on {} (a pause of another scope stays)",
                scope.map_or_else(|| "every chain".to_owned(), |c| format!("chain {c}"))
            ),
            (a, s) => format!("{s}: the server refuses to {} it; nothing changes", a.verb().to_lowercase()),
        }
    }

    /// The role the admin API asks for.
    fn role(self) -> &'static str {
        match self {
            Action::Approve | Action::Reject => "approver",
            _ => "operator",
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

/// What an action did: which items it moved and which it could not, or why the whole call
/// failed (then nothing is known to have changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    pub action: Action,
    pub done: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Items whose call got no clear answer (a timeout, a 5xx): they may have been done.
    pub unknown: Vec<(String, String)>,
    pub error: Option<Failure>,
}

impl Acted {
    pub fn summary(&self) -> String {
        let verb = self.action.verb().to_lowercase();
        match &self.error {
            Some(e) if e.maybe_done() => return format!("{verb}: outcome unknown ({e}); the list shows what moved, marks kept"),
            Some(Failure::Http { .. }) => {
                return format!("{verb} refused: {} (marks kept)", self.error.as_ref().map(ToString::to_string).unwrap_or_default());
            }
            Some(e) => return format!("{verb} not sent: {e} (marks kept)"),
            None => {}
        }
        if matches!(self.action, Action::Pause(_) | Action::Resume(_)) {
            return format!("{verb}: done");
        }
        let mut out = format!("{verb}: {} done", self.done.len());
        if !self.unknown.is_empty() {
            let why: Vec<String> = self.unknown.iter().map(|(id, e)| format!("{}: {e}", short_id(id))).collect();
            out.push_str(&format!(", {} outcome unknown, still marked ({})", self.unknown.len(), why.join("; ")));
        }
        if !self.failed.is_empty() {
            let why: Vec<String> = self.failed.iter().map(|(id, e)| format!("{}: {e}", short_id(id))).collect();
            out.push_str(&format!(", {} failed, still marked ({})", self.failed.len(), why.join("; ")));
        }
        out
    }
}

#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    /// Wall clock, every second.
    Tick(i64),
    Loaded(Fetch, Loaded),
    Failed(Fetch, Failure),
    Acted(Acted),
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Cancel,
    Reason,
    Confirm,
}

/// One withdrawal an action would touch, as the dialog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub user_id: String,
    pub amount: String,
    pub asset: String,
    pub chain_id: u64,
    pub status: String,
}

impl Item {
    fn of(w: &WithdrawalSummaryV1) -> Item {
        Item {
            id: w.id.clone(),
            user_id: w.user_id.clone(),
            amount: w.amount.clone(),
            asset: w.asset.clone(),
            chain_id: w.chain_id,
            status: w.status.clone(),
        }
    }
}

/// A confirm dialog for an action: focus starts on the reason, which is required; Enter on an
/// empty reason cancels, so Cancel stays the default until the operator has written why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub action: Action,
    pub items: Vec<Item>,
    /// How many of the items the list's filter hides (marked earlier, still taken).
    pub hidden: usize,
    pub reason: String,
    pub focus: Focus,
    pub error: Option<String>,
}

impl Dialog {
    pub fn ids(&self) -> Vec<String> {
        self.items.iter().map(|i| i.id.clone()).collect()
    }

    /// The distinct users, in the order first seen.
    pub fn users(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for i in &self.items {
            if !seen.contains(&i.user_id.as_str()) {
                seen.push(i.user_id.as_str());
            }
        }
        seen
    }

    /// The total per asset and chain, summed exactly on the decimal strings (never floats);
    /// the chain is named only where one asset spans several.
    pub fn totals(&self) -> Vec<(String, String)> {
        let mut per: Vec<((&str, u64), Vec<&str>)> = Vec::new();
        for i in &self.items {
            match per.iter_mut().find(|(k, _)| *k == (i.asset.as_str(), i.chain_id)) {
                Some((_, v)) => v.push(&i.amount),
                None => per.push(((&i.asset, i.chain_id), vec![&i.amount])),
            }
        }
        let chains_of = |asset: &str| per.iter().filter(|((a, _), _)| *a == asset).count();
        per.iter()
            .map(|((asset, chain), v)| {
                let name = if chains_of(asset) > 1 { format!("{asset} on chain {chain}") } else { asset.to_string() };
                (name, decimal_sum(v).unwrap_or_else(|| "?".into()))
            })
            .collect()
    }

    /// (status, how many) of the items, in the order first seen.
    pub fn statuses(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for i in &self.items {
            match out.iter_mut().find(|(s, _)| *s == i.status) {
                Some((_, n)) => *n += 1,
                None => out.push((i.status.clone(), 1)),
            }
        }
        out
    }
}

/// Sums non-negative decimal strings exactly ("0.5" + "1.25" = "1.75"); None if one is not a
/// plain decimal or the sum does not fit 38 digits.
pub fn decimal_sum(values: &[&str]) -> Option<String> {
    let split = |s: &str| -> Option<(String, String)> {
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        let ok = !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| (i.to_owned(), f.to_owned()))
    };
    let parts: Vec<(String, String)> = values.iter().map(|v| split(v.trim())).collect::<Option<_>>()?;
    let scale = parts.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    let mut total: u128 = 0;
    for (i, f) in &parts {
        let digits = format!("{i}{f}{}", "0".repeat(scale - f.len()));
        total = total.checked_add(digits.parse::<u128>().ok()?)?;
    }
    let s = format!("{total:0>width$}", width = scale + 1);
    let (i, f) = s.split_at(s.len() - scale);
    let f = f.trim_end_matches('0');
    Some(if f.is_empty() { i.to_owned() } else { format!("{i}.{f}") })
}

/// Orders a decimal string by value (for the amount sort): longer integer part first, then
/// digit by digit.
fn decimal_key(s: &str) -> (usize, String) {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let i = i.trim_start_matches('0');
    (i.len(), format!("{i}.{f}"))
}

/// How lists show an id: its first 13 characters (a UUIDv7's millisecond), "..", and its last
/// 4 (random bits). Withdrawals created in one millisecond share the first 18 (the UUID
/// generator's counter sits there), so the head alone cannot tell them apart. `:tx` takes
/// this form back. ASCII, so a dumb terminal draws it too.
pub const SHORT_ID: usize = 19;

pub fn short_id(id: &str) -> String {
    if id.len() == 36 && id.is_ascii() { format!("{}..{}", &id[..13], &id[32..]) } else { id.to_owned() }
}

/// Splits a short id (`head..tail`) into what the server searches (the head) and what the
/// answer's ids must end with.
fn split_short(typed: &str) -> (&str, &str) {
    typed.split_once("..").or_else(|| typed.split_once('…')).unwrap_or((typed, ""))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Command(String),
    Filter(String),
    Dialog(Dialog),
    /// An action key that could not act here: the message stays, and every key but esc or
    /// enter is swallowed, so a reason typed after it never runs as commands.
    Notice(String),
}

/// How the terminal can draw: colours (not with NO_COLOR) and Unicode (not on a dumb one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub color: bool,
    pub unicode: bool,
}

/// The order of a list view's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// As the API returns them: newest first.
    #[default]
    Newest,
    Oldest,
    /// Largest amount first (within an asset's decimal strings).
    Amount,
    User,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Amount => "amount",
            Sort::User => "user",
        }
    }
    fn next(self) -> Sort {
        match self {
            Sort::Newest => Sort::Oldest,
            Sort::Oldest => Sort::Amount,
            Sort::Amount => Sort::User,
            Sort::User => Sort::Newest,
        }
    }
}

/// The operator's place in one view, kept while they look elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub filter: String,
    pub selected: usize,
    /// The selected row's id: the selection follows its row when the list changes.
    pub selected_id: Option<String>,
    pub marks: BTreeSet<String>,
    /// Where a range mark starts: the last row marked or unmarked by hand.
    pub anchor: Option<String>,
    /// The selected row left the list (acted on, moved): the cursor sits on a neighbour the
    /// operator did not choose, so actions wait for a new selection.
    pub lost: Option<String>,
    pub sort: Sort,
}

#[derive(Debug, Default)]
pub struct Data {
    pub stats: Option<StatsV1>,
    /// Visible messages per queue, one sample per stats answer (oldest first).
    pub depth_history: HashMap<String, VecDeque<u64>>,
    /// Withdrawals completed per second, between consecutive stats answers.
    pub completed_history: VecDeque<u64>,
    /// The COMPLETED count at the last stats answer, and when it came.
    pub last_completed: Option<(i64, i64)>,
    pub rpc: Option<Vec<RpcEndpointV1>>,
    pub wallets: Option<Vec<HotWalletV1>>,
    pub signing: Option<SigningStateV1>,
    pub alerts: Option<Vec<AlertV1>>,
    pub audit: Option<Vec<AuditEntryV1>>,
    /// The withdrawals view's last answer, and the query it answered.
    pub withdrawals: Option<(String, Vec<WithdrawalSummaryV1>)>,
    pub dlq: HashMap<DlqKind, Vec<WithdrawalSummaryV1>>,
    pub approvals: Option<Vec<WithdrawalSummaryV1>>,
    pub detail: Option<WithdrawalV1>,
}

/// One call's record: when it last answered, and its failure since then, if any.
#[derive(Debug, Default, Clone)]
pub struct CallState {
    pub ok_ms: Option<i64>,
    /// The last failure and since when the call fails (cleared by an answer).
    pub failure: Option<(Failure, i64)>,
}

/// How much a view (or a part of one) can be trusted right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Asked, never answered, not failed yet.
    Loading,
    /// Never answered, and the call fails.
    Unavailable {
        call: String,
        error: Failure,
    },
    /// Answered once; since then the call fails, or nothing newer came for `STALE_MS`.
    Stale {
        age_ms: i64,
        call: String,
        error: Option<Failure>,
    },
    Fresh {
        age_ms: i64,
    },
}

/// Samples kept for sparklines.
pub const HISTORY: usize = 60;
/// A call on its way longer than this shows the API as slow.
pub const SLOW_MS: i64 = 2_000;
/// Seconds between refreshes of the current view.
pub const REFRESH_SECS: i64 = 2;
/// Data older than this (three missed refreshes and a bit) is shown as stale.
pub const STALE_MS: i64 = 7_000;

#[derive(Debug)]
pub struct App {
    pub api_url: String,
    pub view: View,
    back: Vec<View>,
    pub mode: Mode,
    pub me: Option<MeV1>,
    /// The current view's place; the others' wait in `places`.
    pub place: Place,
    places: HashMap<View, Place>,
    pub frozen: bool,
    pub data: Data,
    /// Every call's last answer and failure.
    pub calls: HashMap<Fetch, CallState>,
    /// Since when no call gets an answer at all, and the last such error.
    pub down: Option<(Failure, i64)>,
    pub last_ok_ms: Option<i64>,
    pub now_ms: i64,
    last_refresh_ms: i64,
    pub status: Option<String>,
    pub look: Look,
    pub quit: bool,
    /// Calls on their way, and since when (ms): none is repeated, and a slow API shows.
    in_flight: HashMap<Fetch, i64>,
    /// A search made by `:tx <part of an id>`: its only match is opened when it answers.
    open_single: Option<String>,
}

impl App {
    pub fn new(api_url: &str, view: View, look: Look, now_ms: i64) -> App {
        let mut app = App {
            api_url: api_url.to_owned(),
            view: View::Dashboard,
            back: Vec::new(),
            mode: Mode::Normal,
            me: None,
            place: Place::default(),
            places: HashMap::new(),
            frozen: false,
            data: Data::default(),
            calls: HashMap::new(),
            down: None,
            last_ok_ms: None,
            now_ms,
            last_refresh_ms: now_ms,
            status: None,
            look,
            quit: false,
            in_flight: HashMap::new(),
            open_single: None,
        };
        // `--goto tx/<short id>` (as the lists show ids) is a search for it.
        match view {
            View::Detail(id) if !is_full_id(&id) => {
                app.view = View::Withdrawals;
                app.place.filter = split_short(&id).0.to_owned();
                app.open_single = Some(id);
            }
            v => app.view = v,
        }
        app
    }

    /// What to fetch at start: who we are, and the first view.
    pub fn init(&mut self) -> Vec<Cmd> {
        self.refresh()
    }

    fn has_role(&self, role: &str) -> bool {
        self.me.as_ref().is_some_and(|m| m.roles.iter().any(|r| r == role))
    }

    /// May this token take the action? Unknown capabilities (no `/me` answer yet) allow none.
    pub fn can(&self, action: Action) -> bool {
        self.has_role(action.role())
    }

    /// Why this console offers no actions, if it does not: the operator always sees the cause.
    pub fn read_only_cause(&self) -> Option<String> {
        match &self.me {
            Some(_) if self.has_role("operator") || self.has_role("approver") => None,
            Some(_) => Some("no operator or approver role".into()),
            None => Some(match self.calls.get(&Fetch::Me).and_then(|c| c.failure.as_ref()) {
                Some((e, _)) => format!("rights unknown, /me: {e}"),
                None => "rights unknown, asking /me".into(),
            }),
        }
    }

    pub fn read_only(&self) -> bool {
        self.read_only_cause().is_some()
    }

    /// How long the oldest call still on its way has waited, if over `SLOW_MS`.
    pub fn slow_for_ms(&self) -> Option<i64> {
        self.in_flight.values().map(|since| self.now_ms - since).max().filter(|ms| *ms >= SLOW_MS)
    }

    /// How far one call's data can be trusted.
    pub fn freshness(&self, f: &Fetch) -> Freshness {
        let c = self.calls.get(f).cloned().unwrap_or_default();
        match (c.ok_ms, c.failure) {
            (None, None) => Freshness::Loading,
            (None, Some((error, _))) => Freshness::Unavailable { call: f.label(), error },
            (Some(ok), failure) => {
                let age_ms = self.now_ms - ok;
                if failure.is_some() || age_ms > STALE_MS {
                    Freshness::Stale { age_ms, call: f.label(), error: failure.map(|(e, _)| e) }
                } else {
                    Freshness::Fresh { age_ms }
                }
            }
        }
    }

    /// The call behind the current list or detail view.
    pub fn view_fetch(&self) -> Option<Fetch> {
        Some(match &self.view {
            View::Withdrawals => Fetch::Withdrawals(self.place.filter.clone()),
            View::Detail(id) => Fetch::Detail(id.clone()),
            View::Dlq(k) => Fetch::Dlq(*k),
            View::Approvals => Fetch::Approvals,
            View::Alerts => Fetch::Alerts,
            View::Audit => Fetch::Audit,
            View::Health => Fetch::Rpc,
            View::Dashboard | View::Help => return None,
        })
    }

    /// Fetches the current view needs, skipping any already on its way; `/me` until known.
    pub fn refresh(&mut self) -> Vec<Cmd> {
        let mut wanted: Vec<Fetch> = match &self.view {
            View::Dashboard => vec![Fetch::Stats, Fetch::Rpc, Fetch::Wallets, Fetch::Signing, Fetch::Alerts],
            View::Health => vec![Fetch::Rpc, Fetch::Wallets, Fetch::Signing],
            View::Help => vec![],
            _ => self.view_fetch().into_iter().collect(),
        };
        if self.me.is_none() {
            wanted.insert(0, Fetch::Me);
        }
        self.last_refresh_ms = self.now_ms;
        let now = self.now_ms;
        wanted
            .into_iter()
            .filter(|f| {
                if self.in_flight.contains_key(f) {
                    return false;
                }
                self.in_flight.insert(f.clone(), now);
                true
            })
            .map(Cmd::Fetch)
            .collect()
    }

    /// Switches view, keeping the place of the one left.
    fn switch(&mut self, view: View) {
        let old = std::mem::replace(&mut self.view, view);
        let place = std::mem::take(&mut self.place);
        // An opened withdrawal has no place worth keeping (and there would be one per id).
        if !matches!(old, View::Detail(_)) {
            self.places.insert(old, place);
        }
        self.place = self.places.remove(&self.view).unwrap_or_default();
        self.open_single = None;
    }

    /// Drills down (enter): esc comes back here.
    fn open(&mut self, view: View) -> Vec<Cmd> {
        if view == self.view {
            return self.refresh();
        }
        self.back.push(self.view.clone());
        self.switch(view);
        self.refresh()
    }

    /// Jumps (`:` commands, `?`): the trail of drill-downs is replaced, not stacked.
    fn jump(&mut self, view: View) -> Vec<Cmd> {
        self.back.clear();
        if view == self.view {
            return self.refresh();
        }
        self.switch(view);
        self.refresh()
    }

    /// Esc: back along the drill-downs; from a jumped-to view, home to the dashboard.
    fn back(&mut self) -> Vec<Cmd> {
        match self.back.pop() {
            Some(v) => {
                self.switch(v);
                self.refresh()
            }
            None if self.view != View::Dashboard => {
                self.switch(View::Dashboard);
                self.refresh()
            }
            None => Vec::new(),
        }
    }

    /// Every row the current list view holds, before filter and sort (`None` until loaded).
    fn all_rows(&self) -> Option<&[WithdrawalSummaryV1]> {
        match &self.view {
            View::Withdrawals => self.data.withdrawals.as_ref().filter(|(q, _)| *q == self.place.filter).map(|(_, v)| v.as_slice()),
            View::Dlq(k) => self.data.dlq.get(k).map(Vec::as_slice),
            View::Approvals => self.data.approvals.as_deref(),
            _ => None,
        }
    }

    /// Has the current list view rows to show (this query's answer, stale or not)?
    pub fn has_rows(&self) -> bool {
        self.all_rows().is_some()
    }

    /// How many rows the view holds before its client-side filter.
    pub fn total_rows(&self) -> usize {
        self.all_rows().map_or(0, <[_]>::len)
    }

    /// The rows of the current list view, filtered and sorted as the operator asked.
    pub fn rows(&self) -> Vec<&WithdrawalSummaryV1> {
        let all = self.all_rows().unwrap_or(&[]);
        let f = self.place.filter.to_lowercase();
        // The withdrawals view filters on the server; the others here.
        let mut rows: Vec<&WithdrawalSummaryV1> = if f.is_empty() || self.view == View::Withdrawals {
            all.iter().collect()
        } else {
            all.iter()
                .filter(|w| {
                    [&w.id, &w.user_id, &w.to, &w.asset, &w.status].iter().any(|s| s.to_lowercase().contains(&f))
                        || w.reason.as_deref().is_some_and(|r| r.to_lowercase().contains(&f))
                })
                .collect()
        };
        match self.place.sort {
            Sort::Newest => {}
            Sort::Oldest => rows.reverse(),
            // Amounts compare within an asset only: by asset, then largest first.
            Sort::Amount => rows.sort_by(|a, b| a.asset.cmp(&b.asset).then(decimal_key(&b.amount).cmp(&decimal_key(&a.amount)))),
            Sort::User => rows.sort_by(|a, b| a.user_id.cmp(&b.user_id)),
        }
        rows
    }

    /// Marked rows the filter hides (the action still takes them; the list says how many).
    pub fn hidden_marks(&self) -> usize {
        let shown: BTreeSet<&str> = self.rows().iter().map(|w| w.id.as_str()).collect();
        self.place.marks.iter().filter(|m| !shown.contains(m.as_str())).count()
    }

    /// The firing alerts, newest first: the dashboard lists them and enter opens the selected.
    pub fn firing(&self) -> Vec<&AlertV1> {
        self.data.alerts.as_deref().unwrap_or(&[]).iter().filter(|a| a.status == "firing").collect()
    }

    fn row_count(&self) -> usize {
        match &self.view {
            View::Dashboard => self.firing().len(),
            View::Alerts => self.data.alerts.as_ref().map_or(0, Vec::len),
            View::Audit => self.data.audit.as_ref().map_or(0, Vec::len),
            View::Health => self.data.rpc.as_ref().map_or(0, Vec::len),
            _ => self.rows().len(),
        }
    }

    fn selected_id(&self) -> Option<String> {
        self.rows().get(self.place.selected).map(|w| w.id.clone())
    }

    /// What identifies each row of the current view, in display order: the selection
    /// follows its row by this when the list changes under it.
    fn row_keys(&self) -> Vec<String> {
        match &self.view {
            View::Dashboard => self.firing().iter().map(|a| a.fingerprint.clone()).collect(),
            View::Alerts => self.data.alerts.iter().flatten().map(|a| a.fingerprint.clone()).collect(),
            View::Audit => self.data.audit.iter().flatten().map(|e| e.id.to_string()).collect(),
            View::Health => self.data.rpc.iter().flatten().map(|e| format!("{}/{}", e.chain_id, e.name)).collect(),
            _ => self.rows().iter().map(|w| w.id.clone()).collect(),
        }
    }

    /// Moves the selection (the operator's choice), remembering the row it is on.
    fn select(&mut self, i: usize) {
        let keys = self.row_keys();
        self.place.selected = i.min(keys.len().saturating_sub(1));
        self.place.selected_id = keys.get(self.place.selected).cloned();
        self.place.lost = None;
    }

    /// After the rows changed: the selection follows its row. If its row left, the cursor
    /// stays where it was, the chosen row is remembered as lost (until the operator moves the
    /// cursor: a refresh never chooses for them), and actions wait; if it comes back, the
    /// selection is on it again.
    fn follow_selection(&mut self) {
        let keys = self.row_keys();
        let chosen = self.place.lost.clone().or_else(|| self.place.selected_id.clone());
        match chosen.as_ref().map(|k| keys.iter().position(|x| x == k)) {
            Some(Some(at)) => {
                self.place.selected = at;
                self.place.selected_id = chosen;
                self.place.lost = None;
            }
            Some(None) => {
                self.place.lost = chosen;
                self.place.selected = self.place.selected.min(keys.len().saturating_sub(1));
            }
            // Nothing chosen yet: the cursor's row becomes the selection.
            None => self.select(self.place.selected),
        }
    }

    /// An action key that cannot act here: say why, and swallow what is typed next.
    fn refuse(&mut self, why: String) -> Vec<Cmd> {
        self.mode = Mode::Notice(why);
        Vec::new()
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
                self.in_flight.remove(&f);
                let c = self.calls.entry(f.clone()).or_default();
                c.ok_ms = Some(self.now_ms);
                c.failure = None;
                self.last_ok_ms = Some(self.now_ms);
                self.down = None;
                self.loaded(f_query(&f), l)
            }
            Msg::Failed(f, e) => {
                self.in_flight.remove(&f);
                let c = self.calls.entry(f).or_default();
                let since = c.failure.as_ref().map_or(self.now_ms, |(_, s)| *s);
                c.failure = Some((e.clone(), since));
                if matches!(e, Failure::Down(_) | Failure::Http { status: 500.., .. }) {
                    // No answer, or the server (or a proxy before it) failing: the header says so.
                    let since = self.down.as_ref().map_or(self.now_ms, |(_, s)| *s);
                    self.down = Some((e, since));
                } else {
                    // It answered: the API is up, and said no to this call.
                    self.down = None;
                    self.last_ok_ms = Some(self.now_ms);
                }
                Vec::new()
            }
            Msg::Acted(a) => {
                self.status = Some(a.summary());
                if a.error.is_none() {
                    // What was done leaves the marks; what failed stays marked to try again.
                    for p in std::iter::once(&mut self.place).chain(self.places.values_mut()) {
                        p.marks.retain(|m| !a.done.contains(m));
                    }
                }
                let mut cmds = self.refresh();
                if matches!(a.action, Action::Pause(_) | Action::Resume(_)) && !self.in_flight.contains_key(&Fetch::Signing) {
                    self.in_flight.insert(Fetch::Signing, self.now_ms);
                    cmds.push(Cmd::Fetch(Fetch::Signing));
                }
                cmds
            }
            Msg::Key(k) => self.key(k),
        }
    }

    fn loaded(&mut self, query: Option<String>, l: Loaded) -> Vec<Cmd> {
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
                let now = self.now_ms;
                if let Some((prev, at)) = d.last_completed
                    && now > at
                {
                    d.completed_history.push_back(((completed - prev).max(0) * 1000 / (now - at)) as u64);
                    while d.completed_history.len() > HISTORY {
                        d.completed_history.pop_front();
                    }
                }
                d.last_completed = Some((completed, now));
                d.stats = Some(s);
            }
            Loaded::Rpc(r) => d.rpc = Some(r),
            Loaded::Wallets(w) => d.wallets = Some(w),
            Loaded::Signing(s) => d.signing = Some(s),
            Loaded::Alerts(a) => d.alerts = Some(a),
            Loaded::Audit(a) => d.audit = Some(a),
            Loaded::Withdrawals(w) => {
                // Kept with its query: an answer to an older search never shows under a newer one.
                d.withdrawals = Some((query.unwrap_or_default(), w));
            }
            Loaded::Dlq(k, w) => {
                d.dlq.insert(k, w);
            }
            Loaded::Approvals(w) => d.approvals = Some(w),
            Loaded::Detail(w) => d.detail = Some(*w),
        }
        // Marks of rows that left the list go with them; filtered-out rows keep theirs.
        if let Some(all) = self.all_rows() {
            let ids: BTreeSet<&str> = all.iter().map(|w| w.id.as_str()).collect();
            let keep: BTreeSet<String> = self.place.marks.iter().filter(|m| ids.contains(m.as_str())).cloned().collect();
            self.place.marks = keep;
        }
        self.follow_selection();
        // `:tx <part of an id>` that matches one withdrawal opens it.
        if let Some(typed) = self.open_single.clone()
            && self.view == View::Withdrawals
            && split_short(&typed).0 == self.place.filter
            && self.data.withdrawals.as_ref().is_some_and(|(q, _)| *q == self.place.filter)
        {
            self.open_single = None;
            // Only a withdrawal whose id starts (and ends) so: the search also matches user ids.
            let typed = typed.to_lowercase();
            let (head, tail) = split_short(&typed);
            let rows: Vec<String> =
                self.rows().iter().map(|w| w.id.clone()).filter(|id| id.starts_with(head) && id.ends_with(tail)).collect();
            if let [id] = rows.as_slice() {
                let id = id.clone();
                return self.open(View::Detail(id));
            }
            self.status = Some(format!("{} withdrawals match {typed}", rows.len()));
        }
        Vec::new()
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Cmd> {
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            return match k.code {
                KeyCode::Char('c') => self.update(Msg::Quit),
                KeyCode::Char('r') => {
                    self.status = Some("refreshed".into());
                    self.refresh()
                }
                KeyCode::Char('a') if self.mode == Mode::Normal => self.mark_all(),
                KeyCode::Char(' ') | KeyCode::Char('@') if self.mode == Mode::Normal => self.mark_range(),
                _ => Vec::new(),
            };
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(k.code),
            Mode::Command(buf) => self.line_key(k.code, buf, true),
            Mode::Filter(buf) => self.line_key(k.code, buf, false),
            Mode::Dialog(d) => self.dialog_key(k.code, d),
            Mode::Notice(n) => {
                if !matches!(k.code, KeyCode::Esc | KeyCode::Enter) {
                    self.mode = Mode::Notice(n);
                }
                Vec::new()
            }
        }
    }

    /// May rows be marked here? If not, a notice says why (and swallows what is typed next).
    fn can_mark(&mut self) -> bool {
        if !matches!(self.view, View::Dlq(_) | View::Approvals) {
            self.mode =
                Mode::Notice(format!("nothing to mark in {}: marks are for the dead-letter queues and approvals", self.view.title()));
            return false;
        }
        if let Some(cause) = self.read_only_cause() {
            self.mode = Mode::Notice(format!("read-only ({cause}): nothing to mark for"));
            return false;
        }
        true
    }

    fn normal_key(&mut self, code: KeyCode) -> Vec<Cmd> {
        self.status = None;
        let n = self.row_count();
        match code {
            KeyCode::Char('?') => return self.open(View::Help),
            KeyCode::Char(':') => self.mode = Mode::Command(String::new()),
            KeyCode::Char('/') if self.view.is_list() => self.mode = Mode::Filter(self.place.filter.clone()),
            KeyCode::Esc => {
                if self.view.is_list() && !self.place.filter.is_empty() {
                    self.place.filter.clear();
                    self.select(0);
                    return self.refresh();
                }
                return self.back();
            }
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('j') | KeyCode::Down => self.select(self.place.selected + 1),
            KeyCode::Char('k') | KeyCode::Up => self.select(self.place.selected.saturating_sub(1)),
            KeyCode::Char('g') | KeyCode::Home => self.select(0),
            KeyCode::Char('G') | KeyCode::End => self.select(n.saturating_sub(1)),
            KeyCode::Char('f') => {
                self.frozen = !self.frozen;
                self.status = Some(if self.frozen { "frozen: no refresh until f" } else { "live" }.into());
            }
            KeyCode::Char('s') if self.view.is_list() => {
                self.place.sort = self.place.sort.next();
                // Re-sorting is not choosing: the selection (or its loss) follows its row.
                self.follow_selection();
                self.status = Some(format!("sorted by {}", self.place.sort.name()));
            }
            KeyCode::Char(' ') if self.can_mark() => {
                if let Some(id) = self.selected_id() {
                    if !self.place.marks.remove(&id) {
                        self.place.marks.insert(id.clone());
                    }
                    self.place.anchor = Some(id);
                }
                self.select(self.place.selected + 1);
            }
            KeyCode::Char('*') => return self.mark_all(),
            KeyCode::Char('v') => return self.mark_range(),
            KeyCode::Enter => return self.enter(),
            KeyCode::Char('c') => return self.copy(),
            KeyCode::Char('p') if matches!(self.view, View::Dashboard | View::Health) => return self.pause_toggle(),
            KeyCode::Char('p') => return self.refuse("p pauses or resumes signing from the dashboard or health view".into()),
            KeyCode::Char(c @ ('r' | 'd' | 'a' | 'x')) => return self.row_action(c),
            _ => {}
        }
        Vec::new()
    }

    /// `*` or ctrl-a: marks every row shown, or unmarks them if all are marked.
    fn mark_all(&mut self) -> Vec<Cmd> {
        if !self.can_mark() {
            return Vec::new();
        }
        let shown: Vec<String> = self.rows().iter().map(|w| w.id.clone()).collect();
        if !shown.is_empty() && shown.iter().all(|id| self.place.marks.contains(id)) {
            for id in &shown {
                self.place.marks.remove(id);
            }
            self.status = Some(format!("unmarked {}", shown.len()));
        } else {
            self.status = Some(format!("marked all {} shown", shown.len()));
            self.place.marks.extend(shown);
        }
        Vec::new()
    }

    /// `v` or ctrl-space: marks every row from the last one marked by hand to the selection.
    fn mark_range(&mut self) -> Vec<Cmd> {
        if !self.can_mark() {
            return Vec::new();
        }
        let rows: Vec<String> = self.rows().iter().map(|w| w.id.clone()).collect();
        let from = self.place.anchor.as_ref().and_then(|a| rows.iter().position(|id| id == a));
        let Some(from) = from else {
            self.status = Some("mark a row with space first, then v marks from it to here".into());
            return Vec::new();
        };
        let to = self.place.selected.min(rows.len().saturating_sub(1));
        let (lo, hi) = if from <= to { (from, to) } else { (to, from) };
        self.place.marks.extend(rows[lo..=hi].iter().cloned());
        self.status = Some(format!("marked {} rows", hi - lo + 1));
        Vec::new()
    }

    fn enter(&mut self) -> Vec<Cmd> {
        if let Some(gone) = self.place.lost.clone() {
            self.status = Some(format!("the row you had selected ({}) left this view; select again", short_id(&gone)));
            return Vec::new();
        }
        let link = |a: Option<&AlertV1>| a.and_then(|a| a.console.clone());
        let target = match &self.view {
            View::Withdrawals | View::Dlq(_) | View::Approvals => self.selected_id().map(View::Detail),
            View::Alerts => {
                let a = self.data.alerts.as_ref().and_then(|a| a.get(self.place.selected));
                match link(a).as_deref().and_then(goto_of).and_then(View::from_goto) {
                    Some(v) => Some(v),
                    None => {
                        self.status = Some("this alert has no console link".into());
                        return Vec::new();
                    }
                }
            }
            View::Dashboard => {
                let a = self.firing().get(self.place.selected).copied().cloned();
                match link(a.as_ref()).as_deref().and_then(goto_of).and_then(View::from_goto) {
                    Some(v) => Some(v),
                    None => {
                        self.status = Some(if a.is_some() { "this alert has no console link" } else { "no alert is firing" }.into());
                        return Vec::new();
                    }
                }
            }
            View::Audit => {
                let e = self.data.audit.as_ref().and_then(|a| a.get(self.place.selected));
                match e.and_then(|e| e.target.strip_prefix("withdrawal/")) {
                    Some(id) => Some(View::Detail(id.to_owned())),
                    None => {
                        self.status = Some(e.map_or("nothing selected".into(), |e| format!("{} is not a withdrawal", e.target)));
                        return Vec::new();
                    }
                }
            }
            _ => None,
        };
        match target {
            Some(v) => self.open(v),
            None => Vec::new(),
        }
    }

    /// Copies the newest transaction hash of the withdrawal at hand.
    fn copy(&mut self) -> Vec<Cmd> {
        let (hash, why) = match &self.view {
            View::Detail(id) => match self.data.detail.as_ref().filter(|d| &d.id == id) {
                Some(d) => match d.attempts.last() {
                    Some(a) => (Some(a.tx_hash.clone()), ""),
                    None => (None, "no transaction yet: this withdrawal was never signed"),
                },
                None => (None, "not loaded yet"),
            },
            v if v.is_list() => (None, "open the withdrawal (enter), then c copies its tx hash"),
            _ => (None, "c copies a withdrawal's tx hash: open one first"),
        };
        match hash {
            Some(h) => {
                self.status = Some(format!("copied {h}"));
                vec![Cmd::Copy(h)]
            }
            None => {
                self.status = Some(why.into());
                Vec::new()
            }
        }
    }

    /// r/d/a/x in a list (the marked rows, else the selected one) or on an opened withdrawal.
    /// Whatever cannot act says why in a notice that swallows the keys typed after it.
    fn row_action(&mut self, c: char) -> Vec<Cmd> {
        let detail = match &self.view {
            View::Detail(id) => self.data.detail.as_ref().filter(|d| &d.id == id),
            _ => None,
        };
        let action = match (&self.view, c) {
            (View::Dlq(k), 'r') => Action::Reprocess(*k),
            (View::Dlq(k), 'd') => Action::Discard(*k),
            (View::Approvals, 'a') => Action::Approve,
            (View::Approvals, 'x') => Action::Reject,
            (View::Detail(_), _) => {
                let status = detail.map(|d| d.status.as_str());
                let k = match status {
                    Some("INVALID") => Some(DlqKind::Invalid),
                    Some("SEND_FAILED") => Some(DlqKind::Tx),
                    _ => None,
                };
                match (c, k, status) {
                    ('r', Some(k), _) => Action::Reprocess(k),
                    ('d', Some(k), _) => Action::Discard(k),
                    ('a', _, Some("PENDING_APPROVAL")) => Action::Approve,
                    ('x', _, Some("PENDING_APPROVAL")) => Action::Reject,
                    (_, _, Some(s)) => {
                        return self
                            .refuse(format!("nothing to {c} on a {s} withdrawal (r/d: INVALID, SEND_FAILED; a/x: PENDING_APPROVAL)"));
                    }
                    (_, _, None) => return self.refuse("this withdrawal is not loaded yet: nothing to act on".into()),
                }
            }
            (View::Dlq(_), _) => return self.refuse(format!("{c} does nothing in a dead-letter queue: r reprocess, d discard")),
            (View::Approvals, _) => return self.refuse(format!("{c} does nothing in approvals: a approve, x reject")),
            _ => {
                return self.refuse(format!(
                    "{c} acts in the dead-letter queues (r, d), approvals (a, x) or on an opened withdrawal; not in {}",
                    self.view.title()
                ));
            }
        };
        if !self.can(action) {
            let cause = self.read_only_cause().unwrap_or_else(|| format!("the {} role is needed", action.role()));
            return self.refuse(format!("cannot {}: {cause}", action.verb().to_lowercase()));
        }
        let (items, hidden): (Vec<Item>, usize) = match detail {
            Some(d) => (
                vec![Item {
                    id: d.id.clone(),
                    user_id: d.user_id.clone(),
                    amount: d.amount.clone(),
                    asset: d.asset.clone(),
                    chain_id: d.chain_id,
                    status: d.status.clone(),
                }],
                0,
            ),
            None if !self.place.marks.is_empty() => {
                let all = self.all_rows().unwrap_or(&[]);
                (all.iter().filter(|w| self.place.marks.contains(&w.id)).map(Item::of).collect(), self.hidden_marks())
            }
            None => {
                if let Some(gone) = &self.place.lost {
                    return self.refuse(format!("the row you had selected ({}) left this list; select one again", short_id(gone)));
                }
                (self.rows().get(self.place.selected).map(|w| vec![Item::of(w)]).unwrap_or_default(), 0)
            }
        };
        if items.is_empty() {
            return self.refuse(format!("nothing to {}: the list is empty", action.verb().to_lowercase()));
        }
        self.mode = Mode::Dialog(Dialog { action, items, hidden, reason: String::new(), focus: Focus::Reason, error: None });
        Vec::new()
    }

    /// `p`: pause signing on every chain, or resume what is paused.
    fn pause_toggle(&mut self) -> Vec<Cmd> {
        let action = match &self.data.signing {
            Some(s) if s.paused_all => Action::Resume(None),
            Some(s) if !s.paused_chains.is_empty() => Action::Resume(s.paused_chains.first().copied()),
            Some(_) => Action::Pause(None),
            None => return self.refuse("signing state unknown: use :pause or :resume".into()),
        };
        self.signing_dialog(action)
    }

    fn signing_dialog(&mut self, action: Action) -> Vec<Cmd> {
        if !self.can(action) {
            let cause = self.read_only_cause().unwrap_or_else(|| "the operator role is needed".into());
            return self.refuse(format!("cannot {}: {cause}", action.verb().to_lowercase()));
        }
        self.mode = Mode::Dialog(Dialog { action, items: Vec::new(), hidden: 0, reason: String::new(), focus: Focus::Reason, error: None });
        Vec::new()
    }

    /// Command and filter lines: type, backspace, enter to run, esc to drop.
    fn line_key(&mut self, code: KeyCode, mut buf: String, command: bool) -> Vec<Cmd> {
        match code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter if command => self.command(&buf),
            KeyCode::Enter => {
                self.place.filter = buf.trim().to_owned();
                self.select(0);
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
            (Some("q" | "quit" | "q!"), _) => {
                self.quit = true;
                return Vec::new();
            }
            (Some("dlq"), None | Some("invalid")) => View::Dlq(DlqKind::Invalid),
            (Some("dlq"), Some("tx")) | (Some("txdlq"), _) => View::Dlq(DlqKind::Tx),
            (Some("tx" | "w"), Some(id)) => return self.open_id(id),
            (Some("approvals"), _) => View::Approvals,
            (Some("alerts"), _) => View::Alerts,
            (Some("health"), _) => View::Health,
            (Some("audit"), _) => View::Audit,
            (Some("withdrawals" | "tx" | "w"), None) => View::Withdrawals,
            (Some("dash" | "dashboard"), _) => View::Dashboard,
            (Some("help"), _) => View::Help,
            (Some(verb @ ("pause" | "resume")), chain) => {
                let chain = match chain.map(str::parse::<u64>) {
                    None => None,
                    Some(Ok(c)) => Some(c),
                    Some(Err(_)) => return self.refuse(format!(":{verb} takes a chain id (a number), or nothing for every chain")),
                };
                return self.signing_dialog(if verb == "pause" { Action::Pause(chain) } else { Action::Resume(chain) });
            }
            (None, _) => return Vec::new(),
            (Some(other), _) => {
                return self.refuse(format!("unknown command :{other} (try :dlq, :tx <id>, :approvals, :alerts, :pause, :q)"));
            }
        };
        self.jump(view)
    }

    /// `:tx <id>`: a whole id opens it; a part of one (as the lists show it) is searched for
    /// on the server, and opened if it is the start of exactly one id (never guessed from
    /// what happens to be loaded: two withdrawals can share a list's short id).
    fn open_id(&mut self, id: &str) -> Vec<Cmd> {
        self.back.clear();
        if is_full_id(id) {
            return self.open(View::Detail(id.to_owned()));
        }
        self.switch(View::Withdrawals);
        self.place.filter = split_short(id).0.to_owned();
        self.open_single = Some(id.to_owned());
        self.select(0);
        self.refresh()
    }

    fn dialog_key(&mut self, code: KeyCode, mut d: Dialog) -> Vec<Cmd> {
        let cancel = |app: &mut App, why: &str| {
            app.status = Some(why.into());
            Vec::new()
        };
        match code {
            KeyCode::Esc => return cancel(self, "cancelled"),
            KeyCode::Tab | KeyCode::Down => {
                d.focus = match d.focus {
                    Focus::Reason => Focus::Confirm,
                    Focus::Confirm => Focus::Cancel,
                    Focus::Cancel => Focus::Reason,
                }
            }
            KeyCode::BackTab | KeyCode::Up => {
                d.focus = match d.focus {
                    Focus::Reason => Focus::Cancel,
                    Focus::Cancel => Focus::Confirm,
                    Focus::Confirm => Focus::Reason,
                }
            }
            KeyCode::Left | KeyCode::Right if d.focus != Focus::Reason => {
                d.focus = if d.focus == Focus::Cancel { Focus::Confirm } else { Focus::Cancel };
            }
            // Typing always writes the reason, wherever the focus was: nothing typed is lost.
            KeyCode::Char(c) => {
                d.focus = Focus::Reason;
                d.reason.push(c);
                d.error = None;
            }
            KeyCode::Backspace => {
                d.focus = Focus::Reason;
                d.reason.pop();
            }
            KeyCode::Enter => match d.focus {
                Focus::Cancel => return cancel(self, "cancelled"),
                // Cancel stays the default while no reason is written; what is typed after a
                // stray enter must not run as keys, so the cancel is a notice.
                Focus::Reason if d.reason.trim().is_empty() => return self.refuse("cancelled: no reason given, nothing done".into()),
                Focus::Confirm if d.reason.trim().is_empty() => {
                    d.error = Some("a reason is required".into());
                    d.focus = Focus::Reason;
                }
                Focus::Reason | Focus::Confirm => {
                    let n = d.items.len();
                    self.status = Some(match d.action {
                        Action::Pause(_) | Action::Resume(_) => format!("{}: asked, waiting for the answer", d.action.verb()),
                        a => format!("{} of {n} withdrawal(s): asked, waiting for the answer", a.verb()),
                    });
                    return vec![Cmd::Act { action: d.action, ids: d.ids(), reason: d.reason.trim().to_owned() }];
                }
            },
            _ => {}
        }
        self.mode = Mode::Dialog(d);
        Vec::new()
    }
}

/// The search a withdrawals fetch made.
fn f_query(f: &Fetch) -> Option<String> {
    match f {
        Fetch::Withdrawals(q) => Some(q.clone()),
        _ => None,
    }
}

/// A whole withdrawal id (a UUID as the API writes it).
fn is_full_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().filter(|b| *b == b'-').count() == 4
}

/// The view an alert's console link names: "withdraw-console --goto dlq/invalid".
pub fn goto_of(link: &str) -> Option<&str> {
    link.split("--goto").nth(1).map(str::trim).and_then(|s| s.split_whitespace().next())
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

    fn dlq(ids: &[&str]) -> Msg {
        Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, ids.iter().map(|i| w(i, "INVALID")).collect()))
    }

    fn app_as(roles: &[&str], view: View) -> App {
        let mut app = App::new("http://admin", view, Look { color: true, unicode: true }, 1_000_000);
        app.update(Msg::Loaded(Fetch::Me, Loaded::Me(MeV1 { name: "ann".into(), roles: roles.iter().map(|r| r.to_string()).collect() })));
        app.update(dlq(&["a", "b", "c"]));
        app
    }

    fn marks(app: &App) -> Vec<String> {
        app.place.marks.iter().cloned().collect()
    }

    const OP: &[&str] = &["viewer", "operator", "approver"];

    #[test]
    fn goto_targets_parse() {
        let check = |s: &str, v: Option<View>| assert_eq!(View::from_goto(s), v, "{s}");
        check("tx/abc", Some(View::Detail("abc".into())));
        check("dlq/invalid", Some(View::Dlq(DlqKind::Invalid)));
        check("dlq/tx", Some(View::Dlq(DlqKind::Tx)));
        check("approvals", Some(View::Approvals));
        check("alerts", Some(View::Alerts));
        check("health", Some(View::Health));
        check("dashboard", Some(View::Dashboard));
        check("tx/", None);
        check("nowhere", None);
        // Every target the help names parses.
        for t in GOTO_TARGETS.split(", ").flat_map(|t| t.split(" or ")) {
            assert!(View::from_goto(&t.replace("<id>", "x")).is_some(), "{t}");
        }
    }

    #[test]
    fn sums_are_exact_decimals() {
        assert_eq!(decimal_sum(&["0.5", "1.25", "2"]).as_deref(), Some("3.75"));
        assert_eq!(decimal_sum(&["0.1", "0.2"]).as_deref(), Some("0.3"));
        assert_eq!(decimal_sum(&["1.5", "1.5"]).as_deref(), Some("3"));
        assert_eq!(decimal_sum(&["0.000000000000000001", "0.000000000000000002"]).as_deref(), Some("0.000000000000000003"));
        assert_eq!(decimal_sum(&["12", "-1"]), None);
        assert_eq!(decimal_sum(&["1e5"]), None);
    }

    #[test]
    fn the_dialog_starts_on_the_reason_and_an_empty_reason_cancels() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char('d')));
        let Mode::Dialog(d) = &app.mode else { panic!("a dialog opens: {:?}", app.mode) };
        assert_eq!((d.focus, d.ids()), (Focus::Reason, vec!["a".to_owned()]));
        // Enter with no reason is Cancel: nothing is sent, and a notice swallows what follows.
        assert!(app.update(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.mode, Mode::Notice("cancelled: no reason given, nothing done".into()));
        app.update(key(KeyCode::Esc));

        // Tab to Confirm with no reason: refused, back to the reason.
        app.update(key(KeyCode::Char('r')));
        app.update(key(KeyCode::Tab));
        assert!(app.update(key(KeyCode::Enter)).is_empty(), "no reason, no action");
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!((d.focus, d.error.as_deref()), (Focus::Reason, Some("a reason is required")));
        // Typing while a button has focus still writes the reason.
        app.update(key(KeyCode::Tab));
        app.update(key(KeyCode::Tab));
        typed(&mut app, "funded");
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!((d.focus, d.reason.as_str()), (Focus::Reason, "funded"));
        let cmds = app.update(key(KeyCode::Enter));
        assert_eq!(cmds, vec![Cmd::Act { action: Action::Reprocess(DlqKind::Invalid), ids: vec!["a".into()], reason: "funded".into() }]);
        // Esc, and Enter on Cancel, cancel whatever was typed.
        app.update(key(KeyCode::Char('d')));
        typed(&mut app, "x");
        app.update(key(KeyCode::BackTab));
        assert!(app.update(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn the_dialog_knows_users_totals_and_effects() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        let mut rows = vec![w("a", "INVALID"), w("b", "INVALID"), w("c", "INVALID")];
        rows[1].user_id = "user-a".into();
        rows[2].asset = "USDC".into();
        rows[2].amount = "100.25".into();
        app.update(Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, rows)));
        app.update(key(KeyCode::Char('*')));
        app.update(key(KeyCode::Char('d')));
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!(d.users(), ["user-a", "user-c"]);
        assert_eq!(d.totals(), [("ETH".to_owned(), "1".to_owned()), ("USDC".to_owned(), "100.25".to_owned())]);
        assert_eq!(d.statuses(), [("INVALID".to_owned(), 3)]);
        let e = d.action.effect("INVALID");
        assert!(e.contains("REJECTED") && e.contains("no reservation"), "{e}");
        // One asset on two chains is two totals, each named with its chain.
        let mut d = d.clone();
        d.items[1].chain_id = 10;
        assert_eq!(
            d.totals(),
            [
                ("ETH on chain 31337".to_owned(), "0.5".to_owned()),
                ("ETH on chain 10".to_owned(), "0.5".to_owned()),
                ("USDC".to_owned(), "100.25".to_owned())
            ]
        );
    }

    #[test]
    fn marks_survive_opening_a_row_refreshes_while_filtered_and_failed_actions() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char(' '))); // marks a, moves to b
        app.update(key(KeyCode::Char('j'))); // c
        app.update(key(KeyCode::Char(' '))); // marks c
        assert_eq!(marks(&app), ["a", "c"]);
        // Open c and come back: marks, selection kept.
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Detail("c".into()));
        app.update(key(KeyCode::Esc));
        assert_eq!((app.view.clone(), marks(&app), app.place.selected), (View::Dlq(DlqKind::Invalid), vec!["a".into(), "c".into()], 2));
        // Filtered to b, a refresh keeps a and c (hidden by the filter, not gone).
        app.update(key(KeyCode::Char('/')));
        typed(&mut app, "user-b");
        app.update(key(KeyCode::Enter));
        app.update(dlq(&["a", "b", "c"]));
        assert_eq!(marks(&app), ["a", "c"]);
        assert_eq!(app.hidden_marks(), 2);
        // The action takes every marked row, hidden or not.
        app.update(key(KeyCode::Char('r')));
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!(d.ids(), ["a", "c"]);
        app.update(key(KeyCode::Esc));
        // A failed call keeps every mark; a partial one keeps the failed ones.
        let acted = |done: &[&str], failed: &[&str], error: Option<Failure>| {
            Msg::Acted(Acted {
                action: Action::Reprocess(DlqKind::Invalid),
                done: done.iter().map(|s| s.to_string()).collect(),
                failed: failed.iter().map(|s| (s.to_string(), "moved".to_owned())).collect(),
                unknown: vec![],
                error,
            })
        };
        app.update(acted(&[], &[], Some(Failure::Down("cannot connect".into()))));
        assert_eq!(marks(&app), ["a", "c"]);
        assert!(app.status.as_deref().unwrap().contains("marks kept"));
        app.update(acted(&["a"], &["c"], None));
        assert_eq!(marks(&app), ["c"]);
        // Rows that left the list lose their marks.
        app.update(dlq(&["a", "b"]));
        assert!(marks(&app).is_empty());
    }

    #[test]
    fn mark_all_and_range() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(dlq(&["a", "b", "c", "d", "e"]));
        app.update(key(KeyCode::Char('*')));
        assert_eq!(marks(&app).len(), 5);
        app.update(Msg::Key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL)));
        assert!(marks(&app).is_empty(), "again unmarks");
        app.update(key(KeyCode::Char('j'))); // b
        app.update(key(KeyCode::Char(' '))); // marks b, moves to c
        app.update(key(KeyCode::Char('j'))); // d
        app.update(key(KeyCode::Char('v')));
        assert_eq!(marks(&app), ["b", "c", "d"]);
        // Filtered, * marks only what shows.
        app.update(key(KeyCode::Char('/')));
        typed(&mut app, "user-e");
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Char('*')));
        assert_eq!(marks(&app), ["b", "c", "d", "e"]);
    }

    #[test]
    fn sort_orders_rows_and_the_selection_follows_its_row() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        let mut rows = vec![w("c", "INVALID"), w("b", "INVALID"), w("a", "INVALID")];
        rows[0].amount = "2".into();
        rows[1].amount = "10.5".into();
        rows[2].amount = "9.99".into();
        app.update(Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, rows)));
        let order = |app: &App| app.rows().iter().map(|w| w.id.clone()).collect::<Vec<_>>();
        assert_eq!(app.selected_id().as_deref(), Some("a"), "the selection followed a to its new place");
        app.update(key(KeyCode::Char('g'))); // c
        app.update(key(KeyCode::Char('j'))); // b
        app.update(key(KeyCode::Char('s')));
        assert_eq!((order(&app), app.place.sort), (vec!["a".into(), "b".into(), "c".into()], Sort::Oldest));
        assert_eq!(app.selected_id().as_deref(), Some("b"));
        app.update(key(KeyCode::Char('s')));
        assert_eq!(order(&app), ["b", "a", "c"], "10.5 > 9.99 > 2");
        // A refresh that adds a row above keeps the selection on b.
        let mut rows = vec![w("d", "INVALID"), w("c", "INVALID"), w("b", "INVALID")];
        rows[0].amount = "50".into();
        rows[2].amount = "10.5".into();
        app.update(Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, rows)));
        assert_eq!(app.selected_id().as_deref(), Some("b"));
    }

    #[test]
    fn viewers_and_unknown_rights_get_no_actions_and_say_why() {
        let mut app = app_as(&["viewer"], View::Dlq(DlqKind::Invalid));
        assert!(app.read_only());
        for c in ['r', 'd'] {
            app.update(key(KeyCode::Char(c)));
            let Mode::Notice(n) = &app.mode else { panic!("{c}: {:?}", app.mode) };
            assert!(n.contains("no operator or approver role"), "{c}: {n}");
            app.update(key(KeyCode::Esc));
        }
        for c in [' ', '*', 'v'] {
            app.update(key(KeyCode::Char(c)));
            let Mode::Notice(n) = &app.mode else { panic!("{c}: {:?}", app.mode) };
            assert!(n.contains("no operator or approver role"), "{c}: {n}");
            app.update(key(KeyCode::Esc));
        }
        assert!(marks(&app).is_empty());
        // An operator without the approver role cannot approve either.
        let mut app = app_as(&["viewer", "operator"], View::Approvals);
        app.update(Msg::Loaded(Fetch::Approvals, Loaded::Approvals(vec![w("p", "PENDING_APPROVAL")])));
        app.update(key(KeyCode::Char('a')));
        let Mode::Notice(n) = &app.mode else { panic!("{:?}", app.mode) };
        assert!(n.contains("approver"), "{n}");
    }

    #[test]
    fn rights_are_asked_again_until_known() {
        let mut app = App::new("http://admin", View::Dlq(DlqKind::Invalid), Look { color: true, unicode: true }, 0);
        assert_eq!(app.init(), vec![Cmd::Fetch(Fetch::Me), Cmd::Fetch(Fetch::Dlq(DlqKind::Invalid))]);
        app.update(Msg::Failed(Fetch::Me, Failure::Down("cannot connect".into())));
        app.update(Msg::Failed(Fetch::Dlq(DlqKind::Invalid), Failure::Down("cannot connect".into())));
        assert_eq!(app.read_only_cause().as_deref(), Some("rights unknown, /me: cannot connect"));
        let again = app.update(Msg::Tick(2_000));
        assert_eq!(again, vec![Cmd::Fetch(Fetch::Me), Cmd::Fetch(Fetch::Dlq(DlqKind::Invalid))]);
        app.update(Msg::Loaded(Fetch::Me, Loaded::Me(MeV1 { name: "ann".into(), roles: vec!["operator".into()] })));
        assert!(!app.read_only());
        app.update(Msg::Failed(Fetch::Dlq(DlqKind::Invalid), Failure::Down("cannot connect".into())));
        assert_eq!(app.update(Msg::Tick(4_000)), vec![Cmd::Fetch(Fetch::Dlq(DlqKind::Invalid))], "/me is known: not asked again");
    }

    #[test]
    fn views_tell_loading_unavailable_stale_and_fresh_apart() {
        let mut app = App::new("http://admin", View::Dlq(DlqKind::Invalid), Look { color: true, unicode: true }, 0);
        let f = Fetch::Dlq(DlqKind::Invalid);
        app.init();
        assert_eq!(app.freshness(&f), Freshness::Loading);
        app.update(Msg::Failed(f.clone(), Failure::Down("cannot connect".into())));
        assert_eq!(
            app.freshness(&f),
            Freshness::Unavailable { call: "GET /admin/v1/dlq/invalid".into(), error: Failure::Down("cannot connect".into()) }
        );
        assert!(app.down.is_some());
        app.update(dlq(&[]));
        assert_eq!(app.freshness(&f), Freshness::Fresh { age_ms: 0 });
        assert!(app.down.is_none());
        app.update(Msg::Tick(3_000));
        app.update(Msg::Failed(f.clone(), Failure::Down("timed out".into())));
        assert!(matches!(app.freshness(&f), Freshness::Stale { age_ms: 3_000, .. }));
        // An HTTP answer is not "API down": the API is up and refused this call.
        app.update(Msg::Failed(Fetch::Detail("x".into()), Failure::Http { status: 404, detail: "not a withdrawal id".into() }));
        assert!(app.down.is_none());
        // Nothing newer for long enough is stale too, even without a failure.
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(Msg::Tick(1_000_000 + STALE_MS + 1));
        assert!(matches!(app.freshness(&f), Freshness::Stale { error: None, .. }));
    }

    #[test]
    fn q_quits_anywhere_and_jumps_replace_rather_than_stack() {
        let mut app = app_as(&["viewer"], View::Dashboard);
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "alerts");
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "dlq");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Enter)); // drill down into a
        assert_eq!(app.view, View::Detail("a".into()));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Dlq(DlqKind::Invalid), "esc goes back a drill-down");
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Dashboard, "and from a jumped-to view, home");
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "bogus");
        app.update(key(KeyCode::Enter));
        assert!(matches!(&app.mode, Mode::Notice(n) if n.contains("unknown command")), "{:?}", app.mode);
        app.update(key(KeyCode::Esc));
        // q, typed in a view with a trail behind it, quits.
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "dlq");
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Char('q')));
        assert!(app.quit);
        let mut app = app_as(&["viewer"], View::Health);
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "q");
        app.update(key(KeyCode::Enter));
        assert!(app.quit);
    }

    #[test]
    fn a_short_id_is_searched_for_and_opened_only_if_it_names_one_id() {
        // Two withdrawals of one millisecond share their first 18 characters.
        let full = "0193a1f0-aaaa-7000-8000-00000000a001";
        let twin = "0193a1f0-aaaa-7000-8000-00000000b002";
        assert_eq!(short_id(full), "0193a1f0-aaaa..a001");
        let mut app = app_as(&["viewer"], View::Dashboard);
        // Loaded here, but never guessed from what is loaded: the server is asked for the head.
        app.update(Msg::Loaded(Fetch::Dlq(DlqKind::Invalid), Loaded::Dlq(DlqKind::Invalid, vec![w(full, "INVALID")])));
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "tx 0193a1f0-aaaa..a001");
        assert_eq!(app.update(key(KeyCode::Enter)), vec![Cmd::Fetch(Fetch::Withdrawals("0193a1f0-aaaa".into()))]);
        let both = vec![w(twin, "SENT"), w(full, "INVALID")];
        let cmds = app.update(Msg::Loaded(Fetch::Withdrawals("0193a1f0-aaaa".into()), Loaded::Withdrawals(both.clone())));
        assert_eq!((app.view.clone(), cmds), (View::Detail(full.into()), vec![Cmd::Fetch(Fetch::Detail(full.into()))]));
        // The head alone names two: the list, not a guess.
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "tx 0193a1f0-aaaa");
        app.update(key(KeyCode::Enter));
        app.update(Msg::Loaded(Fetch::Withdrawals("0193a1f0-aaaa".into()), Loaded::Withdrawals(both)));
        assert_eq!(app.view, View::Withdrawals);
        assert_eq!(app.status.as_deref(), Some("2 withdrawals match 0193a1f0-aaaa"));
        // A user id that happens to match is not an id that starts so.
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "tx 12345678");
        app.update(key(KeyCode::Enter));
        let mut by_user = w("0193c3d0-0000-7000-8000-000000000004", "SENT");
        by_user.user_id = "12345678".into();
        app.update(Msg::Loaded(Fetch::Withdrawals("12345678".into()), Loaded::Withdrawals(vec![by_user])));
        assert_eq!(app.view, View::Withdrawals);
        // One match whose id starts so is opened.
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "tx 0193b2");
        assert_eq!(app.update(key(KeyCode::Enter)), vec![Cmd::Fetch(Fetch::Withdrawals("0193b2".into()))]);
        let other = "0193b2c0-0000-7000-8000-000000000003";
        let cmds = app.update(Msg::Loaded(Fetch::Withdrawals("0193b2".into()), Loaded::Withdrawals(vec![w(other, "SENT")])));
        assert_eq!((app.view.clone(), cmds), (View::Detail(other.into()), vec![Cmd::Fetch(Fetch::Detail(other.into()))]));
        // A 404 is shown as what it is, not as loading.
        app.update(Msg::Failed(Fetch::Detail(other.into()), Failure::Http { status: 404, detail: "no such withdrawal".into() }));
        assert!(matches!(app.freshness(&Fetch::Detail(other.into())), Freshness::Unavailable { .. }));
        // A whole id opens directly.
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, &format!("tx {full}"));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Detail(full.into()));
        // --goto tx/<short id> is the same search.
        let mut app = App::new("http://admin", View::Detail("0193b2c0-0000..0003".into()), Look { color: true, unicode: true }, 0);
        assert_eq!(app.init(), vec![Cmd::Fetch(Fetch::Me), Cmd::Fetch(Fetch::Withdrawals("0193b2c0-0000".into()))]);
    }

    #[test]
    fn a_reason_typed_after_a_key_that_did_nothing_never_runs_as_commands() {
        // In approvals, d does nothing; "abuse suspected" typed after it must not approve.
        let mut app = app_as(OP, View::Approvals);
        app.update(Msg::Loaded(Fetch::Approvals, Loaded::Approvals(vec![w("p", "PENDING_APPROVAL")])));
        app.update(key(KeyCode::Char('d')));
        let mut cmds = Vec::new();
        for c in "abuse suspected".chars() {
            cmds.extend(app.update(key(KeyCode::Char(c))));
        }
        cmds.extend(app.update(key(KeyCode::Enter)));
        assert!(cmds.is_empty(), "{cmds:?}");
        assert_eq!(app.mode, Mode::Normal, "enter closed the notice, and nothing else happened");
        // On an opened INVALID withdrawal, x does nothing; "refund manually" must not reprocess.
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Enter));
        app.update(Msg::Loaded(Fetch::Detail("a".into()), Loaded::Detail(Box::new(detail_of("a", "INVALID")))));
        app.update(key(KeyCode::Char('x')));
        let mut cmds = Vec::new();
        for c in "refund manually".chars() {
            cmds.extend(app.update(key(KeyCode::Char(c))));
        }
        cmds.extend(app.update(key(KeyCode::Enter)));
        assert!(cmds.is_empty() && app.mode == Mode::Normal, "{cmds:?} {:?}", app.mode);
        // A refused command line, then a reason: nothing runs (signing paused on chain 10;
        // the "p" of "suspected" would otherwise open a resume).
        let mut app = app_as(OP, View::Dashboard);
        let paused = SigningStateV1 { paused_all: false, paused_chains: vec![10], controls: vec![] };
        app.update(Msg::Loaded(Fetch::Signing, Loaded::Signing(paused)));
        let mut cmds = Vec::new();
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "pause polygon");
        cmds.extend(app.update(key(KeyCode::Enter)));
        for c in "suspected compromise".chars() {
            cmds.extend(app.update(key(KeyCode::Char(c))));
        }
        cmds.extend(app.update(key(KeyCode::Enter)));
        assert!(cmds.is_empty() && app.mode == Mode::Normal, "{cmds:?} {:?}", app.mode);
        // A dialog cancelled by a stray enter (no reason yet), then the reason: nothing runs.
        let mut app = app_as(OP, View::Approvals);
        app.update(Msg::Loaded(Fetch::Approvals, Loaded::Approvals(vec![w("p", "PENDING_APPROVAL")])));
        app.update(key(KeyCode::Char('x')));
        let mut cmds = app.update(key(KeyCode::Enter));
        for c in "abuse suspected".chars() {
            cmds.extend(app.update(key(KeyCode::Char(c))));
        }
        cmds.extend(app.update(key(KeyCode::Enter)));
        assert!(cmds.is_empty() && app.mode == Mode::Normal, "{cmds:?} {:?}", app.mode);
        // * on an opened withdrawal marks nothing, and what is typed after it is swallowed.
        let mut app = app_as(OP, View::Approvals);
        app.update(Msg::Loaded(Fetch::Approvals, Loaded::Approvals(vec![w("p", "PENDING_APPROVAL")])));
        app.update(key(KeyCode::Enter));
        app.update(Msg::Loaded(Fetch::Detail("p".into()), Loaded::Detail(Box::new(detail_of("p", "PENDING_APPROVAL")))));
        let mut cmds = app.update(key(KeyCode::Char('*')));
        for c in "abuse".chars() {
            cmds.extend(app.update(key(KeyCode::Char(c))));
        }
        cmds.extend(app.update(key(KeyCode::Enter)));
        assert!(cmds.is_empty() && app.mode == Mode::Normal, "{cmds:?} {:?}", app.mode);
    }

    #[test]
    fn a_selected_row_that_leaves_the_list_is_not_replaced_by_its_neighbour() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char('j'))); // b
        app.update(dlq(&["a", "c"])); // b was reprocessed by someone else
        assert_eq!(app.place.lost.as_deref(), Some("b"));
        // Later refreshes and a re-sort do not choose for the operator.
        app.update(dlq(&["a", "c"]));
        app.update(key(KeyCode::Char('s')));
        app.update(dlq(&["a", "c"]));
        assert_eq!(app.place.lost.as_deref(), Some("b"));
        app.update(key(KeyCode::Char('s')));
        app.update(key(KeyCode::Char('s')));
        app.update(key(KeyCode::Char('s'))); // newest first again
        app.update(key(KeyCode::Char('d')));
        let Mode::Notice(n) = &app.mode else { panic!("{:?}", app.mode) };
        assert!(n.contains("left this list"), "{n}");
        app.update(key(KeyCode::Esc));
        assert!(app.update(key(KeyCode::Enter)).is_empty(), "enter does not open the neighbour either");
        // Choosing again clears it.
        app.update(key(KeyCode::Char('k')));
        app.update(key(KeyCode::Char('d')));
        let Mode::Dialog(d) = &app.mode else { panic!("{:?}", app.mode) };
        assert_eq!(d.ids(), ["a"]);
        // Audit entries arriving on top do not move the selection to another entry.
        let mut app = app_as(OP, View::Audit);
        let entry = |id: i64| AuditEntryV1 {
            id,
            at_ms: 0,
            actor: "ann".into(),
            action: "withdrawal.reprocess".into(),
            target: format!("withdrawal/w{id}"),
            reason: None,
            detail: String::new(),
        };
        app.update(Msg::Loaded(Fetch::Audit, Loaded::Audit(vec![entry(2), entry(1)])));
        app.update(key(KeyCode::Char('j'))); // entry 1
        app.update(Msg::Loaded(Fetch::Audit, Loaded::Audit(vec![entry(4), entry(3), entry(2), entry(1)])));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Detail("w1".into()));
    }

    #[test]
    fn an_action_whose_outcome_is_unknown_says_so() {
        let acted = |action, error| Acted { action, done: vec![], failed: vec![], unknown: vec![], error };
        let s = |a: Acted| a.summary();
        assert_eq!(s(acted(Action::Pause(None), None)), "pause signing: done");
        let k = Action::Reprocess(DlqKind::Invalid);
        assert!(s(acted(k, Some(Failure::Down("timed out".into())))).starts_with("reprocess: outcome unknown (timed out)"));
        assert!(s(acted(k, Some(Failure::Http { status: 502, detail: String::new() }))).starts_with("reprocess: outcome unknown"));
        assert!(s(acted(k, Some(Failure::Down(CANNOT_CONNECT.into())))).starts_with("reprocess not sent: cannot connect"));
        assert!(
            s(acted(k, Some(Failure::Http { status: 403, detail: "operator role required".into() })))
                .starts_with("reprocess refused: HTTP 403")
        );
        let partial = Acted {
            action: Action::Approve,
            done: vec!["a".into()],
            failed: vec![("c".into(), "not sent: the API stopped answering".into())],
            unknown: vec![("b".into(), "timed out".into())],
            error: None,
        };
        assert_eq!(
            partial.summary(),
            "approve: 1 done, 1 outcome unknown, still marked (b: timed out), 1 failed, still marked (c: not sent: the API stopped answering)"
        );
    }

    fn detail_of(id: &str, status: &str) -> WithdrawalV1 {
        WithdrawalV1 {
            id: id.into(),
            status: status.into(),
            reason: Some("insufficient balance".into()),
            user_id: "user-a".into(),
            asset: "ETH".into(),
            chain_id: 31337,
            to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            amount: "0.5".into(),
            amount_base_units: "500000000000000000".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
            attempts: vec![],
            inclusion: None,
            confirmations: 0,
            history: vec![],
            cancel: None,
        }
    }

    #[test]
    fn row_actions_from_the_detail_view_and_copy_without_attempts() {
        let mut app = app_as(OP, View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Enter));
        app.update(Msg::Loaded(Fetch::Detail("a".into()), Loaded::Detail(Box::new(detail_of("a", "INVALID")))));
        app.update(key(KeyCode::Char('c')));
        assert_eq!(app.status.as_deref(), Some("no transaction yet: this withdrawal was never signed"));
        app.update(key(KeyCode::Char('a')));
        let Mode::Notice(n) = &app.mode else { panic!("{:?}", app.mode) };
        assert!(n.contains("nothing to a on a INVALID"), "{n}");
        app.update(key(KeyCode::Esc));
        app.update(key(KeyCode::Char('r')));
        typed(&mut app, "topped up");
        let cmds = app.update(key(KeyCode::Enter));
        assert_eq!(cmds, vec![Cmd::Act { action: Action::Reprocess(DlqKind::Invalid), ids: vec!["a".into()], reason: "topped up".into() }]);
    }

    #[test]
    fn pause_and_resume_signing_behind_a_reason() {
        let mut app = app_as(OP, View::Dashboard);
        app.update(key(KeyCode::Char('p')));
        assert_eq!(app.mode, Mode::Notice("signing state unknown: use :pause or :resume".into()));
        app.update(key(KeyCode::Esc));
        app.update(Msg::Loaded(
            Fetch::Signing,
            Loaded::Signing(SigningStateV1 { paused_all: false, paused_chains: vec![], controls: vec![] }),
        ));
        app.update(key(KeyCode::Char('p')));
        typed(&mut app, "incident 42");
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Cmd::Act { action: Action::Pause(None), ids: vec![], reason: "incident 42".into() }]
        );
        app.update(Msg::Loaded(
            Fetch::Signing,
            Loaded::Signing(SigningStateV1 { paused_all: false, paused_chains: vec![31337], controls: vec![] }),
        ));
        app.update(key(KeyCode::Char('p')));
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!(d.action, Action::Resume(Some(31337)));
        app.update(key(KeyCode::Esc));
        app.update(key(KeyCode::Char(':')));
        typed(&mut app, "pause 10");
        app.update(key(KeyCode::Enter));
        let Mode::Dialog(d) = &app.mode else { panic!() };
        assert_eq!(d.action, Action::Pause(Some(10)));
        // A viewer is told why not.
        let mut app = app_as(&["viewer"], View::Dashboard);
        app.update(Msg::Loaded(
            Fetch::Signing,
            Loaded::Signing(SigningStateV1 { paused_all: false, paused_chains: vec![], controls: vec![] }),
        ));
        app.update(key(KeyCode::Char('p')));
        let Mode::Notice(n) = &app.mode else { panic!("{:?}", app.mode) };
        assert!(n.starts_with("cannot pause signing"), "{n}");
    }

    #[test]
    fn refresh_is_periodic_unless_frozen_and_never_piles_up() {
        let mut app = app_as(&["viewer"], View::Dashboard);
        let first = app.refresh();
        assert_eq!(first.len(), 5);
        assert!(app.update(Msg::Tick(1_000_000 + 2_500)).is_empty(), "the same fetches are still on their way");
        app.update(Msg::Failed(Fetch::Stats, Failure::Down("connection refused".into())));
        let again = app.update(Msg::Tick(1_000_000 + 5_000));
        assert_eq!(again, vec![Cmd::Fetch(Fetch::Stats)], "only what is not in flight");
        assert!(app.down.is_some());
        app.update(key(KeyCode::Char('f')));
        app.update(Msg::Failed(Fetch::Stats, Failure::Down("x".into())));
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
            app.update(Msg::Failed(f, Failure::Down("timed out".into())));
        }
        assert_eq!(app.slow_for_ms(), None, "answered (with an error): no longer waiting");
    }

    fn alert(name: &str, status: &str, goto: &str) -> AlertV1 {
        AlertV1 {
            fingerprint: name.into(),
            status: status.into(),
            name: name.into(),
            severity: Some("page".into()),
            summary: None,
            console: Some(format!("withdraw-console --goto {goto}")),
            labels: serde_json::json!({}),
            annotations: serde_json::json!({}),
            starts_at: "2026-11-24T03:00:00Z".into(),
            ends_at: None,
            received_at_ms: 0,
        }
    }

    #[test]
    fn alert_links_open_views_from_the_alerts_view_and_the_dashboard() {
        let mut app = app_as(&["viewer"], View::Alerts);
        let alerts = vec![alert("Old", "resolved", "health"), alert("WithdrawTxDLQNotEmpty", "firing", "dlq/tx")];
        app.update(Msg::Loaded(Fetch::Alerts, Loaded::Alerts(alerts.clone())));
        app.update(key(KeyCode::Char('j')));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Dlq(DlqKind::Tx));
        // The dashboard lists firing alerts only; enter opens the selected one's view.
        let mut app = app_as(&["viewer"], View::Dashboard);
        app.update(Msg::Loaded(Fetch::Alerts, Loaded::Alerts(alerts)));
        assert_eq!(app.firing().len(), 1);
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Dlq(DlqKind::Tx));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view, View::Dashboard);
    }

    #[test]
    fn audit_rows_open_their_withdrawal() {
        let mut app = app_as(&["viewer"], View::Audit);
        let entry = |id: i64, target: &str| AuditEntryV1 {
            id,
            at_ms: 0,
            actor: "ann".into(),
            action: "withdrawal.reprocess".into(),
            target: target.into(),
            reason: Some("r".into()),
            detail: String::new(),
        };
        app.update(Msg::Loaded(Fetch::Audit, Loaded::Audit(vec![entry(2, "chain 31337"), entry(1, "withdrawal/abc")])));
        app.update(key(KeyCode::Enter));
        assert_eq!((app.view.clone(), app.status.as_deref()), (View::Audit, Some("chain 31337 is not a withdrawal")));
        app.update(key(KeyCode::Char('j')));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.view, View::Detail("abc".into()));
    }

    #[test]
    fn the_filter_narrows_and_esc_clears_it_first() {
        let mut app = app_as(&["viewer"], View::Dlq(DlqKind::Invalid));
        app.update(key(KeyCode::Char('/')));
        typed(&mut app, "user-b");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.rows().iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["b"]);
        app.update(key(KeyCode::Esc));
        assert_eq!((app.rows().len(), app.view.clone()), (3, View::Dlq(DlqKind::Invalid)), "esc clears the filter first");
    }
}
