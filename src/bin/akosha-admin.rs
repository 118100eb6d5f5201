//! `akosha-admin`: inspects and steers an Akosha cluster through any member, over the
//! cluster transport (see `akosha::client`).
//!
//! Exit codes: 0 done, 1 the operation failed, 2 bad usage.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use akosha::client::{
    ActorView, Client, ClientConfig, ClusterInfo, NodeTree, SearchRequest, ShardInfo, Stats,
};

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
    /// Pull ingestion: done, backlog, in flight, and quarantined uploads with reasons
    Uploads,
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
struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, e.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
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
    let client = Client::connect(config.clone()).await?;
    let out = match args.command {
        Command::Tree { watch, all } => loop {
            let trees = trees(&client, &config).await?;
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
        Command::Uploads => {
            let uploads = client.uploads().await?;
            print_or(args.json, &uploads, || uploads_table(&uploads))
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
            print_or(args.json, &answer, || {
                let mut rows = vec![vec![
                    "SIMILARITY".to_string(),
                    "TIER".to_string(),
                    "SYSTEM".to_string(),
                    "CONVERSATION".to_string(),
                    "CONTENT".to_string(),
                ]];
                for h in &answer.results {
                    let content: String = h.content.chars().take(60).collect();
                    rows.push(vec![
                        format!("{:.3}", h.similarity),
                        h.tier.clone(),
                        h.system_id.clone(),
                        h.conversation_id.clone(),
                        content.replace('\n', " "),
                    ]);
                }
                let mut text = table(&rows);
                if answer.partial {
                    text.push_str(&format!(
                        "partial: shards {:?} did not answer\n",
                        answer.missing_shards
                    ));
                }
                text
            })
        }
        Command::Age => {
            let report = client.age().await?;
            print_or(args.json, &report, || pairs(&report))
        }
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

/// Every alive member's tree: the member talked to answers its own, and each other member
/// is asked through a connection of its own.
async fn trees(client: &Client, config: &ClientConfig) -> Result<Vec<NodeTree>, Failure> {
    let info = client.cluster().await?;
    let here = client.member().await;
    let mut trees = vec![client.observe().await?];
    for m in info.members.iter().filter(|m| m.state == "alive") {
        if m.listen == here || m.node_id == trees[0].node_id || m.listen.is_empty() {
            continue;
        }
        let mut other = config.clone();
        other.nodes = vec![m.listen.clone()];
        let peer = Client::connect(other).await?;
        trees.push(peer.observe().await?);
        peer.close();
    }
    trees.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(trees)
}

/// A node's tree, indented; shard actors of shards not placed on it are summed up unless
/// `all`.
fn tree_text(tree: &NodeTree, all: bool) -> String {
    let mut out = format!("node {}\n", tree.node_id);
    walk(&tree.root, 1, all, &mut out);
    out
}

fn walk(a: &ActorView, depth: usize, all: bool, out: &mut String) {
    let mut line = format!("{}{} [{}]", "  ".repeat(depth), a.name, a.state);
    if a.restarts > 0 {
        line.push_str(&format!(" restarts {}", a.restarts));
        let causes: Vec<String> = a
            .restart_causes
            .iter()
            .map(|(cause, n)| format!("{n}x {cause}"))
            .collect();
        if !causes.is_empty() {
            line.push_str(&format!(" [{}]", causes.join("; ")));
        }
    }
    if let Some(doing) = &a.doing {
        line.push_str(&format!(" {doing}"));
    }
    if !a.counters.is_empty() {
        let counters: Vec<String> = a.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" ({})", counters.join(" ")));
    }
    out.push_str(&line);
    out.push('\n');
    let mut hidden = 0;
    for child in &a.children {
        let unplaced = child
            .doing
            .as_deref()
            .is_some_and(|d| d.starts_with("not placed"));
        if !all && unplaced && child.restarts == 0 && child.state == "running" {
            hidden += 1;
            continue;
        }
        walk(child, depth + 1, all, out);
    }
    if hidden > 0 {
        out.push_str(&format!(
            "{}{hidden} more shard actors of shards not placed here (--all lists them)\n",
            "  ".repeat(depth + 1)
        ));
    }
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
fn print_or<T: serde::Serialize>(
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

/// Rows aligned in columns, the first row a header.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Shards as ranges: `0-3,7,9-10`.
fn ranges(shards: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < shards.len() {
        let start = shards[i];
        let mut end = start;
        while i + 1 < shards.len() && shards[i + 1] == end + 1 {
            i += 1;
            end = shards[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "-".to_string()
    } else {
        out.join(",")
    }
}

fn cluster_table(info: &ClusterInfo, stats: &Stats) -> String {
    let mut rows = vec![vec![
        "NODE".to_string(),
        "STATE".to_string(),
        "READY".to_string(),
        "LISTEN".to_string(),
        "HTTP".to_string(),
        "SHARDS".to_string(),
        "WHOLE".to_string(),
        "PLACED".to_string(),
    ]];
    for m in &info.members {
        rows.push(vec![
            m.node_id.clone(),
            m.state.clone(),
            m.ready.to_string(),
            m.listen.clone(),
            m.http.clone(),
            m.shards.len().to_string(),
            m.whole_shards.to_string(),
            ranges(&m.shards),
        ]);
    }
    let mut out = table(&rows);
    out.push_str(&format!(
        "replication factor {}, placement {:016x}, under-replicated shards: {}\n",
        info.replication_factor,
        info.placement_version,
        ranges(&stats.under_replicated_shards)
    ));
    out
}

fn stats_table(stats: &Stats) -> String {
    let r = stats.records;
    let mut out = table(&[
        vec![
            "HOT".to_string(),
            "WARM".to_string(),
            "COLD".to_string(),
            "TOTAL".to_string(),
        ],
        vec![
            r.hot.to_string(),
            r.warm.to_string(),
            r.cold.to_string(),
            r.total.to_string(),
        ],
    ]);
    out.push_str(&format!(
        "shards up {}/{}, missing: {}, under-replicated: {}\n",
        stats.shards_up,
        stats.shards,
        ranges(&stats.missing_shards),
        ranges(&stats.under_replicated_shards)
    ));
    out
}

fn shards_table(shards: &[ShardInfo]) -> String {
    let count = |n: Option<usize>| n.map_or("?".to_string(), |n| n.to_string());
    let mut rows = vec![vec![
        "SHARD".to_string(),
        "HOT".to_string(),
        "WARM".to_string(),
        "COLD".to_string(),
        "PRIMARY".to_string(),
        "REPLICAS".to_string(),
        "WHOLE".to_string(),
    ]];
    for s in shards {
        rows.push(vec![
            s.shard.to_string(),
            count(s.hot),
            count(s.warm),
            count(s.cold),
            s.primary.clone().unwrap_or_else(|| "-".to_string()),
            s.replicas.join(","),
            s.whole.join(","),
        ]);
    }
    table(&rows)
}

fn uploads_table(uploads: &Value) -> String {
    let mut out = String::new();
    for key in [
        "done",
        "pending",
        "in_flight",
        "records",
        "retries",
        "paused",
    ] {
        out.push_str(&format!("{key:<10} {}\n", uploads[key]));
    }
    let quarantined = uploads["quarantined"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !quarantined.is_empty() {
        let mut rows = vec![vec!["QUARANTINED".to_string(), "REASON".to_string()]];
        for q in quarantined {
            rows.push(vec![
                q["key"].as_str().unwrap_or_default().to_string(),
                q["reason"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// A JSON object's fields, one per line.
fn pairs(value: &Value) -> String {
    match value.as_object() {
        Some(map) => map.iter().map(|(k, v)| format!("{k:<22} {v}\n")).collect(),
        None => format!("{value}\n"),
    }
}
