//! Pull ingestion benchmark: 1,000 uploads x 100 records (embeddings from
//! `shared/bench/vectors.py`) written to an object store, then pulled by a node until every
//! upload is done (every record durable). Prints uploads/minute and records/s, from the
//! local-filesystem store and, when an endpoint is given, from an S3 server.
//!
//! usage: cargo bench --bench ingest -- DATA_DIR [S3_ENDPOINT]   (see scripts/bench-ingest.sh)
//! Node settings come from AKOSHA__SECTION__KEY variables as for the node.

mod vectors;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akosha::config::Config;
use akosha::node::Node;
use akosha::record::EMBEDDING_DIM;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use vectors::{read_f32, read_u32, system_id};

const UPLOADS: usize = 1_000;
const PER_UPLOAD: usize = 100;

/// One upload's objects: data file key and bytes, manifest key and bytes.
struct Upload {
    data: (String, Vec<u8>),
    manifest: (String, Vec<u8>),
}

/// Builds the uploads: upload `i` holds records `100i..100i+100` and belongs to the system
/// of its first record (so uploads per system follow vectors.py's Zipf sizes).
fn build_uploads(dir: &Path) -> Vec<Upload> {
    let base = read_f32(&dir.join("base.f32"));
    let systems = read_u32(&dir.join("systems.u32"));
    let n = base.len() / EMBEDDING_DIM;
    assert!(
        n >= UPLOADS * PER_UPLOAD,
        "{} holds {n} vectors, the benchmark needs {}",
        dir.display(),
        UPLOADS * PER_UPLOAD
    );
    (0..UPLOADS)
        .map(|u| {
            let system = system_id(systems[u * PER_UPLOAD]);
            let conversations: Vec<_> = (u * PER_UPLOAD..(u + 1) * PER_UPLOAD)
                .map(|r| {
                    json!({
                        "id": format!("r{r}"),
                        "content": format!("record {r}: what the assistant remembered about task {}", r % 97),
                        "embedding": &base[r * EMBEDDING_DIM..(r + 1) * EMBEDDING_DIM],
                        "timestamp": "2026-11-20T10:00:00+00:00",
                        "source": "session-buddy",
                        "metadata": {"project": "bench"},
                    })
                })
                .collect();
            let data = serde_json::to_vec(&json!({ "conversations": conversations }))
                .expect("json encodes");
            let checksum: String = Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let manifest = json!({
                "uploaded_at": "2026-11-20T10:00:00+00:00",
                "conversation_count": PER_UPLOAD,
                "version": "1.0",
                "system_type": "session-buddy",
                "checksum": checksum,
            });
            let prefix = format!("systems/{system}/u{u:05}");
            Upload {
                data: (format!("{prefix}/memories.json"), data),
                manifest: (
                    format!("{prefix}/manifest.json"),
                    serde_json::to_vec(&manifest).expect("json encodes"),
                ),
            }
        })
        .collect()
}

async fn write_uploads(store: Arc<dyn ObjectStore>, uploads: &[Upload]) {
    futures::stream::iter(uploads)
        .map(|u| {
            let store = Arc::clone(&store);
            async move {
                for (key, bytes) in [&u.data, &u.manifest] {
                    store
                        .put(&ObjectPath::from(key.as_str()), bytes.clone().into())
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Starts a node on a fresh data directory pulling from `url`; returns the seconds until
/// every upload is done.
async fn pull(url: &str, env: &[(&str, String)]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars: Vec<(String, String)> = std::env::vars()
        .chain(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .collect();
    let mut config = Config::load_with_env(None, vars).expect("config from AKOSHA__ variables");
    config.node.data_dir = dir.path().to_path_buf();
    config.embedding.model_dir = dir.path().join("no-model");
    config.object_store.url = Some(url.to_string());
    let node = Node::open(config).await.expect("node opens");
    let started = Instant::now();
    node.start().await.expect("node starts");
    let pull = node.uploads.clone().expect("pull ingestion on");
    loop {
        let r = pull.report();
        if r.done as usize + r.quarantined_total as usize >= UPLOADS {
            assert_eq!(r.quarantined_total, 0, "quarantined: {:?}", r.quarantined);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = node.stats().await;
    assert_eq!(
        stats.records.hot,
        UPLOADS * PER_UPLOAD,
        "every record stored"
    );
    node.shutdown().await;
    secs
}

fn report(store: &str, secs: f64, workers: usize) {
    let uploads_per_min = UPLOADS as f64 / secs * 60.0;
    let records_per_s = (UPLOADS * PER_UPLOAD) as f64 / secs;
    println!(
        "{}",
        json!({
            "figure": "pull_ingest",
            "store": store,
            "uploads": UPLOADS,
            "records_per_upload": PER_UPLOAD,
            "workers": workers,
            "seconds": (secs * 100.0).round() / 100.0,
            "uploads_per_min": uploads_per_min.round(),
            "records_per_s": records_per_s.round(),
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(data) = args.first() else {
        eprintln!("usage: cargo bench --bench ingest -- DATA_DIR [S3_ENDPOINT]");
        std::process::exit(2);
    };
    // candle's thread counts, before any thread starts; an operator's own values win
    akosha::embedding::set_thread_env();
    // as akosha-node does before its threads start
    akosha::heap::set_up();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(akosha::MAX_BLOCKING_THREADS)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let t = Instant::now();
        let uploads = build_uploads(Path::new(data));
        let bytes: usize = uploads.iter().map(|u| u.data.1.len()).sum();
        eprintln!(
            "built {UPLOADS} uploads ({} MB of memories.json) in {:?}",
            bytes / 1_000_000,
            t.elapsed()
        );
        let workers = Config::load(None).map(|c| c.uploads.workers).unwrap_or(4);

        let objects = tempfile::tempdir().expect("temp dir");
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(objects.path()).expect("local store"));
        write_uploads(local, &uploads).await;
        let url = url::Url::from_directory_path(objects.path()).expect("absolute path");
        let secs = pull(url.as_str(), &[]).await;
        report("local", secs, workers);

        if let Some(endpoint) = args.get(1) {
            akosha::storage::objects::install_crypto_provider();
            let s3: Arc<dyn ObjectStore> = Arc::new(
                AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id("bench")
                    .with_secret_access_key("bench")
                    .with_bucket_name("akosha-bench")
                    .build()
                    .expect("s3 client"),
            );
            let t = Instant::now();
            write_uploads(s3, &uploads).await;
            eprintln!("wrote the uploads to {endpoint} in {:?}", t.elapsed());
            let env = [
                ("AKOSHA__OBJECT_STORE__ENDPOINT", endpoint.clone()),
                ("AKOSHA__OBJECT_STORE__ALLOW_HTTP", "true".to_string()),
                ("AKOSHA__OBJECT_STORE__REGION", "us-east-1".to_string()),
                ("AKOSHA__OBJECT_STORE__ACCESS_KEY_ID", "bench".to_string()),
                (
                    "AKOSHA__OBJECT_STORE__SECRET_ACCESS_KEY",
                    "bench".to_string(),
                ),
            ];
            let secs = pull("s3://akosha-bench", &env).await;
            report("s3", secs, workers);
        }
    });
}
