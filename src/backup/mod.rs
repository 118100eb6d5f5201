//! Backups of a node to an object store prefix, taken while it serves, incremental (a blob
//! an earlier backup wrote is not written again), and restored into a new data directory.
//!
//! The layout is in [`layout`]; taking one in [`take`]; restoring in [`restore`].

pub mod layout;
pub mod restore;
pub mod take;

pub use layout::{BackupError, BackupStore, Manifest};
pub use restore::{restore, RestoreReport};
pub use take::{backup, BackupReport};

use crate::config::ObjectStoreConfig;
use crate::storage::objects::open_object_store;

/// The backup store at `url` (`file:///abs/path` or `s3://bucket/prefix`), with the S3
/// settings of `config`.
pub fn open(url: &str, config: &ObjectStoreConfig) -> Result<BackupStore, BackupError> {
    let parsed = url::Url::parse(url).map_err(|e| BackupError::Location {
        url: url.to_string(),
        message: format!("expected file:///abs/path or s3://bucket/prefix ({e})"),
    })?;
    let store = open_object_store(&parsed, config).map_err(|e| BackupError::Location {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    Ok(BackupStore {
        store,
        url: url.to_string(),
    })
}
