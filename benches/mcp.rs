//! MCP benchmark against a node serving its real HTTP API on loopback:
//! - memories/s through `batch_store_memories` in batches of 100 (Session-Buddy's route and
//!   payload), with embeddings given (from `shared/bench/vectors.py`) and without (the node
//!   embeds the text);
//! - `search_all_systems` p50/p99 through MCP (an initialized session on `/mcp`) against the
//!   same text query through REST (`POST /api/v1/search`) on the same data, interleaved; and
//!   REST with the query's embedding given, which leaves out embedding the query.
//!
//! usage: cargo bench --bench mcp -- DATA_DIR [WITH_EMBEDDINGS] [WITHOUT_EMBEDDINGS] [QUERIES]
//! (see scripts/bench-mcp.sh). Request bodies are built before the clock starts.

mod vectors;

use std::sync::Arc;
use std::time::Instant;

use akosha::config::Config;
use akosha::node::Node;
use akosha::record::EMBEDDING_DIM;
use futures::StreamExt;
use serde_json::{json, Value};
use vectors::{read_f32, read_u32, system_id};

const BATCH: usize = 100;
/// Batches in flight at once, as several Session-Buddy machines pushing together
/// (`MCP_BENCH_CLIENTS`, default 4).
fn clients() -> usize {
    std::env::var("MCP_BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4)
}

const WORDS: [&str; 32] = [
    "retry",
    "cache",
    "schema",
    "migration",
    "borrow",
    "checker",
    "tokio",
    "runtime",
    "index",
    "shard",
    "deploy",
    "token",
    "latency",
    "bucket",
    "manifest",
    "parquet",
    "vector",
    "query",
    "timeout",
    "lock",
    "thread",
    "config",
    "logging",
    "error",
    "client",
    "server",
    "commit",
    "branch",
    "test",
    "build",
    "docker",
    "kernel",
];

/// A conversation-like text of about 400 bytes, different for every `i`.
fn text(i: usize) -> String {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut words = Vec::with_capacity(64);
    for _ in 0..56 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    format!(
        "Session {i}: we looked at the {} problem. {}.\n\nReasoning: {}.",
        words[0],
        words[1..30].join(" "),
        words[30..].join(" ")
    )
}

/// An assistant's question of about a dozen tokens, different for every `q`.
fn question(q: usize) -> String {
    let t = text(q);
    let words: Vec<&str> = t.split(' ').skip(8).take(5).collect();
    format!("how did we fix the {} issue", words.join(" "))
}

/// One memory as Session-Buddy serializes it.
fn memory(i: usize, system: &str, embedding: Option<&[f32]>) -> Value {
    json!({
        "memory_id": format!("mem-{i:08}"),
        "text": text(i),
        "embedding": embedding,
        "metadata": {
            "source": system, "original_id": format!("mem-{i:08}"), "type": "conversation",
            "category": "context", "importance_score": 0.5, "memory_tier": "long_term",
            "project": format!("project-{}", i % 7), "namespace": "default",
            "session_id": format!("session-{}", i / 40), "user_id": "default",
            "created_at": "2026-11-20T12:00:00", "ingestion_method": "http_push",
        }
    })
}

/// Session-Buddy's request bodies for `batch_store_memories`, 100 memories each.
fn bodies(memories: Vec<Value>) -> Vec<String> {
    memories
        .chunks(BATCH)
        .enumerate()
        .map(|(n, chunk)| {
            json!({
                "jsonrpc": "2.0", "id": format!("{n:032x}"), "method": "tools/call",
                "params": {"name": "batch_store_memories", "arguments": {"memories": chunk}},
            })
            .to_string()
        })
        .collect()
}

/// Posts every body, `CLIENTS` at a time; returns seconds and memories stored.
async fn push(client: &reqwest::Client, url: &str, bodies: Vec<String>) -> (f64, u64) {
    let started = Instant::now();
    let stored: Vec<u64> = futures::stream::iter(bodies)
        .map(|body| async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("batch_store_memories request");
            let answer: Value = r.json().await.expect("JSON answer");
            assert_eq!(answer["result"]["status"], "completed", "{answer}");
            answer["result"]["stored"].as_u64().unwrap_or(0)
        })
        .buffer_unordered(clients())
        .collect()
        .await;
    (started.elapsed().as_secs_f64(), stored.iter().sum())
}

/// Median and 99th percentile of latencies in milliseconds.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (
        (at(0.5) * 100.0).round() / 100.0,
        (at(0.99) * 100.0).round() / 100.0,
    )
}

