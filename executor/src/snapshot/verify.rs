//! `reprovm snapshot verify SNAPSHOT [--read-data-subset N%|n/m]`: reads every tree (each checked
//! against its digest and decoded), then streams every distinct chunk (or the chosen subset)
//! from the store and re-hashes it with BLAKE3. A failing chunk is reported with its digest and
//! the file(s) using it; any failure exits 1.
//!
//! Subsets are deterministic, chosen from the digest: `n/m` checks the chunks whose first eight
//! digest bytes are `n-1` modulo `m` (so `1/7` … `7/7` over a week check everything once);
//! `P%` checks the chunks whose digest falls in the first P% of the space.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use reprovm_sdk::snapshot::EntryKind;
use reprovm_sdk::{Cas, Digest, Hasher};

use super::report::{self, Progress};
use super::{join_display, load_tree, resolve, Ctx, Usage};

/// Chunks re-hashed at once.
const CHECKS_IN_FLIGHT: usize = 4;
/// Paths remembered per chunk for the report.
const PATHS_PER_CHUNK: usize = 3;

/// Which chunks to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// All of them.
    All,
    /// Slice `n` (1-based) of `m`.
    Slice(u64, u64),
    /// A share in (0, 100].
    Percent(f64),
}

impl Subset {
    /// Parses `n/m` or `P%`.
    pub fn parse(s: &str) -> Result<Self, Usage> {
        let bad = || {
            Usage(format!(
                "--read-data-subset {s:?}: expected n/m (1 <= n <= m) or P% (0 < P <= 100)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return (p > 0.0 && p <= 100.0).then_some(Self::Percent(p)).ok_or_else(bad);
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u64, u64) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        (n >= 1 && n <= m).then_some(Self::Slice(n, m)).ok_or_else(bad)
    }

    /// Whether `d` is in the subset.
    pub fn contains(self, d: &Digest) -> bool {
        let x = u64::from_be_bytes(d.as_bytes()[..8].try_into().expect("8 bytes"));
        match self {
            Self::All => true,
            Self::Slice(n, m) => x % m == n - 1,
            Self::Percent(p) => (x as f64) < (p / 100.0) * (u64::MAX as f64),
        }
    }
}

struct ChunkUse {
    size: u64,
    paths: Vec<String>,
    users: u64,
}

/// Re-hashes one chunk from the store; `Err(reason)` when it fails.
async fn check(cas: Arc<dyn Cas>, digest: Digest, size: u64) -> Result<u64, String> {
    let blob = cas.get(&digest, None).await.map_err(|e| e.to_string())?;
    let mut body = blob.body;
    let mut h = Hasher::new(digest.kind());
    let mut n = 0u64;
    while let Some(part) = body.next().await {
        let part = part.map_err(|e| format!("reading: {e}"))?;
        n += part.len() as u64;
        h.update(&part);
    }
    if n != size {
        return Err(format!("{n} bytes read, the tree says {size}"));
    }
    let actual = h.finalize();
    if actual != digest {
        return Err(format!("content hashes to {actual}"));
    }
    Ok(n)
}

/// `snapshot verify`.
pub fn run(ctx: &Ctx, spec: &str, subset: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let subset = subset.map(Subset::parse).transpose()?.unwrap_or(Subset::All);
    let start = Instant::now();
    let snap = resolve(ctx, spec)?;
    // Walk the trees: every tree is read and checked, chunks are collected with their users.
    let mut order: Vec<Digest> = Vec::new();
    let mut uses: HashMap<Digest, ChunkUse> = HashMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut trees = 0u64;
    let mut stack = vec![(snap.snapshot.root, String::new())];
    let mut seen_trees = std::collections::HashSet::new();
    while let Some((digest, path)) = stack.pop() {
        if !seen_trees.insert(digest) {
            continue;
        }
        trees += 1;
        let tree = match load_tree(ctx, &digest) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!(
                    "tree {digest} of {}/: {e:#}",
                    if path.is_empty() { "." } else { &path }
                ));
                continue;
            }
        };
        for e in &tree.entries {
            let p = join_display(&path, &e.name);
            match e.kind {
                EntryKind::Dir => stack.extend(e.subtree.map(|d| (d, p))),
                EntryKind::File => {
                    for c in &e.chunks {
                        let u = uses.entry(c.digest).or_insert_with(|| {
                            order.push(c.digest);
                            ChunkUse {
                                size: c.size,
                                paths: Vec::new(),
                                users: 0,
                            }
                        });
                        u.users += 1;
                        if u.paths.len() < PATHS_PER_CHUNK && u.paths.last() != Some(&p) {
                            u.paths.push(p.clone());
                        }
                    }
                }
                EntryKind::Symlink => {}
            }
        }
    }
    let selected: Vec<Digest> = order.iter().copied().filter(|d| subset.contains(d)).collect();
    let progress = Progress::bytes(ctx.style, "Verifying");
    let results: Vec<(Digest, Result<u64, String>)> = ctx.rt.block_on(
        futures::stream::iter(selected.iter().copied())
            .map(|d| {
                let cas = Arc::clone(&ctx.cas);
                let size = uses[&d].size;
                async move {
                    let r = tokio::spawn(check(cas, d, size))
                        .await
                        .unwrap_or_else(|e| Err(format!("check task: {e}")));
                    (d, r)
                }
            })
            .buffer_unordered(CHECKS_IN_FLIGHT)
            .inspect(|(_, r)| {
                if let Ok(n) = r {
                    progress.inc(*n);
                }
            })
            .collect(),
    );
    progress.finish();
    let mut bytes = 0;
    let mut bad = Vec::new();
    for (d, r) in results {
        match r {
            Ok(n) => bytes += n,
            Err(reason) => bad.push((d, reason)),
        }
    }
    bad.sort_by_key(|(d, _)| order.iter().position(|o| o == d));
    for (d, reason) in &bad {
        let u = &uses[d];
        let more = u.users.saturating_sub(u.paths.len() as u64);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        problems.push(format!(
            "chunk {d} ({} bytes) used by {}{tail}: {reason}",
            u.size,
            u.paths.join(", ")
        ));
    }
    let ok = problems.is_empty();
    if json {
        let v = serde_json::json!({
            "snapshot": snap.id(), "digest": snap.digest, "ok": ok, "trees": trees,
            "chunks_total": order.len(), "chunks_checked": selected.len(), "bytes_checked": bytes,
            "failed_chunks": bad.iter().map(|(d, r)| serde_json::json!({
                "digest": d, "reason": r, "paths": uses[d].paths,
            })).collect::<Vec<_>>(),
            "problems": problems,
        });
        println!("{v}");
    } else {
        for p in &problems {
            ctx.out.warn(p);
        }
        ctx.out.info(&format!(
            "verified {}: {trees} trees, {} of {} chunks ({}) in {:.1}s: {}",
            snap.id(),
            selected.len(),
            order.len(),
            report::bytes(bytes),
            start.elapsed().as_secs_f64(),
            if ok {
                "no errors".to_string()
            } else {
                format!("{} errors", problems.len())
            }
        ));
    }
    Ok(if ok { 0 } else { crate::cli::EXIT_FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        assert_eq!(Subset::parse("2/5").unwrap(), Subset::Slice(2, 5));
        assert_eq!(Subset::parse("10%").unwrap(), Subset::Percent(10.0));
        for bad in ["0/5", "6/5", "x", "0%", "101%", "1/0"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
        // The m slices of a set are disjoint and cover it.
        let ds: Vec<Digest> = (0..200u32).map(|i| Digest::of_blake3(&i.to_le_bytes())).collect();
        let mut covered = 0;
        for n in 1..=3 {
            covered += ds.iter().filter(|d| Subset::Slice(n, 3).contains(d)).count();
        }
        assert_eq!(covered, ds.len());
        let half = ds.iter().filter(|d| Subset::Percent(50.0).contains(d)).count();
        assert!((60..140).contains(&half), "{half}");
        assert!(ds.iter().all(|d| Subset::Percent(100.0).contains(d)));
    }
}
