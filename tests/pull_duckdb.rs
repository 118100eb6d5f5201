//! Session-Buddy's real uploads through the real binary: a gzipped `reflection.duckdb` made
//! by DuckDB with Session-Buddy's own schema, in its layout and manifest on the S3 test
//! server (moto), becomes records;
//! the next snapshot adds only its new rows; a memory pushed over `/mcp/mcp/v1` as
//! Session-Buddy's HTTP sync pushes it is the same record; bad files are quarantined with
//! their reason. The databases are written by PyPI's `duckdb` Python package, as Session-Buddy
//! writes its own, and read by the node through the DuckDB program (`scripts/ensure-test-tools.sh`
//! installs both).

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::s3::S3Server;
use common::uploads::put;
use common::NodeProcess;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = &[
    ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
    ("AKOSHA__UPLOADS__MAX_DATA_BYTES", "16000000"),
    ("AKOSHA__UPLOADS__INCOMPLETE_GRACE_SECS", "0"),
];

/// Session-Buddy's tables (`session_buddy/memory/schema_v2.py`, with the columns its
/// reflection adapter adds).
const SCHEMA: &str = include_str!("fixtures/session_buddy_reflection.sql");

/// Session-Buddy's knowledge graph tables (`knowledge_graph_adapter_oneiric.py`).
const GRAPH_SCHEMA: &str = "
CREATE TABLE kg_entities (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL,
    entity_type VARCHAR NOT NULL, observations VARCHAR[], properties JSON,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    metadata JSON, embedding FLOAT[384]);
CREATE TABLE kg_relationships (id VARCHAR PRIMARY KEY, from_entity VARCHAR NOT NULL,
    to_entity VARCHAR NOT NULL, relation_type VARCHAR NOT NULL, properties JSON,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    metadata JSON);
CREATE INDEX idx_relationships_from ON kg_relationships(from_entity);
";

/// The embedding of conversation `i`: one large component, the rest small and varied.
fn embedding_sql(i: &str) -> String {
    format!(
        "list_transform(range(384), lambda x: CASE WHEN x = ({i} % 384) THEN 1.0 ELSE 0.001 * ((x * 7 + {i}) % 13) END)::FLOAT[384]"
    )
}

fn embedding(i: u64) -> Vec<f32> {
    (0..384u64)
        .map(|x| {
            if x == i % 384 {
                1.0
            } else {
                (0.001 * ((x * 7 + i) % 13) as f64) as f32
            }
        })
        .collect()
}