async fn run(dir: &std::path::Path, with: usize, without: usize, queries: usize) {
    let base = read_f32(&dir.join("base.f32"));
    let systems = read_u32(&dir.join("systems.u32"));
    let n = with.min(systems.len());
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = Config::load_with_env(None, std::env::vars()).expect("config");
    config.node.data_dir = data.path().to_path_buf();
    config.uploads.enabled = false;
    config.aging.enabled = false;
    let node = Node::open(config).await.expect("node opens");
    node.start().await.expect("node starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let addr = listener.local_addr().expect("address");
    let serving = Arc::clone(&node);
    tokio::spawn(
        async move { akosha::api::serve(listener, serving, std::future::pending()).await },
    );
    let client = reqwest::Client::new();
    let sessionless = format!("http://{addr}/mcp/mcp/v1");

    // a batch is one machine's memories: all of the system of its first record (as in the
    // pull benchmark), so batches per system follow vectors.py's Zipf sizes
    let system_of = |i: usize| system_id(systems[(i / BATCH * BATCH) % systems.len()]);
    let given: Vec<Value> = (0..n)
        .map(|i| {
            let v = &base[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM];
            memory(i, &system_of(i), Some(v))
        })
        .collect();
    let (secs, stored) = push(&client, &sessionless, bodies(given)).await;
    assert_eq!(stored as usize, n);
    println!(
        "{}",
        json!({"figure": "mcp_batch_store_memories", "embeddings": "given", "memories": n,
               "batch": BATCH, "clients": clients(), "seconds": (secs * 100.0).round() / 100.0,
               "memories_per_s": (n as f64 / secs).round()})
    );

    let texts: Vec<Value> = (n..n + without)
        .map(|i| memory(i, &system_of(i), None))
        .collect();
    let (secs, stored) = push(&client, &sessionless, bodies(texts)).await;
    assert_eq!(stored as usize, without);
    println!(
        "{}",
        json!({"figure": "mcp_batch_store_memories", "embeddings": "computed by the node",
               "memories": without, "batch": BATCH, "clients": clients(),
               "seconds": (secs * 100.0).round() / 100.0,
               "memories_per_s": (without as f64 / secs).round()})
    );

    // searches run once the index has taken every point into a graph
    while node.index.stats().pending_points > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // an assistant's session on /mcp, and the REST endpoint, asked the same text queries in turn
    let mcp = format!("http://{addr}/mcp");
    let init = client
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                 "clientInfo": {"name": "bench", "version": "1"}}}))
        .send()
        .await
        .expect("initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("session id")
        .to_string();
    let rest = format!("http://{addr}/api/v1/search");
    let (mut mcp_ms, mut rest_ms, mut same_top) = (Vec::new(), Vec::new(), 0);
    // the same queries as vectors, to tell the query's embedding from the search itself
    let asked: Vec<String> = (0..queries + 20).map(|q| question(1_000_000 + q)).collect();
    let vectors = node
        .searcher
        .embed_texts(asked.clone(), 32)
        .await
        .expect("query embeddings");
    let mut vector_ms = Vec::new();
    for (q, query) in asked.into_iter().enumerate() {
        let mcp_body = json!({"jsonrpc": "2.0", "id": q + 1, "method": "tools/call",
            "params": {"name": "search_all_systems",
                       "arguments": {"query": query, "limit": 10, "threshold": -1.0}}});
        let rest_body = json!({"query": query, "limit": 10, "threshold": -1.0});
        let t = Instant::now();
        let a: Value = client
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .json(&mcp_body)
            .send()
            .await
            .expect("mcp search")
            .json()
            .await
            .expect("mcp answer");
        let mcp_took = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(a["result"]["structuredContent"]["total_results"], 10, "{a}");
        let t = Instant::now();
        let r: Value = client
            .post(&rest)
            .json(&rest_body)
            .send()
            .await
            .expect("rest search")
            .json()
            .await
            .expect("rest answer");
        let rest_took = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(r["results"].as_array().map(Vec::len), Some(10), "{r}");
        let by_vector = json!({"embedding": vectors[q], "limit": 10, "threshold": -1.0});
        let t = Instant::now();
        let v: Value = client
            .post(&rest)
            .json(&by_vector)
            .send()
            .await
            .expect("rest search by embedding")
            .json()
            .await
            .expect("rest answer");
        let vector_took = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(v["results"].as_array().map(Vec::len), Some(10), "{v}");
        let same = r["results"][0]["conversation_id"]
            == a["result"]["structuredContent"]["results"][0]["conversation_id"];
        same_top += usize::from(same);
        if q >= 20 {
            mcp_ms.push(mcp_took);
            rest_ms.push(rest_took);
            vector_ms.push(vector_took);
        }
    }
    let (mp50, mp99) = percentiles(mcp_ms);
    let (rp50, rp99) = percentiles(rest_ms);
    let (vp50, vp99) = percentiles(vector_ms);
    println!(
        "{}",
        json!({"figure": "search_all_systems_latency", "records": n + without, "queries": queries,
               "limit": 10, "mcp_p50_ms": mp50, "mcp_p99_ms": mp99,
               "rest_p50_ms": rp50, "rest_p99_ms": rp99, "same_first_hit": same_top,
               "rest_by_embedding_p50_ms": vp50, "rest_by_embedding_p99_ms": vp99})
    );
    node.shutdown().await;
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: cargo bench --bench mcp -- DATA_DIR [WITH_EMBEDDINGS] [WITHOUT_EMBEDDINGS] [QUERIES]");
        std::process::exit(2);
    };
    let num = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(default)
    };
    // candle's thread counts, before any thread starts; an operator's own values win
    akosha::embedding::set_thread_env();
    akosha::storage::objects::install_crypto_provider();
    // as akosha-node does before its threads start
    akosha::heap::set_up();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(akosha::MAX_BLOCKING_THREADS)
        .build()
        .expect("runtime");
    runtime.block_on(run(
        std::path::Path::new(dir),
        num(1, 100_000),
        num(2, 2_000),
        num(3, 500),
    ));
}
