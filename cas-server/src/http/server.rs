//! Accept loop, per-request bookkeeping (metrics, access log) and graceful
//! shutdown.
//!
//! A semaphore permit is taken before each accept and released when the
//! connection ends, capping open connections. On shutdown the listener stops
//! accepting, every connection is told to finish its in-flight requests
//! (HTTP/1 keep-alive is turned off, HTTP/2 sends GOAWAY), and `serve` returns
//! once they have, or after the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use reprovm_sdk::cas::Cas;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::body::Body;
use super::routes;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::rocks::RocksStore;

/// What every request handler can reach.
pub struct AppState {
    /// The store stack requests are served from.
    pub store: Arc<dyn Cas>,
    /// The local RocksDB tier (for statistics and readiness).
    pub local: RocksStore,
    /// The tiered store, when a remote tier is configured (for its health and backlog).
    pub tier: Option<Arc<crate::store::tiered::TieredStore>>,
    /// Effective configuration.
    pub config: Config,
    /// Metrics recorder handle.
    pub metrics: Metrics,
    /// Token check for every request.
    pub auth: crate::auth::Authenticator,
    /// When the server started.
    pub started: Instant,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| handle(state.clone(), peer, req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "grace period over; closing remaining connections");
    }
    Ok(())
}

async fn handle(state: Arc<AppState>, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (route, resp) = routes::dispatch(&state, req).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    state.metrics.request(route, method.as_str(), status, elapsed);
    tracing::info!(
        target: "access",
        %peer,
        method = %method,
        path = %path,
        status,
        route,
        ms = elapsed.as_secs_f64() * 1000.0,
    );
    Ok(resp)
}
