//! Pull ingestion from the local-filesystem object store, through the real binary: good uploads
//! in both layouts are ingested, each kind of bad upload is quarantined with its reason, push
//! and pull store a record once, and a restart neither re-reads nor forgets anything.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::uploads::{conversations, manifest, pack, put, put_upload, sha256_hex, Packing};
use common::NodeProcess;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = &[
    ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
    ("AKOSHA__UPLOADS__MAX_DATA_BYTES", "100000"),
    ("AKOSHA__UPLOADS__INCOMPLETE_GRACE_SECS", "0"),
];

fn memories(system: &str, upload: &str, n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "conversations": conversations(system, upload, 7, n) })).unwrap()
}

/// Writes a data file and a manifest built from `edit(manifest)`.
async fn put_raw(
    store: &dyn ObjectStore,
    prefix: &str,
    name: &str,
    data: Vec<u8>,
    manifest_bytes: Vec<u8>,
) {
    put(store, &format!("{prefix}/{name}"), data).await;
    put(store, &format!("{prefix}/manifest.json"), manifest_bytes).await;
}

async fn put_edited(
    store: &dyn ObjectStore,
    prefix: &str,
    data: Vec<u8>,
    count: usize,
    edit: impl Fn(&mut Value),
) {
    let mut m = manifest(count, &data);
    edit(&mut m);
    put_raw(
        store,
        prefix,
        "memories.json",
        data,
        m.to_string().into_bytes(),
    )
    .await;
}

/// Every kind of bad upload, each with the words its quarantine reason must hold.
async fn put_bad_uploads(store: &dyn ObjectStore) -> Vec<(&'static str, &'static str)> {
    let good = memories("bad-sys", "x", 3);
    let p = |u: &str| format!("systems/bad-sys/{u}");
    put_raw(
        store,
        &p("bad-manifest"),
        "memories.json",
        good.clone(),
        b"{not json".to_vec(),
    )
    .await;
    put_edited(store, &p("no-uploaded-at"), good.clone(), 3, |m| {
        m.as_object_mut().unwrap().remove("uploaded_at");
    })
    .await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    put_edited(store, &p("future"), good.clone(), 3, |m| {
        m["uploaded_at"] = json!(future)
    })
    .await;
    put_edited(store, &p("bad-version"), good.clone(), 3, |m| {
        m["version"] = json!("1.0.0")
    })
    .await;
    put_edited(store, &p("checksum"), good.clone(), 3, |m| {
        m["checksum"] = json!(sha256_hex(b"other bytes"))
    })
    .await;
    put_edited(
        store,
        &p("bad-json"),
        b"{\"conversations\": [".to_vec(),
        3,
        |_| {},
    )
    .await;
    put_edited(store, &p("count"), good.clone(), 5, |_| {}).await;
    let mut short = conversations("bad-sys", "dim", 7, 2);
    short[1]["embedding"] = json!(vec![0.05f32; 383]);
    let short = serde_json::to_vec(&json!({ "conversations": short })).unwrap();
    put_edited(store, &p("dimension"), short, 2, |_| {}).await;
    put_edited(
        store,
        &p("oversize"),
        memories("bad-sys", "big", 100),
        100,
        |_| {},
    )
    .await;
    put_edited(store, &p("unsafe-file"), good.clone(), 3, |m| {
        m["files"] = json!(["../../etc/passwd"])
    })
    .await;
    let (gz_name, gz) = pack(&good, Packing::Gzip);
    let mut m = manifest(3, &gz);
    m["compressed"] = json!(true);
    m["compression_format"] = json!("zstd");
    put_raw(
        store,
        &p("compression-mismatch"),
        gz_name,
        gz,
        m.to_string().into_bytes(),
    )
    .await;
    let garbage = b"this is not gzip".to_vec();
    let m = manifest(3, &garbage);
    put_raw(
        store,
        &p("corrupt-gzip"),
        "memories.json.gz",
        garbage,
        m.to_string().into_bytes(),
    )
    .await;
    put(
        store,
        &p("no-data/manifest.json"),
        manifest(3, &good).to_string().into_bytes(),
    )
    .await;
    put(
        store,
        "systems/bad.sys/u1/manifest.json",
        manifest(3, &good).to_string().into_bytes(),
    )
    .await;
    // what Session-Buddy really uploads: gzipped DuckDB files, no memories.json
    let sb = "systems/laptop-sb/uploads/20261120_100000_laptop-sb";
    put(store, &format!("{sb}/reflection.duckdb"), b"DUCK".to_vec()).await;
    let sb_manifest = session_buddy_manifest(sb, "laptop-sb", "reflection.duckdb");
    put(store, &format!("{sb}/manifest.json"), sb_manifest).await;
    vec![
        (
            "systems/bad-sys/bad-manifest/",
            "manifest is not valid JSON",
        ),
        ("systems/bad-sys/no-uploaded-at/", "uploaded_at is required"),
        ("systems/bad-sys/future/", "5 minutes in the future"),
        ("systems/bad-sys/bad-version/", "version must look like 1.0"),
        (
            "systems/bad-sys/checksum/",
            "checksum mismatch for memories.json",
        ),
        ("systems/bad-sys/bad-json/", "memories.json is not valid"),
        (
            "systems/bad-sys/count/",
            "conversation count mismatch: manifest says 5, memories.json holds 3",
        ),
        (
            "systems/bad-sys/dimension/",
            "conversations[1].embedding: embedding must have 384 dimensions, got 383",
        ),
        ("systems/bad-sys/oversize/", "more than the limit of 100000"),
        (
            "systems/bad-sys/unsafe-file/",
            "files[0] must be a plain file name",
        ),
        (
            "systems/bad-sys/compression-mismatch/",
            "memories.json.gz is gzip by its name but the manifest says zstd",
        ),
        ("systems/bad-sys/corrupt-gzip/", "not valid gzip data"),
        (
            "systems/bad-sys/no-data/",
            "data file memories.json not found",
        ),
        ("systems/bad.sys/u1/", "system_id must match"),
        (sb, "reflection.duckdb is not valid gzip data"),
    ]
}

