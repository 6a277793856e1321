//! Accepting connections: HTTP/1.1 keep-alive connections served by the gateway's router, with
//! a bound on how long a client may take to send a request, and a graceful stop.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finishes its request head (or
//! never sends one) was held open, with its task, for as long as the client liked: a handful of
//! clients trickling bytes could hold every file descriptor. Here hyper's header read timeout
//! runs from the moment a connection waits for a request head, so it also closes a keep-alive
//! connection left idle for that long (as nginx's `keepalive_timeout` does); the gateway bounds
//! the body's read by the same setting (`read_timeout_secs`). HTTP/2 was never enabled (no TOP
//! client speaks it), so the server is HTTP/1.1 only, as before.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Pause after an accept error that is not about one connection (out of file descriptors):
/// retrying at once would spin on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` resolves, then stops accepting and waits for the
/// calls in flight to be answered (idle connections are closed at once).
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    read_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    // half_close: a client that sends its request and then shuts its side of the connection
    // (`nc -N`, some proxies, HTTP/1.0-style clients) still gets the answer; without it hyper
    // dropped the call on reading the end of input, after its write could already be queued.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .half_close(true);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one incoming connection (it went away before it was accepted), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
