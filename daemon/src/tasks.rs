//! Task supervision and orderly shutdown. One cancellation token reaches every task; a
//! critical task that panics or returns early cancels the whole process (a half-running
//! pipeline is worse than a restart); on shutdown, tasks get a bounded time to finish
//! their batch, and whatever they leave is redelivered by the queues.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Supervisor {
    pub cancel: CancellationToken,
    tasks: JoinSet<Result<(), String>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self { cancel: CancellationToken::new(), tasks: JoinSet::new() }
    }

    /// Spawns a task that must run until shutdown.
    pub fn spawn_critical<F>(&mut self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        let inner = tokio::spawn(fut);
        self.tasks.spawn(async move {
            let r = inner.await;
            if cancel.is_cancelled() {
                return r.map_err(|e| format!("{name}: {e}"));
            }
            let why = match r {
                Ok(()) => format!("critical task {name} stopped unexpectedly"),
                Err(e) if e.is_panic() => format!("critical task {name} panicked"),
                Err(e) => format!("critical task {name} failed: {e}"),
            };
            tracing::error!(task = name, "{why}; shutting down");
            cancel.cancel();
            Err(why)
        });
    }

    /// Waits for SIGINT/SIGTERM or a failed critical task, then drains for at most `grace`.
    /// Returns an error if any critical task failed.
    pub async fn run_until_shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutdown requested; finishing in-flight work"),
            _ = self.cancel.cancelled() => {}
        }
        self.cancel.cancel();
        let mut failures = Vec::new();
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = self.tasks.join_next().await {
                match r {
                    Ok(Err(why)) => failures.push(why),
                    Err(e) => failures.push(e.to_string()),
                    Ok(Ok(())) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace_secs = grace.as_secs(), "tasks still running after the grace period; abandoning them to queue redelivery");
            self.tasks.abort_all();
        }
        if failures.is_empty() { Ok(()) } else { anyhow::bail!(failures.join("; ")) }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop this process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
