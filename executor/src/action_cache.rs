//! Task keys, the action-result format, and moving outputs between the workspace and a [`Cas`].
//!
//! - Task key: BLAKE3 over a version tag, the command, the declared env (sorted), the input digests
//!   (sorted by path) and the result digests of the deps (sorted by name). Every field is
//!   length-prefixed so that no two different tasks hash the same bytes.
//! - Action result: small versioned JSON stored with `ac_put(task_key, …)`:
//!   `{"version":1,"task":…,"exit_code":0,"duration_ms":…,"outputs":[{"path","digest","size","mode"}]}`.
//! - Result digest (what dependents hash): BLAKE3 over the outputs' paths, digests and modes only,
//!   so a dep that reruns and produces the same bytes does not invalidate its dependents.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use reprovm_sdk::{Cas, CasError, CasExt, Digest, HashKind};
use serde::{Deserialize, Serialize};

use crate::workspace::{PathError, Workspace};

/// Files up to this size are hashed without a trip to the blocking pool.
const SMALL: u64 = 256 << 10;

/// Version of the action-result JSON.
pub const RESULT_VERSION: u32 = 1;

/// One stored output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// Workspace-relative, normalized path.
    pub path: String,
    /// BLAKE3 of the content.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
    /// Unix permission bits (`0o755`...).
    pub mode: u32,
}

/// What a successful task run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Format version ([`RESULT_VERSION`]).
    pub version: u32,
    /// Name of the task that produced it (informational).
    pub task: String,
    /// Exit code of the command (always 0: failures are not cached).
    pub exit_code: i32,
    /// How long the command took; what a cache hit saves.
    pub duration_ms: u64,
    /// Outputs, sorted by path.
    pub outputs: Vec<OutputEntry>,
}

/// Failures moving outputs in or out of the store.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A declared output was not produced by the command.
    #[error("declared output {0:?} was not produced by the command")]
    MissingOutput(String),
    /// An output that is not a regular file.
    #[error("declared output {0:?} is not a regular file")]
    NotAFile(String),
    /// A path leaving the workspace.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The store failed.
    #[error("store: {0}")]
    Cas(#[from] CasError),
    /// Local I/O on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A restored file did not hash to the recorded digest.
    #[error("restored {path:?} hashes to {actual}, expected {expected}")]
    Corrupt {
        /// The file.
        path: String,
        /// Recorded digest.
        expected: Digest,
        /// Digest of what was written.
        actual: Digest,
    },
}

/// A stored value that is not an action result this reprovm can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not the JSON of an action result.
    #[error("not an action result: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another version of reprovm.
    #[error("action-result version {0}; this reprovm reads version {RESULT_VERSION}")]
    Version(u32),
}

impl ActionResult {
    /// The JSON stored in the action cache.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("action result serializes"))
    }

    /// Parses a stored action result; `None` for another version or garbage (treated as a miss).
    pub fn decode(data: &[u8]) -> Option<Self> {
        Self::parse(data).ok()
    }

    /// Parses a stored action result, saying why it is not one (gc must not guess).
    pub fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        let r = serde_json::from_slice::<Self>(data)?;
        if r.version != RESULT_VERSION {
            return Err(DecodeError::Version(r.version));
        }
        Ok(r)
    }

    /// The digest dependents hash into their keys.
    pub fn result_digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        field(&mut h, b"reprovm-result-v1");
        for o in &self.outputs {
            field(&mut h, o.path.as_bytes());
            field(&mut h, o.digest.as_bytes());
            field(&mut h, &o.mode.to_be_bytes());
        }
        Digest::from_bytes(HashKind::Blake3, *h.finalize().as_bytes())
    }
}

fn field(h: &mut blake3::Hasher, data: &[u8]) {
    h.update(&(data.len() as u64).to_be_bytes());
    h.update(data);
}

/// The task key. `env`, `inputs` and `deps` are sorted here, so callers may pass any order.
pub fn task_key(cmd: &str, env: &[(String, String)], inputs: &[(String, Digest)], deps: &[(String, Digest)]) -> Digest {
    fn refs(v: &[(String, Digest)]) -> Vec<(&str, Digest)> {
        v.iter().map(|(n, d)| (n.as_str(), *d)).collect()
    }
    task_key_of(cmd, env, &mut refs(inputs), &mut refs(deps))
}

