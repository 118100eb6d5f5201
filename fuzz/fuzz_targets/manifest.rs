//! Upload manifests, in both layouts: every input is parsed or refused with a reason.
#![no_main]

use akosha::ingest::manifest::{Manifest, ManifestRules};
use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc.timestamp_opt(1_796_000_000, 0).unwrap();
    for rules in [ManifestRules::Original, ManifestRules::SessionBuddy] {
        if let Err(reason) = Manifest::parse(data, rules, now) {
            assert!(!reason.is_empty());
        }
    }
});
