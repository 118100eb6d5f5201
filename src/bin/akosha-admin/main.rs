//! `akosha-admin`: inspects and steers an Akosha cluster through any member, over the
//! cluster transport (see `akosha::client`).
//!
//! Exit codes: 0 done, 1 the operation failed, 2 bad usage.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use akosha::client::{Client, ClientConfig, SearchRequest, TlsPaths};

mod rebuild;
mod tables;

use tables::{cluster_table, pairs, shards_table, stats_table, tree_text, uploads_table};

/// The client's TLS files from the flags or the environment: all three, or none.
fn tls_paths(args: &Args) -> Result<Option<TlsPaths>, Failure> {
    let pick = |flag: &Option<PathBuf>, env: &str| {
        flag.clone().or_else(|| {
            std::env::var_os(env)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    };
    let cert = pick(&args.tls_cert, "AKOSHA_TLS_CERT");
    let key = pick(&args.tls_key, "AKOSHA_TLS_KEY");
    let ca = pick(&args.tls_ca, "AKOSHA_TLS_CA");
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsPaths {
            cert,
            key,
            ca,
            server_name: args.tls_server_name.clone(),
        })),
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                ("--tls-cert", cert.is_none()),
                ("--tls-key", key.is_none()),
                ("--tls-ca", ca.is_none()),
            ]
            .into_iter()
            .filter_map(|(flag, gone)| gone.then_some(flag))
            .collect();
            Err(Failure(
                2,
                format!(
                    "expected --tls-cert, --tls-key and --tls-ca together (or AKOSHA_TLS_CERT, _KEY, _CA), got no {}",
                    missing.join(" or ")
                ),
            ))
        }
    }
}

