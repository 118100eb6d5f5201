//! Writing uploads the way a Session-Buddy fleet would: data file first, manifest last.

use std::io::Write;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How an upload's data file is stored.
#[derive(Debug, Clone, Copy)]
pub enum Packing {
    /// `memories.json`
    Plain,
    /// `memories.json.gz`
    Gzip,
    /// `memories.json.zst`
    Zstd,
}

/// A sparse unit vector (16 non-zero components) for a seed: small in JSON, distinct per seed.
pub fn sparse_vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = vec![0f32; 384];
    for _ in 0..16 {
        let i = (next() % 384) as usize;
        v[i] = ((next() % 1000) as f32 + 1.0) / 1000.0;
    }
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a = (*a / n * 1e4).round() / 1e4);
    v
}

/// `n` conversations of an upload, ids `<upload>-<i>`.
pub fn conversations(system: &str, upload: &str, seed: u64, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("{upload}-{i}"),
                "content": format!("memory {i} of upload {upload} from {system}"),
                "embedding": sparse_vector(seed * 1_000 + i as u64),
                "timestamp": "2026-11-20T10:00:00Z",
                "source": "session-buddy",
                "metadata": {"project": "akosha"},
            })
        })
        .collect()
}

/// sha256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Packs a memories body, returning its file name and bytes.
pub fn pack(body: &[u8], packing: Packing) -> (&'static str, Vec<u8>) {
    match packing {
        Packing::Plain => ("memories.json", body.to_vec()),
        Packing::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body).unwrap();
            ("memories.json.gz", gz.finish().unwrap())
        }
        Packing::Zstd => ("memories.json.zst", zstd::encode_all(body, 1).unwrap()),
    }
}

/// A manifest for a data file of `count` conversations.
pub fn manifest(count: usize, data: &[u8]) -> Value {
    json!({
        "uploaded_at": "2026-11-20T10:00:00+00:00",
        "conversation_count": count,
        "version": "1.0",
        "system_type": "session-buddy",
        "checksum": sha256_hex(data),
        "metadata": {"uploader": "test"},
    })
}

/// Puts one object.
pub async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store
        .put(&Path::from(key), bytes.into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Writes a good upload `systems/<system>/<upload>/` of `n` conversations: data, then manifest.
pub async fn put_upload(
    store: &dyn ObjectStore,
    system: &str,
    upload: &str,
    seed: u64,
    n: usize,
    packing: Packing,
) {
    let body =
        serde_json::to_vec(&json!({ "conversations": conversations(system, upload, seed, n) }))
            .unwrap();
    let (name, data) = pack(&body, packing);
    let manifest = manifest(n, &data);
    put(store, &format!("systems/{system}/{upload}/{name}"), data).await;
    put(
        store,
        &format!("systems/{system}/{upload}/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
}

/// Writes an upload of one memory (`id`, `content`) made at `uploaded_at`.
pub async fn put_memory_upload(
    store: &dyn ObjectStore,
    system: &str,
    upload: &str,
    uploaded_at: &str,
    items: &[(&str, &str, u64)],
) {
    let conversations: Vec<Value> = items
        .iter()
        .map(|(id, content, seed)| {
            json!({"id": id, "content": content, "embedding": crate::common::unit_vector(*seed),
                   "timestamp": "2026-11-01T10:00:00Z"})
        })
        .collect();
    let data = serde_json::to_vec(&json!({ "conversations": conversations })).unwrap();
    let manifest = json!({
        "uploaded_at": uploaded_at, "conversation_count": items.len(), "version": "1.0",
        "checksum": sha256_hex(&data),
    });
    put(
        store,
        &format!("systems/{system}/{upload}/memories.json"),
        data,
    )
    .await;
    put(
        store,
        &format!("systems/{system}/{upload}/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
}

/// Writes `count` uploads `u000`, `u001`, ... spread over `systems` systems `{prefix}0`,
/// `{prefix}1`, ...; upload `u` holds `per_upload` memories `m{i}` (content `memory {i}`,
/// vector `unit_vector(i)`) for `i` from `first + u * per_upload`.
pub async fn put_numbered_uploads(
    store: &dyn ObjectStore,
    prefix: &str,
    count: u64,
    systems: u64,
    per_upload: u64,
    first: u64,
) {
    for u in 0..count {
        let items: Vec<(String, String, u64)> = (0..per_upload)
            .map(|k| {
                let i = first + u * per_upload + k;
                (format!("m{i}"), format!("memory {i}"), i)
            })
            .collect();
        let items: Vec<(&str, &str, u64)> = items
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
            .collect();
        let system = format!("{prefix}{}", u % systems);
        put_memory_upload(
            store,
            &system,
            &format!("u{u:03}"),
            "2026-11-20T10:00:00+00:00",
            &items,
        )
        .await;
    }
}
