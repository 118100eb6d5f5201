//! Rebuilding one shard's copy on this node when an operator asks: from a live replica's
//! whole copy, or from what the object store keeps (the shard's cold log, then the uploads
//! of its systems read again). A rebuild merges into the copy here by version, so it never
//! removes what the copy has (a newer version or a deletion wins) and never brings a deleted
//! record back. It records how far it got after each page or upload; one started again on
//! the same shard and kind of source goes on from there.

mod from_replica;
mod from_store;
pub mod progress;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use progress::{RebuildProgress, RebuildState};

use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};
use crate::storage::shard_export::ExportCursor;
use crate::storage::{HotStore, StorageError};

/// Where a rebuild reads from, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildFrom {
    /// a whole replica on another node if there is one, else the object store
    Auto,
    /// the object store
    Store,
    /// this node's replica
    Replica(String),
}

impl RebuildFrom {
    /// Reads `auto`, `store` or a node id.
    pub fn parse(from: &str) -> Result<RebuildFrom, RebuildError> {
        match from.trim() {
            "" | "auto" => Ok(RebuildFrom::Auto),
            "store" | "object-store" => Ok(RebuildFrom::Store),
            id if crate::config::check_node_id(id).is_ok() => {
                Ok(RebuildFrom::Replica(id.to_string()))
            }
            other => Err(RebuildError::BadSource(format!(
                "from must be auto, store or a node id, got {other:?}"
            ))),
        }
    }
}

/// Why a rebuild did not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RebuildError {
    /// There is no such shard.
    #[error("shard must be 0-{last}, got {0}", last = SHARD_COUNT - 1)]
    NoSuchShard(u64),
    /// The source asked for cannot be read.
    #[error("{0}")]
    BadSource(String),
    /// The node is still loading its shards.
    #[error("the node is loading its shards; retry")]
    NotReady,
    /// Placement does not put the shard on this node.
    #[error(
        "node {node} does not hold shard {shard}; its replicas are {replicas:?}: ask one of them"
    )]
    NotHeld {
        /// the shard
        shard: ShardId,
        /// this node
        node: String,
        /// the shard's replicas
        replicas: Vec<String>,
    },
    /// The state of an interrupted rebuild could not be read or written.
    #[error("cannot read or write the rebuild's state: {0}")]
    Storage(String),
}

impl RebuildError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            RebuildError::NoSuchShard(_) | RebuildError::BadSource(_) => 400,
            RebuildError::NotReady => 503,
            RebuildError::NotHeld { .. } => 409,
            RebuildError::Storage(_) => 500,
        }
    }
}

/// Where a rebuild got to, on disk so that an interrupted one goes on from there.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    progress: RebuildProgress,
    at: Position,
}

/// The next thing a rebuild reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Position {
    /// the page of the source's copy starting here
    Replica { cursor: ExportCursor },
    /// the cold log (unless restored), then the uploads after `after`, in key order
    Store {
        restored: bool,
        after: Option<String>,
    },
}

/// A rebuild under way or ended, as [`Rebuilds::status`] shows it.
struct Job {
    progress: Mutex<RebuildProgress>,
    began: Instant,
}

/// The rebuilds of this node: those running, the last of each shard, and the state of
/// interrupted ones.
pub struct Rebuilds {
    jobs: Mutex<HashMap<ShardId, Arc<Job>>>,
    saved: sled::Tree,
}

/// A rebuild asked for: begun now, or one already running.
#[derive(Debug, Clone)]
pub enum Started {
    /// begun (or gone on with) now
    New(RebuildProgress),
    /// it was running already; its progress
    Running(RebuildProgress),
}

impl Rebuilds {
    /// Opens the state of interrupted rebuilds in the node's store.
    pub fn open(store: &HotStore) -> Result<Rebuilds, StorageError> {
        Ok(Rebuilds {
            jobs: Mutex::new(HashMap::new()),
            saved: store.open_tree("rebuild/saved")?,
        })
    }

