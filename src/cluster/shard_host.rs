//! The shard host: how other nodes reach this node's shards. One actor per node, in the
//! process group `akosha/shards/<node_id>`, answers writes, deletions, counts and searches
//! for shards of this node, always locally (it never forwards, so nothing loops). Every
//! handler runs in its own task, so one slow request never holds up another.
//!
//! Its mailbox is ractor's (unbounded), but it only spawns: at most [`MAX_IN_FLIGHT`]
//! requests run at once, and one over that is answered at once with an error (the caller
//! retries, every call being safe to receive twice), so work queued here stays bounded.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::routes::{ClusterRoutes, CopyState};
use super::wire::{Payload, WireError};
use crate::actors::shard::{DeleteCounts, ShardCounts};
use crate::ingest::ledger::UploadLedger;
use crate::record::{MemoryRecord, ShardId, StoredRecord};
use crate::router::ShardRouter;
use crate::search::{QueryTarget, SearchHit, SearchQuery, Searcher, Tiers};
use crate::storage::cold_copy::{ColdFound, ColdLive};
use crate::storage::cold_tier::ColdFile;
use crate::storage::shard_export::{ExportCursor, ShardPage};
use crate::storage::upsert::WriteCounts;
use crate::storage::HotStore;
use crate::version::Version;

/// Requests a shard host runs at once; more are refused.
pub const MAX_IN_FLIGHT: usize = 256;

/// The process group of a node's shard host.
pub fn group_of(node_id: &str) -> String {
    format!("akosha/shards/{node_id}")
}

/// What one node asks another's shard host. Variants are matched by name on the wire: never
/// rename one.
#[derive(RactorClusterMessage)]
pub enum ShardHostMsg {
    /// Writes records of one shard, durably, by version.
    #[rpc]
    Upsert(
        Payload<UpsertRequest>,
        RpcReplyPort<Payload<Result<WriteCounts, String>>>,
    ),
    /// Deletes records of one shard not newer than a version, durably.
    #[rpc]
    Delete(
        Payload<DeleteRequest>,
        RpcReplyPort<Payload<Result<DeleteCounts, String>>>,
    ),
    /// Counts records of these shards (`None` for a shard that did not answer).
    #[rpc]
    Counts(
        Payload<Vec<ShardId>>,
        RpcReplyPort<Payload<ShardCountsAnswer>>,
    ),
    /// Searches these shards of the node.
    #[rpc]
    Search(
        Payload<RemoteQuery>,
        RpcReplyPort<Payload<Result<RemoteAnswer, String>>>,
    ),
    /// Reads a page of one shard, for a replica catching up.
    #[rpc]
    Export(
        Payload<ExportRequest>,
        RpcReplyPort<Payload<Result<ShardPage, String>>>,
    ),
    /// Records what became of an upload another replica of its system's shard read, so that
    /// this node does not read it again should it become that shard's primary (wire 2).
    #[rpc]
    Ledger(
        Payload<LedgerRequest>,
        RpcReplyPort<Payload<Result<bool, String>>>,
    ),
    /// Reads a page of the upload ledger of one shard's systems, for a replica that copied
    /// the shard (wire 3).
    #[rpc]
    LedgerPage(
        Payload<LedgerPageRequest>,
        RpcReplyPort<Payload<Result<LedgerPage, String>>>,
    ),
    /// Takes a cold file the primary of its shard committed, durably; answers how many of its
    /// rows became visible copies here (wire 4).
    #[rpc]
    ColdCommit(
        Payload<ColdCommitRequest>,
        RpcReplyPort<Payload<Result<usize, String>>>,
    ),
    /// Takes out of the catalog the shard's cold files of these seqs that hold no visible
    /// row here, durably; answers the seqs no longer in it (wire 4).
    #[rpc]
    ColdDrop(
        Payload<ColdDropRequest>,
        RpcReplyPort<Payload<Result<Vec<u64>, String>>>,
    ),
    /// The visible cold copies of these records of a shard here, with their files' catalog
    /// entries, for a replica whose copies of them are still warm (wire 4).
    #[rpc]
    ColdLookup(
        Payload<ColdLookupRequest>,
        RpcReplyPort<Payload<Result<ColdFound, String>>>,
    ),
    /// Takes, durably and by version, a page of a copy of a shard placed on this node that
    /// placement took away from the sender, which removes its copy once every placed
    /// replica has taken all of it; refused unless the shard is placed here and whole
    /// (wire 5).
    #[rpc]
    HandBack(
        Payload<HandBackRequest>,
        RpcReplyPort<Payload<Result<usize, String>>>,
    ),
}

