//! Accept loop, per-request bookkeeping (metrics, access log) and graceful
//! shutdown.
//!
//! Requests with `content-type: application/grpc` go to [`crate::grpc`] (same port, HTTP/2 by
//! prior knowledge or ALPN); the `grpc_listen` socket serves only those.
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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    /// The key-value layer (`/kv/` and the build-tool protocols on it).
    pub kv: Arc<crate::kv::KvStore>,
    /// Effective configuration.
    pub config: Config,
    /// Metrics recorder handle.
    pub metrics: Metrics,
    /// Token check for every request.
    pub auth: crate::auth::Authenticator,
    /// Rate limits and the upload cap.
    pub limits: super::limits::Limits,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// When the server started.
    pub started: Instant,
    /// The hash-chained audit log (disabled unless `[audit] log` is set).
    pub audit: reprovm_sdk::audit::AuditLog,
}

/// The sockets a server answers on.
pub struct Listeners {
    /// `listen`: HTTP and gRPC.
    pub main: TcpListener,
    /// `grpc_listen`: gRPC only.
    pub grpc: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(main: TcpListener) -> Self {
        Self { main, grpc: None }
    }
}

/// What a socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Face {
    /// HTTP and gRPC (`listen`).
    All,
    /// gRPC only (`grpc_listen`).
    GrpcOnly,
}

/// Accepts on `listener`, or never when there is none.
async fn accept_opt(listener: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves HTTP/1.1, HTTP/2 (prior knowledge) and gRPC on `listeners` until `shutdown` resolves.
pub async fn serve(
    listeners: impl Into<Listeners>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listeners = listeners.into();
    // Built once: the services share the table of resumable uploads.
    let grpc = crate::grpc::Grpc::new(state.clone());
    let limit = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&state.config.limits);
    let handshake_timeout = Duration::from_secs(state.config.limits.tls_handshake_timeout_secs.max(1));
    tokio::pin!(shutdown);
    let mut accepted = 0u64;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let (accepted_conn, face) = tokio::select! {
            r = listeners.main.accept() => (r, Face::All),
            r = accept_opt(listeners.grpc.as_ref()) => (r, Face::GrpcOnly),
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted_conn {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        accepted += 1;
        if accepted.is_multiple_of(1024) {
            state.limits.housekeeping();
        }
        let _ = stream.set_nodelay(true);
        let (state, builder, watcher) = (state.clone(), builder.clone(), graceful.watcher());
        let conn = Conn {
            state: state.clone(),
            grpc: grpc.clone(),
            face,
            peer,
            cert_role: None,
        };
        tokio::spawn(async move {
            let _permit = permit; // released when the connection ends
            let Some(tls) = state.tls.clone() else {
                return serve_io(builder, watcher, TokioIo::new(stream), conn).await;
            };
            let tls_stream = match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // A certificate is only present here if it verified against the client CA.
            let cert_role = tls_stream.get_ref().1.peer_certificates().is_some().then_some(()).and(
                state
                    .config
                    .tls
                    .as_ref()
                    .and_then(|t| crate::auth::Role::parse(&t.client_cert_role)),
            );
            serve_io(builder, watcher, TokioIo::new(tls_stream), Conn { cert_role, ..conn }).await
        });
    }
    drop(listeners);
    tracing::info!("shutting down: finishing in-flight requests");
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "grace period over; closing remaining connections");
    }
    Ok(())
}

/// HTTP/1 and HTTP/2 settings: header timeout and size limits against slow or abusive clients.
fn connection_builder(limits: &crate::config::LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)))
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

/// What the requests of one connection share.
#[derive(Clone)]
struct Conn {
    state: Arc<AppState>,
    grpc: crate::grpc::Grpc,
    face: Face,
    peer: SocketAddr,
    /// The role a verified TLS client certificate grants.
    cert_role: Option<crate::auth::Role>,
}

/// Serves one connection (plain or TLS) until it ends or shutdown drains it.
async fn serve_io<I>(
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: TokioIo<I>,
    conn: Conn,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let svc = service_fn(move |req| handle(conn.clone(), req));
    let served = builder.serve_connection_with_upgrades(io, svc).into_owned();
    if let Err(e) = watcher.watch(served).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn handle(conn: Conn, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if crate::grpc::is_grpc(&req) {
        // Metrics and the access log of a call are written when its answer ends.
        return Ok(conn.grpc.call(req, conn.peer, conn.cert_role).await);
    }
    let Conn {
        state, peer, cert_role, ..
    } = conn;
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (route, resp) = if conn.face == Face::GrpcOnly {
        let e = super::error::ApiError::new(
            404,
            "grpc_only",
            "this port (grpc_listen) serves gRPC only; HTTP is on the listen address",
        );
        ("grpc_only", e.into_response())
    } else {
        routes::dispatch(&state, req, peer, cert_role).await
    };
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
