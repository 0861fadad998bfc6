//! Pure rendering: `draw(frame, &app)` and nothing else. Layout is a header line, the view's
//! box, and a footer line (key hints, the command or filter being typed, or a status). Sized
//! for 80x24 first; wider terminals get wider columns. With `NO_COLOR` nothing is coloured;
//! on a dumb terminal (as under `kubectl exec` without a TERM) only ASCII is drawn.
//!
//! Nothing unknown is drawn as nothing: each part of a view says whether it is loading,
//! unavailable (with the call and its error), stale (with its age, in words as well as
//! colour), empty, or filtered to nothing.

use crate::app::{Action, App, Failure, Fetch, Focus, Freshness, Mode, SHORT_ID, View, goto_of, short_id};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use withdraw_core::wire::{WithdrawalSummaryV1, WithdrawalV1};

const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

/// Styles that degrade to plain text with NO_COLOR (selection stays visible as reverse video).
struct Theme {
    color: bool,
    unicode: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn dim(&self) -> Style {
        if self.color { Style::default().fg(Color::DarkGray) } else { Style::default() }
    }
    fn state(&self, s: &str) -> Style {
        match s {
            "healthy" | "COMPLETED" | "firing-resolved" | "resolved" | "RUNNING" => self.fg(Color::Green),
            "lagging" | "SENT" | "SIGNED" | "RECEIVED" | "PENDING_APPROVAL" => self.fg(Color::Yellow),
            _ => self.fg(Color::Red),
        }
    }
    fn block<'a>(&self, title: String) -> Block<'a> {
        let b = Block::bordered().title(Span::styled(format!(" {title} "), self.bold()));
        if self.unicode { b } else { b.border_set(ASCII_BORDER) }
    }
    fn mark(&self) -> &'static str {
        if self.unicode { "●" } else { "*" }
    }
    fn arrow(&self) -> &'static str {
        if self.unicode { "→" } else { "->" }
    }
    fn more(&self) -> &'static str {
        if self.unicode { "…" } else { "..." }
    }
    fn enter(&self) -> &'static str {
        if self.unicode { "⏎" } else { "enter" }
    }
    fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

/// Pads or cuts `s` to exactly `w` characters.
fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        format!("{s}{}", " ".repeat(w - n))
    } else if w > 1 {
        format!("{}~", s.chars().take(w - 1).collect::<String>())
    } else {
        s.chars().take(w).collect()
    }
}