/// A page of a copy of a shard that placement took away from the node sending it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandBackRequest {
    /// the shard
    pub shard: ShardId,
    /// its deletions, floors, warm and hot records (never cold: cold files are the
    /// primary's, and every replica has their commits)
    pub page: ShardPage,
}

/// Records of a shard a replica holds warm past the cold age, asked of the shard's primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdLookupRequest {
    /// the shard
    pub shard: ShardId,
    /// the records' storage keys
    pub keys: Vec<Vec<u8>>,
}

/// Cold files of a shard with no visible row on its primary, whose objects it would remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdDropRequest {
    /// the shard
    pub shard: ShardId,
    /// the files' sequence numbers
    pub seqs: Vec<u64>,
}

/// A cold file a shard's primary wrote and committed, for the shard's other replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdCommitRequest {
    /// its catalog entry (the file itself is on the object store every member shares)
    pub file: ColdFile,
    /// the rows that became their records' visible copies on the primary
    pub live: Vec<ColdLive>,
}

/// A page of the upload ledger of one shard's systems, asked for by a replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerPageRequest {
    /// the shard
    pub shard: ShardId,
    /// the last upload key of the previous page
    pub after: Option<String>,
    /// entries per page at most
    pub max: usize,
}

/// Finished uploads of one shard's systems: each manifest key with its entry (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LedgerPage {
    /// upload keys and entries
    pub entries: Vec<(String, String)>,
    /// where the next page starts; `None` once all is read
    pub next: Option<String>,
    /// the scan checkpoints of the shard's systems, as (system, upload key): every upload of
    /// the system up to that key is finished (first page only; wire 4)
    pub checkpoints: Vec<(String, String)>,
}

/// What became of one upload, for the other replicas of its system's shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerRequest {
    /// the upload's manifest key
    pub key: String,
    /// its ledger entry, as JSON (the ledger's own format)
    pub entry_json: String,
}

/// A page of a shard asked for by a replica catching up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    /// the shard
    pub shard: ShardId,
    /// where the page starts
    pub cursor: ExportCursor,
    /// most items in it
    pub max: usize,
}

/// Counts per shard asked; `None` for a shard that did not answer.
pub type ShardCountsAnswer = Vec<(ShardId, Option<ShardCounts>)>;

/// A write of records of one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpsertRequest {
    /// the shard
    pub shard: ShardId,
    /// the records, each with its version
    pub records: Vec<StoredRecord>,
}

/// A deletion in one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// the shard
    pub shard: ShardId,
    /// the system
    pub system_id: String,
    /// one conversation, or the whole system
    pub conversation_id: Option<String>,
    /// the deletion's version
    pub version: Version,
}

/// A search of some shards of a node, with the query already embedded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteQuery {
    /// the shards the node answers for
    pub shards: Vec<ShardId>,
    /// the query vector (normalized)
    pub vector: Vec<f32>,
    /// most results
    pub limit: usize,
    /// least similarity
    pub threshold: Option<f32>,
    /// only this system
    pub system_id: Option<String>,
    /// only records at or after, microseconds
    pub since: Option<i64>,
    /// only records at or before, microseconds
    pub until: Option<i64>,
    /// tiers searched: hot, warm, cold
    pub tiers: (bool, bool, bool),
    /// the metadata filter as a JSON object text
    pub metadata_json: Option<String>,
    /// the asking node's span as a W3C traceparent, when it exports spans
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// A hit as it crosses nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteHit {
    /// the record's system
    pub system_id: String,
    /// its conversation id
    pub conversation_id: String,
    /// its content
    pub content: String,
    /// similarity to the query
    pub similarity: f32,
    /// RFC 3339
    pub timestamp: String,
    /// hot, warm or cold
    pub tier: String,
    /// warm and cold summaries
    pub summary: Option<String>,
    /// the metadata as a JSON text
    pub metadata_json: String,
}

/// A node's answer for its shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteAnswer {
    /// hits, most similar first
    pub hits: Vec<RemoteHit>,
    /// shards that did not answer
    pub missing_shards: Vec<ShardId>,
    /// why, when some did not
    pub partial_reason: Option<String>,
}

impl From<SearchHit> for RemoteHit {
    fn from(h: SearchHit) -> Self {
        RemoteHit {
            system_id: h.system_id,
            conversation_id: h.conversation_id,
            content: h.content,
            similarity: h.similarity,
            timestamp: h.timestamp,
            tier: h.tier.to_string(),
            summary: h.summary,
            metadata_json: h.metadata.to_string(),
        }
    }
}

