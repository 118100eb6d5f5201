//! The one way ingest, search and the API reach shards: typed calls by shard number, each
//! bounded by a timeout, wherever the shard's actor lives. A shard that restarts is waited
//! for and a call it cut short is sent again (every call here is safe to receive twice), so
//! callers never see the restart. Only the actor tree itself (forgetting, supervision)
//! talks to shard actors directly.

mod aging;
mod release;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::RpcReplyPort;

use crate::actors::directory::{ShardCallError, ShardDirectory};
use crate::actors::shard::ShardMsg;
pub use crate::actors::shard::{Candidates, DeleteCounts, ShardCounts};
pub use crate::actors::shard_import::ImportCounts;
use crate::cluster::routes::ClusterRoutes;
use crate::cluster::shard_host::{
    self, DeleteRequest, LedgerRequest, RemoteError, ShardHostMsg, UpsertRequest,
};
use crate::cluster::wire::Payload;
use crate::record::{MemoryRecord, ShardId, StoredRecord, SHARD_COUNT};
pub use crate::storage::shard_export::{ExportCursor, ShardPage};
use crate::storage::upsert::WriteCounts;
use crate::storage::StorageError;
use crate::version::Version;

/// A replica's answer as the router's error.
pub(crate) fn replica_answer<T>(
    shard: ShardId,
    node: &str,
    answer: Result<Result<T, String>, RemoteError>,
) -> Result<T, ShardError> {
    match answer {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(message)) | Err(RemoteError::Failed(_, message)) => Err(ShardError::Replica {
            shard,
            node: node.to_string(),
            message,
        }),
        Err(RemoteError::Timeout(_, t)) => Err(ShardError::Timeout(shard, t)),
        Err(e) => Err(ShardError::Replica {
            shard,
            node: node.to_string(),
            message: e.to_string(),
        }),
    }
}

/// The answer of this node's copy, else the primary's.
fn mine_or_first<T>(answers: Vec<(bool, T)>) -> Option<T> {
    let mut first = None;
    for (mine, answer) in answers {
        if mine {
            return Some(answer);
        }
        first = first.or(Some(answer));
    }
    first
}

/// Why a shard call did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The shard is not running (starting, restarting, or it stopped during the call).
    #[error("shard {0} is not available, try again shortly")]
    Down(ShardId),
    /// No answer within the timeout: the call may still have been carried out.
    #[error("shard {0} did not answer within {1:?}")]
    Timeout(ShardId, Duration),
    /// The shard answered that its store failed.
    #[error("shard {0} failed: {1}")]
    Failed(ShardId, StorageError),
    /// A replica on another node did not take the call.
    #[error("replica of shard {shard} on node {node}: {message}")]
    Replica {
        /// the shard
        shard: ShardId,
        /// the node holding the replica
        node: String,
        /// what happened
        message: String,
    },
}

impl From<ShardCallError> for ShardError {
    fn from(e: ShardCallError) -> Self {
        match e {
            ShardCallError::Down(s) => ShardError::Down(s),
            ShardCallError::Timeout(s, t) => ShardError::Timeout(s, t),
        }
    }
}

/// What copying a shard from another replica did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// pages read
    pub pages: usize,
    /// items the pages held
    pub items: usize,
    /// cold copies taken
    pub cold: usize,
    /// deletions applied
    pub deletions: usize,
    /// hot and warm records written
    pub written: usize,
    /// records already here at that version or newer
    pub unchanged: usize,
}

/// Routes calls to shards.
#[derive(Clone)]
pub struct ShardRouter {
    directory: Arc<ShardDirectory>,
    /// set once the node joins a cluster: writes and deletions then go to every replica
    cluster: Arc<OnceLock<ClusterRoutes>>,
}

impl ShardRouter {
    /// A router over the shards of `directory`; local until [`ShardRouter::join`].
    pub fn new(directory: Arc<ShardDirectory>) -> ShardRouter {
        ShardRouter {
            directory,
            cluster: Arc::new(OnceLock::new()),
        }
    }

    /// From now on, this router and its clones send writes and deletions to every replica
    /// of a shard that `routes` names (this node's own through its directory). Only once.
    pub fn join(&self, routes: ClusterRoutes) -> bool {
        self.cluster.set(routes).is_ok()
    }

    /// Whether this node reads the uploads of a shard's systems: always outside a cluster;
    /// in one, when it is the shard's primary, has heard of the other members, and its copy
    /// is whole or being rebuilt from those uploads (a copy still catching up waits: it also
    /// brings the ledger of what was read).
    pub fn is_primary_here(&self, shard: ShardId) -> bool {
        match self.cluster.get() {
            None => true,
            Some(routes) => {
                routes.is_settled() && routes.reads_uploads(shard) && routes.is_primary(shard)
            }
        }
    }

    /// The node placement makes a shard's primary (`None` without a cluster).
    pub fn primary_of(&self, shard: ShardId) -> Option<String> {
        let routes = self.cluster.get()?;
        let placement = routes.placement();
        placement.replicas(shard).first().map(|p| p.to_string())
    }