/// Good uploads: five in the original layout (plain, gzip, zstd) and one in Session-Buddy's
/// layout carrying a gzipped memories.json; 60 records in all.
async fn put_good_uploads(store: &dyn ObjectStore) -> usize {
    let packings = [
        Packing::Plain,
        Packing::Gzip,
        Packing::Zstd,
        Packing::Plain,
        Packing::Gzip,
    ];
    for (i, packing) in packings.iter().enumerate() {
        put_upload(store, "good-a", &format!("u{i}"), i as u64, 10, *packing).await;
    }
    let sb = "systems/good-b/uploads/20261120_100000_good-b";
    let body =
        serde_json::to_vec(&json!({ "conversations": conversations("good-b", "sb", 99, 10) }))
            .unwrap();
    let (_, gz) = pack(&body, Packing::Gzip);
    put(store, &format!("{sb}/memories.json"), gz).await;
    let m = session_buddy_manifest(sb, "good-b", "memories.json");
    put(store, &format!("{sb}/manifest.json"), m).await;
    60
}

/// A manifest as Session-Buddy writes it, declaring one file of the upload.
fn session_buddy_manifest(prefix: &str, system: &str, file: &str) -> Vec<u8> {
    let upload = prefix.rsplit('/').next().unwrap();
    json!({
        "upload_id": upload,
        "system_id": system,
        "timestamp": "2026-11-20T10:00:00.123456+00:00",
        "files": [{"name": file, "path": format!("{prefix}/{file}"),
                   "size_bytes": 0, "compression": "gzip", "checksum": ""}],
        "metadata": {"uploader": "session-buddy", "version": "1.0.0"},
    })
    .to_string()
    .into_bytes()
}

