//! `cas-server backup …`: the command-line face of [`super`]. Output goes to
//! stdout (`--json` for scripts); a failed verification is an error, so the
//! binary exits 1; clap's usage errors exit 2.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::bucket::{is_bucket_url, mirror_dir, Bucket};
use super::{parse_target, BackupDir};

/// `cas-server backup` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Back up the data dir of a stopped server (for a running one: POST /v1/admin/backups).
    Create {
        /// Data directory of the store.
        #[arg(long, env = "CAS_DATA_DIR")]
        data_dir: PathBuf,
        /// Backup directory (created if missing); later backups into it are incremental.
        #[arg(long, env = "CAS_BACKUP_DIR")]
        to: String,
        /// Print the new backup as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the backups in a backup directory.
    List {
        /// Backup directory.
        #[arg(long, env = "CAS_BACKUP_DIR")]
        from: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file of each backup against its manifest; with --deep,
    /// also restore it to a scratch directory and re-hash every blob.
    Verify {
        /// Also restore and re-hash every blob against its digest.
        #[arg(long)]
        deep: bool,
        /// Backup directory.
        #[arg(long, env = "CAS_BACKUP_DIR")]
        from: String,
        /// Only this backup (default: all).
        #[arg(long)]
        id: Option<u32>,
    },
    /// Delete all but the newest N backups.
    Prune {
        /// Backups to keep (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
        /// Backup directory.
        #[arg(long, env = "CAS_BACKUP_DIR")]
        from: String,
    },
    /// Restore a backup as a new data dir, re-hashing every blob before it is put in place.
    Restore {
        /// Backup directory.
        #[arg(long, env = "CAS_BACKUP_DIR")]
        from: String,
        /// Backup id (default: the latest).
        #[arg(long)]
        id: Option<u32>,
        /// The data dir to create.
        #[arg(long)]
        to: PathBuf,
        /// Replace an existing (stopped) data dir.
        #[arg(long)]
        force: bool,
    },
}

fn human_time(unix: i64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm), so no date crate is needed.
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Runs a future on the current runtime from this synchronous code.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Opens a backup target: a directory, or a bucket URL through its local mirror
/// (filled from the bucket first; see [`bucket`](super::bucket)).
fn open_target(target: &str, create: bool) -> anyhow::Result<(BackupDir, Option<Bucket>)> {
    if !is_bucket_url(target) {
        return Ok((BackupDir::open(&parse_target(target)?, create)?, None));
    }
    let bucket = Bucket::open(target)?;
    let mirror = mirror_dir(target);
    std::fs::create_dir_all(&mirror)?;
    let dir = BackupDir::open(&mirror, true)?;
    let pulled = block(bucket.pull(&mirror)).with_context(|| format!("reading the backups in {target}"))?;
    if pulled > 0 {
        eprintln!(
            "cas-server: fetched {pulled} files from {target} into {}",
            mirror.display()
        );
    }
    Ok((dir, Some(bucket)))
}

/// After a change to a mirror, makes the bucket equal to it.
fn push(bucket: &Option<Bucket>, dir: &BackupDir) -> anyhow::Result<()> {
    if let Some(b) = bucket {
        let (up, del) = block(b.push(dir.path())).context("copying the backup to the bucket")?;
        eprintln!("cas-server: bucket updated: {up} files uploaded, {del} deleted");
    }
    Ok(())
}

/// Runs one subcommand.
pub fn run(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Create { data_dir, to, json } => {
            let (dir, bucket) = open_target(&to, true)?;
            let info = dir.backup_data_dir(&data_dir)?;
            push(&bucket, &dir)?;
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                println!(
                    "backup {} of {} created in {}: {} files, {} bytes",
                    info.id,
                    data_dir.display(),
                    dir.path().display(),
                    info.num_files,
                    info.size
                );
            }
        }
        BackupCommand::List { from, json } => {
            let (dir, _) = open_target(&from, false)?;
            let list = dir.list()?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                println!(
                    "{:>6}  {:<20}  {:>14}  {:>6}  manifest",
                    "id", "created", "bytes", "files"
                );
                for b in list {
                    println!(
                        "{:>6}  {:<20}  {:>14}  {:>6}  {}",
                        b.id,
                        human_time(b.timestamp),
                        b.size,
                        b.num_files,
                        if b.has_manifest { "yes" } else { "no" }
                    );
                }
            }
        }
        BackupCommand::Verify { deep, from, id } => {
            let (dir, _) = open_target(&from, false)?;
            let mut failed = 0;
            let ids = dir.ids_to_verify(id)?;
            for id in &ids {
                let files = dir.verify_files(*id)?;
                let mut ok = files.ok();
                for p in &files.problems {
                    println!("backup {id}: {p}");
                }
                if files.ok() {
                    println!(
                        "backup {id}: {} files, {} bytes: checksums OK",
                        files.files, files.bytes
                    );
                }
                if deep {
                    match dir.verify_deep(*id) {
                        Ok(scan) => {
                            for (d, why) in &scan.corrupt {
                                println!("backup {id}: CORRUPT blob {d}: {why}");
                            }
                            println!(
                                "backup {id}: {} blobs, {} bytes re-hashed: {} corrupt; {} refs",
                                scan.blobs,
                                scan.bytes,
                                scan.corrupt.len(),
                                scan.refs
                            );
                            ok &= scan.ok();
                        }
                        Err(e) => {
                            println!("backup {id}: deep check failed: {e}");
                            ok = false;
                        }
                    }
                }
                failed += usize::from(!ok);
            }
            if failed > 0 {
                bail!("verification failed: {failed} of {} backup(s) have problems", ids.len());
            }
        }
        BackupCommand::Prune { keep, from } => {
            let (dir, bucket) = open_target(&from, false)?;
            let removed = dir.prune(keep as usize)?;
            push(&bucket, &dir)?;
            let kept: Vec<u32> = dir.list()?.iter().map(|b| b.id).collect();
            println!("removed backups {removed:?}; kept {kept:?}");
        }
        BackupCommand::Restore { from, id, to, force } => {
            let (dir, _) = open_target(&from, false)?;
            let (id, scan) = dir.restore(id, &to, force)?;
            println!(
                "restored backup {id} to {}: {} blobs, {} bytes, every blob verified",
                to.display(),
                scan.blobs,
                scan.bytes
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_time() {
        assert_eq!(super::human_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::human_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