/// "12s", "5m", "3h", "2d": how long ago, from the app's own clock.
pub fn ago(now_ms: i64, at_ms: i64) -> String {
    let s = ((now_ms - at_ms) / 1000).max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A one-line bar chart of the last `width` samples, scaled to their maximum.
pub fn spark(values: impl IntoIterator<Item = u64>, width: usize, unicode: bool) -> String {
    let v: Vec<u64> = values.into_iter().collect();
    let v = &v[v.len().saturating_sub(width)..];
    let bars: Vec<char> = if unicode { "▁▂▃▄▅▆▇█".chars().collect() } else { "_.-=+*#@".chars().collect() };
    let max = v.iter().copied().max().unwrap_or(0);
    let mut out: String = v.iter().map(|&x| bars[(x * (bars.len() as u64 - 1)).checked_div(max).unwrap_or(0) as usize]).collect();
    // Newest on the right; a short history starts at the column's left edge.
    while out.chars().count() < width {
        out.push(' ');
    }
    out
}

fn short(addr: &str) -> String {
    if addr.len() > 12 { format!("{}..{}", &addr[..6], &addr[addr.len() - 4..]) } else { addr.to_owned() }
}

pub fn draw(f: &mut Frame, app: &App) {
    let t = Theme { color: app.look.color, unicode: app.look.unicode };
    let [head, body, foot] = Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
    f.render_widget(Paragraph::new(header(app, &t, head.width as usize)), head);
    let block = t.block(app.view.title());
    let inner = block.inner(body);
    f.render_widget(block, body);
    let lines = match &app.view {
        View::Dashboard => dashboard(app, &t, inner.width as usize),
        View::Withdrawals | View::Dlq(_) | View::Approvals => list(app, &t, inner),
        View::Detail(id) => detail(app, &t, id, inner.width as usize),
        View::Alerts => alerts(app, &t, inner),
        View::Audit => audit(app, &t, inner),
        View::Health => health(app, &t, inner.width as usize),
        View::Help => help(app),
    };
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    f.render_widget(Paragraph::new(footer(app, &t, foot.width as usize)), foot);
    match &app.mode {
        Mode::Dialog(d) => dialog(f, &t, d),
        Mode::Notice(n) => notice(f, &t, n),
        _ => {}
    }
}

/// The API's state, who we are and what we may do; the program's name only if it all fits.
fn header<'a>(app: &App, t: &Theme, width: usize) -> Line<'a> {
    // "API DOWN" only when calls get no answer at all; a refused call is its view's to show.
    let api = match (&app.down, app.last_ok_ms) {
        (Some((e @ Failure::Down(_), since)), _) => Span::styled(format!("API DOWN {}: {e}", ago(app.now_ms, *since)), t.bad()),
        (Some((e, since)), _) => Span::styled(format!("API FAILING {}: {e}", ago(app.now_ms, *since)), t.bad()),
        (None, _) if app.slow_for_ms().is_some() => {
            Span::styled(format!("API SLOW: waiting {}s", app.slow_for_ms().unwrap_or(0) / 1000), t.warn())
        }
        (None, Some(_)) => Span::styled("API ok", t.fg(Color::Green)),
        (None, None) => Span::styled(format!("API {}", t.more()), t.dim()),
    };
    let mut spans = vec![api, Span::raw(" | ")];
    if app.frozen {
        spans.push(Span::styled("FROZEN ", t.fg(Color::Cyan).add_modifier(Modifier::BOLD)));
    }
    if let Some(m) = &app.me {
        spans.push(Span::raw(format!("{} ", m.name)));
    }
    if let Some(cause) = app.read_only_cause() {
        spans.push(Span::styled(format!("[READ-ONLY: {cause}]"), t.warn()));
    }
    let name = "withdraw-console | ";
    if Line::from(spans.clone()).width() + name.len() <= width {
        spans.insert(0, Span::styled(name, t.bold()));
    }
    Line::from(spans)
}

/// Joins hints that fit `width`, in order of importance; `tail` always shows.
fn fit_hints(hints: &[String], tail: &[&str], width: usize) -> String {
    const SEP: usize = 2;
    let tail_w: usize = tail.iter().map(|h| h.chars().count() + SEP).sum();
    let mut out: Vec<&str> = Vec::new();
    let mut used = tail_w;
    for h in hints {
        let w = h.chars().count() + SEP;
        if used + w <= width + SEP {
            out.push(h);
            used += w;
        }
    }
    out.extend(tail.iter().copied());
    out.join("  ")
}

fn footer<'a>(app: &App, t: &Theme, width: usize) -> Line<'a> {
    match &app.mode {
        Mode::Command(buf) => return Line::from(vec![Span::styled(":", t.bold()), Span::raw(buf.clone()), Span::raw("_")]),
        Mode::Filter(buf) => return Line::from(vec![Span::styled("/", t.bold()), Span::raw(buf.clone()), Span::raw("_")]),
        _ => {}
    }
    if let Some(s) = &app.status {
        return Line::from(Span::styled(s.clone(), t.fg(Color::Cyan)));
    }
    // The view's own keys first, most used first; what does not fit is in help (`?`).
    let open = format!("{} open", t.enter());
    let mut hints: Vec<String> = Vec::new();
    let mut add = |h: &str| hints.push(h.to_owned());
    match &app.view {
        View::Dlq(k) => {
            if app.can(Action::Reprocess(*k)) {
                ["spc/* mark", "r reprocess", "d discard"].into_iter().for_each(&mut add);
            }
            add("/ filter");
            add(&open);
            add("s sort");
        }
        View::Approvals => {
            if app.can(Action::Approve) {
                ["spc/* mark", "a approve", "x reject"].into_iter().for_each(&mut add);
            }
            add("/ filter");
            add(&open);
            add("s sort");
        }
        View::Withdrawals => {
            add("/ search");
            add(&open);
            add("s sort");
        }
        View::Detail(id) => {
            let status = app.data.detail.as_ref().filter(|d| &d.id == id).map(|d| d.status.as_str());
            match status {
                Some("INVALID" | "SEND_FAILED") if app.can(Action::Reprocess(crate::app::DlqKind::Invalid)) => {
                    ["r reprocess", "d discard"].into_iter().for_each(&mut add);
                }
                Some("PENDING_APPROVAL") if app.can(Action::Approve) => {
                    ["a approve", "x reject"].into_iter().for_each(&mut add);
                }
                _ => {}
            }
            add("c copy tx hash");
        }
        View::Dashboard | View::Health => {
            if matches!(app.view, View::Dashboard) && !app.firing().is_empty() {
                add(&format!("{} open alert", t.enter()));
            }
            if app.can(Action::Pause(None)) {
                let paused = app.data.signing.as_ref().is_some_and(|s| s.paused_all || !s.paused_chains.is_empty());
                add(if paused { "p resume signing" } else { "p pause signing" });
            }
            add(": go to");
        }
        View::Alerts => add(&format!("{} open its view", t.enter())),
        View::Audit => add(&format!("{} open withdrawal", t.enter())),
        View::Help => {}
    }
    add("q quit");
    let tail: &[&str] = if app.view == View::Help { &["esc back"] } else { &["esc back", "? more"] };
    Line::from(Span::styled(fit_hints(&hints, tail, width), t.dim()))
}

/// One line for a part of a view that cannot be shown as data: loading, or unavailable.
fn problem<'a>(app: &App, t: &Theme, f: &Fetch, what: &str) -> Option<Line<'a>> {
    match app.freshness(f) {
        Freshness::Loading => Some(Line::from(Span::styled(format!("loading {what}{}", t.more()), t.dim()))),
        Freshness::Unavailable { error: error @ crate::app::Failure::Http { status: 404, .. }, call } => {
            Some(Line::from(Span::styled(format!("NOT FOUND {what}: {call}: {error}"), t.bad())))
        }
        Freshness::Unavailable { call, error } => {
            let since = app.calls.get(f).and_then(|c| c.failure.as_ref()).map(|(_, s)| ago(app.now_ms, *s)).unwrap_or_default();
            let next = if app.frozen { "frozen: not retrying" } else { "retrying" };
            Some(Line::from(Span::styled(format!("UNAVAILABLE {what}: {call}: {error} (for {since}, {next})"), t.bad())))
        }
        _ => None,
    }
}

/// For a view whose data is not this call's answer (another search's, another withdrawal's):
/// loading, or unavailable if the call now fails; never blank.
fn not_loaded<'a>(app: &App, t: &Theme, f: &Fetch, what: &str) -> Line<'a> {
    if let Some(p) = problem(app, t, f, what) {
        return p;
    }
    match app.calls.get(f).and_then(|c| c.failure.as_ref()) {
        Some((e, _)) => Line::from(Span::styled(format!("UNAVAILABLE {what}: {}: {e}", f.label()), t.bad())),
        None => Line::from(Span::styled(format!("loading {what}{}", t.more()), t.dim())),
    }
}

/// "stale 34s" (and why) for data shown from an older answer; None when fresh.
fn stale(app: &App, f: &Fetch) -> Option<String> {
    match app.freshness(f) {
        Freshness::Stale { age_ms, call, error: Some(e) } => Some(format!("STALE {}: {call}: {e}", ago(app.now_ms, app.now_ms - age_ms))),
        Freshness::Stale { age_ms, .. } => Some(format!("STALE {}", ago(app.now_ms, app.now_ms - age_ms))),
        _ => None,
    }
}

/// A section heading with its staleness after it.
fn heading<'a>(app: &App, t: &Theme, text: String, f: &Fetch) -> Line<'a> {
    let mut spans = vec![Span::styled(text, t.bold())];
    if let Some(s) = stale(app, f) {
        spans.push(Span::styled(format!(" {s}"), t.warn()));
    }
    Line::from(spans)
}

fn dashboard<'a>(app: &App, t: &Theme, width: usize) -> Vec<Line<'a>> {
    let d = &app.data;
    let mut out = Vec::new();
    let signing = match (&d.signing, app.freshness(&Fetch::Signing)) {
        (Some(s), _) if s.paused_all => Span::styled("PAUSED (all chains)", t.bad()),
        (Some(s), _) if !s.paused_chains.is_empty() => {
            Span::styled(format!("PAUSED on chain {}", s.paused_chains.iter().map(u64::to_string).collect::<Vec<_>>().join(",")), t.bad())
        }
        (Some(_), _) => Span::styled("RUNNING", t.state("RUNNING")),
        (None, Freshness::Unavailable { error, .. }) => Span::styled(format!("UNKNOWN ({error})"), t.warn()),
        (None, _) => Span::styled(t.more(), t.dim()),
    };
    let mut first = vec![Span::raw("signing "), signing];
    if let Some(s) = stale(app, &Fetch::Signing) {
        first.push(Span::styled(format!(" {s}"), t.warn()));
    }
    out.push(Line::from(first));
    // Alerts: named when firing; unknown is never shown as "0".
    match (&d.alerts, app.freshness(&Fetch::Alerts)) {
        (None, Freshness::Unavailable { call, error }) => {
            out.push(Line::from(Span::styled(format!("alerts UNKNOWN: {call}: {error}"), t.warn())));
        }
        (None, _) => out.push(Line::from(Span::styled(format!("alerts loading{}", t.more()), t.dim()))),
        (Some(_), _) => {
            let firing = app.firing();
            let mut line = vec![
                Span::raw("alerts firing "),
                Span::styled(firing.len().to_string(), if firing.is_empty() { t.fg(Color::Green) } else { t.bad() }),
            ];
            if let Some(s) = stale(app, &Fetch::Alerts) {
                line.push(Span::styled(format!(" {s}"), t.warn()));
            }
            out.push(Line::from(line));
            for (i, a) in firing.iter().take(4).enumerate() {
                let goto = a.console.as_deref().and_then(goto_of).unwrap_or("-");
                let what = a.summary.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
                let open = format!(" {} {goto}", t.arrow());
                let text = fit(&format!("{}{what}", a.name), width.saturating_sub(open.chars().count() + 2));
                let line = Line::from(vec![Span::styled(format!("! {text}"), t.bad()), Span::raw(open)]);
                out.push(if i == app.place.selected { line.style(t.selected()) } else { line });
            }
            if firing.len() > 4 {
                out.push(Line::from(Span::styled(format!("  and {} more (:alerts)", firing.len() - 4), t.dim())));
            }
        }
    }
    let spark_w = width.saturating_sub(49).clamp(8, 40);
    out.push(heading(app, t, format!("{}{}{}{}", fit("queue", 13), fit("messages", 28), fit("oldest", 8), "depth"), &Fetch::Stats));
    match &d.stats {
        Some(s) => {
            for q in &s.queues {
                let age = q.oldest_age_seconds.map(|a| ago((a * 1000.0) as i64, 0)).unwrap_or_else(|| "-".into());
                let hist = d.depth_history.get(&q.name).map(|h| h.iter().copied().collect::<Vec<_>>()).unwrap_or_default();
                let dlq_alarm = q.name.ends_with("dlq") && q.visible + q.in_flight > 0;
                out.push(Line::from(vec![
                    Span::styled(fit(&q.name, 13), if dlq_alarm { t.bad() } else { Style::default() }),
                    Span::raw(format!("{}{}", fit(&format!("waiting {}, being worked {}", q.visible, q.in_flight), 28), fit(&age, 8))),
                    Span::styled(spark(hist, spark_w, t.unicode), t.fg(Color::Cyan)),
                ]));
            }
            let per_s: Vec<u64> = d.completed_history.iter().copied().collect();
            let now = per_s.last().map_or_else(|| "-".to_owned(), u64::to_string); // one sample is no rate yet
            out.push(Line::from(vec![
                Span::raw(format!("completed/s {} ", fit(&now, 6))),
                Span::styled(spark(per_s, spark_w, t.unicode), t.fg(Color::Cyan)),
            ]));
            let order = [
                "RECEIVED",
                "PENDING_APPROVAL",
                "SIGNED",
                "SENT",
                "COMPLETED",
                "INVALID",
                "SEND_FAILED",
                "FAILED",
                "REJECTED",
                "CANCELLED",
            ];
            let counts: Vec<String> =
                order.iter().filter_map(|k| s.statuses.get(*k).filter(|n| **n > 0).map(|n| format!("{k} {n}"))).collect();
            out.push(Line::from(Span::raw(if counts.is_empty() { "no withdrawals yet".to_owned() } else { counts.join("  ") })));
        }
        None => out.extend(problem(app, t, &Fetch::Stats, "queue depths")),
    }
    out.push(heading(app, t, format!("{}{}{}{}", fit("endpoint", 16), fit("state", 12), fit("head", 10), "lag  latency"), &Fetch::Rpc));
    match &d.rpc {
        None => out.extend(problem(app, t, &Fetch::Rpc, "endpoints")),
        Some(r) if r.is_empty() => out.push(Line::from(Span::styled("no endpoint configured", t.dim()))),
        Some(r) => {
            for e in r {
                out.push(Line::from(vec![
                    Span::raw(fit(&format!("{}{}", if e.serving_reads { ">" } else { " " }, e.name), 16)),
                    Span::styled(fit(&e.state, 12), t.state(&e.state)),
                    Span::raw(format!(
                        "{}{}{}",
                        fit(&e.head.map(|h| h.to_string()).unwrap_or_else(|| "-".into()), 10),
                        fit(&e.lag.to_string(), 5),
                        e.latency_ms.map(|l| format!("{l:.0} ms")).unwrap_or_else(|| "-".into())
                    )),
                ]));
            }
        }
    }
    out.push(heading(app, t, format!("{}{}{}{}", fit("hot wallet", 16), fit("nonce", 8), fit("in flight", 11), "lane"), &Fetch::Wallets));
    match &d.wallets {
        None => out.extend(problem(app, t, &Fetch::Wallets, "hot wallets")),
        Some(ws) => {
            for w in ws {
                let lane = match &w.nonces {
                    Some(n) if !n.blocked.is_empty() => Span::styled(format!("BLOCKED at {:?}", n.blocked), t.bad()),
                    Some(n) if !n.gaps.is_empty() => Span::styled(format!("filling gaps {:?}", n.gaps), t.fg(Color::Yellow)),
                    Some(_) => Span::styled("whole", t.fg(Color::Green)),
                    None => Span::styled("not checked yet", t.dim()),
                };
                let short_by = w.funds.iter().find(|f| f.short_by != "0").map(|f| format!("  SHORT {} {}", f.short_by, f.asset));
                out.push(Line::from(vec![
                    Span::raw(format!(
                        "{}{}{}",
                        fit(&short(&w.wallet), 16),
                        fit(&w.next_nonce.map(|n| n.to_string()).unwrap_or_else(|| "-".into()), 8),
                        fit(&w.nonces.as_ref().map(|n| n.in_flight.to_string()).unwrap_or_else(|| "-".into()), 11)
                    )),
                    lane,
                    Span::styled(short_by.unwrap_or_default(), t.bad()),
                ]));
            }
        }
    }
    out
}

/// The rows that fit, scrolled so the selection is visible.
fn window(selected: usize, len: usize, height: usize) -> std::ops::Range<usize> {
    let h = height.max(1);
    let start = if selected >= h { selected + 1 - h } else { 0 };
    start..(start + h).min(len)
}

fn list<'a>(app: &App, t: &Theme, area: Rect) -> Vec<Line<'a>> {
    let Some(fetch) = app.view_fetch() else { return Vec::new() };
    let rows = app.rows();
    let width = area.width as usize;
    let mut out = Vec::new();
    // What is known: how many rows, the filter, the marks, the order, how fresh.
    let loaded = app.has_rows();
    let mut top: Vec<Span> = Vec::new();
    if loaded {
        let total = app.total_rows();
        // A list as long as the call's limit may have more behind it.
        let more = if fetch.limit() == Some(total) { "+" } else { "" };
        let plural = if total == 1 && more.is_empty() { "row" } else { "rows" };
        let count = if app.place.filter.is_empty() || app.view == View::Withdrawals {
            format!("{}{more} {plural}", rows.len())
        } else {
            format!("{} of {total}{more} {plural}", rows.len())
        };
        top.push(Span::styled(count, t.dim()));
        if !more.is_empty() {
            top.push(Span::styled(format!(" (the newest {total}; / narrows)"), t.dim()));
        }
    }
    if !app.place.filter.is_empty() {
        let kind = if app.view == View::Withdrawals { "search" } else { "filter" };
        top.push(Span::styled(format!("  {kind}: {}", app.place.filter), t.fg(Color::Cyan)));
    }
    if !app.place.marks.is_empty() {
        let hidden = app.hidden_marks();
        let hidden = if hidden > 0 { format!(" ({hidden} hidden by the filter)") } else { String::new() };
        top.push(Span::styled(format!("  {} marked{hidden}", app.place.marks.len()), t.fg(Color::Cyan).add_modifier(Modifier::BOLD)));
    }
    top.push(Span::styled(format!("  sort: {}", app.place.sort.name()), t.dim()));
    out.push(Line::from(top));
    if !loaded {
        out.push(not_loaded(app, t, &fetch, "the list"));
        return out;
    }
    if let Some(gone) = &app.place.lost {
        out.push(Line::from(Span::styled(
            format!("the row you had selected ({}) left this list: select again before acting", short_id(gone)),
            t.warn(),
        )));
    }
    let stale_note = stale(app, &fetch);
    if let Some(s) = &stale_note {
        out.push(Line::from(Span::styled(format!("{s}; showing the last answer"), t.warn())));
    }
    // mark 2 | id 19 | status 10 | user 8 | amount 12 | age 5 | rest: reason (DLQ) or destination.
    let idw = SHORT_ID + 1;
    let rest = width.saturating_sub(2 + idw + 10 + 8 + 12 + 5);
    let show_reason = matches!(app.view, View::Dlq(_));
    out.push(Line::from(Span::styled(
        format!(
            "  {}{}{}{}{}{}",
            fit("id", idw),
            fit("status", 10),
            fit("user", 8),
            fit("amount", 12),
            fit("age", 5),
            fit(if show_reason { "reason" } else { "to" }, rest)
        ),
        t.bold(),
    )));
    if rows.is_empty() {
        let empty = if app.total_rows() > 0 {
            format!("no row matches the filter \"{}\" ({} hidden); esc clears it", app.place.filter, app.total_rows())
        } else if app.view == View::Withdrawals && !app.place.filter.is_empty() {
            format!("no withdrawal matches \"{}\" (searched: id or its start, user, address, tx hash)", app.place.filter)
        } else {
            match app.view {
                View::Dlq(k) => format!("the {} dead-letter queue is empty", k.path()),
                View::Approvals => "nothing waits for approval".into(),
                _ => "no withdrawals yet".into(),
            }
        };
        out.push(Line::from(Span::styled(empty, t.dim())));
        return out;
    }
    let used = out.len() as u16;
    for i in window(app.place.selected, rows.len(), area.height.saturating_sub(used) as usize) {
        let w: &WithdrawalSummaryV1 = rows[i];
        let mark = if app.place.marks.contains(&w.id) { t.mark() } else { " " };
        let last = if show_reason { w.reason.clone().unwrap_or_default() } else { w.to.clone() };
        let rest_style = if stale_note.is_some() { t.dim() } else { Style::default() };
        let line = Line::from(vec![
            Span::styled(format!("{mark} "), t.fg(Color::Cyan)),
            Span::styled(fit(&short_id(&w.id), idw), rest_style),
            Span::styled(fit(&w.status, 10), if stale_note.is_some() { t.dim() } else { t.state(&w.status) }),
            Span::styled(
                format!(
                    "{}{}{}{}",
                    fit(&w.user_id, 8),
                    fit(&format!("{} {}", w.amount, w.asset), 12),
                    fit(&ago(app.now_ms, w.created_at_ms), 5),
                    fit(&last, rest)
                ),
                rest_style,
            ),
        ]);
        out.push(if i == app.place.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn detail<'a>(app: &App, t: &Theme, id: &str, width: usize) -> Vec<Line<'a>> {
    let f = Fetch::Detail(id.to_owned());
    let Some(d): Option<&WithdrawalV1> = app.data.detail.as_ref().filter(|d| d.id == id) else {
        let mut out = vec![not_loaded(app, t, &f, id)];
        if matches!(app.freshness(&f), Freshness::Unavailable { .. }) && id.len() < 36 {
            out.push(Line::from(Span::styled(format!("lists show the start of an id: :tx {id} searches for it"), t.dim())));
        }
        return out;
    };
    let mut out = Vec::new();
    if let Some(s) = stale(app, &f) {
        out.push(Line::from(Span::styled(format!("{s}; showing the last answer"), t.warn())));
    }
    out.extend([
        Line::from(vec![
            Span::styled("status ", t.bold()),
            Span::styled(d.status.clone(), t.state(&d.status).add_modifier(Modifier::BOLD)),
        ]),
        Line::from(format!("user {}  {} {} on chain {}", d.user_id, d.amount, d.asset, d.chain_id)),
        Line::from(format!("to {}", d.to)),
    ]);
    if let Some(r) = &d.reason {
        out.push(Line::from(Span::styled(format!("reason {r}"), t.fg(Color::Red))));
    }
    if let Some(i) = &d.inclusion {
        out.push(Line::from(format!("mined in block {} ({} confirmations)", i.block_number, d.confirmations)));
    }
    if let Some(c) = &d.cancel {
        out.push(Line::from(Span::styled(format!("discarded by {}: {} (cancel at its nonce)", c.actor, c.reason), t.fg(Color::Yellow))));
    }
    out.push(Line::from(Span::styled("history", t.bold())));
    for h in &d.history {
        let from = h.from.clone().unwrap_or_else(|| "new".into());
        let reason = h.reason.as_deref().map(|r| format!("  {r}")).unwrap_or_default();
        let text = format!("{} ago  {from} {} {}  by {}{reason}", ago(app.now_ms, h.at_ms), t.arrow(), h.to, h.actor);
        out.push(Line::from(fit(&text, width)));
    }
    out.push(Line::from(Span::styled("attempts", t.bold())));
    if d.attempts.is_empty() {
        out.push(Line::from(Span::styled("none signed", t.dim())));
    }
    for a in &d.attempts {
        let sent = a.sent_at_ms.map(|s| format!("sent {} ago", ago(app.now_ms, s))).unwrap_or_else(|| "never sent".into());
        let gwei = |w: &str| w.parse::<u128>().map(|w| format!("{:.2}", w as f64 / 1e9)).unwrap_or_default();
        let line = format!(
            "nonce {} {}  max fee {} gwei, tip {}  signed {} ago, {sent}",
            a.nonce,
            a.kind,
            gwei(&a.max_fee_per_gas),
            gwei(&a.max_priority_fee_per_gas),
            ago(app.now_ms, a.created_at_ms)
        );
        out.push(Line::from(fit(&line, width)));
        out.push(Line::from(Span::styled(fit(&format!("  {}", a.tx_hash), width), t.dim())));
    }
    out
}

fn alerts<'a>(app: &App, t: &Theme, area: Rect) -> Vec<Line<'a>> {
    let f = Fetch::Alerts;
    let Some(a) = &app.data.alerts else { return problem(app, t, &f, "alerts").into_iter().collect() };
    let width = area.width as usize;
    let mut out = vec![heading(app, t, format!("{}{}{}{}", fit("status", 10), fit("since", 7), fit("alert", 30), "open with"), &f)];
    if a.is_empty() {
        out.push(Line::from(Span::styled("no alerts received", t.dim())));
        return out;
    }
    for i in window(app.place.selected, a.len(), area.height.saturating_sub(1) as usize) {
        let al = &a[i];
        let goto = al.console.as_deref().and_then(goto_of).unwrap_or("-");
        let line = Line::from(vec![
            Span::styled(fit(&al.status, 10), if al.status == "firing" { t.bad() } else { t.fg(Color::Green) }),
            Span::raw(format!(
                "{}{}{}",
                fit(&ago(app.now_ms, al.received_at_ms), 7),
                fit(&al.summary.clone().unwrap_or_else(|| al.name.clone()), 30),
                fit(goto, width.saturating_sub(47))
            )),
        ]);
        out.push(if i == app.place.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn audit<'a>(app: &App, t: &Theme, area: Rect) -> Vec<Line<'a>> {
    let f = Fetch::Audit;
    let Some(a) = &app.data.audit else { return problem(app, t, &f, "the audit log").into_iter().collect() };
    let width = area.width as usize;
    let mut out = vec![heading(
        app,
        t,
        format!("{}{}{}{}{}", fit("when", 5), fit("who", 10), fit("action", 21), fit("target", SHORT_ID + 1), "reason"),
        &f,
    )];
    if a.is_empty() {
        out.push(Line::from(Span::styled("the audit log is empty", t.dim())));
        return out;
    }
    for i in window(app.place.selected, a.len(), area.height.saturating_sub(1) as usize) {
        let e = &a[i];
        // The target's short id tells rows apart; the reason is what an operator reads.
        let target = e.target.strip_prefix("withdrawal/").map_or_else(|| e.target.clone(), short_id);
        let why = e.reason.clone().unwrap_or_else(|| e.detail.clone());
        let line = Line::from(format!(
            "{}{}{}{}{}",
            fit(&ago(app.now_ms, e.at_ms), 5),
            fit(&e.actor, 10),
            fit(&e.action, 21),
            fit(&target, SHORT_ID + 1),
            fit(&why, width.saturating_sub(36 + SHORT_ID + 1))
        ));
        out.push(if i == app.place.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn health<'a>(app: &App, t: &Theme, width: usize) -> Vec<Line<'a>> {
    let d = &app.data;
    let mut out = vec![heading(
        app,
        t,
        format!("{}{}{}{}", fit("endpoint", 16), fit("tier", 9), fit("state", 12), "head / lag / latency / last error"),
        &Fetch::Rpc,
    )];
    match &d.rpc {
        None => out.extend(problem(app, t, &Fetch::Rpc, "endpoint health")),
        Some(r) => {
            for e in r {
                let err = e.last_error.as_deref().unwrap_or("");
                out.push(Line::from(vec![
                    Span::raw(fit(&format!("{}{}", if e.serving_reads { ">" } else { " " }, e.name), 16)),
                    Span::raw(fit(&e.tier, 9)),
                    Span::styled(fit(&e.state, 12), t.state(&e.state)),
                    Span::raw(fit(
                        &format!(
                            "{} / {} / {} {}",
                            e.head.map(|h| h.to_string()).unwrap_or_else(|| "-".into()),
                            e.lag,
                            e.latency_ms.map(|l| format!("{l:.0} ms")).unwrap_or_else(|| "-".into()),
                            err
                        ),
                        width.saturating_sub(37),
                    )),
                ]));
            }
        }
    }
    out.push(Line::from(""));
    out.push(heading(
        app,
        t,
        format!("{}{}{}{}", fit("hot wallet", 44), fit("next", 7), fit("chain", 7), "gaps / blocked"),
        &Fetch::Wallets,
    ));
    match &d.wallets {
        None => out.extend(problem(app, t, &Fetch::Wallets, "hot wallets")),
        Some(ws) => {
            for w in ws {
                let (latest, lanes) = match &w.nonces {
                    Some(n) => (n.chain_latest.to_string(), format!("{:?} / {:?}", n.gaps, n.blocked)),
                    None => ("-".into(), "not checked yet".into()),
                };
                out.push(Line::from(format!(
                    "{}{}{}{}",
                    fit(&w.wallet, 44),
                    fit(&w.next_nonce.map(|n| n.to_string()).unwrap_or_else(|| "-".into()), 7),
                    fit(&latest, 7),
                    lanes
                )));
                for f in &w.funds {
                    let held = if f.held > 0 { format!("  HELD {} (short {})", f.held, f.short_by) } else { String::new() };
                    out.push(Line::from(format!("   {} {} balance, {} in flight{held}", f.asset, f.balance, f.in_flight)));
                }
            }
        }
    }
    out
}

fn help<'a>(app: &App) -> Vec<Line<'a>> {
    let mut lines = vec![
        "go to    :dash :withdrawals :tx <id> :dlq :dlq tx :approvals :alerts :audit :health".to_owned(),
        "         a : jump replaces the trail; enter opens a row; esc goes back; q or :q quits".to_owned(),
        "move     j/k or arrows, g/G first/last; s sorts lists (newest, oldest, amount, user)".to_owned(),
        "find     / filters a list (withdrawals: id or its start, user, address, tx hash)".to_owned(),
        "refresh  every 2 s; ctrl-r now; f freezes the screen (no refresh), f again unfreezes".to_owned(),
        "copy     c on an opened withdrawal copies its newest tx hash (OSC 52: works over SSH)".to_owned(),
        "alerts   the dashboard names firing alerts; enter opens the selected one's view".to_owned(),
    ];
    match app.read_only_cause() {
        None => lines.extend(
            [
                "act      space marks a row, * or ctrl-a marks all shown, v marks from the last mark",
                "         to here; marks stay while you look elsewhere. The action takes the marked",
                "         rows, or the selected one; r/d/a/x work on an opened withdrawal too",
                "         dead-letter queues: r reprocess, d discard;  approvals: a approve, x reject",
                "         p (dashboard, health) pauses or resumes signing; :pause [chain], :resume",
                "         every action asks for a reason: type it, enter confirms (empty: cancels)",
            ]
            .map(str::to_owned),
        ),
        Some(cause) => lines.push(format!("         read-only ({cause}): actions are not offered")),
    }
    lines.into_iter().map(Line::from).collect()
}

fn dialog(f: &mut Frame, t: &Theme, d: &crate::app::Dialog) {
    let area = f.area();
    let w = area.width.saturating_sub(4).min(76);
    let h = 14.min(area.height);
    let rect = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, rect);
    let n = d.items.len();
    let title = match d.action {
        Action::Pause(_) | Action::Resume(_) => format!("{}?", d.action.verb()),
        a => format!("{} {n} withdrawal{}?", a.verb(), if n == 1 { "" } else { "s" }),
    };
    let block = t.block(title);
    let inner = block.inner(rect);
    f.render_widget(block, rect);
    let iw = inner.width as usize;
    let focus = |on: bool| if on { t.selected().add_modifier(Modifier::BOLD) } else { Style::default() };
    let mut lines = Vec::new();
    if n > 0 {
        let users = d.users();
        let shown: Vec<&str> = users.iter().take(4).copied().collect();
        let more = if users.len() > 4 { format!(" +{} more", users.len() - 4) } else { String::new() };
        let totals: Vec<String> = d.totals().into_iter().map(|(asset, sum)| format!("{sum} {asset}")).collect();
        lines.push(Line::from(fit(
            &format!("{} user{}: {}{more}", users.len(), if users.len() == 1 { "" } else { "s" }, shown.join(", ")),
            iw,
        )));
        lines.push(Line::from(Span::styled(fit(&format!("total {}", totals.join(", ")), iw), t.bold())));
        let ids: Vec<String> = d.items.iter().take(3).map(|i| short_id(&i.id)).collect();
        let more = if n > 3 { format!(" +{}", n - 3) } else { String::new() };
        lines.push(Line::from(Span::styled(fit(&format!("ids {}{more}", ids.join(" ")), iw), t.dim())));
        if d.hidden > 0 {
            lines.push(Line::from(Span::styled(format!("{} of them marked earlier and hidden by the list's filter", d.hidden), t.warn())));
        }
        for (status, count) in d.statuses() {
            lines.push(Line::from(format!("{count} x {}", d.action.effect(&status))));
        }
    } else {
        lines.push(Line::from(d.action.effect("")));
    }
    lines.push(Line::from(vec![Span::raw("reason: "), Span::styled(format!("{}_", d.reason), focus(d.focus == Focus::Reason))]));
    lines.push(Line::from(Span::styled(d.error.clone().unwrap_or_default(), t.fg(Color::Red))));
    lines.push(Line::from(vec![
        Span::styled(if d.focus == Focus::Cancel { ">[ Cancel ]<" } else { " [ Cancel ] " }, focus(d.focus == Focus::Cancel)),
        Span::raw("   "),
        Span::styled(
            if d.focus == Focus::Confirm { format!(">[ {} ]<", d.action.verb()) } else { format!(" [ {} ] ", d.action.verb()) },
            focus(d.focus == Focus::Confirm),
        ),
    ]));
    lines.push(Line::from(Span::styled("type why; enter confirms (no reason: cancels); tab moves; esc cancels", t.dim())));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// A short message over the view for an action key that could not act; esc or enter closes
/// it, and every other key is swallowed meanwhile.
fn notice(f: &mut Frame, t: &Theme, text: &str) {
    let area = f.area();
    let w = area.width.saturating_sub(4).min(64);
    let h = 6.min(area.height);
    let rect = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, rect);
    let block = t.block("nothing done".into());
    let inner = block.inner(rect);
    f.render_widget(block, rect);
    let lines = vec![Line::from(text.to_owned()), Line::from(Span::styled("esc or enter closes; other keys are ignored", t.dim()))];
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