async fn hot_records(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["hot"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_quarantined_and_good_ones_ingested_once() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    let expected_bad = put_bad_uploads(store.as_ref()).await;
    let good = put_good_uploads(store.as_ref()).await;
    let uploads = 6 + expected_bad.len() as u64;

    let node = NodeProcess::start(dir.path(), ENV).await;
    let report = node
        .wait_uploads(Duration::from_secs(60), |r| {
            r["done"].as_u64().unwrap() + r["quarantined_total"].as_u64().unwrap() == uploads
        })
        .await;
    assert_eq!(report["done"], 6, "{report}");
    assert_eq!(report["pending"], 0, "{report}");
    assert_eq!(report["in_flight"], 0, "{report}");
    let quarantined = report["quarantined"].as_array().unwrap();
    assert_eq!(quarantined.len(), expected_bad.len(), "{report}");
    for (prefix, reason) in &expected_bad {
        let entry = quarantined
            .iter()
            .find(|q| q["key"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} not quarantined: {report}"));
        let got = entry["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "{prefix}: expected {reason:?} in {got:?}"
        );
    }
    assert_eq!(hot_records(&node).await, good as u64);

    // a pulled record found by its own embedding, scoped to its system
    let embedding = &conversations("good-b", "sb", 99, 10)[3]["embedding"];
    let (status, found) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": embedding, "system_id": "good-b", "limit": 1}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["conversation_id"], "sb-3", "{found}");

    // push the same identity as a pulled record: stored once, replaced
    let mut same = conversations("good-a", "u0", 0, 1);
    same[0]["content"] = json!("pushed over a pulled record");
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "good-a", "conversations": same}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hot_records(&node).await, good as u64);

    // a new upload while running is picked up
    put_upload(store.as_ref(), "good-c", "late", 42, 7, Packing::Zstd).await;
    node.wait_uploads(Duration::from_secs(30), |r| r["done"] == 7)
        .await;
    assert_eq!(hot_records(&node).await, good as u64 + 7);

    // SIGTERM: exit 0; the restarted node re-reads nothing and forgets no quarantine
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    let node = NodeProcess::start(dir.path(), ENV).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, report) = node.get("/api/v1/uploads").await;
    assert_eq!(report["done"], 7, "{report}");
    assert_eq!(report["pending"], 0, "{report}");
    assert_eq!(report["retries"], 0, "{report}");
    assert_eq!(report["quarantined_total"], expected_bad.len(), "{report}");
    assert_eq!(hot_records(&node).await, good as u64 + 7);

    // an operator fixes two quarantined uploads in the store and puts them back
    let data = memories("bad-sys", "x", 3);
    put_edited(
        store.as_ref(),
        "systems/bad-sys/count",
        data.clone(),
        3,
        |_| {},
    )
    .await;
    put_edited(store.as_ref(), "systems/bad-sys/checksum", data, 3, |_| {}).await;
    let count = "systems/bad-sys/count/manifest.json";
    let (status, body) = node
        .post("/api/v1/uploads/retry", &json!({ "key": count }))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["key"], count);
    assert!(
        body["was"].as_str().unwrap().contains("count mismatch"),
        "{body}"
    );
    // the same upload twice at once, and an unfixed one: each put back once
    let checksum = json!({ "key": "systems/bad-sys/checksum/manifest.json" });
    let unfixed = json!({ "key": "systems/bad-sys/future/manifest.json" });
    let (a, b, c) = tokio::join!(
        node.post("/api/v1/uploads/retry", &checksum),
        node.post("/api/v1/uploads/retry", &checksum),
        node.post("/api/v1/uploads/retry", &unfixed),
    );
    // one is put back; the other finds it already put back (404) or, when the
    // first was read again before it arrived, already done (409)
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses[0], 202, "{} {}", a.1, b.1);
    assert!(statuses[1] == 404 || statuses[1] == 409, "{} {}", a.1, b.1);
    assert_eq!(c.0, 202, "{}", c.1);
    let report = node
        .wait_uploads(Duration::from_secs(30), |r| {
            r["done"] == 9 && r["quarantined_total"] == expected_bad.len() - 2
        })
        .await;
    let still: Vec<&str> = report["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["key"].as_str().unwrap())
        .collect();
    assert!(!still.contains(&count), "{report}");
    assert!(
        still.contains(&"systems/bad-sys/future/manifest.json"),
        "quarantined again: {report}"
    );
    // the three records the fixed uploads share, once
    assert_eq!(hot_records(&node).await, good as u64 + 7 + 3);
    // what cannot be retried says why
    for (body, want, words) in [
        (json!({ "key": count }), 409, "is done, not quarantined"),
        (
            json!({ "key": "systems/bad-sys/nope/manifest.json" }),
            404,
            "is not quarantined here",
        ),
        (json!({ "key": "systems/x" }), 400, "manifest key must be"),
        (json!({ "upload": count }), 400, "unknown field"),
    ] {
        let (status, answer) = node.post("/api/v1/uploads/retry", &body).await;
        assert_eq!(status, want, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{body}: {answer}");
    }
    // a restart keeps what the retries did
    assert!(node.terminate().success());
    let node = NodeProcess::start(dir.path(), ENV).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, report) = node.get("/api/v1/uploads").await;
    assert_eq!(report["done"], 9, "{report}");
    assert_eq!(
        report["quarantined_total"],
        expected_bad.len() - 2,
        "{report}"
    );
    assert_eq!(hot_records(&node).await, good as u64 + 7 + 3);
}

