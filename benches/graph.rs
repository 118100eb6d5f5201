//! Knowledge graph benchmark: builds a graph through its own write path (records naming a
//! user, a project and a session, as ingestion feeds it) and times `find_path` between
//! random users and projects. With the defaults, 2.35M records make about 1M entities
//! (200k users, 500k projects, 300k sessions) and 5M relations.
//!
//! usage: cargo bench --bench graph -- [RECORDS] [QUERIES] [--bare|--uploads] [--keep DIR]
//! (defaults 2350000, 100; `--bare`: records that name nothing but their system, as the
//! search benchmark's; `--uploads`: records as Session-Buddy uploads them, each batch from
//! one system, a session 200 records in a row, five projects per user, the build's
//! microseconds per record being the feed's cost to ingest; `--keep DIR`: build into DIR
//! once, later runs only search it)

use std::time::Instant;

use akosha::graph::{KnowledgeGraph, Names, RecordFacts};
use akosha::version::Version;

const USERS: u64 = 200_000;
const PROJECTS: u64 = 500_000;
const SESSIONS: u64 = 300_000;
const SYSTEMS: u64 = 10;
const BATCH: u64 = 1_000;

/// A well-mixed 64-bit hash (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How the benchmark's records name things.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// many users, projects and sessions over few systems
    Spread,
    /// nothing but the system
    Bare,
    /// as Session-Buddy's uploads: one system per batch, a user per system, sessions of
    /// 200 records in a row, five projects in turns of 2,000 records
    Uploads,
}

fn facts(i: u64, kind: Kind) -> RecordFacts {
    if kind == Kind::Uploads {
        let system = i / BATCH % 100;
        return RecordFacts {
            system: format!("sys-{system}"),
            conversation: format!("c{}", mix(i) >> 24),
            version: Version { hlc: 1, node: 1 },
            timestamp: chrono::Utc::now(),
            names: Names {
                user: Some(format!("u{system}")),
                project: Some(format!("p{system}-{}", i / 2000 % 5)),
                session: Some(format!("s{}", i / 200)),
            },
        };
    }
    if kind == Kind::Bare {
        return RecordFacts {
            system: format!("sys-{}", mix(i) % 1000),
            conversation: format!("c{i}"),
            version: Version { hlc: 1, node: 1 },
            timestamp: chrono::Utc::now(),
            names: Names::default(),
        };
    }
    RecordFacts {
        system: format!("sys-{}", i % SYSTEMS),
        conversation: format!("c{i}"),
        version: Version { hlc: 1, node: 1 },
        timestamp: chrono::Utc::now(),
        names: Names {
            user: Some(format!("u{}", mix(i) % USERS)),
            project: Some(format!("p{}", mix(i ^ 0xabcdef) % PROJECTS)),
            session: Some(format!("s{}", i % SESSIONS)),
        },
    }
}

/// The process's resident memory, in MiB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let kind = if std::env::args().any(|a| a == "--bare") {
        Kind::Bare
    } else if std::env::args().any(|a| a == "--uploads") {
        Kind::Uploads
    } else {
        Kind::Spread
    };
    let mut args = std::env::args()
        .skip(1)
        .scan(false, |after_keep, a| {
            let skip = *after_keep || a.starts_with("--");
            *after_keep = a == "--keep";
            Some((skip, a))
        })
        .filter(|(skip, _)| !skip)
        .map(|(_, a)| a);
    let records: u64 = args
        .next()
        .map(|a| a.parse().expect("RECORDS is a whole number"))
        .unwrap_or(2_350_000);
    let queries: u64 = args
        .next()
        .map(|a| a.parse().expect("QUERIES is a whole number"))
        .unwrap_or(100);
    // `--keep DIR`: build into DIR once and reuse it on later runs (searches only)
    let keep = std::env::args()
        .skip_while(|a| a != "--keep")
        .nth(1)
        .map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = keep.clone().unwrap_or_else(|| dir.path().to_path_buf());
    let reuse = keep.as_ref().is_some_and(|k| k.join("db").exists());
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(128 << 20)
        .open()
        .expect("sled");
    let graph = KnowledgeGraph::open(db.open_tree("graph").expect("tree")).expect("graph");

    let started = Instant::now();
    let cpu_started = akosha::cpu::thread_cpu_nanos();
    let mut from = if reuse { records } else { 0 };
    while from < records {
        let to = (from + BATCH).min(records);
        let batch: Vec<RecordFacts> = (from..to).map(|i| facts(i, kind)).collect();
        graph.add_records(&batch).expect("add records");
        from = to;
    }
    // the feed's own CPU, as the node's ingest pays it (sled's flushes run on its threads)
    let cpu_s = akosha::cpu::thread_cpu_nanos().saturating_sub(cpu_started) as f64 / 1e9;
    db.flush().expect("flush");
    let build_s = started.elapsed().as_secs_f64();
    let stats = graph.statistics().expect("statistics");
    println!(
        "{{\"bench\": \"graph_build\", \"records\": {records}, \"seconds\": {build_s:.1}, \"records_per_s\": {:.0}, \"us_per_record\": {:.2}, \"cpu_us_per_record\": {:.2}, \"entities\": {}, \"relations\": {}}}",
        records as f64 / build_s,
        build_s * 1e6 / records.max(1) as f64,
        cpu_s * 1e6 / records.max(1) as f64,
        stats["total_entities"],
        stats["total_relations"]
    );

    let rss_before = rss_mb();
    let mut took = Vec::with_capacity(queries as usize);
    let (mut found, mut hops) = (0u64, 0usize);
    for q in 0..queries {
        let user = format!("user:u{}", mix(q ^ 0x5555) % USERS);
        let project = format!("project:p{}", mix(q ^ 0x7777) % PROJECTS);
        let t = Instant::now();
        let path = graph.find_path(&user, &project, 6).expect("find_path");
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(p) = path {
            found += 1;
            hops += p.relations.len();
        }
    }
    took.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"bench\": \"find_path\", \"queries\": {queries}, \"found\": {found}, \"mean_hops\": {:.2}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"rss_mb_before\": {:.0}, \"rss_mb_after\": {:.0}}}",
        hops as f64 / found.max(1) as f64,
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or(0.0),
        rss_before,
        rss_mb()
    );
}