    /// The cluster's routes, once joined.
    pub fn cluster(&self) -> Option<&ClusterRoutes> {
        self.cluster.get()
    }

    /// Writes records of one shard on every replica, and answers once each has them durable
    /// (this node's own copy is made durable by the caller's flush, as without a cluster).
    /// Answers with what this node's copy did, or the primary's.
    pub async fn upsert_replicated(
        &self,
        shard: ShardId,
        records: Vec<MemoryRecord>,
        timeout: Duration,
    ) -> Result<WriteCounts, ShardError> {
        if self.cluster.get().is_none() {
            return self.upsert(shard, records, timeout).await;
        }
        let stored: Vec<StoredRecord> = records.iter().map(StoredRecord::from).collect();
        let answers = self
            .on_every_replica(
                shard,
                timeout,
                || self.upsert(shard, records.clone(), timeout),
                |reply| {
                    let request = UpsertRequest {
                        shard,
                        records: stored.clone(),
                    };
                    ShardHostMsg::Upsert(Payload::Value(request), reply)
                },
            )
            .await?;
        mine_or_first(answers).ok_or(ShardError::Down(shard))
    }

    /// Deletes on every replica of the shard (see [`ShardRouter::upsert_replicated`]).
    pub async fn delete_replicated(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: Option<&str>,
        version: Version,
        timeout: Duration,
    ) -> Result<DeleteCounts, ShardError> {
        let answers = self
            .on_every_replica(
                shard,
                timeout,
                || self.delete(shard, system_id, conversation_id, version, timeout),
                |reply| {
                    let request = DeleteRequest {
                        shard,
                        system_id: system_id.to_string(),
                        conversation_id: conversation_id.map(str::to_string),
                        version,
                    };
                    ShardHostMsg::Delete(Payload::Value(request), reply)
                },
            )
            .await?;
        // each replica counts what its own copy held: the fullest copy says it best
        answers
            .into_iter()
            .map(|(_, counts)| counts)
            .max_by_key(DeleteCounts::total)
            .ok_or(ShardError::Down(shard))
    }

    /// Tells the other replicas of a shard what became of an upload of one of its systems
    /// (its ledger entry, as JSON), so that whichever becomes the shard's primary does not
    /// read it again; answers how many replicas recorded it. Nothing outside a cluster.
    pub async fn share_upload_outcome(
        &self,
        shard: ShardId,
        key: &str,
        entry_json: &str,
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        let answers = self
            .ask_other_replicas(shard, timeout, |reply| {
                let request = LedgerRequest {
                    key: key.to_string(),
                    entry_json: entry_json.to_string(),
                };
                ShardHostMsg::Ledger(Payload::Value(request), reply)
            })
            .await;
        let mut recorded = 0;
        for answer in answers {
            recorded += usize::from(answer?);
        }
        Ok(recorded)
    }

