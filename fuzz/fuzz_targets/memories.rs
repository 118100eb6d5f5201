//! Uploaded memories files: decompressed (gzip, zstd, lz4, within a limit), then parsed and
//! validated; every input gives records or a reason.
#![no_main]

use akosha::ingest::batch::IngestLimits;
use akosha::ingest::manifest::Compression;
use akosha::ingest::upload_data::{decompress, parse_memories};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = IngestLimits {
        max_batch: 1_000,
        max_content_bytes: 64 * 1024,
    };
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let compression = match first % 4 {
        0 => None,
        1 => Some(Compression::Gzip),
        2 => Some(Compression::Zstd),
        _ => Some(Compression::Lz4),
    };
    let Ok(json) = decompress(rest, compression, 1 << 20, "memories.json") else {
        return;
    };
    assert!(json.len() <= 1 << 20);
    match parse_memories(&json, "fuzz-system", "fuzz-upload", None, &limits) {
        Ok(records) => assert!(records.len() <= limits.max_batch),
        Err(reason) => assert!(!reason.is_empty()),
    }
});
