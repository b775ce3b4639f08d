//! What a manifest says, once parsed: tasks with their fields. No validation beyond the syntax
//! lives here; the graph checks deps and cycles, the workspace checks paths.

use std::path::PathBuf;
use std::time::Duration;

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Tasks in file order.
    pub tasks: Vec<Task>,
}

/// One `task NAME { ... }` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Task {
    /// Unique name.
    pub name: String,
    /// Shell command, run with `sh -c` in the workspace.
    pub cmd: String,
    /// Workspace-relative input files (their contents are part of the task key).
    pub inputs: Vec<String>,
    /// Workspace-relative files the command must produce.
    pub outputs: Vec<String>,
    /// Names of tasks that must finish first.
    pub deps: Vec<String>,
    /// Declared environment, added to the inherited one and part of the task key.
    pub env: Vec<(String, String)>,
    /// Per-task timeout, overriding `--timeout`.
    pub timeout: Option<Duration>,
    /// Per-task retry count, overriding `--retry`.
    pub retries: Option<u32>,
    /// Line of the `task` header.
    pub line: usize,
}
