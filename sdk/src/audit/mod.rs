//! The tamper-evident audit log shared by `cas-server` and `reprovm`.
//!
//! One line per event, in the seed design's layout with a sequence number in front and a chain
//! hash at the end:
//!
//! ```text
//! [2024-11-16 14:30:00] seq=7 type=TASK_START user=alice resource=compile action=execute success=1 details=Task execution started chain=<64 hex>
//! ```
//!
//! `chain` is `BLAKE3-keyed(key, previous chain ‖ the line up to " chain=")`, the first line
//! chaining to 32 zero bytes. Changing a byte of a line breaks its own hash; removing or moving a
//! line breaks the sequence and the next hash, so [`verify`] names the line. Truncating the tail is
//! invisible to the chain alone: compare the head that `verify` prints with one kept elsewhere.
//!
//! Writing is asynchronous: [`AuditLog::record`] puts the event in a bounded queue with `try_send`
//! and returns; a writer thread formats, chains, appends and (optionally) copies the line to the
//! local syslog socket. When the queue is full the event is dropped and counted
//! ([`AuditLog::dropped`]) rather than blocking a request. A reopened log continues the chain and
//! the sequence of its last line. One process writes a given file at a time.
//!
//! The key comes from configuration (64 hex digits, or any passphrase, which is hashed into a key)
//! or from a key file next to the log (`<log>.key`, created with mode 0600 on first use).
//!
//! - [`format`]: time stamps, field escaping, parsing a line.
//! - [`check`]: `verify` and `report` over a written file, and the `audit` subcommand.

pub mod check;
pub mod format;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use check::{report, run_cli, verify, AuditCommand, Problem, ProblemKind, Report, Verified};
pub use format::ParsedLine;

/// What happened. The `type=` field of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A task started running its command.
    TaskStart,
    /// A task's command succeeded and its outputs were stored.
    TaskComplete,
    /// A task failed.
    TaskFail,
    /// A lookup found its entry.
    CacheHit,
    /// A lookup found nothing.
    CacheMiss,
    /// Something was written to the cache.
    CacheStore,
    /// A blob was deleted (by an admin, by eviction or by `cache clean`).
    BlobDelete,
    /// A backup was made.
    Backup,
    /// Configuration was read.
    ConfigLoad,
    /// Configuration changed at run time (token reload...).
    ConfigChange,
    /// A request was refused for its credentials.
    AuthFailure,
    /// A path escape, a digest mismatch or another refused attack.
    SecurityViolation,
    /// The process started.
    Start,
    /// The process stopped.
    Stop,
    /// An application-defined event.
    Custom,
}

impl EventKind {
    /// Every kind, in report order.
    pub const ALL: [EventKind; 15] = [
        Self::Start,
        Self::Stop,
        Self::ConfigLoad,
        Self::ConfigChange,
        Self::TaskStart,
        Self::TaskComplete,
        Self::TaskFail,
        Self::CacheHit,
        Self::CacheMiss,
        Self::CacheStore,
        Self::BlobDelete,
        Self::Backup,
        Self::AuthFailure,
        Self::SecurityViolation,
        Self::Custom,
    ];

    /// The name written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskStart => "TASK_START",
            Self::TaskComplete => "TASK_COMPLETE",
            Self::TaskFail => "TASK_FAIL",
            Self::CacheHit => "CACHE_HIT",
            Self::CacheMiss => "CACHE_MISS",
            Self::CacheStore => "CACHE_STORE",
            Self::BlobDelete => "BLOB_DELETE",
            Self::Backup => "BACKUP",
            Self::ConfigLoad => "CONFIG_LOAD",
            Self::ConfigChange => "CONFIG_CHANGE",
            Self::AuthFailure => "AUTH_FAILURE",
            Self::SecurityViolation => "SECURITY_VIOLATION",
            Self::Start => "START",
            Self::Stop => "STOP",
            Self::Custom => "CUSTOM",
        }
    }

    /// Parses a `type=` value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `audit report` lists these one by one.
    pub fn is_security(self) -> bool {
        matches!(self, Self::AuthFailure | Self::SecurityViolation)
    }
}

/// One event to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its kind.
    pub kind: EventKind,
    /// Who: token name, OS user.
    pub user: String,
    /// What it concerns: task name, digest, path.
    pub resource: String,
    /// The verb: `execute`, `get`, `put`, `delete`...
    pub action: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Free text.
    pub details: String,
}

impl Event {
    /// An event of `kind` by `user` on `resource`; success, no details.
    pub fn new(
        kind: EventKind,
        user: impl Into<String>,
        resource: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            user: user.into(),
            resource: resource.into(),
            action: action.into(),
            success: true,
            details: String::new(),
        }
    }

    /// Sets success.
    pub fn success(mut self, ok: bool) -> Self {
        self.success = ok;
        self
    }

    /// Sets the details.
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
}

/// The audit log cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds something other than 64 hex digits.
    #[error("audit key file {}: expected 64 hex digits", .0.display())]
    BadKeyFile(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to open an audit log.
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// The log file (appended to).
    pub path: PathBuf,
    /// Key from configuration; `None` uses (or creates) the key file.
    pub key: Option<String>,
    /// The key file; default `<path>.key`.
    pub key_file: Option<PathBuf>,
    /// Also send each line to this local syslog socket (`/dev/log`).
    pub syslog: Option<PathBuf>,
    /// Program name in syslog lines.
    pub app: String,
    /// Queue length before events are dropped; 0 means 8192.
    pub capacity: usize,
}

