//! The `tidepool` command: the daemon and its operator tools.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidepool::config::{Config, DEFAULT_CONFIG};

/// A Fluentd-compatible log aggregator: forward protocol in, durable buffer, outputs.
#[derive(Parser, Debug)]
#[command(name = "tidepool", version, about)]
struct Cli {
    /// More log detail: -v debug, -vv trace (like Fluentd's -v / -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args, Debug, Clone)]
struct ConfigArg {
    /// Config file (default: conf/tidepool.toml if present, else the built-in default).
    #[arg(short = 'c', long = "config", global = true)]
    file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate a config and exit non-zero with `file:line: what is wrong`.
    Check,
    /// Check the config, then tell the running daemon to reload it (SIGHUP).
    Reload,
    /// Explain where events of a tag go: filters, the winning match, outputs.
    Route {
        /// The tag, e.g. td.test_database.heap_info.
        tag: String,
        /// A JSON record to run through the filters, shown as each output gets it.
        #[arg(long)]
        record: Option<String>,
    },
    /// Send JSON lines from stdin as forward events and wait for their acks.
    Cat(CatArgs),
    /// Show, export or regenerate the generated TLS certificates.
    Certs(CertsArgs),
    /// Run one read-only SQL statement on the local records store.
    Query(QueryArgs),
    /// Records store maintenance.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Inspect and repair output buffers (works with the daemon running or stopped).
    #[command(subcommand)]
    Buffer(tidepool::buffer::BufferCommand),
}

#[derive(Args, Debug)]
struct CatArgs {
    /// Tag of the events, e.g. td.test_database.cpu_info.
    tag: String,
    /// Where to send.
    #[arg(long, default_value = "127.0.0.1:24227")]
    addr: String,
    /// Use TLS.
    #[arg(long)]
    tls: bool,
    /// CA certificate to trust (default with --tls: the generated certs/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Skip certificate verification (testing only).
    #[arg(long)]
    insecure: bool,
    /// Server name to verify (default: the host part of --addr).
    #[arg(long)]
    server_name: Option<String>,
    /// Shared key for the forward handshake.
    #[arg(long)]
    shared_key: Option<String>,
    /// Hostname to present in the handshake.
    #[arg(long, default_value = "tidepool-cat")]
    hostname: String,
    /// Username for user_auth.
    #[arg(long)]
    username: Option<String>,
    /// Password for user_auth.
    #[arg(long)]
    password: Option<String>,
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// The SQL, e.g. "select * from cpu_info".
    sql: String,
    /// Database (default: `default`), e.g. test_database.
    #[arg(short = 'd', long)]
    database: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV.
    #[arg(long)]
    csv: bool,
    /// Ask the API at this URL (e.g. https://agg-1:24220) instead of this machine's
    /// daemon or store files.
    #[arg(long, value_name = "URL", conflicts_with = "offline")]
    api: Option<String>,
    /// Bearer token for --api (default: the config's [api] token).
    #[arg(long, requires = "api")]
    token: Option<String>,
    /// Read the store files even when the daemon is running (by default a running
    /// daemon is asked through its API, so its query limits apply).
    #[arg(long)]
    offline: bool,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Delete rows older than the store output's retention (or --older-than) now.
    Purge {
        /// Age, e.g. "5 weeks" (default: the first store output's retention).
        #[arg(long)]
        older_than: Option<String>,
    },
}

#[derive(Args, Debug)]
struct CertsArgs {
    /// Print the CA as a C header for Mbed OS firmware.
    #[arg(long)]
    c_header: bool,
    /// Name of the C array.
    #[arg(long, default_value = "SSL_CA_PEM")]
    name: String,
    /// Make a new CA and server certificate (devices then need the new CA).
    #[arg(long)]
    regenerate: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidepool: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Which config a command uses: `-c FILE`, else `conf/tidepool.toml`, else built in.
fn load_config(arg: &ConfigArg) -> anyhow::Result<Result<Config, String>> {
    let (result, origin) = match &arg.file {
        Some(p) => (Config::load(p), p.display().to_string()),
        None if Path::new("conf/tidepool.toml").exists() => {
            let p = Path::new("conf/tidepool.toml");
            (Config::load(p), p.display().to_string())
        }
        None => (
            Config::parse(DEFAULT_CONFIG, "<built-in default>"),
            "<built-in default>".to_string(),
        ),
    };
    Ok(result.map_err(|e| format!("{e}\n{origin}: config rejected")))
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = match load_config(&cli.config)? {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(1));
                }
            };
            tracing::info!(
                "tidepool {} starting with config {}",
                env!("CARGO_PKG_VERSION"),
                config.origin
            );
            for w in tidepool::config::warnings(&config) {
                tracing::warn!("config: {w}");
            }
            let pid_file = config.server.data_dir.join(PID_FILE);
            write_pid_file(&pid_file)?;
            let result = runtime.block_on(async {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                reload_on_sighup(cli.config.clone(), tx.clone());
                let api_reload = api_reload_hook(cli.config.clone(), tx);
                tidepool::daemon::run(config, shutdown_signal(), rx, Some(api_reload)).await
            });
            let _ = std::fs::remove_file(&pid_file);
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload => reload(&cli.config),
        Command::Route { tag, record } => {
            let config = match load_config(&cli.config)? {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(1));
                }
            };
            let record = match record {
                Some(text) => Some(
                    serde_json::from_str(&text)
                        .with_context(|| format!("--record is not JSON: {text}"))?,
                ),
                None => None,
            };
            print!(
                "{}",
                tidepool::pipeline::explain::explain(&config, &tag, record)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => match load_config(&cli.config)? {
            Ok(c) => {
                for w in tidepool::config::warnings(&c) {
                    eprintln!("warning: {w}");
                }
                let problems = check_resources(&c);
                if !problems.is_empty() {
                    for p in &problems {
                        eprintln!("{}: {p}", c.origin);
                    }
                    eprintln!("{}: config rejected", c.origin);
                    return Ok(ExitCode::from(1));
                }
                println!("{}: ok", c.origin);
                Ok(ExitCode::SUCCESS)
            }
            Err(msg) => {
                eprintln!("{msg}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Cat(args) => runtime.block_on(cat(args)),
        Command::Certs(args) => certs(&cli.config, args),
        Command::Query(args) => {
            let config = match load_config(&cli.config)? {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(1));
                }
            };
            use tidepool::store::cli::QueryFormat;
            let format = if args.json {
                QueryFormat::Json
            } else if args.csv {
                QueryFormat::Csv
            } else {
                QueryFormat::Table
            };
            let client = query_client(&config, &args)?;
            let out = match (client, postgres_backend(&config)) {
                (Some(client), _) => {
                    let db = args
                        .database
                        .as_deref()
                        .unwrap_or(tidepool::store::names::DEFAULT_DATABASE);
                    let result = runtime.block_on(client.query(db, &args.sql))?;
                    tidepool::store::cli::render(&result, format)?
                }
                (None, Some((url, tls))) => {
                    runtime.block_on(tidepool::store::cli::run_query_postgres(
                        &url,
                        tls.as_ref(),
                        args.database.as_deref(),
                        &args.sql,
                        format,
                    ))?
                }
                (None, None) => tidepool::store::cli::run_query(
                    &config.server.data_dir,
                    args.database.as_deref(),
                    &args.sql,
                    format,
                )?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(StoreCommand::Purge { older_than }) => {
            let config = match load_config(&cli.config)? {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(1));
                }
            };
            let retention = match older_than {
                Some(text) => tidepool::config::units::parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("--older-than {text:?}: {e}"))?,
                None => config
                    .outputs
                    .values()
                    .find_map(|d| match &d.kind {
                        tidepool::config::OutputConfig::Store(s) => s.retention,
                        _ => None,
                    })
                    .context("no store output with a retention in the config: pass --older-than")?,
            };
            let summary = match postgres_backend(&config) {
                Some((url, tls)) => runtime.block_on(tidepool::store::cli::purge_postgres(
                    &url,
                    tls.as_ref(),
                    retention,
                ))?,
                None => tidepool::store::cli::purge(&config.server.data_dir, retention)?,
            };
            print!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Buffer(cmd) => {
            let config = match load_config(&cli.config)? {
                Ok(c) => c,
                Err(msg) => {
                    eprintln!("{msg}");
                    return Ok(ExitCode::from(1));
                }
            };
            print!(
                "{}",
                tidepool::buffer::run_cli(&config.server.data_dir, &cmd)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The PostgreSQL URL and TLS settings of the config's first store output (the one
/// the daemon's API serves), when that output uses `backend = "postgres"`.
fn postgres_backend(
    config: &tidepool::config::Config,
) -> Option<(String, Option<tidepool::config::PgTlsConfig>)> {
    use tidepool::config::{OutputConfig, StoreBackendConfig};
    let store = config.outputs.values().find_map(|d| match &d.kind {
        OutputConfig::Store(s) => Some(s),
        _ => None,
    })?;
    match &store.backend {
        StoreBackendConfig::Postgres { url, tls } => Some((url.clone(), tls.clone())),
        StoreBackendConfig::Sqlite => None,
    }
}

/// What a start or a reload would find wrong beyond the file itself: certificate and
/// key files that do not load, outputs that cannot be built, ports another program
/// holds (ports held by the running tidepool of this data_dir are fine: a reload
/// keeps them).
fn check_resources(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let running = running_pid(config);
    for (i, source) in config.sources.iter().enumerate() {
        let n = i + 1;
        if let tidepool::config::SourceConfig::Mqtt(m) = source
            && let Err(e) = tidepool::input::mqtt::prepare(n, m)
        {
            problems.push(format!("{e:#}"));
        }
        let Some(listen) = source.listen() else {
            continue;
        };
        if let Some(tls) = source.server_tls().filter(|t| t.cert.is_some())
            && let Err(e) = tidepool::tls::server_config(tls, &config.server.certs_dir)
        {
            problems.push(format!("source #{n} ({listen}): TLS: {e:#}"));
        }
        if listen.port() != 0
            && let Err(e) = std::net::TcpListener::bind(listen)
        {
            match running {
                Some(pid) if e.kind() == std::io::ErrorKind::AddrInUse => eprintln!(
                    "note: source #{n}: {listen} is in use, by the running tidepool (pid {pid}) presumably: fine for a reload"
                ),
                _ => problems.push(format!("source #{n}: cannot listen on {listen}: {e}")),
            }
        }
    }
    for (name, def) in &config.outputs {
        if let Err(e) = tidepool::output::Output::build(name, &def.kind, &config.server.data_dir) {
            problems.push(format!("output.{name}: {e:#}"));
        }
    }
    problems
}

/// Where the running daemon writes its process id, so `tidepool reload` can find it.
const PID_FILE: &str = "tidepool.pid";

/// The pid of the daemon running on this config's data_dir, if one is.
fn running_pid(config: &Config) -> Option<i32> {
    std::fs::read_to_string(config.server.data_dir.join(PID_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), None).is_ok())
}

/// Where `tidepool query` sends its SQL: the API named by --api, the running
/// daemon's API, or (None) the store files.
fn query_client(
    config: &Config,
    args: &QueryArgs,
) -> anyhow::Result<Option<tidepool::api::client::ApiClient>> {
    use tidepool::api::client::ApiClient;
    if let Some(url) = &args.api {
        let token = args.token.clone().or_else(|| config.api.token.clone());
        let ca = config.server.certs_dir.join("ca.pem");
        let roots: Vec<_> = [ca].into_iter().filter(|p| p.exists()).collect();
        return ApiClient::new(url, token, &roots).map(Some);
    }
    if args.offline || !config.api.enabled || running_pid(config).is_none() {
        return Ok(None);
    }
    ApiClient::for_config(config).map(Some)
}

fn write_pid_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data_dir {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))
}

type Reloads = tokio::sync::mpsc::Sender<tidepool::daemon::ReloadRequest>;

/// Reads the config from the same place as at start, for a reload.
fn reread(arg: &ConfigArg) -> Result<Config, String> {
    match load_config(arg) {
        Ok(r) => r,
        Err(e) => Err(format!("{e:#}")),
    }
}

/// `POST /api/reload`: re-read the config, apply it, and answer what happened.
fn api_reload_hook(arg: ConfigArg, tx: Reloads) -> tidepool::api::ReloadHook {
    std::sync::Arc::new(move || {
        let (arg, tx) = (arg.clone(), tx.clone());
        Box::pin(async move {
            let config = tokio::task::spawn_blocking(move || reread(&arg))
                .await
                .map_err(|e| format!("config reader failed: {e}"))?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let req = tidepool::daemon::ReloadRequest {
                config,
                reply: Some(reply),
            };
            tx.send(req)
                .await
                .map_err(|_| "the daemon is shutting down".to_string())?;
            answer
                .await
                .map_err(|_| "the daemon is shutting down".to_string())?
        })
    })
}

/// Re-reads the config (from the same place as at start) on every SIGHUP and hands
/// the result to the daemon, which applies it or keeps the running one.
fn reload_on_sighup(arg: ConfigArg, tx: Reloads) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by signal is off");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let req = tidepool::daemon::ReloadRequest {
                config: reread(&arg),
                reply: None,
            };
            if tx.send(req).await.is_err() {
                return;
            }
        }
    });
}

