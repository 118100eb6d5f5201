//! Search benchmark: loads vectors from `shared/bench/vectors.py` output through the node's
//! own write path, then measures ingest rate, global and system-scoped top-10 latency,
//! QPS, recall@10 against exact search, and resident memory.
//!
//! usage: cargo bench --bench search -- DATA_DIR [--warm | --cold]   (see scripts/bench-search.sh)
//! With --warm the records are 30 days old and aged into the warm tier first: the figures
//! are then aging throughput and warm-tier search. With --cold they are 200 days old and go
//! on to cold Parquet files on the local object store; searches then ask the cold tier for
//! one calendar month (10 global queries, every system-scoped one).
//! With --due=P, P percent of the records (every record whose number modulo 100 is below P)
//! are 30 days old and the rest new: once the index is built, one aging run moves the old
//! ones to warm, which measures aging proportional to what it moves, not to the tree.
//! With --names every record names a user, a project and a session in its metadata, as
//! Session-Buddy's do, and the `graph_feed` line gives the knowledge graph's share of the
//! CPU the ingest used (with or without it, the graph counts each record on its system).
//! With --restarts=N the node is opened again N times after the queries, each restart
//! measured on its own (time and CPU until open and until every shard has loaded).
//! Index and search settings come from AKOSHA__SECTION__KEY variables as for the node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akosha::actors::ager::{age_all, AgingReport};
use akosha::config::Config;
use akosha::ingest::PendingRecord;
use akosha::node::Node;
use akosha::record::{content_hash, EMBEDDING_DIM};
use akosha::search::{QueryTarget, SearchQuery, Tiers};
use chrono::Datelike;

mod vectors;

use vectors::{read_f32, read_u32, system_id};

const K: usize = 10;
const BATCH: usize = 1000;
const WRITERS: usize = 4;
/// Records searched by their own embedding (the first hit should be the record).
const OWN_SAMPLES: usize = 10_000;

struct Data {
    n: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    gt: Vec<u32>,
    systems: Vec<u32>,
    nq: usize,
}

fn load(dir: &Path) -> Data {
    let base = read_f32(&dir.join("base.f32"));
    let queries = read_f32(&dir.join("queries.f32"));
    let gt = read_u32(&dir.join("gt.u32"));
    let systems = read_u32(&dir.join("systems.u32"));
    let n = base.len() / EMBEDDING_DIM;
    let nq = queries.len() / EMBEDDING_DIM;
    assert_eq!(systems.len(), n, "systems.u32 does not match base.f32");
    assert_eq!(gt.len(), nq * 100, "gt.u32 does not hold 100 ids per query");
    Data {
        n,
        base,
        queries,
        gt,
        systems,
        nq,
    }
}

/// Prints resident memory, the index's reservation and the allocator's heap as `bench`.
fn print_memory(bench: &str, node: &Node) {
    let (rss, hwm) = rss_mb();
    let index_mb = node.index.stats().memory_bytes as f64 / (1024.0 * 1024.0);
    let (heap_mb, heap_used_mb) = heap_mb();
    println!(
        "{{\"bench\": \"{bench}\", \"rss_mb\": {rss:.0}, \"peak_rss_mb\": {hwm:.0}, \"index_reserved_mb\": {index_mb:.0}, \"heap_mb\": {heap_mb:.0}, \"heap_in_use_mb\": {heap_used_mb:.0}}}"
    );
}

fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the allocator holds from the system and what of it is in use, in MiB (glibc's
/// `mallinfo2`; zeros elsewhere): their difference is memory freed but not given back.
fn heap_mb() -> (f64, f64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters
        let m = unsafe { libc::mallinfo2() };
        let mb = |b: usize| b as f64 / (1024.0 * 1024.0);
        (mb(m.arena + m.hblkhd), mb(m.uordblks + m.hblkhd))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        (0.0, 0.0)
    }
}

