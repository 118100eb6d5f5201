//! Every fuzzing input kept in the repository (the seed corpus, `fuzz/corpus/<target>/`, and
//! the inputs that once crashed a parser, `fuzz/regressions/<target>/`) through the same
//! parsers the fuzz targets drive (`fuzz/fuzz_targets/`), in the default test run: none may
//! panic.

use std::path::Path;

use akosha::api::mcp::jsonrpc::parse_message;
use akosha::api::remote::ApiRequest;
use akosha::api::rest::SearchBody;
use akosha::auth::{mcp_role, mcp_tools};
use akosha::cluster::shard_host::RemoteQuery;
use akosha::cluster::wire::{decode, PeerName};
use akosha::ingest::batch::{IngestLimits, IngestRequest};
use akosha::ingest::manifest::{Compression, Manifest, ManifestRules};
use akosha::ingest::upload_data::{decompress, parse_memories};
use akosha::storage::shard_export::ShardPage;
use chrono::TimeZone;

const LIMITS: IngestLimits = IngestLimits {
    max_batch: 1_000,
    max_content_bytes: 64 * 1024,
};

fn manifest(data: &[u8]) {
    let now = chrono::Utc.timestamp_opt(1_796_000_000, 0).unwrap();
    for rules in [ManifestRules::Original, ManifestRules::SessionBuddy] {
        let _ = Manifest::parse(data, rules, now);
    }
}

fn memories(data: &[u8]) {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let compression = match first % 4 {
        0 => None,
        1 => Some(Compression::Gzip),
        2 => Some(Compression::Zstd),
        _ => Some(Compression::Lz4),
    };
    if let Ok(json) = decompress(rest, compression, 1 << 20, "memories.json") {
        let _ = parse_memories(&json, "fuzz-system", "fuzz-upload", None, &LIMITS);
    }
}

fn rest_bodies(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<IngestRequest>(data) {
        let _ = request.validate(&LIMITS);
    }
    if let Ok(body) = serde_json::from_slice::<SearchBody>(data) {
        let _ = body.into_query(10, 1_000);
    }
}

fn mcp_messages(data: &[u8]) {
    let _ = mcp_role(&mcp_tools(data));
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match value {
            serde_json::Value::Array(items) => {
                for item in items.into_iter().take(100) {
                    let _ = parse_message(item);
                }
            }
            one => {
                let _ = parse_message(one);
            }
        }
    }
}

fn cluster_messages(data: &[u8]) {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    match first % 4 {
        0 => drop(decode::<RemoteQuery>(rest)),
        1 => drop(decode::<ShardPage>(rest)),
        2 => drop(decode::<ApiRequest>(rest)),
        _ => {
            if let Ok(name) = std::str::from_utf8(rest) {
                let _ = PeerName::parse(name);
            }
        }
    }
}

/// A fuzz target: its name and what it runs an input through.
type Target = (&'static str, fn(&[u8]));

#[test]
fn kept_fuzzing_inputs_are_parsed_or_refused_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let targets: [Target; 5] = [
        ("manifest", manifest),
        ("memories", memories),
        ("rest_bodies", rest_bodies),
        ("mcp_messages", mcp_messages),
        ("cluster_messages", cluster_messages),
    ];
    let mut seen = 0;
    for (name, run) in targets {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                run(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "the seed corpus is missing: {seen} inputs");
}