/// Inspects and steers an Akosha cluster through any of its members.
///
/// Connects to a member's cluster address (its `--listen`) with the cluster's cookie, as a
/// client that never joins the cluster. `--json` prints the node's own JSON for scripts;
/// without it, aligned tables for people.
#[derive(Debug, Parser)]
#[command(name = "akosha-admin", version)]
struct Args {
    /// a member's cluster address (its --listen); give several to fall back on; default
    /// AKOSHA_NODE or 127.0.0.1:7691 (scripts/cluster.sh's first node)
    #[arg(long = "node", value_name = "ADDR", global = true)]
    nodes: Vec<String>,
    /// the cluster's shared secret; prefer the AKOSHA_COOKIE environment variable, as a flag
    /// shows in the process list
    #[arg(long, value_name = "SECRET", global = true)]
    cookie: Option<String>,
    /// this client's PEM certificate, signed by the cluster's CA, for a cluster whose members
    /// set cluster.tls_* (mutual TLS); default AKOSHA_TLS_CERT
    #[arg(long, value_name = "FILE", global = true)]
    tls_cert: Option<PathBuf>,
    /// the PEM private key of --tls-cert; default AKOSHA_TLS_KEY
    #[arg(long, value_name = "FILE", global = true)]
    tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster's CA (the members' cluster.tls_ca_file); default
    /// AKOSHA_TLS_CA
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,
    /// the name members' certificates carry (their cluster.tls_server_name)
    #[arg(long, value_name = "NAME", default_value = "akosha", global = true)]
    tls_server_name: String,
    /// print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// how long connecting, and each request, may take, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The live actor tree of every member: supervisors, the shard actors each holds, ingestion,
    /// aging, the query coordinator and the cluster actors, each with its state
    Tree {
        /// redraw it every two seconds until interrupted
        #[arg(long)]
        watch: bool,
        /// list every shard actor, also those of shards not placed on the node
        #[arg(long)]
        all: bool,
    },
    /// Members, their state, the shards each holds, and under-replicated shards
    Cluster,
    /// Records per tier across the cluster (each once), and shard health
    Stats,
    /// Each shard: records per tier, its primary, its replicas, and its whole copies
    Shards,
    /// Pull ingestion on every alive member: done, backlog, in flight, and quarantined uploads
    /// with reasons
    Uploads {
        #[command(subcommand)]
        action: Option<UploadsAction>,
    },
    /// Searches the cluster and prints the hits as a table
    Search {
        /// the text to search for
        query: String,
        /// hits wanted (1-1000)
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// only this system's records
        #[arg(long, value_name = "SYSTEM_ID")]
        system: Option<String>,
        /// tiers to search, comma-separated (hot,warm,cold)
        #[arg(long, value_delimiter = ',')]
        tiers: Vec<String>,
    },
    /// Moves records between tiers now on the member asked (each member ages the shards it
    /// is the primary of)
    Age,
    /// Backs the member asked up to an object store prefix while it keeps serving: every
    /// shard (every tier, deletions), the ledger, the graph, the analytics and the cold
    /// files; a later backup to the same place writes only what changed. Give --timeout
    /// enough for it
    Backup {
        /// where: file:///abs/path or s3://bucket/prefix (S3 settings as the member's)
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Makes, revokes and lists the tokens of a tokens file (akosha-node --tokens FILE), without
    /// asking any member; the node reads the file again when it changes
    Token {
        #[command(subcommand)]
        what: TokenWhat,
    },
    /// Restores a backup into a new data directory, without asking any member; start a node
    /// on the directory afterwards (akosha-node --data-dir DIR)
    Restore {
        /// where the backup is: file:///abs/path or s3://bucket/prefix
        #[arg(long, value_name = "URL")]
        from: String,
        /// the new node's data directory (must be empty or absent)
        #[arg(long, value_name = "DIR")]
        data_dir: std::path::PathBuf,
        /// the backup to restore [default: the latest]
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
        /// the configuration the new node will run with (its S3 settings and object store)
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// the new node's object store, which gets the cold files
        /// [default: file://<data-dir>/objects]
        #[arg(long, value_name = "URL")]
        object_store: Option<String>,
    },
    /// Rebuilds a copy of a shard, from a whole replica on another member or from the object
    /// store, with a progress bar; started again after an interruption, it goes on from there
    Rebuild {
        #[command(subcommand)]
        what: RebuildWhat,
    },
    /// Deletes a system's records, or one conversation's; asks first unless --yes
    Delete {
        #[command(subcommand)]
        what: DeleteWhat,
        /// do not ask for confirmation
        #[arg(long, global = true)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RebuildWhat {
    /// One shard's copy on one member
    Shard {
        /// the shard, 0-255
        #[arg(value_parser = clap::value_parser!(u64).range(0..256))]
        shard: u64,
        /// what to read: `auto` (a whole replica on another member, else the object store),
        /// `store`, or a member's id
        #[arg(long, default_value = "auto")]
        from: String,
        /// the member whose copy is rebuilt (default: the one talked to if it holds the
        /// shard, else the shard's primary)
        #[arg(long, value_name = "NODE_ID")]
        on: Option<String>,
        /// start it and return; the same command without --detach follows it
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UploadsAction {
    /// Puts a quarantined upload back to be read again (once it is fixed in the store)
    Retry {
        /// the upload's manifest key, as `akosha-admin uploads` lists it
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeleteWhat {
    /// Every record of a system, in every tier
    System {
        /// the system's id
        system_id: String,
    },
    /// One conversation of a system
    Conversation {
        /// the system's id
        system_id: String,
        /// the conversation's id
        conversation_id: String,
    },
}

/// Why the command failed, and its exit code.
pub struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, e.to_string())
    }
}

/// What `token` does.
#[derive(Debug, Subcommand)]
enum TokenWhat {
    /// Makes a token and prints it once on stdout, alone on its line (the file keeps only
    /// its SHA-256)
    Create {
        /// the tokens file (made when absent)
        #[arg(long, value_name = "FILE")]
        tokens: std::path::PathBuf,
        /// reader, writer or admin
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// who or what it is for
        #[arg(long, value_name = "NAME", default_value = "")]
        name: String,
        /// days until it stops working [default: never]
        #[arg(long, value_name = "DAYS")]
        expires_days: Option<f64>,
    },
    /// Revokes a token by its id (the 12 hex digits after `akosha_`)
    Revoke {
        /// the tokens file
        #[arg(long, value_name = "FILE")]
        tokens: std::path::PathBuf,
        /// the token's id
        id: String,
    },
    /// Lists the tokens: id, role, name, created, expires, revoked (never the tokens)
    List {
        /// the tokens file
        #[arg(long, value_name = "FILE")]
        tokens: std::path::PathBuf,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("akosha-admin: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    if let Command::Token { what } = &args.command {
        return token(what, args.json);
    }
    if let Command::Restore {
        from,
        data_dir,
        backup,
        config,
        object_store,
    } = &args.command
    {
        let report = restore(
            from,
            data_dir,
            backup.as_deref(),
            config.as_deref(),
            object_store.as_deref(),
        )
        .await?;
        let report = serde_json::to_value(&report)?;
        let text = print_or(args.json, &report, || pairs(&report))?;
        print!("{text}");
        return Ok(());
    }
    let cookie = match args
        .cookie
        .clone()
        .or_else(|| std::env::var("AKOSHA_COOKIE").ok())
    {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(Failure(
                2,
                "no cookie: set AKOSHA_COOKIE or give --cookie".to_string(),
            ))
        }
    };
    let mut nodes = args.nodes.clone();
    if nodes.is_empty() {
        nodes.push(std::env::var("AKOSHA_NODE").unwrap_or_else(|_| "127.0.0.1:7691".to_string()));
    }
    if let Command::Delete { what, yes } = &args.command {
        if !yes && !confirmed(what)? {
            return Err(Failure(1, "nothing deleted".to_string()));
        }
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let mut config = ClientConfig::new(&nodes, &cookie);
    config.connect_timeout = timeout;
    config.call_timeout = timeout;
    config.tls = tls_paths(&args)?;
    let client = Client::connect(config).await?;
    let out = match args.command {
        Command::Tree { watch, all } => loop {
            let trees = client.observe_all().await?;
            let text = print_or(args.json, &trees, || {
                trees.iter().map(|t| tree_text(t, all)).collect()
            })?;
            if !watch {
                break Ok(text);
            }
            // clear the screen, then draw
            print!("\x1b[2J\x1b[H{text}");
            std::io::stdout().flush()?;
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        Command::Cluster => {
            let info = client.cluster().await?;
            let stats = client.stats().await?;
            print_or(args.json, &info, || cluster_table(&info, &stats))
        }
        Command::Stats => {
            let stats = client.stats().await?;
            print_or(args.json, &stats, || stats_table(&stats))
        }
        Command::Shards => {
            let shards = client.shards().await?;
            print_or(args.json, &shards, || shards_table(&shards))
        }
        Command::Uploads { action: None } => {
            let reports = uploads(&client).await?;
            print_or(args.json, &reports, || {
                reports
                    .iter()
                    .map(|r| {
                        let id = r["node_id"].as_str().unwrap_or("?");
                        match r.get("error").and_then(Value::as_str) {
                            Some(e) => format!("node {id}: {e}\n"),
                            None => format!("node {id}\n{}", uploads_table(r)),
                        }
                    })
                    .collect()
            })
        }
        Command::Uploads {
            action: Some(UploadsAction::Retry { key }),
        } => {
            let requeued = client.retry_upload(&key).await?;
            print_or(args.json, &requeued, || {
                format!(
                    "{} put back to be read again (it was quarantined: {})\n",
                    requeued.key, requeued.was
                )
            })
        }
        Command::Search {
            query,
            limit,
            system,
            tiers,
        } => {
            let mut request = SearchRequest::text(&query).limit(limit);
            request.system_id = system;
            if !tiers.is_empty() {
                request.tiers = Some(tiers);
            }
            let answer = client.search(&request).await?;
            print_or(args.json, &answer, || tables::search_table(&answer))
        }
        Command::Rebuild {
            what:
                RebuildWhat::Shard {
                    shard,
                    from,
                    on,
                    detach,
                },
        } => {
            let ask = rebuild::Ask {
                shard,
                from: &from,
                on: on.as_deref(),
                detach,
                json: args.json,
            };
            rebuild::rebuild(&client, ask).await
        }
        Command::Age => {
            let report = client.age().await?;
            print_or(args.json, &report, || pairs(&report))
        }
        Command::Backup { to } => {
            let report = client.backup(&to).await?;
            print_or(args.json, &report, || pairs(&report))
        }
        // answered above, before connecting
        Command::Restore { .. } | Command::Token { .. } => Ok(String::new()),
        Command::Delete { what, .. } => {
            let answer = match &what {
                DeleteWhat::System { system_id } => client.delete_system(system_id).await?,
                DeleteWhat::Conversation {
                    system_id,
                    conversation_id,
                } => {
                    client
                        .delete_conversation(system_id, conversation_id)
                        .await?
                }
            };
            print_or(args.json, &answer, || {
                format!("deleted {} records\n", answer.deleted)
            })
        }
    };
    client.close();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out?.as_bytes())?;
    Ok(())
}

/// Every alive member's pull ingestion, each as its node answers it with `node_id` added (or
/// with the `error` it answered); fails only when every member does.
async fn uploads(client: &Client) -> Result<Vec<Value>, Failure> {
    let answers = client.uploads_all().await?;
    if answers.iter().all(|(_, a)| a.is_err()) {
        if let Some((_, Err(e))) = answers.into_iter().next() {
            return Err(Failure(1, e.to_string()));
        }
        return Ok(Vec::new());
    }
    Ok(answers
        .into_iter()
        .map(|(id, answer)| match answer {
            Ok(Value::Object(mut report)) => {
                report.insert("node_id".into(), json!(id));
                Value::Object(report)
            }
            Ok(other) => json!({ "node_id": id, "report": other }),
            Err(e) => json!({ "node_id": id, "error": e.to_string() }),
        })
        .collect())
}

/// Asks on the terminal whether to delete.
fn confirmed(what: &DeleteWhat) -> Result<bool, Failure> {
    let question = match what {
        DeleteWhat::System { system_id } => {
            format!("delete every record of system {system_id:?} on the whole cluster?")
        }
        DeleteWhat::Conversation {
            system_id,
            conversation_id,
        } => format!("delete conversation {conversation_id:?} of system {system_id:?}?"),
    };
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// The value as JSON, or the table `text` makes.
pub fn print_or<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<String, Failure> {
    if json {
        Ok(serde_json::to_string_pretty(value)? + "\n")
    } else {
        Ok(text())
    }
}

/// `restore`: the backup at `from` into a new node's data directory and object store.
async fn restore(
    from: &str,
    data_dir: &std::path::Path,
    backup: Option<&str>,
    config: Option<&std::path::Path>,
    object_store: Option<&str>,
) -> Result<akosha::backup::RestoreReport, Failure> {
    let mut config = akosha::config::Config::load(config)
        .map_err(|e| Failure(2, format!("invalid configuration: {e}")))?;
    config.node.data_dir = data_dir.to_path_buf();
    if let Some(url) = object_store {
        config.object_store.url = Some(url.to_string());
    }
    config
        .validate()
        .map_err(|e| Failure(2, format!("invalid configuration: {e}")))?;
    let source =
        akosha::backup::open(from, &config.object_store).map_err(|e| Failure(2, e.to_string()))?;
    Ok(akosha::backup::restore(config, &source, backup).await?)
}

/// `token`: works on the tokens file alone.
fn token(what: &TokenWhat, json: bool) -> Result<(), Failure> {
    use akosha::auth::{Role, Tokens, TokensError};
    match what {
        TokenWhat::Create {
            tokens,
            role,
            name,
            expires_days,
        } => {
            let role = Role::parse(role).ok_or_else(|| {
                Failure(
                    2,
                    format!("--role: expected reader, writer or admin, got {role:?}"),
                )
            })?;
            let expires_at = match expires_days {
                Some(d) if d.is_finite() && *d > 0.0 => {
                    Some(chrono::Utc::now() + chrono::Duration::seconds((d * 86_400.0) as i64))
                }
                Some(d) => {
                    return Err(Failure(
                        2,
                        format!("--expires-days: expected a number of days above 0, got {d}"),
                    ))
                }
                None => None,
            };
            let token = Tokens::update(tokens, |file| file.create(role, name, expires_at))?;
            println!("{token}");
            Ok(())
        }
        TokenWhat::Revoke { tokens, id } => {
            Tokens::update(tokens, |file| file.revoke(id)).map_err(|e| match e {
                TokensError::NoSuchToken(_) => Failure(2, e.to_string()),
                e => Failure(1, e.to_string()),
            })?;
            println!("revoked {id}");
            Ok(())
        }
        TokenWhat::List { tokens } => {
            let file = Tokens::load(tokens)?;
            if json {
                let listed: Vec<Value> = file
                    .tokens
                    .iter()
                    .map(|t| json!({"id": t.id, "role": t.role, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at, "revoked_at": t.revoked_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(());
            }
            println!(
                "{:<14}{:<8}{:<24}{:<22}{:<22}REVOKED",
                "ID", "ROLE", "NAME", "CREATED", "EXPIRES"
            );
            let day = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
            };
            for t in &file.tokens {
                println!(
                    "{:<14}{:<8}{:<24}{:<22}{:<22}{}",
                    t.id,
                    t.role.name(),
                    if t.name.is_empty() { "-" } else { &t.name },
                    t.created_at.format("%Y-%m-%d %H:%M"),
                    day(&t.expires_at),
                    day(&t.revoked_at)
                );
            }
            Ok(())
        }
    }
}