    /// The running or last rebuild of a shard on this node, since it started.
    pub fn status(&self, shard: ShardId) -> Option<RebuildProgress> {
        let job = self.jobs.lock().get(&shard).cloned()?;
        let progress = job.progress.lock().clone();
        Some(progress.timed(job.began))
    }

    /// The rebuilds running now, by shard.
    pub fn running(&self) -> Vec<RebuildProgress> {
        let jobs: Vec<Arc<Job>> = self.jobs.lock().values().cloned().collect();
        let mut running: Vec<RebuildProgress> = jobs
            .iter()
            .map(|j| j.progress.lock().clone().timed(j.began))
            .filter(|p| p.state == RebuildState::Running)
            .collect();
        running.sort_by_key(|p| p.shard);
        running
    }

    fn load(&self, shard: ShardId) -> Result<Option<Saved>, RebuildError> {
        let bytes = self
            .saved
            .get(shard.to_be_bytes())
            .map_err(|e| RebuildError::Storage(e.to_string()))?;
        // a state that does not read (another version wrote it) is started over
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    fn save(&self, shard: ShardId, saved: &Saved) -> Result<(), String> {
        let bytes = serde_json::to_vec(saved).map_err(|e| e.to_string())?;
        self.saved
            .insert(shard.to_be_bytes(), bytes)
            .map_err(|e| format!("cannot save how far the rebuild got: {e}"))?;
        Ok(())
    }

    fn clear(&self, shard: ShardId) {
        if let Err(e) = self.saved.remove(shard.to_be_bytes()) {
            tracing::warn!(shard, error = %e, "cannot clear a finished rebuild's state");
        }
    }
}

/// What a running rebuild reports to, and saves through.
struct Step<'a> {
    rebuilds: &'a Rebuilds,
    job: &'a Job,
    shard: ShardId,
}

impl Step<'_> {
    /// Changes the progress.
    fn update(&self, change: impl FnOnce(&mut RebuildProgress)) {
        change(&mut self.job.progress.lock());
    }

    /// Changes the progress and saves it with the next position, durably enough that a
    /// crash goes back at most to the last save.
    fn advance(
        &self,
        change: impl FnOnce(&mut RebuildProgress),
        at: Position,
    ) -> Result<(), String> {
        let progress = {
            let mut p = self.job.progress.lock();
            change(&mut p);
            p.total = p.total.max(p.done);
            p.clone()
        };
        self.rebuilds.save(self.shard, &Saved { progress, at })
    }
}

/// Where a rebuild that was decided on reads from.
enum Source {
    Replica(String),
    Store,
}

