//! The accept loop: bounds on connections before any request is read.
//!
//! - At most [`HttpLimits::max_connections`] connections at once; one more is closed as soon
//!   as it is accepted, before a byte of it is read (so before authentication, and a flood
//!   cannot use up the file descriptors the pool's own processes need).
//! - A request's headers must arrive within [`HttpLimits::header_timeout`]. hyper counts that
//!   time from when the connection waits for a request, so on a keep-alive connection it is
//!   also how long the connection may stay idle between requests.
//! - A request's body must arrive within [`HttpLimits::body_timeout`] of its headers.
//!
//! Responses are not timed: a long call, or an event stream, runs as long as it needs.
//! On `stop` the listener closes, every connection is asked to finish its request in flight
//! and close, and [`serve`] returns once they all have.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::HttpLimits;
use crate::metrics::Metrics;

/// The peer of a request's connection (a request extension), for the failure limit.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` until `stop`; then waits for the open connections to end.
/// Connections refused past the cap are counted in `metrics`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let open = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait a moment for some to close
                // rather than spin on the error.
                tracing::warn!("cannot accept an HTTP connection: {e}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(peer = %peer, "closing an HTTP connection: --http-max-connections are open");
            drop(stream);
            metrics.http_connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut app = app.clone();
                let mut req = req.map(|body| Body::new(Timed::new(body, limits.body_timeout)));
                req.extensions_mut().insert(Peer(peer));
                async move { app.call(req).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!(peer = %peer, "HTTP connection ended: {e}"); }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every permit back: every connection has ended.
    let _ = open
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

/// The body read did not finish within `--http-body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within --http-body-timeout")]
struct BodyTimedOut;

/// A request body with a deadline for all of it.
struct Timed {
    /// The body as hyper reads it.
    inner: Incoming,
    /// When the whole body must have arrived (armed when the headers did).
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Timed {
    fn new(inner: Incoming, within: Duration) -> Timed {
        Timed {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::debug!("a request body timed out");
                    Poll::Ready(Some(Err(BodyTimedOut.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
