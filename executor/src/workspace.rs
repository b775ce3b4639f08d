//! The workspace: the directory tasks run in (the manifest's directory), and the rule that every
//! input and output path stays inside it.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::state::{fs_clock_s, FileStat};

/// A path that would leave the workspace.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// An empty path.
    #[error("empty path")]
    Empty,
    /// `/etc/passwd`.
    #[error("{0:?} is absolute; paths are relative to the workspace")]
    Absolute(String),
    /// `../x`.
    #[error("{0:?} contains `..`; paths must stay inside the workspace")]
    ParentDir(String),
    /// A symlink along the path points outside.
    #[error("{path:?} goes through the symlink {link:?}, which points outside the workspace (to {target:?})")]
    SymlinkEscape {
        /// The path as written.
        path: String,
        /// The offending link.
        link: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
    /// I/O while resolving.
    #[error("{path:?}: {source}")]
    Io {
        /// The path as written.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The root directory of a run, canonicalized, and what `lstat` said about its paths during the
/// run (so that each file and directory is looked at once while nothing is being written).
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    /// Until [`Workspace::forget`]: what this run has seen. A command may change anything in the
    /// workspace, so the runner forgets everything after each one.
    memo: Mutex<Memo>,
}

#[derive(Debug, Default)]
struct Memo {
    /// Normalized relative paths seen to be real directories (not symlinks).
    dirs: FxHashSet<String>,
    /// Normalized relative paths of files: their `stat`, or `None` when missing.
    files: FxHashMap<String, Option<Stat>>,
    /// Every path of the manifest was checked ([`Workspace::all_checked`]) and nothing was
    /// forgotten since: [`Workspace::check`] has nothing to do.
    all_checked: bool,
}

/// A file's `stat` (through symlinks), as [`Workspace::stat`] gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The fields that matter for change detection.
    pub stat: FileStat,
    /// [`fs_clock_s`] read just before the `stat` call.
    pub checked_s: i64,
    /// The path itself is a symlink (the stat is its target's).
    pub link: bool,
}

impl Clone for Workspace {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            memo: Mutex::default(),
        }
    }
}

impl Workspace {
    /// The workspace rooted at `dir`.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: dir.canonicalize()?,
            memo: Mutex::default(),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Normalizes a workspace-relative path (`./a//b` → `a/b`), refusing absolute paths and `..`.
    pub fn normalize(rel: &str) -> Result<String, PathError> {
        Self::normalized(rel).map(Cow::into_owned)
    }

