//! The workspace: the directory tasks run in (the manifest's directory), and the rule that every
//! input and output path stays inside it.

use std::path::{Component, Path, PathBuf};

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

/// The root directory of a run, canonicalized.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace rooted at `dir`.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: dir.canonicalize()?,
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Normalizes a workspace-relative path (`./a//b` → `a/b`), refusing absolute paths and `..`.
    pub fn normalize(rel: &str) -> Result<String, PathError> {
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
        Ok(parts.join("/"))
    }

    /// The absolute location of `rel`, after checking that neither it nor any symlink along it
    /// leads outside the workspace. Parts that do not exist yet are fine.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, PathError> {
        let norm = Self::normalize(rel)?;
        let mut at = self.root.clone();
        for part in norm.split('/') {
            at.push(part);
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
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(source) => {
                    return Err(PathError::Io {
                        path: rel.into(),
                        source,
                    })
                }
            }
        }
        Ok(self.root.join(norm))
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