    /// Sends a request to the shard host of every replica of a shard but this node, at
    /// once; answers each one's result (none outside a cluster).
    pub(crate) async fn ask_other_replicas<T>(
        &self,
        shard: ShardId,
        timeout: Duration,
        request: impl Fn(RpcReplyPort<Payload<Result<T, String>>>) -> ShardHostMsg,
    ) -> Vec<Result<T, ShardError>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let Some(routes) = self.cluster.get() else {
            return Vec::new();
        };
        let me = routes.self_id();
        let others: Vec<String> = routes
            .replicas(shard)
            .into_iter()
            .filter(|r| r != me)
            .collect();
        let request = &request;
        let calls = others.iter().map(|node| async move {
            let answer = shard_host::call(node, request, timeout).await;
            replica_answer(shard, node, answer)
        });
        futures::future::join_all(calls).await
    }

    /// Runs a call on every replica of a shard at once: this node's through `local`, the
    /// others' through their shard host with `remote`; every one must succeed. Answers
    /// each replica's result, marked `true` for this node's. Outside a cluster, only `local`.
    /// Refused while this node has not heard of the cluster, or while the members do not
    /// agree on placement yet: the write could miss a replica that others see.
    async fn on_every_replica<T, F>(
        &self,
        shard: ShardId,
        timeout: Duration,
        local: impl Fn() -> F,
        remote: impl Fn(RpcReplyPort<Payload<Result<T, String>>>) -> ShardHostMsg,
    ) -> Result<Vec<(bool, T)>, ShardError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        F: std::future::Future<Output = Result<T, ShardError>>,
    {
        let Some(routes) = self.cluster.get() else {
            return Ok(vec![(true, local().await?)]);
        };
        let me = routes.self_id();
        let unsettled = if !routes.is_settled() {
            Some("this node has not heard of the other members yet")
        } else if !routes.converged() {
            Some("members do not agree on placement yet (one joined, left or failed)")
        } else {
            None
        };
        if let Some(why) = unsettled {
            return Err(ShardError::Replica {
                shard,
                node: me.to_string(),
                message: format!("{why}; try again shortly"),
            });
        }
        let replicas = routes.replicas(shard);
        if replicas.is_empty() {
            return Err(ShardError::Down(shard));
        }
        let (local, remote) = (&local, &remote);
        let calls = replicas.iter().map(|node| async move {
            if node == me {
                return local().await.map(|a| (true, a));
            }
            let answer = shard_host::call(node, remote, timeout).await;
            replica_answer(shard, node, answer).map(|a| (false, a))
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Calls a shard with a message whose answer is the shard's store result, waiting through
    /// a restart; the two ways to fail become one [`ShardError`].
    async fn call_store<R: Send + 'static>(
        &self,
        shard: ShardId,
        message: impl FnMut(RpcReplyPort<Result<R, StorageError>>) -> ShardMsg,
        timeout: Duration,
    ) -> Result<R, ShardError> {
        self.directory
            .call_through_restarts(shard, message, timeout)
            .await?
            .map_err(|e| ShardError::Failed(shard, e))
    }

    /// Writes records of one shard on this node only; replies once they are in its tree and
    /// index.
    pub async fn upsert(
        &self,
        shard: ShardId,
        records: Vec<MemoryRecord>,
        timeout: Duration,
    ) -> Result<WriteCounts, ShardError> {
        self.call_store(
            shard,
            // a copy per attempt: a write cut short by a restart is sent again
            |reply| ShardMsg::Upsert(records.clone(), reply),
            timeout,
        )
        .await
    }

    /// Deletes a system's records, or one conversation, not newer than `version`, on this
    /// node only.
    pub async fn delete(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: Option<&str>,
        version: Version,
        timeout: Duration,
    ) -> Result<DeleteCounts, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::Delete {
                system_id: system_id.to_string(),
                conversation_id: conversation_id.map(str::to_string),
                version,
                reply,
            },
            timeout,
        )
        .await
    }

    /// Which points a system-scoped search should look at.
    pub async fn candidates(
        &self,
        shard: ShardId,
        system_id: &str,
        timeout: Duration,
    ) -> Result<Candidates, ShardError> {
        let system_id = system_id.to_string();
        Ok(self
            .directory
            .call_through_restarts(
                shard,
                |reply| ShardMsg::Candidates(system_id.clone(), reply),
                timeout,
            )
            .await?)
    }

    /// A shard's counts on this node.
    pub async fn counts(
        &self,
        shard: ShardId,
        timeout: Duration,
    ) -> Result<ShardCounts, ShardError> {
        Ok(self
            .directory
            .call_through_restarts(shard, ShardMsg::Counts, timeout)
            .await?)
    }

    /// Reads a page of this node's copy of a shard, for another replica.
    pub async fn export(
        &self,
        shard: ShardId,
        cursor: ExportCursor,
        max: usize,
        timeout: Duration,
    ) -> Result<ShardPage, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::Export {
                cursor: cursor.clone(),
                max,
                reply,
            },
            timeout,
        )
        .await
    }

    /// Gives this node's copy of a shard a page of another replica's copy of it.
    pub async fn import(
        &self,
        shard: ShardId,
        page: ShardPage,
        timeout: Duration,
    ) -> Result<ImportCounts, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::Import {
                page: page.clone(),
                reply,
            },
            timeout,
        )
        .await
    }

    /// Copies a whole shard from `source` into this router's replica of it, page by page,
    /// while both keep taking writes; returns what the pages changed here.
    pub async fn copy_shard_from(
        &self,
        source: &ShardRouter,
        shard: ShardId,
        page_size: usize,
        timeout: Duration,
    ) -> Result<CopyReport, ShardError> {
        self.copy_pages(shard, timeout, |at| {
            source.export(shard, at, page_size, timeout)
        })
        .await
    }

    /// Takes a whole shard into this router's replica of it, page by page from `fetch`
    /// (which reads the page starting at a cursor, from wherever the other replica is);
    /// returns what the pages changed here.
    pub async fn copy_pages<F, P>(
        &self,
        shard: ShardId,
        timeout: Duration,
        mut fetch: F,
    ) -> Result<CopyReport, ShardError>
    where
        F: FnMut(ExportCursor) -> P,
        P: std::future::Future<Output = Result<ShardPage, ShardError>>,
    {
        let mut report = CopyReport::default();
        let mut cursor = Some(ExportCursor::start());
        while let Some(at) = cursor {
            let page = fetch(at).await?;
            cursor = page.next.clone();
            report.pages += 1;
            report.items += page.len();
            let counts = self.import(shard, page, timeout).await?;
            report.cold += counts.cold;
            report.deletions += counts.deletions;
            report.written += counts.written;
            report.unchanged += counts.unchanged;
        }
        Ok(report)
    }

    /// Whether a shard is up.
    pub fn is_up(&self, shard: ShardId) -> bool {
        self.directory.get(shard).is_some()
    }

    /// The shards that are up.
    pub fn up(&self) -> Vec<ShardId> {
        self.directory.up().into_iter().map(|(s, _)| s).collect()
    }

    /// A mask of the shards that are up.
    pub fn up_mask(&self) -> [bool; SHARD_COUNT] {
        self.directory.up_mask()
    }
}
