//! Giving a copy of a shard back: what this node's copy holds, taking the pages another
//! node hands back, and removing this node's copy once placement has put the shard
//! elsewhere.

use std::time::Duration;

use super::{ShardError, ShardRouter};
use crate::actors::shard::ShardMsg;
use crate::actors::shard_import::ImportCounts;
pub use crate::actors::shard_release::Holding;
use crate::record::ShardId;
use crate::storage::shard_export::ShardPage;

impl ShardRouter {
    /// What this node's copy of a shard holds, and its change count.
    pub async fn holding(&self, shard: ShardId, timeout: Duration) -> Result<Holding, ShardError> {
        Ok(self
            .directory
            .call_through_restarts(shard, ShardMsg::Holding, timeout)
            .await?)
    }

    /// Takes a page of a copy of a shard that placement took away from another node, by
    /// version, its records also kept out by their systems' floors.
    pub async fn hand_back(
        &self,
        shard: ShardId,
        page: ShardPage,
        timeout: Duration,
    ) -> Result<ImportCounts, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::HandBack {
                page: page.clone(),
                reply,
            },
            timeout,
        )
        .await
    }

    /// Removes this node's copy of a shard unless it took a change since the holding that
    /// gave `seen`; answers whether it did.
    pub async fn release(
        &self,
        shard: ShardId,
        seen: u64,
        timeout: Duration,
    ) -> Result<bool, ShardError> {
        self.call_store(shard, |reply| ShardMsg::Release { seen, reply }, timeout)
            .await
    }
}
