//! Aging and forgetting through the router: moving a shard's records between tiers on this
//! node and, in a cluster, which node writes a shard's cold files and tends its cold log,
//! and how its other replicas take a new file and let go of a dead one.

use std::time::Duration;

use crate::actors::shard::ShardMsg;
use crate::cluster::membership::MemberState;
use crate::cluster::routes::CopyState;
use crate::cluster::shard_host::{
    self, ColdCommitRequest, ColdDropRequest, ColdLookupRequest, ShardHostMsg,
};
use crate::cluster::wire::Payload;
use crate::record::ShardId;
use crate::storage::cold_copy::{ColdFound, ColdLive};
use crate::storage::cold_tier::{ColdFile, ColdKey};
use crate::storage::warm::WarmRecord;
use crate::version::Version;

use super::{replica_answer, ShardError, ShardRouter};

/// Visible copies sent to a replica in one request at most (about 70 bytes each).
const COLD_ROWS_PER_REQUEST: usize = 20_000;

impl ShardRouter {
    /// Moves up to `max` hot records of a shard older than the cutoff to warm, on this node;
    /// answers how many moved.
    pub async fn age_hot(
        &self,
        shard: ShardId,
        cutoff_micros: i64,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::Age {
                cutoff_micros,
                max,
                reply,
            },
            timeout,
        )
        .await
    }

    /// Up to `max` warm records of a shard older than the cutoff, on this node.
    pub async fn cold_due(
        &self,
        shard: ShardId,
        cutoff_micros: i64,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<WarmRecord>, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::ColdCandidates {
                cutoff_micros,
                max,
                reply,
            },
            timeout,
        )
        .await
    }

    /// Commits a written and verified cold file on this node's copy of its shard; answers
    /// the rows that became their records' visible copies. Sent once, not through a restart:
    /// a second commit of one file would count its rows hidden.
    pub async fn commit_cold(
        &self,
        file: ColdFile,
        rows: Vec<ColdKey>,
        timeout: Duration,
    ) -> Result<Vec<ColdLive>, ShardError> {
        let (shard, seq) = (file.shard, file.seq);
        let versions: std::collections::HashMap<Vec<u8>, Version> =
            rows.iter().map(|r| (r.key.clone(), r.version)).collect();
        let moved = self
            .directory
            .call(
                shard,
                |reply| ShardMsg::CommitCold { file, rows, reply },
                timeout,
            )
            .await?
            .map_err(|e| ShardError::Failed(shard, e))?;
        Ok(moved
            .into_iter()
            .filter_map(|key| {
                let version = *versions.get(&key)?;
                Some(ColdLive { key, version, seq })
            })
            .collect())
    }

    /// Gives this node's copy of a shard a cold file the shard's primary committed; answers
    /// how many of its rows became visible copies here.
    pub async fn take_cold(
        &self,
        file: ColdFile,
        live: Vec<ColdLive>,
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        self.call_store(
            file.shard,
            |reply| ShardMsg::TakeCold {
                file: file.clone(),
                live: live.clone(),
                reply,
            },
            timeout,
        )
        .await
    }

    /// Whether this node moves a shard's warm records to cold: always outside a cluster; in
    /// one, only the shard's primary does, once its copy is whole and the members agree on
    /// placement, so that each record's cold file is written once.
    pub fn ages_cold_here(&self, shard: ShardId) -> bool {
        match self.cluster.get() {
            None => true,
            Some(routes) => {
                routes.is_settled()
                    && routes.converged()
                    && routes.sync().state(shard) == CopyState::Whole
                    && routes.is_primary(shard)
            }
        }
    }

    /// Gives a shard's other replicas a cold file this node committed, with the rows that
    /// became visible here (in requests of at most 20,000 rows); answers how many replicas
    /// took it, or the first replica's failure. Nothing outside a cluster.
    pub async fn share_cold_commit(
        &self,
        file: &ColdFile,
        live: &[ColdLive],
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        if self.cluster.get().is_none() {
            return Ok(0);
        }
        // an empty commit still carries the catalog entry
        let pages: Vec<&[ColdLive]> = if live.is_empty() {
            vec![&[]]
        } else {
            live.chunks(COLD_ROWS_PER_REQUEST).collect()
        };
        let mut took = 0;
        for rows in pages {
            let answers = self
                .ask_other_replicas(file.shard, timeout, |reply| {
                    let request = ColdCommitRequest {
                        file: file.clone(),
                        live: rows.to_vec(),
                    };
                    ShardHostMsg::ColdCommit(Payload::Value(request), reply)
                })
                .await;
            took = answers.len();
            for answer in answers {
                answer?;
            }
        }
        Ok(took)
    }

    /// Whether this node folds a shard's cold log and removes its dead cold files: outside a
    /// cluster always; in one, where it writes the shard's cold files and every member is
    /// alive (in a partition each side takes the other for dead, and both would).
    pub fn tends_cold_log_here(&self, shard: ShardId) -> bool {
        match self.cluster.get() {
            None => true,
            Some(routes) => {
                self.ages_cold_here(shard)
                    && routes
                        .view()
                        .members
                        .iter()
                        .all(|m| m.state == MemberState::Alive)
            }
        }
    }

    /// Forgets record tombstones of a shard older than `before` on this node's copy; answers
    /// how many.
    pub async fn forget_tombstones(
        &self,
        shard: ShardId,
        before: Version,
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        self.call_store(shard, |reply| ShardMsg::Forget { before, reply }, timeout)
            .await
    }

    /// Takes out of this node's catalog the shard's cold files of `seqs` that hold no
    /// visible row here; answers the seqs it no longer holds.
    pub async fn drop_dead_cold(
        &self,
        shard: ShardId,
        seqs: Vec<u64>,
        timeout: Duration,
    ) -> Result<Vec<u64>, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::DropDeadCold {
                seqs: seqs.clone(),
                reply,
            },
            timeout,
        )
        .await
    }

    /// Asks a shard's other replicas to take out of their catalogs the files of `seqs` that
    /// hold no visible row there either; answers the seqs every one of them let go (all of
    /// them outside a cluster), whose objects may then be removed.
    pub async fn drop_dead_cold_elsewhere(
        &self,
        shard: ShardId,
        seqs: &[u64],
        timeout: Duration,
    ) -> Result<Vec<u64>, ShardError> {
        if self.cluster.get().is_none() {
            return Ok(seqs.to_vec());
        }
        let answers = self
            .ask_other_replicas(shard, timeout, |reply| {
                let request = ColdDropRequest {
                    shard,
                    seqs: seqs.to_vec(),
                };
                ShardHostMsg::ColdDrop(Payload::Value(request), reply)
            })
            .await;
        let mut agreed: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
        for answer in answers {
            let gone: std::collections::BTreeSet<u64> = answer?.into_iter().collect();
            agreed.retain(|s| gone.contains(s));
        }
        Ok(agreed.into_iter().collect())
    }

    /// The visible cold copies of these records of a shard on this node, with the files
    /// holding them.
    pub async fn visible_cold(
        &self,
        shard: ShardId,
        keys: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> Result<ColdFound, ShardError> {
        self.call_store(
            shard,
            |reply| ShardMsg::VisibleCold {
                keys: keys.clone(),
                reply,
            },
            timeout,
        )
        .await
    }

    /// Whether this node's copy of a shard takes its cold files from the shard's primary: in
    /// a cluster, where this node is a placed replica, not the primary, and its copy is
    /// whole.
    pub fn takes_cold_from_primary(&self, shard: ShardId) -> Option<String> {
        let routes = self.cluster.get()?;
        if routes.sync().state(shard) != CopyState::Whole || !routes.is_settled() {
            return None;
        }
        let placed = routes.replicas(shard);
        let me = routes.self_id();
        match placed.first() {
            Some(primary) if primary != me && placed.iter().any(|r| r == me) => {
                Some(primary.clone())
            }
            _ => None,
        }
    }

    /// Gives this node's copy of a shard the primary's cold copies of records it still
    /// holds warm past the cold age (a cold commit it missed: it was unreachable, or not
    /// yet a replica when the commit was shared); answers how many it took.
    pub async fn take_missed_cold(
        &self,
        shard: ShardId,
        primary: &str,
        keys: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> Result<usize, ShardError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let request = ColdLookupRequest { shard, keys };
        let answer = shard_host::call(
            primary,
            |reply| ShardHostMsg::ColdLookup(Payload::Value(request), reply),
            timeout,
        )
        .await;
        let found = replica_answer(shard, primary, answer)?;
        let mut took = 0;
        for file in found.files {
            let live: Vec<ColdLive> = found
                .live
                .iter()
                .filter(|l| l.seq == file.seq)
                .cloned()
                .collect();
            took += self.take_cold(file, live, timeout).await?;
        }
        Ok(took)
    }
}
