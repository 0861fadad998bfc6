//! Pure rendering: `draw(frame, &app)` and nothing else. Layout is a header line, the view's
//! box, and a footer line (key hints, the command or filter being typed, or a status). Sized
//! for 80x24 first; wider terminals get wider columns. With `NO_COLOR` nothing is coloured;
//! on a dumb terminal (as under `kubectl exec` without a TERM) only ASCII is drawn.

use crate::app::{Action, App, DlqKind, Focus, Mode, View};
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
    f.render_widget(Paragraph::new(header(app, &t)), head);
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
    f.render_widget(Paragraph::new(footer(app, &t)), foot);
    if let Mode::Dialog(d) = &app.mode {
        dialog(f, &t, d);
    }
}

fn header<'a>(app: &App, t: &Theme) -> Line<'a> {
    let who = match &app.me {
        Some(m) if app.read_only() => format!("{} (read-only)", m.name),
        Some(m) => m.name.clone(),
        None => "…".into(),
    };
    let api = match (&app.api.error, app.api.last_ok_ms) {
        (None, _) if app.slow_for_ms().is_some() => Span::styled(
            format!("API SLOW: waiting {}s", app.slow_for_ms().unwrap_or(0) / 1000),
            t.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        (Some((e, since)), _) => {
            Span::styled(format!("API DOWN {}: {}", ago(app.now_ms, *since), e), t.fg(Color::Red).add_modifier(Modifier::BOLD))
        }
        (None, Some(_)) => Span::styled("API ok", t.fg(Color::Green)),
        (None, None) => Span::styled("API …", t.dim()),
    };
    let mut spans = vec![Span::styled("withdraw-console ", t.bold()), Span::raw(format!("| {who} | "))];
    if app.frozen {
        spans.push(Span::styled("FROZEN | ", t.fg(Color::Cyan).add_modifier(Modifier::BOLD)));
    }
    spans.push(api);
    Line::from(spans)
}

fn footer<'a>(app: &App, t: &Theme) -> Line<'a> {
    match &app.mode {
        Mode::Command(buf) => return Line::from(vec![Span::styled(":", t.bold()), Span::raw(buf.clone()), Span::raw("_")]),
        Mode::Filter(buf) => return Line::from(vec![Span::styled("/", t.bold()), Span::raw(buf.clone()), Span::raw("_")]),
        _ => {}
    }
    if let Some(s) = &app.status {
        return Line::from(Span::styled(s.clone(), t.fg(Color::Cyan)));
    }
    // The view's own keys first: on a narrow terminal the general ones (in help) are cut.
    let mut hints: Vec<&str> = Vec::new();
    match &app.view {
        View::Dlq(k) => {
            hints.push("/ filter");
            if app.can(Action::Reprocess(*k)) {
                hints.extend(["space mark", "r reprocess", "d discard"]);
            }
            hints.push("enter open");
        }
        View::Approvals => {
            hints.push("/ filter");
            if app.can(Action::Approve) {
                hints.extend(["space mark", "a approve", "x reject"]);
            }
            hints.push("enter open");
        }
        View::Withdrawals => hints.extend(["/ search", "enter open"]),
        View::Detail(_) => hints.push("c copy tx hash"),
        View::Alerts => hints.push("enter open view"),
        _ => {}
    }
    hints.extend(["? help", ": command", "esc back", "f freeze", "^r refresh"]);
    Line::from(Span::styled(hints.join("  "), t.dim()))
}

fn dashboard<'a>(app: &App, t: &Theme, width: usize) -> Vec<Line<'a>> {
    let d = &app.data;
    let mut out = Vec::new();
    let signing = match &d.signing {
        Some(s) if s.paused_all => Span::styled("PAUSED (all chains)", t.fg(Color::Red).add_modifier(Modifier::BOLD)),
        Some(s) if !s.paused_chains.is_empty() => Span::styled(
            format!("PAUSED on chain {}", s.paused_chains.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
            t.fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Some(_) => Span::styled("RUNNING", t.state("RUNNING")),
        None => Span::styled("…", t.dim()),
    };
    let firing = d.alerts.iter().filter(|a| a.status == "firing").count();
    out.push(Line::from(vec![
        Span::raw("signing "),
        signing,
        Span::raw("   alerts firing "),
        Span::styled(firing.to_string(), if firing > 0 { t.fg(Color::Red).add_modifier(Modifier::BOLD) } else { t.fg(Color::Green) }),
    ]));
    let spark_w = width.saturating_sub(46).clamp(8, 40);
    out.push(Line::from(Span::styled(
        format!("{}{}{}{}{}", fit("queue", 13), fit("visible", 9), fit("flight", 8), fit("oldest", 8), "depth"),
        t.bold(),
    )));
    match &d.stats {
        Some(s) => {
            for q in &s.queues {
                let age = q.oldest_age_seconds.map(|a| ago((a * 1000.0) as i64, 0)).unwrap_or_else(|| "-".into());
                let hist = d.depth_history.get(&q.name).map(|h| h.iter().copied().collect::<Vec<_>>()).unwrap_or_default();
                let dlq_alarm = q.name.ends_with("dlq") && q.visible + q.in_flight > 0;
                out.push(Line::from(vec![
                    Span::styled(
                        fit(&q.name, 13),
                        if dlq_alarm { t.fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::default() },
                    ),
                    Span::raw(format!("{}{}{}", fit(&q.visible.to_string(), 9), fit(&q.in_flight.to_string(), 8), fit(&age, 8))),
                    Span::styled(spark(hist, spark_w, t.unicode), t.fg(Color::Cyan)),
                ]));
            }
            let per_s: Vec<u64> = d.completed_history.iter().map(|n| n / crate::app::REFRESH_SECS as u64).collect();
            out.push(Line::from(vec![
                Span::raw(format!("completed/s {} ", fit(&per_s.last().copied().unwrap_or(0).to_string(), 6))),
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
        None => out.push(Line::from(Span::styled("loading queue depths…", t.dim()))),
    }
    out.push(Line::from(Span::styled(
        format!("{}{}{}{}", fit("endpoint", 16), fit("state", 12), fit("head", 10), "lag  latency"),
        t.bold(),
    )));
    for e in &d.rpc {
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
    out.push(Line::from(Span::styled(format!("{}{}{}{}", fit("hot wallet", 16), fit("nonce", 8), fit("in flight", 11), "lane"), t.bold())));
    for w in &d.wallets {
        let lane = match &w.nonces {
            Some(n) if !n.blocked.is_empty() => {
                Span::styled(format!("BLOCKED at {:?}", n.blocked), t.fg(Color::Red).add_modifier(Modifier::BOLD))
            }
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
            Span::styled(short_by.unwrap_or_default(), t.fg(Color::Red).add_modifier(Modifier::BOLD)),
        ]));
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
    let rows = app.rows();
    let width = area.width as usize;
    let mut out = Vec::new();
    let filter = if app.filter.is_empty() { String::new() } else { format!("  filter: {}", app.filter) };
    out.push(Line::from(vec![
        Span::styled(format!("{} rows{}", rows.len(), filter), t.dim()),
        Span::styled(if app.marks.is_empty() { String::new() } else { format!("  {} marked", app.marks.len()) }, t.fg(Color::Cyan)),
    ]));
    // id 14 | status 9 | user 8 | amount 12 | rest: reason (DLQ) or destination.
    let rest = width.saturating_sub(2 + 14 + 10 + 9 + 13);
    let show_reason = matches!(app.view, View::Dlq(_));
    out.push(Line::from(Span::styled(
        format!(
            "  {}{}{}{}{}",
            fit("id", 14),
            fit("status", 10),
            fit("user", 9),
            fit("amount", 13),
            fit(if show_reason { "reason" } else { "to" }, rest)
        ),
        t.bold(),
    )));
    if rows.is_empty() {
        let empty = match app.view {
            View::Dlq(DlqKind::Invalid) => "the invalid dead-letter queue is empty",
            View::Dlq(DlqKind::Tx) => "the tx dead-letter queue is empty",
            View::Approvals => "nothing waits for approval",
            _ => "no withdrawals match",
        };
        out.push(Line::from(Span::styled(empty, t.dim())));
        return out;
    }
    for i in window(app.selected, rows.len(), area.height.saturating_sub(2) as usize) {
        let w: &WithdrawalSummaryV1 = rows[i];
        let mark = if app.marks.contains(&w.id) { t.mark() } else { " " };
        let last = if show_reason { w.reason.clone().unwrap_or_default() } else { w.to.clone() };
        let line = Line::from(vec![
            Span::styled(format!("{mark} "), t.fg(Color::Cyan)),
            Span::raw(fit(&w.id, 14)),
            Span::styled(fit(&w.status, 10), t.state(&w.status)),
            Span::raw(format!("{}{}{}", fit(&w.user_id, 9), fit(&format!("{} {}", w.amount, w.asset), 13), fit(&last, rest))),
        ]);
        out.push(if i == app.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn detail<'a>(app: &App, t: &Theme, id: &str, width: usize) -> Vec<Line<'a>> {
    let Some(d): Option<&WithdrawalV1> = app.data.detail.as_ref().filter(|d| d.id == id) else {
        return vec![Line::from(Span::styled(format!("loading {id}…"), t.dim()))];
    };
    let mut out = vec![
        Line::from(vec![
            Span::styled("status ", t.bold()),
            Span::styled(d.status.clone(), t.state(&d.status).add_modifier(Modifier::BOLD)),
        ]),
        Line::from(format!("user {}  {} {} on chain {}", d.user_id, d.amount, d.asset, d.chain_id)),
        Line::from(format!("to {}", d.to)),
    ];
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
    let a = &app.data.alerts;
    if a.is_empty() {
        return vec![Line::from(Span::styled("no alerts received", t.dim()))];
    }
    let width = area.width as usize;
    let mut out =
        vec![Line::from(Span::styled(format!("{}{}{}{}", fit("status", 10), fit("since", 7), fit("alert", 30), "open with"), t.bold()))];
    for i in window(app.selected, a.len(), area.height.saturating_sub(1) as usize) {
        let al = &a[i];
        let goto = al.console.as_deref().and_then(|c| c.split("--goto").nth(1)).map(str::trim).unwrap_or("-");
        let line = Line::from(vec![
            Span::styled(
                fit(&al.status, 10),
                if al.status == "firing" { t.fg(Color::Red).add_modifier(Modifier::BOLD) } else { t.fg(Color::Green) },
            ),
            Span::raw(format!(
                "{}{}{}",
                fit(&ago(app.now_ms, al.received_at_ms), 7),
                fit(&al.summary.clone().unwrap_or_else(|| al.name.clone()), 30),
                fit(goto, width.saturating_sub(47))
            )),
        ]);
        out.push(if i == app.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn audit<'a>(app: &App, t: &Theme, area: Rect) -> Vec<Line<'a>> {
    let a = &app.data.audit;
    if a.is_empty() {
        return vec![Line::from(Span::styled("the audit log is empty", t.dim()))];
    }
    let width = area.width as usize;
    let mut out =
        vec![Line::from(Span::styled(format!("{}{}{}{}", fit("when", 6), fit("who", 12), fit("action", 22), "reason / target"), t.bold()))];
    for i in window(app.selected, a.len(), area.height.saturating_sub(1) as usize) {
        let e = &a[i];
        // The reason first: it is what an operator reads; the target is an id to search.
        let why = e.reason.as_deref().map(|r| format!("\"{r}\" ")).unwrap_or_default();
        let line = Line::from(format!(
            "{}{}{}{}",
            fit(&ago(app.now_ms, e.at_ms), 6),
            fit(&e.actor, 12),
            fit(&e.action, 22),
            fit(&format!("{why}{}", e.target), width.saturating_sub(40))
        ));
        out.push(if i == app.selected { line.style(t.selected()) } else { line });
    }
    out
}

fn health<'a>(app: &App, t: &Theme, width: usize) -> Vec<Line<'a>> {
    let d = &app.data;
    let mut out = vec![Line::from(Span::styled(
        format!("{}{}{}{}", fit("endpoint", 16), fit("tier", 9), fit("state", 12), "head / lag / latency / last error"),
        t.bold(),
    ))];
    if d.rpc.is_empty() {
        out.push(Line::from(Span::styled("loading endpoint health…", t.dim())));
    }
    for e in &d.rpc {
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
    out.push(Line::from(""));
    out.push(Line::from(Span::styled(
        format!("{}{}{}{}", fit("hot wallet", 44), fit("next", 7), fit("chain", 7), "gaps / blocked"),
        t.bold(),
    )));
    for w in &d.wallets {
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
    out
}

fn help<'a>(app: &App) -> Vec<Line<'a>> {
    let mut lines = vec![
        "views    :dash  :withdrawals  :tx <id>  :dlq  :dlq tx  :approvals  :alerts  :audit  :health  :q",
        "move     j/k or arrows, g/G first/last, enter open, esc back (clears a filter first)",
        "find     / filter the list (withdrawals: id, user, address or tx hash, searched on the server)",
        "refresh  every 2 s; ctrl-r now; f freezes the screen (no refresh) and again unfreezes",
        "copy     c on a withdrawal copies its newest tx hash (OSC 52: works over SSH)",
    ];
    if !app.read_only() {
        lines.extend([
            "act      space marks rows; the action takes the marked rows, or the one selected",
            "         dead-letter queues: r reprocess, d discard;  approvals: a approve, x reject",
            "         a dialog asks to confirm (focus starts on Cancel) and a reason is required",
        ]);
    } else {
        lines.push("         this token is read-only: actions are not shown");
    }
    lines.into_iter().map(Line::from).collect()
}

fn dialog(f: &mut Frame, t: &Theme, d: &crate::app::Dialog) {
    let area = f.area();
    let w = area.width.saturating_sub(4).min(64);
    let h = 9.min(area.height);
    let rect = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, rect);
    let block = t.block(format!("{} {} withdrawal(s)?", d.action.verb(), d.ids.len()));
    let inner = block.inner(rect);
    f.render_widget(block, rect);
    let focus = |on: bool| if on { t.selected().add_modifier(Modifier::BOLD) } else { Style::default() };
    let ids = d.ids.iter().take(3).cloned().collect::<Vec<_>>().join(", ") + if d.ids.len() > 3 { ", …" } else { "" };
    let what = match d.action {
        Action::Discard(DlqKind::Tx) => "a signed transfer is cancelled on chain at its nonce",
        Action::Discard(_) => "rejected; the user's reservation is released",
        Action::Reprocess(DlqKind::Tx) => "the same signed bytes are broadcast again",
        Action::Reprocess(_) => "validated and signed again",
        Action::Approve => "signed and paid",
        Action::Reject => "rejected; the reservation is released",
    };
    let lines = vec![
        Line::from(fit(&ids, inner.width as usize)),
        Line::from(Span::styled(what, t.dim())),
        Line::from(vec![Span::raw("reason: "), Span::styled(format!("{}_", d.reason), focus(d.focus == Focus::Reason))]),
        Line::from(Span::styled(d.error.clone().unwrap_or_default(), t.fg(Color::Red))),
        Line::from(vec![
            Span::styled(if d.focus == Focus::Cancel { ">[ Cancel ]<" } else { " [ Cancel ] " }, focus(d.focus == Focus::Cancel)),
            Span::raw("   "),
            Span::styled(
                if d.focus == Focus::Confirm { format!(">[ {} ]<", d.action.verb()) } else { format!(" [ {} ] ", d.action.verb()) },
                focus(d.focus == Focus::Confirm),
            ),
        ]),
        Line::from(Span::styled("tab moves, enter chooses, esc cancels", t.dim())),
    ];
    f.render_widget(Paragraph::new(lines), inner);
}