/// The rebuild of `shard` as the node answers it now.
async fn rebuild_status(node: &NodeProcess, shard: u16) -> Value {
    let (status, body) = node
        .get(&format!("/api/v1/admin/shards/{shard}/rebuild"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_rebuilt_from_the_store_keeps_its_deletions_and_goes_on_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    const UPLOADS: u64 = 400;
    for u in 0..UPLOADS {
        put_upload(
            store.as_ref(),
            "many",
            &format!("u{u:04}"),
            u,
            3,
            Packing::Plain,
        )
        .await;
    }
    let node = NodeProcess::start(dir.path(), ENV).await;
    node.wait_uploads(Duration::from_secs(180), |r| r["done"] == UPLOADS)
        .await;
    let (status, body) = node
        .delete("/api/v1/systems/many/conversations/u0007-1")
        .await;
    assert_eq!((status, &body["deleted"]), (200, &json!(1)), "{body}");
    let records = |stats: &Value| stats["records"]["total"].as_u64().unwrap();
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(records(&stats), UPLOADS * 3 - 1);

    // what cannot be rebuilt says why
    let shard = akosha::record::shard_for("many");
    let path = format!("/api/v1/admin/shards/{shard}/rebuild");
    for (query, want, words) in [
        (
            "/api/v1/admin/shards/256/rebuild",
            400,
            "shard must be 0-255",
        ),
        (
            "/api/v1/admin/shards/x/rebuild",
            400,
            "shard must be a number",
        ),
        (
            &format!("{path}?from=bad%20id"),
            400,
            "from must be auto, store or a node id",
        ),
        (&format!("{path}?from=n2"), 400, "not in a cluster"),
    ] {
        let (status, answer) = node.post(query, &json!(null)).await;
        assert_eq!(status, want, "{query}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(words),
            "{query}: {answer}"
        );
    }
    let (status, _) = node.get(&path).await;
    assert_eq!(status, 404, "nothing rebuilt yet");

    // a rebuild from the store, SIGKILLed part way
    let (status, started) = node.post(&format!("{path}?from=store"), &json!(null)).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["source"], "object store");
    let (status, again) = node.post(&format!("{path}?from=store"), &json!(null)).await;
    assert_eq!(status, 200, "the running one: {again}");
    let part = loop {
        let p = rebuild_status(&node, shard).await;
        assert_eq!(
            p["state"], "running",
            "done before it could be interrupted: {p}"
        );
        if p["done"].as_u64().unwrap() >= 20 {
            break p["done"].as_u64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(node.kill9());

    // started again: it goes on from where it got to, and brings no deleted record back
    let node = NodeProcess::start(dir.path(), ENV).await;
    let (status, resumed) = node.post(&format!("{path}?from=store"), &json!(null)).await;
    assert_eq!(status, 202, "{resumed}");
    let resumed_at = resumed["resumed_at"].as_u64().unwrap();
    // each saved position is made durable by the next upload's write: a SIGKILL loses at
    // most the last one, and that upload is read again (which changes nothing)
    assert!(
        resumed_at > 0 && resumed_at + 1 >= part && resumed_at < UPLOADS,
        "{resumed} after {part}"
    );
    let done = loop {
        let p = rebuild_status(&node, shard).await;
        if p["state"] != "running" {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["done"], UPLOADS, "{done}");
    assert_eq!(done["total"], UPLOADS, "{done}");
    assert_eq!(done["eta_ms"], 0, "{done}");
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(records(&stats), UPLOADS * 3 - 1, "{stats}");
    let embedding = &conversations("many", "u0007", 7, 3)[1]["embedding"];
    let (_, found) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": embedding, "system_id": "many", "limit": 1}),
        )
        .await;
    assert_ne!(found["results"][0]["conversation_id"], "u0007-1", "{found}");
    // done: the next one starts from the beginning
    let (status, fresh) = node.post(&format!("{path}?from=store"), &json!(null)).await;
    assert_eq!(status, 202, "{fresh}");
    assert_eq!(fresh["resumed_at"], 0, "{fresh}");
}
