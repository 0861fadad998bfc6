//! `withdraw-console --api URL [--goto VIEW] [--token-file F]`: the terminal runtime around
//! the pure model (`app`) and view (`view`). It owns the terminal: raw mode and the
//! alternate screen on start, restored on exit, on panic and on SIGTERM/SIGHUP.

use anyhow::{Context, Result, bail};
use clap::Parser;
use crossterm::event::{Event, EventStream, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use withdraw_console::api::{self, Api};
use withdraw_console::app::{App, Cmd, GOTO_TARGETS, Look, Msg, View};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "withdraw-console", version, about = "The operator's terminal for withdrawd")]
struct Cli {
    /// The admin API, e.g. http://127.0.0.1:8081
    #[arg(long, env = "WITHDRAW_ADMIN_API", default_value = "http://127.0.0.1:8081")]
    api: String,
    /// A file holding the bearer token (else $WITHDRAW_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Open a view at start: dashboard, withdrawals, tx/<id>, dlq/invalid, dlq/tx, approvals,
    /// alerts, audit or health (alerts' console links use these).
    #[arg(long)]
    goto: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn token(cli: &Cli) -> Result<Zeroizing<String>> {
    let t = match &cli.token_file {
        Some(f) => Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("cannot read token file {}", f.display()))?),
        None => Zeroizing::new(std::env::var("WITHDRAW_ADMIN_TOKEN").context("no token: set $WITHDRAW_ADMIN_TOKEN or pass --token-file")?),
    };
    let t = Zeroizing::new(t.trim().to_owned());
    if t.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(t)
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// OSC 52: the terminal (even over SSH or kubectl exec) puts the text on the clipboard.
fn osc52(text: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{b64}\x07");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            restore_terminal();
            eprintln!("withdraw-console: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let view = match &cli.goto {
        Some(g) => View::from_goto(g).with_context(|| format!("--goto {g:?}: expected {GOTO_TARGETS}"))?,
        None => View::Dashboard,
    };
    let api = Arc::new(Api::new(&cli.api, token(&cli)?)?);
    let term = std::env::var("TERM").unwrap_or_default();
    let look = Look { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()), unicode: !(term.is_empty() || term == "dumb") };

    // Whatever happens, the operator gets their terminal back.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        default_hook(info);
    }));
    enable_raw_mode().context("cannot put the terminal in raw mode (is this a terminal?)")?;
    execute!(std::io::stdout(), EnterAlternateScreen).context("cannot switch to the alternate screen")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let mut app = App::new(&cli.api, view, look, now_ms());
    let run_cmds = |cmds: Vec<Cmd>| {
        for c in cmds {
            match c {
                Cmd::Copy(text) => osc52(&text),
                other => api::spawn(&api, other, &tx),
            }
        }
    };
    run_cmds(app.init());
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    while !app.quit {
        terminal.draw(|f| withdraw_console::view::draw(f, &app))?;
        let msg = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Some(Ok(_)) => continue, // resize and the rest: redraw
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => Msg::Quit,
            },
            Some(m) = rx.recv() => m,
            _ = tick.tick() => Msg::Tick(now_ms()),
            _ = sigterm.recv() => Msg::Quit,
            _ = sighup.recv() => Msg::Quit,
        };
        run_cmds(app.update(msg));
    }
    restore_terminal();
    Ok(())
}