impl From<RemoteHit> for SearchHit {
    fn from(h: RemoteHit) -> Self {
        SearchHit {
            tier: match h.tier.as_str() {
                "hot" => "hot",
                "warm" => "warm",
                _ => "cold",
            },
            metadata: serde_json::from_str(&h.metadata_json).unwrap_or_default(),
            system_id: h.system_id,
            conversation_id: h.conversation_id,
            content: h.content,
            similarity: h.similarity,
            timestamp: h.timestamp,
            summary: h.summary,
        }
    }
}

impl RemoteQuery {
    /// The query this node runs for it.
    fn to_query(&self) -> SearchQuery {
        let at = |t: Option<i64>| t.and_then(chrono::DateTime::from_timestamp_micros);
        SearchQuery {
            target: QueryTarget::Embedding(self.vector.clone()),
            limit: self.limit,
            threshold: self.threshold,
            system_id: self.system_id.clone(),
            since: at(self.since),
            until: at(self.until),
            tiers: Tiers {
                hot: self.tiers.0,
                warm: self.tiers.1,
                cold: self.tiers.2,
            },
            metadata: self
                .metadata_json
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
        }
    }
}

/// What the shard host serves with.
#[derive(Clone)]
pub struct ShardHostArgs {
    /// this node's id
    pub node_id: String,
    /// this node's shards, never forwarded
    pub shards: ShardRouter,
    /// this node's store, flushed before a write or deletion is answered
    pub store: HotStore,
    /// this node's searcher
    pub searcher: Searcher,
    /// how long one shard call may take
    pub timeout: Duration,
    /// this node's upload ledger, when it pulls uploads
    pub ledger: Option<UploadLedger>,
}

/// The shard host actor.
pub struct ShardHost;

