//! Durable and in-memory storage of records.

pub mod aging;
pub mod ann;
pub mod checked_io;
pub mod checksum;
pub mod cold_cache;
pub mod cold_copy;
pub mod cold_file;
pub mod cold_log;
pub mod cold_tier;
pub mod cold_writer;
pub mod distance;
pub mod hot_index;
pub mod hot_store;
mod index_files;
pub mod logged_batch;
mod merge;
pub mod objects;
pub mod resilient;
pub mod segment;
pub mod segment_file;
pub mod shard_export;
pub mod shard_load;
mod system_graphs;
mod threads;
pub mod tombstones;
pub mod upsert;
pub mod warm;
pub mod warm_index;

pub use hot_index::{HotIndex, IndexFilter, PointId, ScoredPoint};
pub use hot_store::{HotStore, StorageError};

/// Runs blocking store work (sled reads and writes) on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}
