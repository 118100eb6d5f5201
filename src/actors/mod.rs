//! The node's actor tree.

pub mod ager;
pub mod aging_gate;
pub mod directory;
pub mod forgetter;
pub mod ingestion_supervisor;
pub mod node_supervisor;
pub mod query_coordinator;
pub mod search_admission;
pub mod shard;
pub mod shard_import;
pub mod shard_release;
pub mod shard_state;
pub mod shard_supervisor;
pub mod shard_writes;
#[cfg(test)]
pub mod test_support;
pub mod upload_scanner;
pub mod upload_worker;
