//! Resource control for task starts: a token bucket (`--max-tasks-per-second`), and back-pressure
//! on the machine's CPU and memory use (`--max-cpu`, `--max-memory-mb`): no command starts while
//! the machine is above a limit. The concurrency cap (`max_concurrent_tasks`) is applied by the
//! scheduler through `jobs`.
//!
//! Readings come from `/proc/stat` (CPU busy share between two readings) and `/proc/meminfo`
//! (`MemTotal - MemAvailable`), through the [`Probe`] trait so tests can inject them. A machine
//! that stays above a limit while none of this run's commands is running would stall the run
//! forever, so after `max_wait` a task starts anyway, with a warning.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the limits are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSpec {
    /// Task starts per second (token bucket, burst of one second's worth).
    pub tasks_per_second: Option<f64>,
    /// Busy CPU share of the machine, in percent.
    pub max_cpu_percent: Option<f64>,
    /// Used memory of the machine, in MiB.
    pub max_memory_mb: Option<u64>,
    /// Longest wait for resources while none of our commands runs.
    pub max_wait: Duration,
}

impl LimitSpec {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.tasks_per_second.is_some() || self.max_cpu_percent.is_some() || self.max_memory_mb.is_some()
    }
}

/// Flags (already merged with `REPROVM_*` by clap) over `[rate_limiting] max_cpu_percent,
/// max_memory_mb, max_tasks_per_second, max_wait_seconds`. A value of 0 means no limit.
pub fn settings(
    max_cpu: Option<f64>,
    max_memory_mb: Option<u64>,
    tasks_per_second: Option<f64>,
    file: &crate::config::FileConfig,
) -> Result<LimitSpec, String> {
    let sec = "rate_limiting";
    let e = |e: crate::config::ConfigError| e.to_string();
    let cpu = match max_cpu {
        Some(c) => Some(c),
        None => file.number::<f64>(sec, "max_cpu_percent").map_err(e)?,
    };
    let mem = match max_memory_mb {
        Some(m) => Some(m),
        None => file.number::<u64>(sec, "max_memory_mb").map_err(e)?,
    };
    let rate = match tasks_per_second {
        Some(r) => Some(r),
        None => file.number::<f64>(sec, "max_tasks_per_second").map_err(e)?,
    };
    if cpu.is_some_and(|c| !(0.0..=100.0).contains(&c)) {
        return Err("--max-cpu must be a percentage between 0 and 100".into());
    }
    if rate.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
        return Err("--max-tasks-per-second must be a number >= 0".into());
    }
    let wait = file.number::<f64>(sec, "max_wait_seconds").map_err(e)?.unwrap_or(10.0);
    Ok(LimitSpec {
        max_cpu_percent: cpu.filter(|c| *c > 0.0),
        max_memory_mb: mem.filter(|m| *m > 0),
        tasks_per_second: rate.filter(|r| *r > 0.0),
        max_wait: Duration::from_secs_f64(wait.max(0.0)),
    })
}

/// The machine's current use.
pub trait Probe: Send + Sync {
    /// Busy CPU percent since the previous call (`None` on the first call or when unknown).
    fn cpu_percent(&self) -> Option<f64>;
    /// Used memory in MiB.
    fn memory_mb(&self) -> Option<u64>;
}

/// Reads `/proc`.
#[derive(Default)]
pub struct ProcProbe {
    /// Previous `(busy, total)` jiffies.
    last: Mutex<Option<(u64, u64)>>,
}

/// `(busy, total)` jiffies from the `cpu` line of `/proc/stat`.
fn read_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Used memory (MiB) from `/proc/meminfo`.
pub fn read_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let l = text.lines().find(|l| l.starts_with(name))?;
        l.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("MemTotal:")?.saturating_sub(field("MemAvailable:")?)) / 1024)
}

impl Probe for ProcProbe {
    fn cpu_percent(&self) -> Option<f64> {
        let now = read_cpu()?;
        let prev = self.last.lock().expect("probe").replace(now)?;
        let (busy, total) = (now.0.saturating_sub(prev.0), now.1.saturating_sub(prev.1));
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }

    fn memory_mb(&self) -> Option<u64> {
        read_memory_mb()
    }
}

/// The limiter shared by the tasks of a run.
pub struct Limits {
    spec: LimitSpec,
    probe: Box<dyn Probe>,
    /// Token bucket: tokens and when they were last refilled.
    bucket: tokio::sync::Mutex<(f64, Instant)>,
    /// Commands of this run running now.
    running: AtomicUsize,
    /// How often to look again while above a limit.
    poll: Duration,
    /// Times a start waited for resources (for the audit log and tests).
    waits: AtomicUsize,
}

