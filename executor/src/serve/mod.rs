//! `reprovm serve --listen ADDR MANIFEST`: the REST API of one manifest.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /tasks` | read | every task with its last status |
//! | `POST /tasks` | write | `{"targets": [...], "force": false}` → 202 `{"run_id": n}`; runs are queued and run one at a time |
//! | `GET /tasks/{name}` | read | status, last result, key, outputs |
//! | `GET /runs/{id}` | read | a run's state and report |
//! | `GET /cache`, `DELETE /cache` | read, admin | local store statistics; empty it |
//! | `GET /metrics`, `GET /metrics/json` | read (public by default) | Prometheus text, JSON |
//! | `GET /health` | none | liveness |
//! | `GET /config` | admin | effective settings, secrets redacted |
//! | `GET /openapi.yaml`, `GET /swagger-ui` | none | the API description and its UI |
//!
//! Auth is cas-server's [`Authenticator`] (tokens with read/write/admin roles, Bearer or Basic)
//! configured by `[serve] token_file, allow_anonymous_read, metrics_public`; with no token every
//! caller may do everything, as with cas-server. The server holds the cache dir's run lock for
//! its whole life, so a `reprovm` run on the same cache dir exits 3 while it serves; its own runs
//! are serialized by an async mutex. SIGTERM/SIGINT (the process's [`Shutdown`]) stop accepting
//! and stop the current run as they stop a `reprovm` run (its commands get the signal, then
//! SIGKILL after the grace period; queued runs start nothing), finish in-flight requests, release
//! the lock and exit 143 (SIGTERM) or 130 (SIGINT).

mod routes;
mod state;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use crate::audit::Audit;
use crate::cli::hiargs::HiArgs;
use crate::config::FileConfig;
use crate::dag::Graph;
use crate::notify::Notifier;
use crate::shutdown::{Shutdown, GRACE};
use crate::workspace::Workspace;
use cas_server::auth::Authenticator;
use cas_server::config::AuthConfig;
use reprovm_sdk::audit::EventKind;
pub use state::State;

/// The `[serve]` auth settings.
fn auth_config(hi: &HiArgs) -> anyhow::Result<AuthConfig> {
    let file = match &hi.config_file {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut a = AuthConfig::default();
    if let Some(f) = std::env::var("REPROVM_SERVE_TOKEN_FILE")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| file.get("serve", "token_file").map(str::to_string))
    {
        a.token_file = Some(f.into());
    }
    a.allow_anonymous_read = file.flag("serve", "allow_anonymous_read")?.unwrap_or(false);
    a.metrics_public = file.flag("serve", "metrics_public")?.unwrap_or(true);
    Ok(a)
}

/// Serves until SIGTERM/SIGINT; returns the exit code (that of the signal).
pub fn run(
    hi: &HiArgs,
    listen: &str,
    manifest: &Path,
    audit: &Audit,
    rt: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
) -> anyhow::Result<u8> {
    let parsed = crate::manifest::parse_file(manifest)?;
    let graph = Graph::build(parsed)?;
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let ws = Workspace::new(&dir).with_context(|| format!("workspace {}", dir.display()))?;
    if let Err(e) = crate::cli::check_paths(&graph, &ws) {
        audit.record(
            EventKind::SecurityViolation,
            &manifest.display().to_string(),
            "resolve",
            false,
            format!("{e:#}"),
        );
        return Err(e);
    }
    let auth = Authenticator::new(&auth_config(hi)?)?;
    let lock = crate::cli::take_lock(hi, shutdown).map_err(|f| f.error)?;
    let store = crate::store::open(hi.remote.as_ref(), &hi.cache_dir)?;
    let metrics = crate::metrics::install();
    let _enter = rt.enter();
    let notifier = Arc::new(Notifier::start(hi.notify.clone()));
    let state = Arc::new(State::new(
        hi,
        graph,
        ws,
        store,
        auth,
        audit.clone(),
        notifier.clone(),
        metrics,
        shutdown.clone(),
    ));
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "reprovm serve listening");
        println!("listening on http://{addr}");
        if !state.auth.enabled() {
            tracing::warn!("no tokens configured ([serve] token_file): every caller may run tasks and clear the cache");
        }
        accept_loop(listener, state.clone(), shutdown).await;
        // The run in progress is being stopped (its commands have the grace period): let it
        // record its end before the lock goes.
        tokio::select! {
            _ = state.run_lock.lock() => {}
            _ = tokio::time::sleep(GRACE + Duration::from_secs(5)) => {
                tracing::warn!("a run was still stopping; exiting anyway");
            }
        }
        tokio::select! {
            () = notifier.finish() => {}
            () = shutdown.killed() => {}
        }
        anyhow::Ok(())
    })?;
    drop(lock);
    Ok(shutdown.signal().map_or(0, |s| s.exit_code()))
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>, shutdown: &Shutdown) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.stopped() => break,
        };
        let st = state.clone();
        let svc = service_fn(move |req| {
            let st = st.clone();
            async move {
                let start = Instant::now();
                let method = req.method().clone();
                let (route, resp) = routes::dispatch(&st, req).await;
                st.metrics
                    .request(route, method.as_str(), resp.status().as_u16(), start.elapsed());
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        () = shutdown.killed() => {}
    }
}