/// One aging run with these settings; its report and seconds taken.
async fn age_now(node: &Node, aging: &akosha::config::AgingConfig) -> (AgingReport, f64) {
    let t = Instant::now();
    let run = node
        .aging_gate
        .try_start("request")
        .map_err(|_| "aging is running")
        .expect("no other aging run in the benchmark");
    let report = age_all(
        &run,
        &node.shards,
        &node.cold,
        aging,
        Duration::from_secs(600),
    )
    .await;
    (report, t.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What the queries of this run look like: which tiers, which time range, how many.
struct Mode {
    tiers: Tiers,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    global_queries: usize,
}

static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();

fn mode() -> &'static Mode {
    MODE.get_or_init(|| Mode {
        tiers: Tiers::default(),
        since: None,
        until: None,
        global_queries: usize::MAX,
    })
}

fn query(v: &[f32], system: Option<String>) -> SearchQuery {
    SearchQuery {
        target: QueryTarget::Embedding(v.to_vec()),
        limit: K,
        threshold: None,
        system_id: system,
        since: mode().since,
        until: mode().until,
        tiers: mode().tiers,
        metadata: None,
    }
}

fn ids_of(answer: &akosha::search::SearchResponse) -> Vec<u32> {
    answer
        .results
        .iter()
        .filter_map(|h| h.conversation_id.strip_prefix('r')?.parse().ok())
        .collect()
}

/// Latencies of a run of queries (ms, sorted), its recall, QPS, and each query's latency.
struct Run(Vec<f64>, f64, f64, Vec<f64>);

/// Runs every query once per client task; returns latencies (ms), recall and QPS.
async fn run_queries(
    node: &Arc<Node>,
    data: &Arc<Data>,
    truth: &Arc<Vec<Vec<u32>>>,
    scoped: Option<&Arc<Vec<String>>>,
    clients: usize,
) -> Run {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (node, data, truth) = (Arc::clone(node), Arc::clone(data), Arc::clone(truth));
        let scoped = scoped.cloned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut hits = 0usize;
            let mut wanted = 0usize;
            let nq = match scoped {
                Some(_) => data.nq,
                None => data.nq.min(mode().global_queries),
            };
            for q in (c..nq).step_by(clients) {
                let v = &data.queries[q * EMBEDDING_DIM..(q + 1) * EMBEDDING_DIM];
                let system = scoped.as_ref().map(|s| s[q].clone());
                let t = Instant::now();
                let answer = node.search(query(v, system)).await.expect("search failed");
                lat.push((q, t.elapsed().as_secs_f64() * 1000.0));
                let got = ids_of(&answer);
                let want = &truth[q];
                wanted += want.len().min(K);
                hits += want.iter().take(K).filter(|i| got.contains(i)).count();
            }
            (lat, hits, wanted)
        }));
    }
    let mut by_query = vec![0.0; data.nq];
    let (mut hits, mut wanted) = (0, 0);
    for t in tasks {
        let (l, h, w) = t.await.expect("client task failed");
        for (q, ms) in l {
            by_query[q] = ms;
        }
        hits += h;
        wanted += w;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = by_query.iter().copied().filter(|ms| *ms > 0.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let qps = lat.len() as f64 / elapsed;
    Run(lat, hits as f64 / wanted.max(1) as f64, qps, by_query)
}

/// System-scoped latency by the size of the query's system: where the tail comes from.
fn print_bands(run: &Run, scoped: &[String], sizes: &HashMap<String, usize>) {
    for (lo, hi) in [(0, 2_000), (2_000, 10_000), (10_000, usize::MAX)] {
        let mut lat: Vec<f64> = run
            .3
            .iter()
            .zip(scoped)
            .filter(|(_, s)| sizes.get(*s).is_some_and(|n| *n > lo && *n <= hi))
            .map(|(ms, _)| *ms)
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{{\"bench\": \"system_top10_by_size\", \"records_above\": {lo}, \"queries\": {}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    let mut slowest: Vec<(f64, &String)> = run.3.iter().copied().zip(scoped).collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest: Vec<String> = slowest
        .iter()
        .take(8)
        .map(|(ms, s)| {
            format!(
                "[\"{s}\", {}, {ms:.2}]",
                sizes.get(*s).copied().unwrap_or(0)
            )
        })
        .collect();
    println!(
        "{{\"bench\": \"system_top10_slowest\", \"system_records_ms\": [{}]}}",
        slowest.join(", ")
    );
}

fn print_search(name: &str, clients: usize, Run(lat, recall, qps, _): &Run) {
    println!(
        "{{\"bench\": \"{name}\", \"clients\": {clients}, \"recall_at_10\": {recall:.4}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"qps\": {qps:.0}}}",
        percentile(lat, 0.5),
        percentile(lat, 0.99)
    );
}

/// Exact top-10 within each query's system (the system of its true nearest neighbour).
fn scoped_truth(data: &Data) -> (Vec<String>, Vec<Vec<u32>>) {
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, s) in data.systems.iter().enumerate() {
        members.entry(*s).or_default().push(i as u32);
    }
    let mut systems = Vec::with_capacity(data.nq);
    let mut truth = Vec::with_capacity(data.nq);
    for q in 0..data.nq {
        let qv = &data.queries[q * EMBEDDING_DIM..(q + 1) * EMBEDDING_DIM];
        let s = data.systems[data.gt[q * 100] as usize];
        let mut scored: Vec<(f32, u32)> = members[&s]
            .iter()
            .map(|i| {
                let v = &data.base[*i as usize * EMBEDDING_DIM..(*i as usize + 1) * EMBEDDING_DIM];
                (akosha::storage::distance::dot(qv, v), *i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        systems.push(system_id(s));
        truth.push(scored.iter().take(K).map(|x| x.1).collect());
    }
    (systems, truth)
}

fn main() {
    let dir: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .expect(
            "usage: cargo bench --bench search -- DATA_DIR [--warm|--cold|--due=P|--load-only|--names] (DATA_DIR: output of shared/bench/vectors.py)",
        );
    // as akosha-node does before its threads start
    akosha::heap::set_up();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(akosha::MAX_BLOCKING_THREADS)
        .build()
        .expect("runtime");
    runtime.block_on(run(&dir));
}

/// Metadata naming a user, a project and a session, as Session-Buddy's records do, for the
/// record sent `at`-th: each system has its user and five projects, worked on in turns of
/// 2,000 records, and a session is 200 records in a row.
fn bench_names(system: u32, at: usize) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("user_id".into(), format!("user-{}", system % 100).into());
    m.insert(
        "project".into(),
        format!("project-{system}-{}", at / 2000 % 5).into(),
    );
    m.insert("session_id".into(), format!("session-{}", at / 200).into());
    m
}

async fn run(dir: &Path) {
    // --warm: records are 30 days old, aged to the warm tier, and searched there
    let cold = std::env::args().any(|a| a == "--cold");
    let warm = cold || std::env::args().any(|a| a == "--warm");
    let due_percent: Option<usize> = std::env::args()
        .find_map(|a| a.strip_prefix("--due=").map(str::to_string))
        .map(|p| p.parse().expect("--due=P takes a whole percentage"));
    let mut data = load(dir);
    // exact system-scoped answers need the base vectors, which are dropped after ingest so
    // that resident memory measures the node, not the benchmark's copy of the data set
    let (systems, truth) = scoped_truth(&data);
    let (systems, truth) = (Arc::new(systems), Arc::new(truth));
    let base = Arc::new(std::mem::take(&mut data.base));
    // records searched by their own embedding afterwards: every n/OWN_SAMPLES-th
    let own: Vec<(usize, Vec<f32>)> = (0..data.n)
        .step_by((data.n / OWN_SAMPLES).max(1))
        .map(|i| (i, base[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].to_vec()))
        .collect();
    let data = Arc::new(data);
    let store_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::load(None).expect("config from AKOSHA__ variables");
    config.node.data_dir = store_dir.path().to_path_buf();
    config.embedding.model_dir = store_dir.path().join("no-model");
    println!(
        "{{\"bench\": \"setup\", \"n\": {}, \"queries\": {}, \"segment_size\": {}, \"m\": {}, \"ef_construction\": {}, \"ef_search\": {}, \"exact_system_limit\": {}}}",
        data.n, data.nq, config.index.segment_size, config.index.m, config.index.ef_construction,
        config.index.ef_search, config.index.exact_system_limit
    );
    let node = Node::open(config.clone()).await.expect("open node");
    node.start().await.expect("start node");

    // ingest through the node's write path: validated records, routed to shards, durable
    let timestamp = if cold {
        chrono::Utc::now() - chrono::Duration::days(200)
    } else if warm {
        chrono::Utc::now() - chrono::Duration::days(30)
    } else {
        chrono::Utc::now()
    };
    // --names: records name a user, a project and a session, as Session-Buddy's do, so
    // that the knowledge graph is fed as in production (without it, only their systems)
    let names = std::env::args().any(|a| a == "--names");
    // and then come as Session-Buddy sends them: each batch from one system (one upload)
    let mut order: Vec<usize> = (0..data.n).collect();
    if names {
        order.sort_by_key(|&i| data.systems[i]);
    }
    let order = Arc::new(order);
    let cpu_before = akosha::cpu::process_cpu_nanos();
    let started = Instant::now();
    let chunks: Vec<(usize, usize)> = (0..data.n)
        .step_by(BATCH)
        .map(|s| (s, (s + BATCH).min(data.n)))
        .collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let chunks = Arc::new(chunks);
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (node, data, chunks, next) = (node.clone(), data.clone(), chunks.clone(), next.clone());
        let base = Arc::clone(&base);
        let order = Arc::clone(&order);
        writers.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((from, to)) = chunks.get(c).copied() else {
                    break;
                };
                let records: Vec<PendingRecord> = (from..to)
                    .map(|at| {
                        let i = order[at];
                        let content = format!("benchmark record {i}");
                        PendingRecord {
                            system_id: system_id(data.systems[i]),
                            conversation_id: format!("r{i}"),
                            content_hash: content_hash(&content),
                            content,
                            embedding: Some(
                                base[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].to_vec(),
                            ),
                            timestamp: match due_percent {
                                Some(p) if i % 100 < p => {
                                    chrono::Utc::now() - chrono::Duration::days(30)
                                }
                                _ => timestamp,
                            },
                            metadata: if names {
                                bench_names(data.systems[i], at)
                            } else {
                                serde_json::Map::new()
                            },
                            version: None,
                        }
                    })
                    .collect();
                node.write(records).await.expect("write failed");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer task failed");
    }
    drop(base);
    let ingest_s = started.elapsed().as_secs_f64();
    let cpu_s = akosha::cpu::process_cpu_nanos().saturating_sub(cpu_before) as f64 / 1e9;
    println!(
        "{{\"bench\": \"ingest\", \"records\": {}, \"seconds\": {ingest_s:.2}, \"records_per_s\": {:.0}}}",
        data.n,
        data.n as f64 / ingest_s
    );
    // the knowledge graph's share of the CPU the ingest used (the node is CPU-bound here,
    // so this is the share of ingest throughput the graph costs)
    let feed = node.graph.feed_cost();
    println!(
        "{{\"bench\": \"graph_feed\", \"names\": {names}, \"records\": {}, \"graph_cpu_s\": {:.2}, \"process_cpu_s\": {cpu_s:.2}, \"graph_share\": {:.3}, \"graph_us_per_record\": {:.2}}}",
        feed.records,
        feed.cpu_seconds,
        feed.cpu_seconds / cpu_s.max(1e-9),
        feed.cpu_seconds * 1e6 / (feed.records.max(1) as f64),
    );

    // wait for the background index builds to catch up (records due for aging are days old
    // in production, long since in a graph: aging is measured without the builder beside it)
    loop {
        let s = node.index.stats();
        if s.pending_points == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    // then for the background merges and system graphs to settle (none running, none
    // started for a second)
    let mut quiet = 0;
    let mut last = node.index.stats().merges;
    while quiet < 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = node.index.stats();
        quiet = if s.merging || s.merges != last || s.building_system_graph || s.maintaining {
            0
        } else {
            quiet + 1
        };
        last = s.merges;
    }
    let merged = started.elapsed().as_secs_f64();
    let stats = node.index.stats();
    println!(
        "{{\"bench\": \"index\", \"seconds_from_start_until_built\": {caught_up:.2}, \"seconds_from_start_until_merged\": {merged:.2}, \"segments\": {}, \"live_points\": {}, \"points_held\": {}, \"merges\": {}, \"system_graphs\": {}}}",
        stats.segments, stats.live_points, stats.points, stats.merges, stats.system_graphs
    );
    let system_graphs = stats.system_graphs;
    print_memory("memory_after_load", &node);
    if std::env::args().any(|a| a == "--load-only") {
        // resident memory after load is all that is asked for: no queries, no restart
        node.shutdown().await;
        return;
    }

    if let Some(p) = due_percent {
        let mut only_warm = node.config.aging.clone();
        only_warm.warm_days = 1e6;
        let (report, secs) = age_now(&node, &only_warm).await;
        println!(
            "{{\"bench\": \"aging_due\", \"due_percent\": {p}, \"records\": {}, \"moved\": {}, \"seconds\": {secs:.2}, \"moved_per_s\": {:.0}, \"missing_shards\": {}}}",
            data.n,
            report.hot_to_warm,
            report.hot_to_warm as f64 / secs,
            report.missing_shards.len()
        );
    }
    if warm {
        // hot to warm only: nothing is old enough for cold in this step
        let mut only_warm = node.config.aging.clone();
        only_warm.warm_days = 1e6;
        let (report, secs) = age_now(&node, &only_warm).await;
        println!(
            "{{\"bench\": \"aging_hot_to_warm\", \"records\": {}, \"seconds\": {secs:.2}, \"records_per_s\": {:.0}, \"missing_shards\": {}}}",
            report.hot_to_warm,
            report.hot_to_warm as f64 / secs,
            report.missing_shards.len()
        );
        let stats = node.stats().await;
        assert_eq!(stats.records.warm, data.n, "every record is warm");
    }
    if cold {
        let (report, secs) = age_now(&node, &node.config.aging).await;
        println!(
            "{{\"bench\": \"aging_warm_to_cold\", \"records\": {}, \"files\": {}, \"seconds\": {secs:.2}, \"records_per_s\": {:.0}, \"missing_shards\": {}}}",
            report.warm_to_cold,
            report.cold_files,
            report.warm_to_cold as f64 / secs,
            report.missing_shards.len()
        );
        let stats = node.stats().await;
        assert_eq!(stats.records.cold, data.n, "every record is cold");
        // one month: the calendar month of the records' timestamps
        let month_start = timestamp
            .date_naive()
            .with_day(1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc());
        let month_end =
            month_start.map(|s| s + chrono::Months::new(1) - chrono::Duration::microseconds(1));
        let _ = MODE.set(Mode {
            tiers: Tiers {
                hot: false,
                warm: false,
                cold: true,
            },
            since: month_start,
            until: month_end,
            global_queries: 10,
        });
    }
    let prefix = if cold {
        "cold_month_"
    } else if warm {
        "warm_"
    } else {
        ""
    };
    let global_truth: Arc<Vec<Vec<u32>>> = Arc::new(
        (0..data.nq)
            .map(|q| data.gt[q * 100..q * 100 + K].to_vec())
            .collect(),
    );
    // one pass to warm caches, not reported
    run_queries(&node, &data, &global_truth, None, 1).await;
    print_search(
        &format!("{prefix}global_top10"),
        1,
        &run_queries(&node, &data, &global_truth, None, 1).await,
    );
    print_search(
        &format!("{prefix}global_top10"),
        4,
        &run_queries(&node, &data, &global_truth, None, 4).await,
    );

    let scoped_run = run_queries(&node, &data, &truth, Some(&systems), 1).await;
    print_search(&format!("{prefix}system_top10"), 1, &scoped_run);
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for s in &data.systems {
        *sizes.entry(system_id(*s)).or_default() += 1;
    }
    print_bands(&scoped_run, &systems, &sizes);
    print_search(
        &format!("{prefix}system_top10"),
        4,
        &run_queries(&node, &data, &truth, Some(&systems), 4).await,
    );

    if !warm {
        let mut first = 0;
        for (i, v) in &own {
            let answer = node
                .search(query(v, None))
                .await
                .expect("search by a record's own embedding");
            first += usize::from(ids_of(&answer).first() == Some(&(*i as u32)));
        }
        println!(
            "{{\"bench\": \"own_vector_first\", \"sampled\": {}, \"found_first\": {first}, \"fraction\": {:.4}}}",
            own.len(),
            first as f64 / own.len().max(1) as f64
        );
    }
    drop(own);
    print_memory("memory", &node);
    node.shutdown().await;
    if !warm {
        drop(node);
        // --restarts=N: the restart measured N times over, for its spread (default once)
        let restarts: usize = std::env::args()
            .find_map(|a| a.strip_prefix("--restarts=").map(str::to_string))
            .map_or(1, |n| n.parse().expect("--restarts=N takes a whole number"));
        for _ in 0..restarts {
            restart(
                config.clone(),
                &data,
                &global_truth,
                (&systems, &truth),
                system_graphs,
            )
            .await;
        }
    }
}

/// Opens the node again on the same data directory and measures how soon it answers, and
/// how well: seconds until open (segment files read back), until every shard has loaded,
/// and global and system-scoped search right then, with the CPU time each step took; then
/// how long until every system graph of before (`system_graphs`) is back.
async fn restart(
    config: Config,
    data: &Arc<Data>,
    truth: &Arc<Vec<Vec<u32>>>,
    (systems, scoped_truth): (&Arc<Vec<String>>, &Arc<Vec<Vec<u32>>>),
    system_graphs: usize,
) {
    // the old node's store closes once its last actor has stopped
    let started = Instant::now();
    let cpu_started = akosha::cpu::process_cpu_nanos();
    let (node, opened) = loop {
        let attempt = Instant::now();
        match Node::open(config.clone()).await {
            Ok(node) => break (node, attempt.elapsed().as_secs_f64()),
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                tracing::debug!(error = %e, "store still held by the old node");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot open the node again: {e}"),
        }
    };
    let cpu_opened = akosha::cpu::process_cpu_nanos();
    let t = Instant::now();
    node.start().await.expect("start node");
    while node.index.stats().live_points < data.n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loaded = opened + t.elapsed().as_secs_f64();
    let cpu_loaded = akosha::cpu::process_cpu_nanos();
    let cpu_s = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e9;
    let stats = node.index.stats();
    let search = run_queries(&node, data, truth, None, 1).await;
    println!(
        "{{\"bench\": \"restart\", \"seconds_to_open\": {opened:.2}, \"seconds_from_start_until_loaded\": {loaded:.2}, \"cpu_s_to_open\": {:.2}, \"cpu_s_to_load\": {:.2}, \"files\": {}, \"points_taken_back\": {}, \"points_to_index\": {}}}",
        cpu_s(cpu_started, cpu_opened),
        cpu_s(cpu_opened, cpu_loaded),
        stats.files,
        stats.live_points - stats.pending_points.min(stats.live_points),
        stats.pending_points
    );
    print_search("restart_global_top10", 1, &search);
    let graphs_then = node.index.stats().system_graphs;
    let scoped = run_queries(&node, data, scoped_truth, Some(systems), 1).await;
    print_search("restart_system_top10", 1, &scoped);
    while node.index.stats().system_graphs < system_graphs && t.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{{\"bench\": \"restart_system_graphs\", \"graphs_at_load\": {graphs_then}, \"graphs\": {}, \"of_before\": {system_graphs}, \"seconds_from_start\": {:.2}}}",
        node.index.stats().system_graphs,
        opened + t.elapsed().as_secs_f64()
    );
    node.shutdown().await;
}
