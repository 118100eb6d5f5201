//! `akosha-node`: runs one Akosha node (durable shards, ingest and search over HTTP).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use akosha::api::tls::TlsFiles;
use akosha::cluster::routes::{ClusterRoutes, ShardSync};
use akosha::cluster::tls::ClusterTls;
use akosha::cluster::{catch_up, fanout};
use akosha::cluster::{ClusterHandle, ClusterSettings};
use akosha::config::Config;
use akosha::node::Node;
use anyhow::Context;
use clap::Parser;

/// Default configuration file, read when it exists and no --config is given.
const DEFAULT_CONFIG: &str = "config/akosha.toml";
/// Environment variable holding the cluster cookie when --cookie is not given.
const COOKIE_ENV: &str = "AKOSHA_COOKIE";
/// Node id of a node started without --listen and without cluster.node_id.
const SINGLE_NODE_ID: &str = "local";

/// Run an Akosha node: durable shards in hot, warm and cold tiers, push and pull ingestion,
/// semantic search over HTTP: REST under /api/v1, MCP at /mcp (Streamable HTTP) and
/// Session-Buddy's sessionless /mcp/mcp/v1.
///
/// Settings come from, later winning: built-in defaults, the config file,
/// AKOSHA__SECTION__KEY environment variables (e.g. AKOSHA__INDEX__EF_SEARCH=128),
/// then these flags.
///
/// Without --listen the node is a one-node cluster of itself. With it, the node gossips and
/// accepts cluster sessions on that address (UDP and TCP, same port), joins the members given
/// by --join, and needs --node-id and a cookie (--cookie or AKOSHA_COOKIE).
#[derive(Debug, Parser)]
#[command(name = "akosha-node", version)]
struct Args {
    /// Configuration file (TOML) [default: config/akosha.toml when it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the node's durable state [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:8682]
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Object store to pull uploads from and keep cold-tier Parquet files in:
    /// file:///abs/path or s3://bucket/prefix
    /// [default: file://<data-dir>/objects]. S3 endpoint, region and credentials come from
    /// [object_store] in the config or the usual AWS_* environment variables
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP).
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
    /// Cluster address of this node, IP:PORT: transport (TCP) and gossip (UDP) on the same port
    /// [default: none, a one-node cluster of itself]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Listen address of a member to join, HOST:PORT (repeat for several)
    #[arg(long = "join", value_name = "ADDR")]
    join: Vec<String>,
    /// This node's id in the cluster, stable across restarts (letters, digits, '.', '_', '-');
    /// required with --listen
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// Shared secret of the cluster's transport handshake; required with --listen. Prefer the
    /// AKOSHA_COOKIE environment variable: a flag shows in the process list
    #[arg(long, value_name = "SECRET")]
    cookie: Option<String>,
    /// Check the configuration (FILE, else --config, else config/akosha.toml when it
    /// exists), with its AKOSHA__SECTION__KEY overrides, and exit: 0 when it is valid, 2
    /// with every problem listed, one per line
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// Tokens file that callers' `Authorization: Bearer` tokens are checked against (made
    /// with `akosha-admin token create`), read again when it changes
    /// [default: auth.tokens_file]
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Serve every caller as admin without tokens on an address other than loopback (a node
    /// on loopback without tokens does so anyway)
    #[arg(long)]
    insecure: bool,
    /// Log lines as text for people (human) or one JSON object per line (json), on stderr;
    /// RUST_LOG sets what is logged
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// text for people, coloured on a terminal
    Human,
    /// one JSON object per line: timestamp, level, target, fields, spans
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // candle's thread counts, before any thread starts; an operator's own values win
    akosha::embedding::set_thread_env();
    if let Some(file) = &args.check_config {
        return check_config(file.as_deref().or(args.config.as_deref()));
    }
    akosha::heap::set_up();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("akosha-node: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    // flushes the spans still queued when the node exits
    let _exporter = match init_logging(args.log_format, &config.telemetry) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("akosha-node: cannot start the span exporter: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = check_exposure(&config, args.insecure) {
        eprintln!("akosha-node: {e}");
        return ExitCode::from(2);
    }
    let cookie = args
        .cookie
        .clone()
        .or_else(|| std::env::var(COOKIE_ENV).ok());
    let cluster = match cluster_settings(&config, cookie) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("akosha-node: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(akosha::MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akosha-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, cluster));
    // abandoned blocking work (an upload cut off by the drain timeout) must not hold the exit
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "node failed");
            eprintln!("akosha-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logging when RUST_LOG is not set: info, but ractor_cluster's own warning on every session
/// that ends (each akosha-admin run would leave one); the membership actor logs members'.
const DEFAULT_LOG: &str = "info,ractor_cluster::node=error";

/// Logs on stderr in `format`, and spans to the OTLP collector `telemetry` names, if any.
fn init_logging(
    format: LogFormat,
    telemetry: &akosha::config::TelemetryConfig,
) -> std::io::Result<Option<akosha::telemetry::OtlpExporter>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Human => logs.boxed(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let (otlp, exporter) = if telemetry.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let (layer, exporter) = akosha::telemetry::OtlpLayer::new(
            &telemetry.otlp_endpoint,
            &telemetry.service_name,
            std::time::Duration::from_millis(telemetry.export_timeout_ms),
        )?;
        (Some(layer), Some(exporter))
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otlp)
        .init();
    Ok(exporter)
}

/// Refuses to serve an address other than loopback without tokens, unless `insecure`.
fn check_exposure(config: &Config, insecure: bool) -> Result<(), String> {
    let addr = config.http_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_loopback() || !config.auth.tokens_file.is_empty() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(http = %addr, "serving every caller as admin without tokens (--insecure)");
        return Ok(());
    }
    Err(format!(
        "refusing to serve {addr} without tokens: anyone who reaches it could read, write and delete every memory. Give --tokens FILE (make one with: akosha-admin token create --tokens FILE --role admin), or --insecure to serve every caller as admin"
    ))
}

/// `--check-config`: every problem of the configuration, or that it is valid.
fn check_config(file: Option<&std::path::Path>) -> ExitCode {
    let default = PathBuf::from(DEFAULT_CONFIG);
    let file = file.or_else(|| default.is_file().then_some(default.as_path()));
    let shown = file.map_or("the defaults".to_string(), |f| f.display().to_string());
    // the certificate files named are read too: a node would refuse them at start
    let checked = Config::check(file)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
        .and_then(|config| {
            let mut problems = Vec::new();
            if let Some(paths) = config.cluster.tls_paths() {
                problems.extend(ClusterTls::open(paths).err().map(|e| e.to_string()));
            }
            let http = &config.http;
            if !http.tls_cert_file.is_empty() {
                let (cert, key) = (
                    std::path::Path::new(&http.tls_cert_file),
                    std::path::Path::new(&http.tls_key_file),
                );
                problems.extend(TlsFiles::open(cert, key).err().map(|e| e.to_string()));
            }
            match problems.is_empty() {
                true => Ok(config),
                false => Err(problems),
            }
        });
    match checked {
        Ok(_) => {
            println!("akosha-node: configuration {shown} is valid");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!(
                "akosha-node: configuration {shown} has {} problem{}:",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in &problems {
                eprintln!("  {p}");
            }
            ExitCode::from(2)
        }
    }
}

fn load_config(args: &Args) -> Result<Config, akosha::config::ConfigError> {
    let default = PathBuf::from(DEFAULT_CONFIG);
    let file = match &args.config {
        Some(f) => Some(f.as_path()),
        None if default.is_file() => Some(default.as_path()),
        None => None,
    };
    let mut config = Config::load(file)?;
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = dir.clone();
    }
    if let Some(http) = &args.http {
        config.node.http_addr = http.clone();
    }
    if let Some(url) = &args.object_store {
        config.object_store.url = Some(url.clone());
    }
    if let Some(listen) = &args.listen {
        config.cluster.listen = Some(listen.clone());
    }
    if !args.join.is_empty() {
        config.cluster.join = args.join.clone();
    }
    if let Some(id) = &args.node_id {
        config.cluster.node_id = Some(id.clone());
    }
    if let Some(tokens) = &args.tokens {
        config.auth.tokens_file = tokens.display().to_string();
    }
    config.validate()?;
    Ok(config)
}

/// The cluster this node runs in: `None` for a one-node cluster of itself (no --listen).
fn cluster_settings(
    config: &Config,
    cookie: Option<String>,
) -> Result<Option<ClusterSettings>, String> {
    let c = &config.cluster;
    let Some(listen) = c.listen_addr().map_err(|e| e.to_string())? else {
        if !c.join.is_empty() {
            return Err(format!(
                "--join needs --listen (cluster.listen): expected this node's cluster address, got only members to join {:?}",
                c.join
            ));
        }
        return Ok(None);
    };
    let Some(node_id) = c.node_id.clone() else {
        return Err(
            "--node-id NAME (cluster.node_id) is required with --listen, got none".to_string(),
        );
    };
    let cookie = match cookie {
        Some(cookie) if !cookie.is_empty() => cookie,
        Some(_) => {
            return Err(format!(
                "--cookie SECRET or {COOKIE_ENV} is required with --listen, got an empty cookie"
            ))
        }
        None => {
            return Err(format!(
                "--cookie SECRET or {COOKIE_ENV} is required with --listen, got neither"
            ))
        }
    };
    let tls = match c.tls_paths() {
        Some(paths) => Some(ClusterTls::open(paths).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Some(ClusterSettings {
        node_id,
        listen,
        http: config.node.http_addr.clone(),
        cookie,
        config: c.clone(),
        tls,
    }))
}

async fn run(config: Config, cluster: Option<ClusterSettings>) -> anyhow::Result<()> {
    let addr = config.http_addr()?;
    let data_dir = config.node.data_dir.clone();
    let single_id = config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(|| SINGLE_NODE_ID.to_string());
    let replication_factor = config.cluster.replication_factor;
    let leave_timeout = config.cluster.leave_timeout();
    // about how long gossip takes to tell every member something: five rounds and some
    let settle = config.cluster.gossip_interval() * 5 + Duration::from_secs(2);
    let node = Node::open(config)
        .await
        .with_context(|| format!("cannot open node in {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(http = %addr, data_dir = %data_dir.display(), "listening; loading shards");
    let (cluster, host) = match cluster {
        Some(settings) => {
            let node_id = settings.node_id.clone();
            // other nodes reach this node's shards through its host, advertised by every
            // session from its start
            let sync = Arc::new(ShardSync::default());
            let host = fanout::start_host(&node, &node_id)
                .await
                .map_err(anyhow::Error::msg)?;
            let cluster = ClusterHandle::start(settings)
                .await
                .context("cannot join the cluster")?;
            let routes = ClusterRoutes::new(&node_id, cluster.watcher(), sync);
            fanout::route(&node, routes, settle, cluster.synced_publisher())
                .map_err(anyhow::Error::msg)?;
            // clients (akosha-admin, akosha::client) reach the node's routes through it
            let api = akosha::api::remote::start(&node, cluster.watcher())
                .await
                .map_err(anyhow::Error::msg)?;
            (cluster, Some((host, api)))
        }
        None => (
            ClusterHandle::single(&single_id, &addr.to_string(), replication_factor),
            None,
        ),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx;
    let server = tokio::spawn(akosha::api::serve_with_cluster(
        listener,
        node.clone(),
        cluster.watcher(),
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    ));

    tokio::select! {
        started = node.start() => {
            started?;
            cluster.set_ready(true);
            tracing::info!(stats = ?node.index.stats(), "node ready");
            shutdown_signal().await;
        }
        _ = shutdown_signal() => {}
    }
    // peers hear that this node leaves; it keeps answering while they copy its shards
    if host.is_some() && cluster.announce_leaving().await {
        let left = catch_up::hand_off(&node, leave_timeout, settle).await;
        if left > 0 {
            tracing::warn!(
                shards = left,
                waited_secs = leave_timeout.as_secs(),
                "leaving before every shard is whole on its new replicas; with replication \
                 factor 1 they answer partial until this node is back"
            );
        } else {
            tracing::info!("every shard of this node is whole on its new replicas");
        }
    }
    cluster.leave().await;
    if let Some((host, api)) = host {
        api.stop(None);
        host.stop(None);
    }
    let _ = stop_tx.send(true);
    tracing::info!("shutting down");
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "http server failed"),
        Err(e) => tracing::error!(error = %e, "http server task failed"),
    }
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