/// Held while a command runs; dropping it frees its place.
pub struct Running<'a>(&'a Limits);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    /// Limits reading `/proc`.
    pub fn new(spec: LimitSpec) -> Arc<Self> {
        Self::with_probe(spec, Box::new(ProcProbe::default()), Duration::from_millis(250))
    }

    /// Limits with another probe and poll interval (tests).
    pub fn with_probe(spec: LimitSpec, probe: Box<dyn Probe>, poll: Duration) -> Arc<Self> {
        // Prime the CPU reading so the first start has a real interval to look at.
        let _ = probe.cpu_percent();
        let burst = spec.tasks_per_second.unwrap_or(1.0).max(1.0);
        Arc::new(Self {
            spec,
            probe,
            bucket: tokio::sync::Mutex::new((burst, Instant::now())),
            running: AtomicUsize::new(0),
            poll,
            waits: AtomicUsize::new(0),
        })
    }

    /// Times a start had to wait for CPU or memory.
    pub fn waits(&self) -> usize {
        self.waits.load(Ordering::Relaxed)
    }

    /// Why the machine is over a limit now, if it is.
    pub fn over_limit(&self) -> Option<String> {
        if let (Some(max), Some(cpu)) = (self.spec.max_cpu_percent, self.probe.cpu_percent()) {
            if cpu > max {
                return Some(format!("CPU {cpu:.0}% > {max:.0}%"));
            }
        }
        if let (Some(max), Some(mem)) = (self.spec.max_memory_mb, self.probe.memory_mb()) {
            if mem > max {
                return Some(format!("memory {mem} MiB > {max} MiB"));
            }
        }
        None
    }

    /// Waits until a command may start: a token is available and the machine is under its limits.
    /// Returns the guard to hold while the command runs, and a warning when it started anyway.
    pub async fn start(&self) -> (Running<'_>, Option<String>) {
        self.take_token().await;
        let began = Instant::now();
        let mut warning = None;
        let mut counted = false;
        while let Some(why) = self.over_limit() {
            if !counted {
                self.waits.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%why, "back-pressure: waiting before starting a task");
                counted = true;
            }
            if self.running.load(Ordering::SeqCst) == 0 && began.elapsed() >= self.spec.max_wait {
                warning = Some(format!(
                    "starting a task although {why} (waited {:.0?} with nothing of ours running)",
                    began.elapsed()
                ));
                break;
            }
            tokio::time::sleep(self.poll).await;
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        (Running(self), warning)
    }

    async fn take_token(&self) {
        let Some(rate) = self.spec.tasks_per_second.filter(|r| *r > 0.0) else {
            return;
        };
        let burst = rate.max(1.0);
        loop {
            let wait = {
                let mut b = self.bucket.lock().await;
                let now = Instant::now();
                b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
                b.1 = now;
                if b.0 >= 1.0 {
                    b.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.0) / rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Fake {
        mem: Arc<AtomicU64>,
    }

    impl Probe for Fake {
        fn cpu_percent(&self) -> Option<f64> {
            Some(10.0)
        }
        fn memory_mb(&self) -> Option<u64> {
            Some(self.mem.load(Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn token_bucket_spaces_starts() {
        let spec = LimitSpec {
            tasks_per_second: Some(2.0),
            ..LimitSpec::default()
        };
        let l = Limits::with_probe(
            spec,
            Box::new(Fake {
                mem: Arc::new(AtomicU64::new(0)),
            }),
            Duration::from_millis(10),
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            drop(l.start().await);
        }
        // A burst of 2, then one every 500 ms: the 4th start is at least 1 s after the first.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(950), "{took:?}");
    }

    #[tokio::test]
    async fn memory_back_pressure_holds_starts_until_it_drops() {
        let mem = Arc::new(AtomicU64::new(5000));
        let spec = LimitSpec {
            max_memory_mb: Some(4096),
            max_wait: Duration::from_secs(3600),
            ..LimitSpec::default()
        };
        let l = Limits::with_probe(spec, Box::new(Fake { mem: mem.clone() }), Duration::from_millis(10));
        let t0 = Instant::now();
        let (started, _) = tokio::join!(
            async {
                let _running = l.start().await;
                t0.elapsed()
            },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                mem.store(1000, Ordering::SeqCst);
            }
        );
        assert!(started >= Duration::from_millis(300), "{started:?}");
        assert_eq!(l.waits(), 1);
        assert!(l.over_limit().is_none());
        mem.store(5000, Ordering::SeqCst);
        assert_eq!(l.over_limit().as_deref(), Some("memory 5000 MiB > 4096 MiB"));
    }

    #[tokio::test]
    async fn nothing_running_starts_anyway_after_max_wait() {
        let spec = LimitSpec {
            max_memory_mb: Some(1),
            max_wait: Duration::from_millis(100),
            ..LimitSpec::default()
        };
        let l = Limits::with_probe(
            spec,
            Box::new(Fake {
                mem: Arc::new(AtomicU64::new(10)),
            }),
            Duration::from_millis(10),
        );
        let (_g, warning) = l.start().await;
        assert!(warning.unwrap().contains("memory 10 MiB > 1 MiB"));
    }

    #[test]
    fn proc_readings_exist() {
        let p = ProcProbe::default();
        assert!(p.memory_mb().unwrap() > 0);
        let _ = p.cpu_percent();
        std::thread::sleep(Duration::from_millis(50));
        let cpu = p.cpu_percent().unwrap();
        assert!((0.0..=100.0).contains(&cpu));
    }
}