/// The Python that writes the test databases: with PyPI's `duckdb` package, as
/// Session-Buddy writes its own (scripts/ensure-test-tools.sh installs it).
fn python() -> String {
    std::env::var("AKOSHA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `sql` on the database `db` through Python's `duckdb` package with the vss
/// extension loaded, as Session-Buddy connects when HNSW indexing is on (PyPI's
/// duckdb-extension-vss carries DuckDB's signed build of it; nothing is downloaded).
fn run_duckdb(db: &Path, sql: &str) {
    const SCRIPT: &str = "import os, sys, duckdb, duckdb_extension_vss
con = duckdb.connect(sys.argv[1])
ext = os.path.join(os.path.dirname(duckdb_extension_vss.__file__), 'extensions', 'v' + duckdb.__version__, 'vss.duckdb_extension')
con.execute(\"LOAD '\" + ext + \"'\")
con.execute('SET hnsw_enable_experimental_persistence = true')
con.execute(sys.argv[2])
con.execute('CHECKPOINT')
con.close()";
    let out = std::process::Command::new(python())
        .args(["-c", SCRIPT])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3 with the duckdb and duckdb-extension-vss packages must be on PATH");
    assert!(
        out.status.success(),
        "duckdb (python) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds conversations `from..to` (every third with reasoning, every fourth in a session)
/// and one reflection per ten.
fn add_rows(db: &Path, from: u64, to: u64) {
    let sql = format!(
        "INSERT INTO conversations_v2 (id, content, embedding, category, project, timestamp, session_id, reasoning, source_type, metadata, fingerprint)
         SELECT 'c' || i, 'conversation ' || i, {emb}, 'context', 'akosha',
                TIMESTAMP '2026-11-01 10:00:00' + INTERVAL (i) SECOND + INTERVAL (i * 1234) MICROSECOND,
                CASE WHEN i % 4 = 0 THEN 's' || (i // 4) END,
                CASE WHEN i % 3 = 0 THEN 'because ' || i END,
                'claude_code', '{{}}', '\\x00'::BLOB
         FROM range({from}, {to}) t(i);
         INSERT INTO reflections_v2 (id, content, embedding, category, tags, timestamp, created_at, updated_at, project)
         SELECT 'r' || i, 'reflection ' || i, {emb}, 'context', ['t1', 't' || i],
                TIMESTAMP '2026-11-01 10:00:00' + INTERVAL (i) SECOND,
                TIMESTAMP '2026-11-01 10:00:00' + INTERVAL (i) SECOND,
                TIMESTAMP '2026-11-01 10:00:00' + INTERVAL (i) SECOND, NULL
         FROM range({from}, {to}) t(i) WHERE i % 10 = 0;",
        emb = embedding_sql("i"),
    );
    run_duckdb(db, &sql);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Puts an upload as Session-Buddy's cloud sync does: the databases gzipped under their
/// own names, then the manifest.
async fn put_snapshot(store: &dyn ObjectStore, system: &str, stamp: &str, db: Vec<u8>) -> String {
    put_snapshot_with(store, system, stamp, &[("reflection.duckdb", db)]).await
}

async fn put_snapshot_with(
    store: &dyn ObjectStore,
    system: &str,
    stamp: &str,
    files: &[(&str, Vec<u8>)],
) -> String {
    let upload = format!("{stamp}_{system}");
    let prefix = format!("systems/{system}/uploads/{upload}");
    let mut listed = Vec::new();
    for (name, bytes) in files {
        put(store, &format!("{prefix}/{name}"), bytes.clone()).await;
        listed.push(json!({"name": name, "path": format!("{prefix}/{name}"),
                           "size_bytes": 0, "compression": "gzip", "checksum": ""}));
    }
    let manifest = json!({
        "upload_id": upload,
        "system_id": system,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "files": listed,
        "metadata": {"uploader": "session-buddy", "version": "1.0.0"},
    });
    put(
        store,
        &format!("{prefix}/manifest.json"),
        manifest.to_string().into_bytes(),
    )
    .await;
    prefix
}

async fn hot_records(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["hot"].as_u64().unwrap()
}

async fn first_hit(node: &NodeProcess, system: &str, i: u64) -> Value {
    let (status, found) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": embedding(i), "system_id": system, "limit": 1}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    found["results"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_buddy_duckdb_snapshots_become_records_once() {
    let dir = tempfile::tempdir().unwrap();
    // uploaded to the S3 test server, where Session-Buddy's cloud sync puts them
    let server = S3Server::start().await;
    server.create_bucket("session-buddy").await;
    let store = server.client("session-buddy");
    let db = dir.path().join("reflection.duckdb");
    run_duckdb(&db, SCHEMA);
    add_rows(&db, 0, 50);
    // HNSW indexes, as Session-Buddy makes them when vss is there: the node reads the file
    // without the extension
    run_duckdb(
        &db,
        "CREATE INDEX conv_embeddings_hnsw ON conversations_v2 USING HNSW (embedding) WITH (metric = 'cosine', M = 16, ef_construction = 64);
         CREATE INDEX refl_embeddings_hnsw ON reflections_v2 USING HNSW (embedding) WITH (metric = 'cosine', M = 16, ef_construction = 64);",
    );
    let first = std::fs::read(&db).unwrap();
    // the graph: a relation to an entity that arrives only with the next snapshot
    let kg = dir.path().join("knowledge_graph.duckdb");
    run_duckdb(&kg, GRAPH_SCHEMA);
    run_duckdb(
        &kg,
        "INSERT INTO kg_entities (id, name, entity_type, observations, properties, metadata) VALUES
           ('u-1', 'alice', 'person', ['writes rust'], '{\"team\": \"core\"}', '{}'),
           ('u-2', 'akosha', 'project', NULL, NULL, NULL);
         INSERT INTO kg_relationships (id, from_entity, to_entity, relation_type, properties) VALUES
           ('r-1', 'u-1', 'u-2', 'works_on', '{\"since\": 2026}'),
           ('r-2', 'u-2', 'u-3', 'uses', NULL);",
    );
    put_snapshot_with(
        store.as_ref(),
        "mac",
        "20261201_100000",
        &[
            ("reflection.duckdb", gzip(&first)),
            ("knowledge_graph.duckdb", gzip(&std::fs::read(&kg).unwrap())),
        ],
    )
    .await;

    // bad files, each quarantined with its reason
    let mut corrupt = first.clone();
    for b in corrupt.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    let bad = [
        ("corrupt", gzip(&corrupt), "reflection.duckdb"),
        (
            "truncated",
            gzip(&first[..first.len() / 3]),
            "reflection.duckdb",
        ),
        (
            "sqlite",
            gzip(b"SQLite format 3\0 and more bytes"),
            "is not a DuckDB database",
        ),
        (
            "big",
            vec![0x1f; 16_000_001],
            "more than the limit of 16000000",
        ),
        ("notgzip", vec![0x1f, 0x8b, 1, 2, 3], "not valid gzip data"),
        // small on the store, too large unpacked: stopped while unpacking
        (
            "bomb",
            gzip(&vec![0u8; 16_000_001]),
            "unpacks to more than the limit of 16000000 bytes",
        ),
    ];
    for (system, bytes, _) in &bad {
        put_snapshot(store.as_ref(), system, "20261201_100000", bytes.clone()).await;
    }
    let mut env: Vec<(&str, String)> = server.node_env();
    env.extend(ENV.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node =
        NodeProcess::start_with(dir.path(), &["--object-store", "s3://session-buddy"], &env).await;
    let report = node
        .wait_uploads(Duration::from_secs(120), |r| {
            r["done"].as_u64().unwrap() + r["quarantined_total"].as_u64().unwrap() == 7
        })
        .await;
    assert_eq!(report["done"], 1, "{report}");
    // 50 conversations and 5 reflections
    assert_eq!(hot_records(&node).await, 55, "{report}");
    let quarantined = report["quarantined"].as_array().unwrap();
    for (system, _, reason) in &bad {
        let entry = quarantined
            .iter()
            .find(|q| {
                q["key"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("systems/{system}/"))
            })
            .unwrap_or_else(|| panic!("{system} not quarantined: {report}"));
        let got = entry["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "{system}: expected {reason:?} in {got:?}"
        );
    }

    // a conversation as the push makes it: reasoning joined, Nones left out
    let hit = first_hit(&node, "mac", 3).await;
    assert_eq!(hit["conversation_id"], "c3", "{hit}");
    assert_eq!(
        hit["content"], "conversation 3\n\nReasoning: because 3",
        "{hit}"
    );
    let m = &hit["metadata"];
    assert_eq!(m["source"], "mac", "{hit}");
    assert_eq!(m["original_id"], "c3", "{hit}");
    assert_eq!(m["type"], "conversation", "{hit}");
    assert_eq!(m["importance_score"], 0.5, "{hit}");
    assert_eq!(m["user_id"], "default", "{hit}");
    assert_eq!(m["source_type"], "claude_code", "{hit}");
    assert_eq!(m["created_at"], "2026-11-01T10:00:03.003702", "{hit}");
    assert!(m.get("session_id").is_none(), "{hit}");
    let session = first_hit(&node, "mac", 4).await;
    assert_eq!(session["metadata"]["session_id"], "s1", "{session}");

    // the graph as the push would have made it
    let (status, alice) = node.get("/api/v1/graph/entities/entity:mac:u-1").await;
    assert_eq!(status, 200, "{alice}");
    let e = &alice["entity"];
    assert_eq!(e["name"], "alice", "{alice}");
    assert_eq!(e["properties"]["team"], "core", "{alice}");
    assert_eq!(e["properties"]["ingestion_method"], "http_push", "{alice}");
    let path = "/api/v1/graph/path?source_id=entity:mac:u-1&target_id=entity:mac:u-3&max_hops=3";
    let (_, none) = node.get(path).await;
    assert_eq!(none["found"], false, "{none}");

    // the next snapshot holds 10 more rows and the missing entity: 10 more records, and
    // the waiting relation joins
    add_rows(&db, 50, 60);
    let second = std::fs::read(&db).unwrap();
    run_duckdb(
        &kg,
        "INSERT INTO kg_entities (id, name, entity_type) VALUES ('u-3', 'duckdb', 'technology');",
    );
    put_snapshot_with(
        store.as_ref(),
        "mac",
        "20261201_110000",
        &[
            ("reflection.duckdb", gzip(&second)),
            ("knowledge_graph.duckdb", gzip(&std::fs::read(&kg).unwrap())),
        ],
    )
    .await;
    let report = node
        .wait_uploads(Duration::from_secs(60), |r| {
            r["done"].as_u64().unwrap() == 2
        })
        .await;
    assert_eq!(hot_records(&node).await, 55 + 10 + 1, "{report}");
    let (_, found) = node.get(path).await;
    assert_eq!(found["found"], true, "{found}");
    assert_eq!(found["hops"], 2, "{found}");

    // the same snapshot again changes nothing
    put_snapshot(store.as_ref(), "mac", "20261201_120000", gzip(&second)).await;
    let report = node
        .wait_uploads(Duration::from_secs(60), |r| {
            r["done"].as_u64().unwrap() == 3
        })
        .await;
    assert_eq!(hot_records(&node).await, 66, "{report}");
    let (_, stats) = node.get("/api/v1/graph/statistics").await;
    assert_eq!(stats["entity_types"]["person"], 1, "{stats}");
    assert_eq!(stats["relation_types"]["works_on"], 1, "{stats}");
    assert_eq!(stats["relation_types"]["uses"], 1, "{stats}");

    // the same memory pushed as Session-Buddy's HTTP sync pushes it: still one record
    let pushed = json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {
        "name": "batch_store_memories", "arguments": {"memories": [{
            "memory_id": "c3",
            "text": "conversation 3\n\nReasoning: because 3",
            "embedding": embedding(3),
            "metadata": {"source": "mac", "original_id": "c3", "type": "conversation",
                "category": "context", "importance_score": 0.5, "memory_tier": "long_term",
                "source_type": "claude_code", "project": "akosha", "namespace": "default",
                "user_id": "default", "created_at": "2026-11-01T10:00:03.003702",
                "ingestion_method": "http_push"}}]}}});
    let (status, answer) = node.post("/mcp/mcp/v1", &pushed).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["status"], "completed", "{answer}");
    assert_eq!(hot_records(&node).await, 66);
    let again = first_hit(&node, "mac", 3).await;
    assert_eq!(again["content"], hit["content"]);
    assert_eq!(again["metadata"], hit["metadata"]);
    // a reflection as the push makes it: None values kept as null
    let (_, found) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": embedding(50), "system_id": "mac", "limit": 2}),
        )
        .await;
    let r = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["conversation_id"] == "r50")
        .unwrap_or_else(|| panic!("reflection r50 not found: {found}"));
    assert_eq!(r["content"], "reflection 50", "{r}");
    assert_eq!(r["metadata"]["type"], "reflection", "{r}");
    assert_eq!(r["metadata"]["tags"], json!(["t1", "t50"]), "{r}");
    assert_eq!(r["metadata"]["project"], Value::Null, "{r}");
    assert_eq!(r["metadata"]["created_at"], "2026-11-01T10:00:50", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_snapshots_and_a_sigkill_mid_read_count_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    let env: &[(&str, &str)] = &[
        ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
        ("AKOSHA__UPLOADS__MAX_DATA_BYTES", "200000000"),
        ("AKOSHA__UPLOADS__INCOMPLETE_GRACE_SECS", "0"),
        ("AKOSHA__UPLOADS__WORKERS", "4"),
    ];
    // three snapshots of one machine's database, each a superset of the one before, all
    // waiting when the node starts: its workers read them at once
    let db = dir.path().join("reflection.duckdb");
    run_duckdb(&db, SCHEMA);
    for (i, (from, to)) in [(0, 1000), (1000, 1500), (1500, 2000)]
        .into_iter()
        .enumerate()
    {
        add_rows(&db, from, to);
        let stamp = format!("20261201_10000{i}");
        put_snapshot(
            store.as_ref(),
            "mac",
            &stamp,
            gzip(&std::fs::read(&db).unwrap()),
        )
        .await;
    }
    let node = NodeProcess::start(dir.path(), env).await;
    node.wait_uploads(Duration::from_secs(120), |r| r["done"] == 3)
        .await;
    // 2,000 conversations and 200 reflections, each once
    assert_eq!(hot_records(&node).await, 2_200);

    // a big snapshot, and SIGKILL while its rows are being written
    add_rows(&db, 2_000, 20_000);
    put_snapshot(
        store.as_ref(),
        "mac",
        "20261201_110000",
        gzip(&std::fs::read(&db).unwrap()),
    )
    .await;
    let mut seen = 2_200;
    for _ in 0..600 {
        seen = hot_records(&node).await;
        if seen > 2_200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let data_dir = node.kill9();
    eprintln!("killed with {seen} records stored");
    let node = NodeProcess::start(&data_dir, env).await;
    let report = node
        .wait_uploads(Duration::from_secs(300), |r| r["done"] == 4)
        .await;
    assert_eq!(report["quarantined_total"], 0, "{report}");
    assert_eq!(
        hot_records(&node).await,
        22_000,
        "20,000 conversations and 2,000 reflections once each ({seen} were stored at the kill)"
    );
    // the same snapshot again changes nothing
    put_snapshot(
        store.as_ref(),
        "mac",
        "20261201_120000",
        gzip(&std::fs::read(&db).unwrap()),
    )
    .await;
    node.wait_uploads(Duration::from_secs(120), |r| r["done"] == 5)
        .await;
    assert_eq!(hot_records(&node).await, 22_000);
}