/// Starts rebuilding shard `shard`'s copy on this node from `from`, or answers the progress
/// of the one running. An interrupted rebuild of the same kind of source goes on from where
/// it got to.
pub fn start(node: &Arc<Node>, shard: u64, from: RebuildFrom) -> Result<Started, RebuildError> {
    let shard = ShardId::try_from(shard)
        .ok()
        .filter(|s| (*s as usize) < SHARD_COUNT)
        .ok_or(RebuildError::NoSuchShard(shard))?;
    if !node.is_ready() {
        return Err(RebuildError::NotReady);
    }
    let rebuilds = &node.rebuilds;
    let mut jobs = rebuilds.jobs.lock();
    if let Some(job) = jobs.get(&shard) {
        let progress = job.progress.lock().clone().timed(job.began);
        if progress.state == RebuildState::Running {
            return Ok(Started::Running(progress));
        }
    }
    let me = node
        .shards
        .cluster()
        .map_or("this node", |r| r.self_id())
        .to_string();
    let source = source(node, shard, &me, from)?;
    let saved = rebuilds.load(shard)?;
    let (progress, at) = match (&source, saved) {
        (Source::Replica(_), Some(s)) if matches!(s.at, Position::Replica { .. }) => {
            (s.progress, s.at)
        }
        (Source::Store, Some(s)) if matches!(s.at, Position::Store { .. }) => (s.progress, s.at),
        (Source::Replica(_), _) => (
            RebuildProgress::new(shard, &me, String::new(), "records"),
            Position::Replica {
                cursor: ExportCursor::start(),
            },
        ),
        (Source::Store, _) => (
            RebuildProgress::new(shard, &me, String::new(), "uploads"),
            Position::Store {
                restored: false,
                after: None,
            },
        ),
    };
    let progress = RebuildProgress {
        state: RebuildState::Running,
        resumed_at: progress.done,
        started_at: chrono::Utc::now(),
        error: None,
        notes: Vec::new(),
        source: match &source {
            Source::Replica(id) => format!("replica {id}"),
            Source::Store => "object store".to_string(),
        },
        elapsed_ms: 0,
        ..progress
    };
    let job = Arc::new(Job {
        progress: Mutex::new(progress.clone()),
        began: Instant::now(),
    });
    jobs.insert(shard, Arc::clone(&job));
    drop(jobs);
    if progress.resumed_at > 0 {
        tracing::info!(shard, source = %progress.source, done = progress.done, "rebuild goes on from where it was interrupted");
    } else {
        tracing::info!(shard, source = %progress.source, "rebuild started");
    }
    let node = Arc::clone(node);
    tokio::spawn(async move {
        let step = Step {
            rebuilds: &node.rebuilds,
            job: &job,
            shard,
        };
        let ended = match (source, at) {
            (Source::Replica(id), Position::Replica { cursor }) => {
                from_replica::run(&node, shard, &id, cursor, &step).await
            }
            (Source::Store, Position::Store { restored, after }) => {
                from_store::run(&node, shard, restored, after, &step).await
            }
            _ => Err("the saved position does not match the source".to_string()),
        };
        let mut p = job.progress.lock();
        match ended {
            Ok(()) => {
                p.state = RebuildState::Done;
                node.rebuilds.clear(shard);
                tracing::info!(shard, source = %p.source, done = p.done, written = p.written, "rebuild done");
            }
            Err(e) => {
                p.state = RebuildState::Failed;
                tracing::warn!(shard, source = %p.source, error = %e, "rebuild stopped; started again, it goes on from where it got to");
                p.error = Some(e);
            }
        }
    });
    Ok(Started::New(progress))
}

/// Decides where a rebuild reads from.
fn source(
    node: &Node,
    shard: ShardId,
    me: &str,
    from: RebuildFrom,
) -> Result<Source, RebuildError> {
    let Some(routes) = node.shards.cluster() else {
        return match from {
            RebuildFrom::Replica(id) => Err(RebuildError::BadSource(format!(
                "this node is not in a cluster: there is no replica {id} to read; use store"
            ))),
            _ => Ok(Source::Store),
        };
    };
    let placement = routes.placement();
    let replicas: Vec<String> = placement
        .replicas(shard)
        .iter()
        .map(|r| r.to_string())
        .collect();
    if !replicas.iter().any(|r| r == me) {
        return Err(RebuildError::NotHeld {
            shard,
            node: me.to_string(),
            replicas,
        });
    }
    let whole: Vec<String> = routes
        .readable(shard)
        .into_iter()
        .filter(|r| r != me)
        .collect();
    match from {
        RebuildFrom::Store => Ok(Source::Store),
        RebuildFrom::Auto => Ok(whole.into_iter().next().map_or(Source::Store, Source::Replica)),
        RebuildFrom::Replica(id) if id == me => Err(RebuildError::BadSource(format!(
            "node {id} is the node being rebuilt; read another replica or the store"
        ))),
        RebuildFrom::Replica(id) if whole.contains(&id) => Ok(Source::Replica(id)),
        RebuildFrom::Replica(id) => Err(RebuildError::BadSource(format!(
            "node {id} has no whole copy of shard {shard} to read; whole copies elsewhere: {whole:?}"
        ))),
    }
}
