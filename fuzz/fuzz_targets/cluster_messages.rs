//! Cluster messages as they arrive from another node: every payload decodes or is refused,
//! whatever its bytes (a query, a page of a shard, a client's API request).
#![no_main]

use akosha::api::remote::ApiRequest;
use akosha::cluster::shard_host::RemoteQuery;
use akosha::cluster::wire::{decode, PeerName};
use akosha::storage::shard_export::ShardPage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    match first % 4 {
        0 => {
            let _ = decode::<RemoteQuery>(rest);
        }
        1 => {
            let _ = decode::<ShardPage>(rest);
        }
        2 => {
            let _ = decode::<ApiRequest>(rest);
        }
        _ => {
            if let Ok(name) = std::str::from_utf8(rest) {
                let _ = PeerName::parse(name);
            }
        }
    }
});