/// `tidepool reload`: refuse a bad config here, where the operator sees the errors,
/// then signal the daemon whose pid file is in the config's data_dir.
fn reload(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = match load_config(arg)? {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}\nnothing was reloaded");
            return Ok(ExitCode::from(1));
        }
    };
    let pid_file = config.server.data_dir.join(PID_FILE);
    let text = std::fs::read_to_string(&pid_file).with_context(|| {
        format!(
            "no running daemon found: cannot read {} (is tidepool running with this data_dir?)",
            pid_file.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| {
        format!(
            "cannot signal tidepool (pid {pid}) from {}",
            pid_file.display()
        )
    })?;
    println!(
        "{}: ok; reload signalled to pid {pid} (its log says when it is applied)",
        config.origin
    );
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
    use tidepool::client::{CatOptions, ClientOptions, ClientTls};
    let mut client = ClientOptions::new(args.addr);
    if args.tls || args.ca.is_some() || args.insecure {
        let ca = args.ca.or_else(|| {
            let default = PathBuf::from("certs/ca.pem");
            default.exists().then_some(default)
        });
        client.tls = Some(ClientTls {
            ca_file: ca,
            insecure: args.insecure,
            server_name: args.server_name,
            ..ClientTls::default()
        });
    }
    client.shared_key = args.shared_key;
    client.self_hostname = args.hostname;
    client.username = args.username;
    client.password = args.password;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let summary = tidepool::client::cat(CatOptions::new(client, args.tag), stdin).await?;
    eprintln!(
        "sent {} events in {} frames, all acknowledged",
        summary.events, summary.frames
    );
    Ok(ExitCode::SUCCESS)
}

/// The certificates live where the config says; the names come from the first input
/// that generates its certificate, so `certs` and the daemon always agree.
fn certs(config: &ConfigArg, args: CertsArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(config)? {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(ExitCode::from(1));
        }
    };
    let dir = &config.server.certs_dir;
    let names = config
        .sources
        .iter()
        .find_map(|s| {
            s.server_tls()
                .filter(|t| t.cert.is_none())
                .map(|t| t.common_names.clone())
        })
        .unwrap_or_default();
    let names = if names.is_empty() {
        tidepool::tls::default_names()
    } else {
        names
    };
    if args.regenerate {
        tidepool::tls::regenerate(dir, &names)?;
        eprintln!(
            "tidepool: NEW CA and server certificate written under {}.\n\
             Every device that pins the old CA must be given the new one \
             (tidepool certs --c-header) before it can connect again.",
            dir.display()
        );
    } else {
        tidepool::tls::ensure_generated(dir, &names)?;
    }
    if args.c_header {
        print!("{}", tidepool::tls::c_header(dir, &args.name)?);
    } else {
        print!("{}", tidepool::tls::describe(dir)?);
    }
    Ok(ExitCode::SUCCESS)
}
