//! The HTTP server loop every port uses, with every connection bounded: a cap on open
//! connections (past it new ones are closed at once and counted), a deadline for a request's
//! headers that also ends idle keep-alive connections, a deadline for its body, and one for
//! the whole request. A slow or silent client costs one connection slot for seconds, never a
//! connection forever (DESIGN §6).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// How long and how many: the limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request (or the end of the last response, on a kept-alive
    /// connection) to the end of its headers.
    pub header_timeout: Duration,
    /// For reading a request's body.
    pub body_timeout: Duration,
    /// For the whole request, handler included: past it, 408.
    pub request_timeout: Duration,
    /// Connections open at once; one more is closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` until `cancel`, then lets open connections finish their
/// current request (bounded by the request timeout) and returns.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, name: &'static str, cancel: CancellationToken) {
    let app = app
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    metrics::counter!("withdraw_http_connections_refused_total", "listener" => name).absolute(0);
    loop {
        let (sock, _) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("withdraw_http_connections_refused_total", "listener" => name).increment(1);
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(sock), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let deadline = limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, "connections still open at shutdown were closed");
    }
}
