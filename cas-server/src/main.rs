//! `cas-server`: parses flags, loads the configuration, opens the store, serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cas_server::config::{Config, LogFormat};
use cas_server::http::{serve, AppState};
use cas_server::metrics::Metrics;
use clap::{Parser, Subcommand};
use reprovm_sdk::audit::{Event, EventKind};

#[derive(Parser)]
#[command(
    name = "cas-server",
    version,
    about = "Content-addressed storage server (RocksDB, streaming HTTP, BLAKE3/SHA-256)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// A second address serving gRPC only (the REAPI cache services are on --listen too)
    #[arg(long, global = true)]
    grpc_listen: Option<String>,
    /// Data directory [default: ./cas-data]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "CAS_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the blob protocol (the default).
    Serve(ServeArgs),
    /// The remote tier: status, push, pull (with the server stopped).
    Sync {
        #[command(subcommand)]
        command: cas_server::sync::SyncCommand,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Store backups: create, list, verify [--deep], prune, restore.
    Backup {
        #[command(subcommand)]
        command: cas_server::backup::cli::BackupCommand,
    },
    /// Check (`verify`) or summarize (`report`) an audit log.
    Audit {
        #[command(subcommand)]
        command: reprovm_sdk::audit::AuditCommand,
    },
    /// Scrub (with the server stopped): re-hash every blob, list the corrupt ones, exit 1 if any.
    Verify {
        /// Quarantine the corrupt blobs: they read as absent until uploaded again.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        args: ServeArgs,
    },
}

/// `cas-server verify`: prints counts and corrupt digests; returns the exit code.
fn run_verify(args: &ServeArgs, repair: bool) -> anyhow::Result<i32> {
    let config = load_config(args)?;
    let opts = cas_server::StoreOptions {
        verify_reads: false,
        min_free_space: 0,
        ..cas_server::store::store_options(&config)
    };
    let store = cas_server::RocksStore::open(&config.data_dir, opts).with_context(|| {
        format!(
            "opening the store in {} (is a server running on it?)",
            config.data_dir.display()
        )
    })?;
    let report = store.scrub(repair)?;
    println!("blobs: {}", report.blobs);
    println!("bytes: {}", report.bytes);
    println!("corrupt: {}", report.corrupt.len());
    for (digest, why) in &report.corrupt {
        println!("corrupt {digest}: {why}");
    }
    if repair {
        println!("quarantined: {}", report.quarantined);
    } else if !report.ok() {
        println!("run again with --repair to quarantine the corrupt blobs (then upload them again to heal)");
    }
    if report.healed > 0 {
        println!("healed: {} (uploaded again since their quarantine)", report.healed);
    }
    println!("in quarantine: {}", report.in_quarantine.len());
    for digest in &report.in_quarantine {
        println!("quarantined {digest}");
    }
    store.flush()?;
    Ok(if report.ok() { 0 } else { 1 })
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if let Some(g) = &args.grpc_listen {
        config.grpc_listen = Some(g.clone());
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// SIGHUP re-reads the token file; a bad file keeps the old tokens.
async fn reload_tokens_on_sighup(state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let reloaded = state.auth.reload();
        match &reloaded {
            Ok(n) => tracing::info!(tokens = n, "tokens reloaded"),
            Err(e) => tracing::error!(error = %e, "token reload failed; keeping the previous tokens"),
        }
        let details = match &reloaded {
            Ok(n) => format!("{n} tokens"),
            Err(e) => e.to_string(),
        };
        state.audit.record(
            Event::new(EventKind::ConfigChange, "cas-server", "tokens", "reload")
                .success(reloaded.is_ok())
                .details(details),
        );
    }
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_logging(&config);
    let audit = cas_server::audit::open(&config.audit)?;
    audit.record(
        Event::new(EventKind::Start, "cas-server", "cas-server", "start")
            .details(format!("pid {}", std::process::id())),
    );
    let config_name = args
        .config
        .as_ref()
        .map_or("(defaults)".into(), |p| p.display().to_string());
    audit.record(Event::new(EventKind::ConfigLoad, "cas-server", config_name, "load"));
    let auth = cas_server::auth::Authenticator::new(&config.auth)?;
    if !auth.enabled() {
        tracing::warn!("no tokens configured: every client may read, write and delete");
    }
    let stores = cas_server::store::build(&config)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    cas_server::store::spawn_background(&config, &stores);
    let local = stores.local.clone();
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "cas-server listening");
    let grpc_listener = match &config.grpc_listen {
        None => None,
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (grpc_listen)"))?,
        ),
    };
    let tls = config.tls.as_ref().map(cas_server::http::tls::acceptor).transpose()?;
    // Lines on stdout that scripts and tests can wait for (port 0 picks a free port), written
    // at once: a reader that stops after the first line must not make a later write fail.
    let (http_scheme, grpc_scheme) = if tls.is_some() {
        ("https", "grpcs")
    } else {
        ("http", "grpc")
    };
    let mut banner = format!("listening on {http_scheme}://{addr}\n");
    if let Some(g) = &grpc_listener {
        let gaddr = g.local_addr()?;
        tracing::info!(addr = %gaddr, "gRPC-only listener");
        banner.push_str(&format!("grpc listening on {grpc_scheme}://{gaddr}\n"));
    }
    print!("{banner}");
    std::io::Write::flush(&mut std::io::stdout())?;
    let config_limits = config.limits.clone();
    let state = Arc::new(AppState {
        store: stores.serving.clone(),
        local: local.clone(),
        tier: stores.tier.clone(),
        kv: Arc::new(cas_server::kv::KvStore::over(&stores)),
        config,
        metrics: Metrics::install(),
        auth,
        limits: cas_server::http::limits::Limits::new(&config_limits),
        tls,
        started: Instant::now(),
        audit: audit.clone(),
    });
    state.kv.spawn_sweeper(std::time::Duration::from_secs(300));
    tokio::spawn(reload_tokens_on_sighup(state.clone()));
    let listeners = cas_server::http::Listeners {
        main: listener,
        grpc: grpc_listener,
    };
    serve(listeners, state.clone(), shutdown_signal()).await?;
    drop(state);
    audit.record(Event::new(EventKind::Stop, "cas-server", "cas-server", "stop").details("SIGTERM/SIGINT"));
    audit.flush(std::time::Duration::from_secs(5));
    audit.close();
    tokio::task::spawn_blocking(move || local.flush()).await??;
    tracing::info!("store flushed; bye");
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Serve(args)) => run_serve(args).await,
            Some(Command::Backup { command }) => cas_server::backup::cli::run(command),
            Some(Command::Audit { command }) => {
                std::process::exit(reprovm_sdk::audit::run_cli(&command, "CAS_AUDIT_KEY").into())
            }
            Some(Command::Verify { repair, args }) => std::process::exit(run_verify(&args, repair)?),
            Some(Command::Sync { command, args }) => {
                let config = load_config(&args)?;
                init_logging(&config);
                let code = cas_server::sync::run(&config, command).await?;
                std::process::exit(code)
            }
            None => run_serve(cli.serve).await,
        }
    });
    if let Err(e) = result {
        eprintln!("cas-server: {e:#}");
        std::process::exit(1);
    }
}
