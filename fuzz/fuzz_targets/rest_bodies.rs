//! REST bodies: an ingest batch and a search, parsed and checked as the routes do.
#![no_main]

use akosha::api::rest::SearchBody;
use akosha::ingest::batch::{IngestLimits, IngestRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = IngestLimits {
        max_batch: 1_000,
        max_content_bytes: 64 * 1024,
    };
    if let Ok(request) = serde_json::from_slice::<IngestRequest>(data) {
        if let Ok(records) = request.validate(&limits) {
            assert!(records.len() <= limits.max_batch);
        }
    }
    if let Ok(body) = serde_json::from_slice::<SearchBody>(data) {
        if let Ok(query) = body.into_query(10, 1_000) {
            assert!(query.limit >= 1 && query.limit <= 1_000);
        }
    }
});