/// [`task_key`] over borrowed names (no copies on the hot path); sorts `inputs` and `deps`.
pub fn task_key_of<'a>(
    cmd: &str,
    env: &[(String, String)],
    inputs: &mut [(&'a str, Digest)],
    deps: &mut [(&'a str, Digest)],
) -> Digest {
    let mut h = blake3::Hasher::new();
    field(&mut h, b"reprovm-task-v1");
    field(&mut h, cmd.as_bytes());
    let mut env: Vec<&(String, String)> = env.iter().collect();
    env.sort_unstable();
    h.update(&(env.len() as u64).to_be_bytes());
    for (k, v) in env {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    for list in [inputs, deps] {
        list.sort_unstable();
        h.update(&(list.len() as u64).to_be_bytes());
        for (name, d) in list.iter() {
            field(&mut h, name.as_bytes());
            field(&mut h, d.as_bytes());
        }
    }
    Digest::from_bytes(HashKind::Blake3, *h.finalize().as_bytes())
}

/// BLAKE3 of a file, streaming, on the blocking pool.
pub async fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut h = blake3::Hasher::new();
        let mut f = std::fs::File::open(&path)?;
        std::io::copy(&mut f, &mut h)?;
        Ok(Digest::from_bytes(HashKind::Blake3, *h.finalize().as_bytes()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// BLAKE3 of a file of about `size` bytes: on the calling thread when at most `inline` (a small
/// read costs less than handing it to another thread), else as [`hash_file`].
pub async fn hash_file_sized(path: &Path, size: u64, inline: u64) -> std::io::Result<Digest> {
    if size > inline {
        return hash_file(path).await;
    }
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(Digest::from_bytes(HashKind::Blake3, *h.finalize().as_bytes()))
}

/// Reads the action result under `key`; a corrupt or foreign entry is a miss.
pub async fn lookup(cas: &dyn Cas, key: &Digest) -> Result<Option<ActionResult>, CasError> {
    Ok(cas.ac_get(key).await?.and_then(|b| ActionResult::decode(&b)))
}

/// Hashes the declared outputs after a successful run, uploads those the store lacks (one
/// `find_missing` call for the batch), and returns their entries sorted by path.
pub async fn store_outputs(cas: &dyn Cas, ws: &Workspace, outputs: &[String]) -> Result<Vec<OutputEntry>, ActionError> {
    let io = |path: &str| {
        let path = path.to_string();
        move |source| ActionError::Io { path, source }
    };
    let mut entries = Vec::with_capacity(outputs.len());
    for rel in outputs {
        let abs = ws.resolve(rel)?;
        let meta = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ActionError::MissingOutput(rel.clone())),
            Err(e) => return Err(io(rel)(e)),
        };
        if !meta.is_file() {
            return Err(ActionError::NotAFile(rel.clone()));
        }
        let digest = hash_file_sized(&abs, meta.len(), SMALL).await.map_err(io(rel))?;
        entries.push(OutputEntry {
            path: Workspace::normalize(rel)?,
            digest,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let digests: Vec<Digest> = entries.iter().map(|e| e.digest).collect();
    let missing = cas.find_missing(&digests).await?;
    for e in entries.iter().filter(|e| missing.contains(&e.digest)) {
        let abs = ws.resolve(&e.path)?;
        cas.put_file(&e.digest, &abs).await?;
    }
    Ok(entries)
}

/// Whether every blob of `result` is still in the store (one `find_missing` call).
pub async fn outputs_present(cas: &dyn Cas, result: &ActionResult) -> Result<bool, CasError> {
    let digests: Vec<Digest> = result.outputs.iter().map(|o| o.digest).collect();
    Ok(cas.find_missing(&digests).await?.is_empty())
}

/// Puts the outputs of `result` in place: files already identical are left alone, others are
/// written to a temp file in the same directory, checked, given their mode and renamed over.
/// Returns how many files were written.
pub async fn restore_outputs(cas: &dyn Cas, ws: &Workspace, result: &ActionResult) -> Result<usize, ActionError> {
    let mut written = 0;
    for o in &result.outputs {
        let abs = ws.resolve(&o.path)?;
        let io = |source| ActionError::Io {
            path: o.path.clone(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(&abs) {
            if meta.is_file()
                && meta.len() == o.size
                && meta.permissions().mode() & 0o7777 == o.mode
                && hash_file_sized(&abs, o.size, SMALL).await.ok() == Some(o.digest)
            {
                continue;
            }
        }
        let dir = abs.parent().expect("resolved paths have a parent");
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = abs.file_name().expect("resolved paths have a name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.reprovm-{}.tmp", std::process::id()));
        let outcome = async {
            cas.get_to_file(&o.digest, &tmp).await?;
            let actual = hash_file(&tmp).await.map_err(io)?;
            if actual != o.digest {
                return Err(ActionError::Corrupt {
                    path: o.path.clone(),
                    expected: o.digest,
                    actual,
                });
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(o.mode)).map_err(io)?;
            std::fs::rename(&tmp, &abs).map_err(io)?;
            Ok(())
        }
        .await;
        if outcome.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        outcome?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of_blake3(s.as_bytes())
    }

    #[test]
    fn key_depends_on_every_part_but_not_on_order() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())];
        let inputs = vec![("a.c".to_string(), d("a")), ("b.c".to_string(), d("b"))];
        let base = task_key("cc", &env, &inputs, &[]);
        let mut rev = inputs.clone();
        rev.reverse();
        let mut renv = env.clone();
        renv.reverse();
        assert_eq!(task_key("cc", &renv, &rev, &[]), base);
        assert_ne!(task_key("cc -O2", &env, &inputs, &[]), base);
        assert_ne!(task_key("cc", &env[..1], &inputs, &[]), base);
        assert_ne!(
            task_key("cc", &env, &[("a.c".into(), d("x")), ("b.c".into(), d("b"))], &[]),
            base
        );
        assert_ne!(task_key("cc", &env, &inputs, &[("dep".into(), d("r"))]), base);
        // Moving a value across a field boundary changes the key.
        assert_ne!(
            task_key("ab", &[], &[], &[]),
            task_key("a", &[("b".into(), String::new())], &[], &[])
        );
    }

    #[test]
    fn result_round_trip_and_digest_ignores_timing() {
        let r = ActionResult {
            version: RESULT_VERSION,
            task: "t".into(),
            exit_code: 0,
            duration_ms: 5,
            outputs: vec![OutputEntry {
                path: "out".into(),
                digest: d("x"),
                size: 1,
                mode: 0o644,
            }],
        };
        assert_eq!(ActionResult::decode(&r.encode()), Some(r.clone()));
        let slower = ActionResult {
            duration_ms: 500,
            ..r.clone()
        };
        assert_eq!(slower.result_digest(), r.result_digest());
        assert!(ActionResult::decode(b"{\"version\":99}").is_none());
    }
}