/// The default key file of a log: `<log>.key`.
pub fn default_key_file(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// A key given in configuration: 64 hex digits are the key itself; anything else is a passphrase.
pub fn key_from_text(text: &str) -> [u8; 32] {
    let t = text.trim();
    let mut key = [0u8; 32];
    if t.len() == 64 && hex::decode_to_slice(t, &mut key).is_ok() {
        return key;
    }
    blake3::derive_key("reprovm audit log v1 passphrase", t.as_bytes())
}

/// Reads the key file, or creates it (mode 0600, 32 random bytes as hex) when `create` is set.
pub fn key_from_file(path: &Path, create: bool) -> Result<[u8; 32], AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| AuditError::BadKeyFile(path.to_path_buf()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 32];
            File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(io_err(path))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err(path))?;
            writeln!(f, "{}", hex::encode(key)).map_err(io_err(path))?;
            Ok(key)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The key a config resolves to (creating the key file if needed).
pub fn resolve_key(cfg: &AuditConfig) -> Result<[u8; 32], AuditError> {
    match &cfg.key {
        Some(k) => Ok(key_from_text(k)),
        None => key_from_file(
            &cfg.key_file.clone().unwrap_or_else(|| default_key_file(&cfg.path)),
            true,
        ),
    }
}

/// The next chain value.
pub fn chain_hash(key: &[u8; 32], prev: &[u8; 32], body: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(prev);
    h.update(body.as_bytes());
    *h.finalize().as_bytes()
}

enum Msg {
    Event(SystemTime, Event),
    Flush(SyncSender<()>),
}

struct Inner {
    tx: Mutex<Option<SyncSender<Msg>>>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Handle to an audit log; cheap to clone. A disabled log ignores every event.
#[derive(Clone)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("enabled", &self.enabled()).finish()
    }
}

/// The sequence number and chain value of the last line of an existing log.
fn tail_state(path: &Path) -> Result<(u64, [u8; 32]), AuditError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, [0; 32])),
        Err(e) => return Err(io_err(path)(e)),
    };
    let len = f.metadata().map_err(io_err(path))?.len();
    // A line is well under 64 KiB; read the tail only.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
    let mut last = None;
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io_err(path))?;
        if let Some(p) = format::parse_line(&line) {
            last = Some(p);
        }
    }
    Ok(last.map(|p| (p.seq, p.chain)).unwrap_or((0, [0; 32])))
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Opens (or creates) the log and starts its writer thread.
    pub fn open(cfg: &AuditConfig) -> Result<Self, AuditError> {
        let key = resolve_key(cfg)?;
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let (seq, chain) = tail_state(&cfg.path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&cfg.path)
            .map_err(io_err(&cfg.path))?;
        let syslog = cfg.syslog.as_ref().and_then(|p| {
            let s = UnixDatagram::unbound().ok()?;
            s.connect(p).ok()?;
            // A slow syslog daemon must not stall the writer: a full socket drops the copy.
            s.set_nonblocking(true).ok()?;
            Some(s)
        });
        let (tx, rx) = sync_channel(if cfg.capacity == 0 { 8192 } else { cfg.capacity });
        let written = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            key,
            seq,
            chain,
            out: std::io::BufWriter::new(file),
            syslog,
            app: if cfg.app.is_empty() {
                "reprovm".into()
            } else {
                cfg.app.clone()
            },
            written: written.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&cfg.path))?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                dropped: AtomicU64::new(0),
                written,
                thread: Mutex::new(Some(thread)),
            })),
        })
    }

    /// Whether events are written anywhere.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues an event; never blocks. A full queue drops it (counted in [`Self::dropped`]).
    pub fn record(&self, event: Event) {
        let Some(inner) = &self.inner else { return };
        let tx = inner.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return };
        match tx.try_send(Msg::Event(SystemTime::now(), event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }

    /// Lines written so far by this handle's writer.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.written.load(Ordering::Relaxed))
    }

    /// Waits (at most `timeout`) until every event queued before the call is on disk. Blocking:
    /// for shutdown paths and tests, not for request handlers.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(inner) = &self.inner else { return true };
        let tx = inner.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return true };
        let (ack_tx, ack_rx) = sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Writes what is queued, stops the writer and waits for it. Later events are ignored.
    pub fn close(&self) {
        let Some(inner) = &self.inner else { return };
        let tx = inner.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(tx);
        if let Some(t) = inner.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    key: [u8; 32],
    seq: u64,
    chain: [u8; 32],
    out: std::io::BufWriter<File>,
    syslog: Option<UnixDatagram>,
    app: String,
    written: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            // Drain what is already queued, then flush once.
            while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
                match msg {
                    Msg::Event(at, ev) => self.write(at, &ev),
                    Msg::Flush(ack) => {
                        let _ = self.out.flush();
                        let _ = ack.send(());
                    }
                }
            }
            if let Err(e) = self.out.flush() {
                tracing::error!(error = %e, "audit log write failed");
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, at: SystemTime, ev: &Event) {
        self.seq += 1;
        let body = format::body(at, self.seq, ev);
        self.chain = chain_hash(&self.key, &self.chain, &body);
        let line = format!("{body} chain={}\n", hex::encode(self.chain));
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            tracing::error!(error = %e, "audit log write failed");
            return;
        }
        self.written.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = &self.syslog {
            // RFC 3164 over the local socket: facility authpriv (10), warning for failures.
            let severity = if ev.success && !ev.kind.is_security() { 6 } else { 4 };
            let msg = format!(
                "<{}>{}[{}]: {}",
                10 * 8 + severity,
                self.app,
                std::process::id(),
                line.trim_end()
            );
            let _ = s.send(msg.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
