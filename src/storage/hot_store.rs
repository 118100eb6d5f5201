//! The node's durable store: one sled database, a hot and a warm tree per shard.

use std::path::Path;

use crate::record::{record_key, LegacyStoredRecord, ShardId, StoredRecord, SHARD_COUNT};

/// A failure of the on-disk store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled reported an I/O or corruption error.
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("stored record under key {key:?} cannot be decoded: {message}")]
    Decode {
        /// the key, lossily as text
        key: String,
        /// the decoder's message
        message: String,
    },
    /// A record could not be encoded.
    #[error("record cannot be encoded: {0}")]
    Encode(String),
    /// A blocking storage task was cancelled or panicked.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// The node's sled database with one tree of hot records per shard.
#[derive(Clone)]
pub struct HotStore {
    /// the database; one flush makes every tree's writes durable (group commit)
    db: sled::Db,
    /// `hot/NNN`, indexed by shard number
    trees: Vec<sled::Tree>,
    /// `warm/NNN`, indexed by shard number
    warm_trees: Vec<sled::Tree>,
}

impl HotStore {
    /// Opens (or creates) the store under `dir` with a page cache of `cache_mb` MiB.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let trees = (0..SHARD_COUNT)
            .map(|s| db.open_tree(format!("hot/{s:03}")))
            .collect::<Result<Vec<_>, _>>()?;
        let warm_trees = (0..SHARD_COUNT)
            .map(|s| db.open_tree(format!("warm/{s:03}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HotStore {
            db,
            trees,
            warm_trees,
        })
    }

    /// The tree that holds one shard's hot records.
    pub fn tree(&self, shard: ShardId) -> &sled::Tree {
        &self.trees[shard as usize % SHARD_COUNT]
    }

    /// The tree that holds one shard's warm records.
    pub fn warm_tree(&self, shard: ShardId) -> &sled::Tree {
        &self.warm_trees[shard as usize % SHARD_COUNT]
    }

    /// A number larger than every one this database gave before, also across restarts.
    pub fn next_seq(&self) -> Result<u64, StorageError> {
        Ok(self.db.generate_id()?)
    }

    /// Bytes the store takes on disk (every tree: hot and warm records, ledger, graph).
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Makes every write so far durable, on the calling (blocking) thread.
    pub fn flush_blocking(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// Opens a store just closed in this process, waiting for sled's flusher thread to let go
    /// of the lock file (a moment after the last handle drops); for tests.
    #[cfg(test)]
    pub fn reopen(dir: &Path) -> HotStore {
        let mut tries = 0;
        loop {
            match HotStore::open(dir, 8) {
                Ok(store) => return store,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("reopen: {e}; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("cannot reopen the store: {e}"),
            }
        }
    }

    /// Opens (or creates) a named tree of the same database, flushed with the shards' trees.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes every write so far durable on disk.
    ///
    /// Runs sled's blocking flush on a blocking thread: sled 0.34's `flush_async` can hang
    /// forever when several are awaited at once (spacejam/sled#1308, seen here in release
    /// builds under concurrent ingest), and the blocking flush has no such bug.
    ///
    /// # Cancel safety
    /// Cancelling only stops waiting; the flush itself goes on.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        Ok(())
    }

    /// Reads one record of a shard.
    pub fn get(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: &str,
    ) -> Result<Option<StoredRecord>, StorageError> {
        let key = record_key(system_id, conversation_id);
        self.get_by_key(shard, &key)
    }

    /// Reads one record of a shard by its storage key.
    pub fn get_by_key(
        &self,
        shard: ShardId,
        key: &[u8],
    ) -> Result<Option<StoredRecord>, StorageError> {
        match self.tree(shard).get(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl HotStore {
    /// Reads one warm record of a shard by its storage key.
    pub fn get_warm_by_key(
        &self,
        shard: ShardId,
        key: &[u8],
    ) -> Result<Option<crate::storage::warm::WarmRecord>, StorageError> {
        match self.warm_tree(shard).get(key)? {
            Some(bytes) => crate::storage::warm::decode_warm(key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// Writes each key and value to `tree` in turn. Bulk writes do not use sled's batches: a
/// batch takes a lock over the whole store that holds up every read of every tree while it
/// applies, so a write of 500 records stalled searches for up to 700 ms under load. Callers
/// order their steps so that a crash between two keys loses nothing (each copy carries its
/// version, tombstones are written first).
pub fn insert_each(
    tree: &sled::Tree,
    writes: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<(), StorageError> {
    for (key, value) in writes {
        tree.insert(key, value)?;
    }
    Ok(())
}

/// Removes each key from `tree` in turn (see [`insert_each`] for why not in one batch).
pub fn remove_each<K: AsRef<[u8]>>(
    tree: &sled::Tree,
    keys: impl IntoIterator<Item = K>,
) -> Result<(), StorageError> {
    for key in keys {
        tree.remove(key)?;
    }
    Ok(())
}

/// Encodes a record for the store.
pub fn encode(record: &StoredRecord) -> Result<Vec<u8>, StorageError> {
    bincode::serialize(record).map_err(|e| StorageError::Encode(e.to_string()))
}

/// Decodes a stored record (one written before versions is read as version zero).
pub fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredRecord, StorageError> {
    match bincode::deserialize::<StoredRecord>(bytes) {
        Ok(r) => Ok(r),
        Err(e) => bincode::deserialize::<LegacyStoredRecord>(bytes)
            .map(StoredRecord::from)
            .map_err(|_| StorageError::Decode {
                key: String::from_utf8_lossy(key).into_owned(),
                message: e.to_string(),
            }),
    }
}
