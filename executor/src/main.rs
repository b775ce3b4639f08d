//! # reprovm
//!
//! The ReproVM task runner. It owns the manifest language, the task graph and its parallel
//! scheduler, the action cache (task keys, results, restoring outputs), the choice of store
//! (embedded, cas-server, object storage), the run lock, configuration and all terminal output.
//! Stores are reached only through the sdk's `Cas` trait; the embedded one is cas-server's public
//! `RocksStore` used as a library.
//!
//! ## Layout
//! - [`cli`]: `lowargs` (clap: what was typed), `hiargs` (defaults < config < env < flags), `run`.
//! - [`config`]: the INI (seed layout) / TOML configuration file.
//! - [`manifest`]: `lex`, `parse` and `model` of the task DSL.
//! - [`dag`]: `graph` (deps, cycles, targets) and `scheduler` (parallel, dependency-ordered).
//! - [`workspace`]: the run directory and the rule that paths stay inside it.
//! - [`action_cache`]: task keys, the action-result format, storing and restoring outputs.
//! - [`exec`]: running one command in its own process group, with timeout.
//! - [`runner`]: one run (and the dry run) over the graph.
//! - [`store`]: opening the store a URL names.
//! - [`lock`]: the PID lock file of a cache dir.
//! - [`cache_cmd`]: `reprovm cache stats|clean|verify|gc`.
//! - [`snapshot`]: `reprovm snapshot create|list|restore|diff|verify|forget`.
//! - [`audit`]: audit settings and the run observer writing the sdk's hash-chained audit log.
//! - [`notify`]: webhook notifications (JSON, Slack, Discord), retried in the background.
//! - [`limits`]: token bucket and CPU/memory back-pressure on task starts.
//! - [`metrics`]: the executor's Prometheus metrics (`--metrics FILE.prom`, `serve`'s `/metrics`).
//! - [`serve`]: `reprovm serve`, the REST API.
//! - [`shutdown`]: SIGINT/SIGTERM: the one stop request the scheduler, commands, snapshot walks
//!   and `serve` honour (exit 130/143).
//! - [`state`]: the workspace's stat cache and last task results (what makes a no-op cheap).
//! - [`messages`]: every line the user sees: status, progress bar, summary, stats.
#![deny(unsafe_code)]

mod action_cache;
mod audit;
mod cache_cmd;
mod cli;
mod config;
mod dag;
mod exec;
mod limits;
mod lock;
use reprovm::manifest;
mod messages;
mod metrics;
mod notify;
mod runner;
mod serve;
mod shutdown;
mod snapshot;
mod state;
mod store;
mod workspace;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cas_server::malloc::limit_arenas();
    let low = cli::lowargs::LowArgs::parse();
    let no_color = !messages::Style::detect_color(low.no_color);
    match cli::run(low) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            messages::error(!no_color, &format!("{:#}", f.error));
            std::process::ExitCode::from(f.code)
        }
    }
}
