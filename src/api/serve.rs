//! Serves the router on connections with hyper's HTTP/1 connection builder, so the
//! connection-level limits are ours. hyper's are set well above the API's (`edge::Limits`),
//! which answer in the one error shape; only a head hyper cannot parse at all (over
//! `MAX_HEAD_BYTES` or `MAX_HEADERS`, a URI over 64 KiB, bytes that are not HTTP) gets
//! hyper's own bare status, and a head that takes longer than `HEADER_READ_TIMEOUT` closes the
//! connection. `serve_connection` takes any byte stream, so TLS streams go through it too.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// hyper's read buffer: the most a request head may take before hyper answers 431 itself.
/// Far above the API's 8 KiB target and 32 KiB of headers.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// hyper's header count; the API refuses more than 100 in the one error shape.
pub const MAX_HEADERS: usize = 400;
/// A client that has not sent a whole head by then loses the connection (no response: there
/// is no request to answer).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    b
}

/// Serves HTTP/1.1 on one accepted connection until the client closes it, or until
/// `shutdown` turns true: then the request in flight is finished and the connection closed.
pub async fn serve_connection<I>(io: I, app: Router, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder().serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // A client that goes away or sends what is not HTTP is the client's business.
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Resolves once `shutdown` is true (or its sender is gone). Holds no borrow of the value,
/// so the future stays `Send`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections on `listener` (plain TCP, or TLS handshakes done by the listener) and
/// serves `app` on each until `shutdown` turns true; returns once every connection has
/// finished its request in flight.
pub async fn serve<L>(mut listener: L, app: Router, shutdown: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
{
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                connections.spawn(serve_connection(io, app.clone(), shutdown.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
