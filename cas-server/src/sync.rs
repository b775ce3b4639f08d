//! `cas-server sync status|push|pull`: the remote tier from the command line.
//!
//! The commands open the data dir themselves, so the server must be stopped
//! (RocksDB allows one process per data dir); a running server reports the
//! same figures in `/ready` and `/v1/stats`, and drains its queue by itself.

use std::sync::atomic::Ordering;

use anyhow::{bail, Context};
use futures::TryStreamExt;
use reprovm_sdk::{Cas, Digest};

use crate::config::Config;
use crate::store::{self, open_remote};

/// What `cas-server sync` does.
#[derive(clap::Subcommand, Debug)]
pub enum SyncCommand {
    /// Backlog size and whether the remote answers.
    Status,
    /// Copy everything the remote lacks now (also blobs stored before a remote was configured).
    Push,
    /// Fetch blobs from the remote into the local tier: the given digests, or all (optionally by hex prefix).
    Pull {
        /// Only blobs whose hex digest starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Digests to fetch (default: every blob in the remote).
        digests: Vec<String>,
    },
}

fn open(config: &Config) -> anyhow::Result<store::Stores> {
    if config.remote.is_none() {
        bail!("no [remote] in the configuration (or CAS_REMOTE_URL): nothing to sync with");
    }
    store::build(config).with_context(|| {
        format!(
            "opening {} (is cas-server running on it? stop it first, or read /v1/stats)",
            config.data_dir.display()
        )
    })
}

/// Runs one sync command; returns the process exit code.
pub async fn run(config: &Config, command: SyncCommand) -> anyhow::Result<i32> {
    let stores = open(config)?;
    let tier = stores.tier.clone().expect("a remote is configured");
    let local = stores.local.clone();
    match command {
        SyncCommand::Status => {
            let probe = tier.remote().find_missing(&[Digest::empty_blake3()]).await;
            println!(
                "remote:       {}",
                config.remote.as_ref().map(|r| r.url.as_str()).unwrap_or("")
            );
            println!("mode:         {:?}", tier.mode());
            println!("reachable:    {}", probe.is_ok());
            if let Err(e) = &probe {
                println!("error:        {e}");
            }
            println!("sync backlog: {}", local.sync_backlog());
            println!("local blobs:  {}", local.counters().blobs.load(Ordering::Relaxed));
            Ok(if probe.is_ok() { 0 } else { 1 })
        }
        SyncCommand::Push => {
            let l = local.clone();
            let queued = tokio::task::spawn_blocking(move || l.enqueue_unsynced()).await??;
            let parallel = config.remote.as_ref().map_or(8, |r| r.uploaders);
            let mut failed_rounds = 0;
            while local.sync_backlog() > 0 {
                let before = tier.status.uploads.load(Ordering::Relaxed);
                let (_, failed) = tier.push_round(parallel).await?;
                if failed == 0 && tier.status.uploads.load(Ordering::Relaxed) == before {
                    break; // nothing left to take (the count may be ahead of the queue)
                }
                if failed > 0 {
                    failed_rounds += 1;
                    if failed_rounds >= 3 {
                        eprintln!(
                            "cas-server: the remote keeps failing: {}",
                            tier.status.last_error().unwrap_or_default()
                        );
                        println!(
                            "pushed {}, {} left",
                            tier.status.uploads.load(Ordering::Relaxed),
                            local.sync_backlog()
                        );
                        return Ok(1);
                    }
                }
            }
            println!(
                "queued {queued} blobs not known to be in the remote; pushed {}; backlog 0",
                tier.status.uploads.load(Ordering::Relaxed)
            );
            Ok(0)
        }
        SyncCommand::Pull { prefix, digests } => {
            let wanted: Vec<Digest> = if digests.is_empty() {
                let remote = open_remote(config.remote.as_ref().expect("checked"))?;
                remote.list_blobs(&prefix).try_collect().await?
            } else {
                digests.iter().map(|d| Digest::parse(d)).collect::<Result<_, _>>()?
            };
            let missing = local.find_missing(&wanted).await?;
            let mut fetched = 0;
            let mut failed = 0;
            for d in &missing {
                match tier.get(d, None).await {
                    Ok(blob) => {
                        // The fetch into the local tier happened in `get`; the body is not needed.
                        drop(blob);
                        fetched += 1;
                    }
                    Err(e) => {
                        eprintln!("cas-server: {d}: {e}");
                        failed += 1;
                    }
                }
            }
            println!(
                "{} wanted, {} already local, {fetched} fetched, {failed} failed",
                wanted.len(),
                wanted.len() - missing.len()
            );
            Ok(if failed == 0 { 0 } else { 1 })
        }
    }
}
