//! The node's actor tree.

pub mod directory;
pub mod node_supervisor;
pub mod query_coordinator;
pub mod shard;
pub mod shard_supervisor;
