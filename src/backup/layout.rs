//! How a backup lies in its object store: content-addressed blobs shared by every backup
//! (`blobs/<sha256>`, so a later backup writes only what changed) and one manifest per
//! backup (`backups/<id>/manifest.json`) naming the blobs it is made of.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::ShardId;

/// Version of the manifest's layout.
pub const FORMAT: u32 = 2;
/// Where manifests are.
pub const BACKUPS: &str = "backups";
/// Where blobs are.
pub const BLOBS: &str = "blobs";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup's URL is not one the node can write to or read from.
    #[error("backup location {url}: {message}")]
    Location {
        /// the URL given
        url: String,
        /// what is wrong with it
        message: String,
    },
    /// The backup store failed.
    #[error("backup store {url}: {message}")]
    Store {
        /// the store
        url: String,
        /// what failed
        message: String,
    },
    /// The node's own data could not be read, or the restored node's written.
    #[error("{0}")]
    Node(String),
    /// The backup is not there, or not one this version reads.
    #[error("{0}")]
    Invalid(String),
}

/// One shard in a backup: its pages (see [`crate::storage::shard_export`]), compressed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardEntry {
    /// the shard
    pub shard: ShardId,
    /// the blob holding its pages
    pub blob: String,
    /// items in its pages (records, deletions, cold entries)
    pub items: usize,
}

/// One tree of the node's store copied whole (ledger, graph, analytics).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeEntry {
    /// the tree's name
    pub name: String,
    /// the blob holding its entries
    pub blob: String,
    /// its entries
    pub entries: usize,
}

/// One object of the node's object store (cold files and logs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// its key in the node's object store
    pub key: String,
    /// the blob holding its bytes
    pub blob: String,
    /// its size
    pub size: u64,
    /// when the node's store last changed it (to reuse its blob without reading it again)
    pub modified: String,
}

/// What one backup is made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// layout version ([`FORMAT`])
    pub format: u32,
    /// the backup's id: its start time, `YYYYMMDDTHHMMSS.mmmZ`
    pub id: String,
    /// the version of akosha that wrote it
    pub akosha_version: String,
    /// when it started and ended, RFC 3339
    pub started_at: String,
    /// when it was complete
    pub finished_at: String,
    /// every shard
    pub shards: Vec<ShardEntry>,
    /// the store's trees copied whole
    pub trees: Vec<TreeEntry>,
    /// the object store's cold files and logs
    pub objects: Vec<ObjectEntry>,
}

/// A backup store and its URL.
#[derive(Clone)]
pub struct BackupStore {
    /// the store
    pub store: Arc<dyn ObjectStore>,
    /// its URL, for messages
    pub url: String,
}

/// The sha256 of `bytes`, in hex.
pub fn digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format!("{:x}", h.finalize())
}

impl BackupStore {
    fn failed(&self, e: impl std::fmt::Display) -> BackupError {
        BackupError::Store {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// Whether a blob is already stored.
    pub async fn has_blob(&self, name: &str) -> Result<bool, BackupError> {
        match self
            .store
            .head(&Path::from(format!("{BLOBS}/{name}")))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Stores `bytes` as a blob unless one with the same content is there; its name and
    /// whether it was written.
    pub async fn put_blob(&self, bytes: Bytes) -> Result<(String, bool), BackupError> {
        let name = digest(&bytes);
        if self.has_blob(&name).await? {
            return Ok((name, false));
        }
        self.store
            .put(
                &Path::from(format!("{BLOBS}/{name}")),
                PutPayload::from_bytes(bytes),
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok((name, true))
    }

    /// A blob's bytes, checked against its name.
    pub async fn blob(&self, name: &str) -> Result<Bytes, BackupError> {
        let got = self
            .store
            .get(&Path::from(format!("{BLOBS}/{name}")))
            .await
            .map_err(|e| self.failed(format!("blob {name}: {e}")))?;
        let bytes = got.bytes().await.map_err(|e| self.failed(e))?;
        if digest(&bytes) != name {
            return Err(BackupError::Invalid(format!(
                "blob {name} of {} does not match its sha256: the backup is damaged",
                self.url
            )));
        }
        Ok(bytes)
    }

    /// Writes a backup's manifest (last: a backup without one is not a backup).
    pub async fn put_manifest(&self, m: &Manifest) -> Result<(), BackupError> {
        let text = serde_json::to_vec_pretty(m).map_err(|e| self.failed(e))?;
        self.store
            .put(
                &Path::from(format!("{BACKUPS}/{}/manifest.json", m.id)),
                PutPayload::from(text),
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// The ids of the backups stored, oldest first.
    pub async fn ids(&self) -> Result<Vec<String>, BackupError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from(BACKUPS)))
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(e)),
        };
        let mut ids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The manifest of backup `id`, or of the latest one.
    pub async fn manifest(&self, id: Option<&str>) -> Result<Option<Manifest>, BackupError> {
        let id = match id {
            Some(id) => id.to_string(),
            None => match self.ids().await?.pop() {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        let got = match self
            .store
            .get(&Path::from(format!("{BACKUPS}/{id}/manifest.json")))
            .await
        {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed(e)),
        };
        let bytes = got.bytes().await.map_err(|e| self.failed(e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::Invalid(format!("manifest of backup {id} is not valid: {e}"))
        })?;
        if !(1..=FORMAT).contains(&m.format) {
            return Err(BackupError::Invalid(format!(
                "backup {id} has layout version {}, this akosha reads 1 to {FORMAT}",
                m.format
            )));
        }
        Ok(Some(m))
    }
}

/// A tree's entries, encoded: count, then each key and value with their lengths.
pub fn encode_entries(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Reads what [`encode_entries`] wrote; `None` when the bytes are not that.
pub fn decode_entries(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (b.get(..n)?, b.get(n..)?);
        *b = tail;
        Some(head)
    }
    let n = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let kl = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        let k = take(&mut b, kl)?.to_vec();
        let vl = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        let v = take(&mut b, vl)?.to_vec();
        out.push((k, v));
    }
    b.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_and_damage_is_refused() {
        let e = vec![(b"a".to_vec(), b"1".to_vec()), (b"bb".to_vec(), Vec::new())];
        let bytes = encode_entries(&e);
        assert_eq!(decode_entries(&bytes), Some(e));
        assert_eq!(decode_entries(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_entries(&[bytes.as_slice(), b"x"].concat()), None);
    }
}
