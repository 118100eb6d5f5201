//! Putting a quarantined upload back to be read again: what is answered, and why one is not.

use serde::{Deserialize, Serialize};

/// A quarantined upload put back in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requeued {
    /// the upload's manifest key
    pub key: String,
    /// why it had been quarantined
    pub was: String,
}

/// Why an upload was not put back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryRefused {
    /// The key is not an upload's manifest key.
    #[error("{0}")]
    NotAManifest(String),
    /// The ledger has no entry for it.
    #[error("upload {0} is not quarantined here: it was never read, or it is being read again")]
    Unknown(String),
    /// It is done: every record of it is stored.
    #[error("upload {0} is done, not quarantined: every record of it is stored")]
    Done(String),
    /// Another node reads the uploads of its system.
    #[error(
        "upload {key} is read by node {primary}, the primary of shard {shard}, not by this node"
    )]
    Elsewhere {
        /// the upload's manifest key
        key: String,
        /// its system's shard
        shard: u16,
        /// the node that reads it
        primary: String,
    },
    /// The node is stopping or pull ingestion is not running.
    #[error("pull ingestion is not running on this node: {0}")]
    NotRunning(String),
    /// The ledger could not be read or changed.
    #[error("cannot change the upload ledger: {0}")]
    Ledger(String),
}

impl RetryRefused {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            RetryRefused::NotAManifest(_) => 400,
            RetryRefused::Unknown(_) => 404,
            RetryRefused::Done(_) => 409,
            RetryRefused::Elsewhere { .. } => 421,
            RetryRefused::NotRunning(_) => 503,
            RetryRefused::Ledger(_) => 500,
        }
    }
}