    /// [`Workspace::normalize`], borrowing `rel` when it is already normal (the usual case).
    pub fn normalized(rel: &str) -> Result<Cow<'_, str>, PathError> {
        let normal = !rel.is_empty() && rel.split('/').all(|p| !matches!(p, "" | "." | ".."));
        if normal {
            return Ok(Cow::Borrowed(rel));
        }
        let p = Path::new(rel);
        if rel.is_empty() {
            return Err(PathError::Empty);
        }
        if p.is_absolute() {
            return Err(PathError::Absolute(rel.into()));
        }
        let mut parts = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => return Err(PathError::ParentDir(rel.into())),
                Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute(rel.into())),
            }
        }
        if parts.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(Cow::Owned(parts.join("/")))
    }

    /// Forgets what this run has seen (after a command ran: it may have changed anything).
    pub fn forget(&self) {
        let mut memo = self.memo.lock().expect("memo");
        memo.dirs.clear();
        memo.files.clear();
        memo.all_checked = false;
    }

    /// Says that every path the run will check has just been checked (`check_paths`), so that
    /// checking again before anything is forgotten is free.
    pub fn all_checked(&self) {
        self.memo.lock().expect("memo").all_checked = true;
    }

    /// Forgets one file (after reprovm wrote it).
    pub fn forget_file(&self, norm: &str) {
        self.memo.lock().expect("memo").files.remove(norm);
    }

    /// The `stat` of the normalized path `norm` (through symlinks), `None` when it does not
    /// exist; seen once per run until forgotten.
    pub fn stat(&self, norm: &str) -> std::io::Result<Option<Stat>> {
        if let Some(s) = self.memo.lock().expect("memo").files.get(norm) {
            return Ok(*s);
        }
        let abs = self.root.join(norm);
        let checked_s = fs_clock_s();
        let stat = match abs.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => match abs.metadata() {
                Ok(t) => Some(Stat {
                    stat: FileStat::of(&t),
                    checked_s,
                    link: true,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            Ok(m) => Some(Stat {
                stat: FileStat::of(&m),
                checked_s,
                link: false,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.memo.lock().expect("memo").files.insert(norm.to_string(), stat);
        Ok(stat)
    }

    /// The absolute location of `rel`, after checking that neither it nor any symlink along it
    /// leads outside the workspace. Parts that do not exist yet are fine.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, PathError> {
        let norm = Self::normalized(rel)?;
        self.check(rel, &norm)?;
        Ok(self.root.join(&*norm))
    }

    /// Checks the normalized form `norm` of `rel` as [`Workspace::resolve`] does; what was seen
    /// (real directories, regular files) is not looked at again until [`Workspace::forget`].
    pub fn check(&self, rel: &str, norm: &str) -> Result<(), PathError> {
        let mut memo = self.memo.lock().expect("memo");
        if memo.all_checked {
            return Ok(());
        }
        let known = |memo: &Memo, prefix: &str, last: bool| {
            if last {
                memo.files.get(prefix).is_some_and(|s| !s.is_some_and(|s| s.link))
            } else {
                memo.dirs.contains(prefix)
            }
        };
        let mut end = 0;
        for part in norm.split('/') {
            end += part.len();
            let prefix = &norm[..end];
            end += 1;
            let last = end > norm.len();
            if known(&memo, prefix, last) {
                continue;
            }
            let at = self.root.join(prefix);
            let checked_s = fs_clock_s();
            match at.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = match at.canonicalize() {
                        Ok(t) => t,
                        // A dangling link: judge where it points.
                        Err(_) => {
                            let t = std::fs::read_link(&at).map_err(|source| PathError::Io {
                                path: rel.into(),
                                source,
                            })?;
                            at.parent().unwrap_or(&self.root).join(t)
                        }
                    };
                    if !target.starts_with(&self.root) || target.components().any(|c| c == Component::ParentDir) {
                        return Err(PathError::SymlinkEscape {
                            path: rel.into(),
                            link: at,
                            target,
                        });
                    }
                }
                Ok(m) if last => {
                    let stat = Stat {
                        stat: FileStat::of(&m),
                        checked_s,
                        link: false,
                    };
                    memo.files.insert(norm.to_string(), Some(stat));
                }
                Ok(m) => {
                    if m.is_dir() {
                        memo.dirs.insert(prefix.to_string());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if last {
                        memo.files.insert(norm.to_string(), None);
                    }
                    break;
                }
                Err(source) => {
                    return Err(PathError::Io {
                        path: rel.into(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path()).unwrap();
        assert!(matches!(ws.resolve("/etc/passwd"), Err(PathError::Absolute(_))));
        assert!(matches!(ws.resolve("../x"), Err(PathError::ParentDir(_))));
        assert!(matches!(ws.resolve("a/../../x"), Err(PathError::ParentDir(_))));
        assert!(matches!(ws.resolve(""), Err(PathError::Empty)));
        assert_eq!(ws.resolve("./a//b").unwrap(), ws.root().join("a/b"));
        std::os::unix::fs::symlink("/tmp", dir.path().join("out")).unwrap();
        assert!(matches!(ws.resolve("out/x"), Err(PathError::SymlinkEscape { .. })));
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("inside")).unwrap();
        assert!(ws.resolve("inside/x").is_ok());
    }
}