impl Actor for ShardHost {
    type Msg = ShardHostMsg;
    type State = (Arc<ShardHostArgs>, Arc<tokio::sync::Semaphore>);
    type Arguments = ShardHostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ShardHostArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(group_of(&args.node_id), vec![myself.get_cell()]);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        Ok((Arc::new(args), permits))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: ShardHostMsg,
        state: &mut (Arc<ShardHostArgs>, Arc<tokio::sync::Semaphore>),
    ) -> Result<(), ActorProcessingErr> {
        let host = Arc::clone(&state.0);
        let busy = || {
            format!(
                "node {} is busy: {MAX_IN_FLIGHT} requests running, retry",
                host.node_id
            )
        };
        let Ok(permit) = Arc::clone(&state.1).try_acquire_owned() else {
            match message {
                ShardHostMsg::Upsert(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::Delete(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::Search(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::Export(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::Ledger(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::LedgerPage(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::ColdCommit(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::ColdDrop(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::ColdLookup(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::HandBack(_, reply) => drop(reply.send(Payload::Value(Err(busy())))),
                ShardHostMsg::Counts(shards, reply) => {
                    let none = shards
                        .into_result()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| (s, None))
                        .collect();
                    drop(reply.send(Payload::Value(none)));
                }
            }
            return Ok(());
        };
        match message {
            ShardHostMsg::Upsert(request, reply) => {
                serve(
                    permit,
                    request,
                    reply,
                    |r| async move { host.upsert(r).await },
                );
            }
            ShardHostMsg::Delete(request, reply) => {
                serve(
                    permit,
                    request,
                    reply,
                    |r| async move { host.delete(r).await },
                );
            }
            ShardHostMsg::Export(request, reply) => {
                serve(
                    permit,
                    request,
                    reply,
                    |r| async move { host.export(r).await },
                );
            }
            ShardHostMsg::Ledger(request, reply) => {
                serve(
                    permit,
                    request,
                    reply,
                    |r| async move { host.ledger(r).await },
                );
            }
            ShardHostMsg::LedgerPage(request, reply) => {
                serve(permit, request, reply, |r| async move {
                    host.ledger_page(r).await
                });
            }
            ShardHostMsg::ColdCommit(request, reply) => {
                serve(permit, request, reply, |r| async move {
                    host.cold_commit(r).await
                });
            }
            ShardHostMsg::ColdDrop(request, reply) => {
                serve(permit, request, reply, |r| async move {
                    host.cold_drop(r).await
                });
            }
            ShardHostMsg::ColdLookup(request, reply) => {
                serve(permit, request, reply, |r| async move {
                    host.cold_lookup(r).await
                });
            }
            ShardHostMsg::HandBack(request, reply) => {
                serve(permit, request, reply, |r| async move {
                    host.hand_back(r).await
                });
            }
            ShardHostMsg::Search(query, reply) => {
                serve(
                    permit,
                    query,
                    reply,
                    |q| async move { host.search(q).await },
                );
            }
            ShardHostMsg::Counts(shards, reply) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let shards = shards.into_result().unwrap_or_default();
                    let out = counts_here(&host.shards, &shards, host.timeout).await;
                    let _ = reply.send(Payload::Value(out));
                });
            }
        }
        Ok(())
    }
}

/// Runs one request in a task of its own, holding its permit, and sends back its answer (or
/// why the request could not be read).
fn serve<Q, A, F, W>(
    permit: tokio::sync::OwnedSemaphorePermit,
    request: Payload<Q>,
    reply: RpcReplyPort<Payload<Result<A, String>>>,
    work: F,
) where
    Q: Send + 'static,
    A: Send + 'static,
    F: FnOnce(Q) -> W + Send + 'static,
    W: std::future::Future<Output = Result<A, String>> + Send,
{
    tokio::spawn(async move {
        let _permit = permit;
        let answer = match request.into_result() {
            Ok(q) => work(q).await,
            Err(e) => Err(e.to_string()),
        };
        let _ = reply.send(Payload::Value(answer));
    });
}

impl ShardHostArgs {
    /// Records an upload's outcome unless the ledger has one; answers whether it did. A node
    /// without pull ingestion keeps no ledger and records nothing.
    async fn ledger(&self, r: LedgerRequest) -> Result<bool, String> {
        let Some(ledger) = &self.ledger else {
            return Ok(false);
        };
        ledger
            .record_unless_done(&r.key, &r.entry_json)
            .map_err(|e| e.to_string())
    }

    /// A page of the ledger of one shard's systems (empty without pull ingestion).
    async fn ledger_page(&self, r: LedgerPageRequest) -> Result<LedgerPage, String> {
        let Some(ledger) = self.ledger.clone() else {
            return Ok(LedgerPage::default());
        };
        let read = tokio::task::spawn_blocking(move || {
            let checkpoints = match r.after {
                None => ledger.shard_checkpoints(r.shard)?,
                Some(_) => Vec::new(),
            };
            let (entries, next) = ledger.shard_page(r.shard, r.after.as_deref(), r.max)?;
            Ok::<_, crate::storage::StorageError>(LedgerPage {
                entries,
                next,
                checkpoints,
            })
        })
        .await
        .map_err(|e| format!("the ledger read failed: {e}"))?;
        read.map_err(|e| e.to_string())
    }

    async fn cold_commit(&self, r: ColdCommitRequest) -> Result<usize, String> {
        let took = self
            .shards
            .take_cold(r.file, r.live, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(took)
    }

    async fn cold_drop(&self, r: ColdDropRequest) -> Result<Vec<u64>, String> {
        let gone = self
            .shards
            .drop_dead_cold(r.shard, r.seqs, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(gone)
    }

    async fn cold_lookup(&self, r: ColdLookupRequest) -> Result<ColdFound, String> {
        self.shards
            .visible_cold(r.shard, r.keys, self.timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// Takes a page handed back, if the shard is placed here and this node's copy is whole
    /// (a copy still being filled would be taken for whole with only part of it); answers
    /// how many records and deletions it changed.
    async fn hand_back(&self, r: HandBackRequest) -> Result<usize, String> {
        if let Some(routes) = self.shards.cluster() {
            let placed = routes
                .placement()
                .replicas(r.shard)
                .contains(&routes.self_id());
            if !placed || routes.sync().state(r.shard) != CopyState::Whole {
                return Err(format!(
                    "shard {} is not placed and whole on node {}: hand it back later",
                    r.shard, self.node_id
                ));
            }
        }
        let counts = self
            .shards
            .hand_back(r.shard, r.page, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(counts.written + counts.deletions)
    }

    async fn export(&self, r: ExportRequest) -> Result<ShardPage, String> {
        self.shards
            .export(r.shard, r.cursor, r.max, self.timeout)
            .await
            .map_err(|e| e.to_string())
    }

    async fn upsert(&self, r: UpsertRequest) -> Result<WriteCounts, String> {
        let records: Vec<MemoryRecord> = r.records.into_iter().map(MemoryRecord::from).collect();
        let counts = self
            .shards
            .upsert(r.shard, records, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(counts)
    }

    async fn delete(&self, r: DeleteRequest) -> Result<DeleteCounts, String> {
        let counts = self
            .shards
            .delete(
                r.shard,
                &r.system_id,
                r.conversation_id.as_deref(),
                r.version,
                self.timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        Ok(counts)
    }

    async fn search(&self, q: RemoteQuery) -> Result<RemoteAnswer, String> {
        let query = q.to_query();
        let span = tracing::info_span!(
            "member_search",
            shards = q.shards.len(),
            traceparent = q.traceparent.as_deref().unwrap_or(""),
        );
        let (hits, missing_shards, partial_reason) = search_here(
            &self.searcher,
            self.shards.cluster(),
            &self.node_id,
            &q.shards,
            query,
        )
        .instrument(span)
        .await?;
        Ok(RemoteAnswer {
            hits: hits.into_iter().map(RemoteHit::from).collect(),
            missing_shards,
            partial_reason,
        })
    }
}

/// The counts of `shards` of this node; `None` for a shard that did not answer, or whose copy
/// here is still catching up (it would count less than the shard holds).
pub async fn counts_here(
    router: &ShardRouter,
    shards: &[ShardId],
    timeout: Duration,
) -> ShardCountsAnswer {
    let routes = router.cluster();
    let mut out = Vec::with_capacity(shards.len());
    for &s in shards {
        let counts = if routes.is_some_and(|r| r.answers(s)) {
            router.counts(s, timeout).await.ok()
        } else {
            None
        };
        out.push((s, counts));
    }
    out
}

/// A node's part of a cluster search: `shards` of this node searched for `query`, those still
/// catching up answered as missing (with the reason); returns hits, missing shards, reason.
pub async fn search_here(
    searcher: &Searcher,
    routes: Option<&ClusterRoutes>,
    node_id: &str,
    shards: &[ShardId],
    query: SearchQuery,
) -> Result<(Vec<SearchHit>, Vec<ShardId>, Option<String>), String> {
    let (whole, catching_up) =
        routes.map_or_else(|| (Vec::new(), shards.to_vec()), |r| r.answering(shards));
    let answer = searcher
        .for_shards(&whole)
        .search(query)
        .await
        .map_err(|e| e.to_string())?;
    let mut missing = answer.missing_shards;
    let mut reason = answer.partial_reason;
    if !catching_up.is_empty() {
        let why = format!(
            "node {node_id}: {} shards are catching up from another replica",
            catching_up.len()
        );
        reason = Some(reason.map_or(why.clone(), |r| format!("{r}; {why}")));
        missing.extend(catching_up);
    }
    Ok((answer.results, missing, reason))
}

/// Why a call to another node's shard host got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// That node's shard host is not visible (no session, or its groups not yet exchanged).
    #[error("no session to node {0}")]
    NoHost(String),
    /// No answer in time.
    #[error("node {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The session closed under the call.
    #[error("the session to node {0} closed: {1}")]
    Closed(String, String),
    /// The answer could not be read.
    #[error("the answer of node {0} could not be read: {1}")]
    Wire(String, WireError),
    /// The node answered that it failed.
    #[error("node {0} failed: {1}")]
    Failed(String, String),
}

/// The shard host of another node, if its session is up.
pub fn host_of(node_id: &str) -> Option<ActorRef<ShardHostMsg>> {
    ractor::pg::get_members(&group_of(node_id))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// Calls another node's shard host and waits for its answer, up to `timeout`.
pub async fn call<T: Serialize + serde::de::DeserializeOwned + Send + 'static>(
    node_id: &str,
    message: impl FnOnce(RpcReplyPort<Payload<T>>) -> ShardHostMsg,
    timeout: Duration,
) -> Result<T, RemoteError> {
    let host = host_of(node_id).ok_or_else(|| RemoteError::NoHost(node_id.to_string()))?;
    let answer = host
        .call(message, Some(timeout))
        .await
        .map_err(|e| RemoteError::Closed(node_id.to_string(), e.to_string()))?;
    match answer {
        ractor::rpc::CallResult::Success(p) => p
            .into_result()
            .map_err(|e| RemoteError::Wire(node_id.to_string(), e)),
        ractor::rpc::CallResult::Timeout => Err(RemoteError::Timeout(node_id.to_string(), timeout)),
        ractor::rpc::CallResult::SenderError => Err(RemoteError::Closed(
            node_id.to_string(),
            "the answer port was dropped".to_string(),
        )),
    }
}
