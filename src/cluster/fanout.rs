//! Answers that span the cluster: a search and the record counts, each shard asked of one
//! whole copy (this node's when it holds one, else the first placed replica that says its
//! copy is whole, else a node placement took the shard from that still holds it), one
//! request per node.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use ractor::ActorRef;

use super::routes::ClusterRoutes;
use super::shard_host::{
    self, counts_here, group_of, search_here, RemoteQuery, ShardHost, ShardHostArgs, ShardHostMsg,
};
use super::wire::Payload;
use crate::actors::shard::ShardCounts;
use crate::node::Node;
use crate::record::{normalize, shard_for, validate_embedding, ShardId, SHARD_COUNT};
use crate::search::{QueryTarget, SearchError, SearchHit, SearchQuery, SearchResponse};

/// Starts this node's shard host, through which other nodes reach its shards. Start it
/// before the transport, so that every session advertises it from its start.
pub async fn start_host(node: &Arc<Node>, node_id: &str) -> Result<ActorRef<ShardHostMsg>, String> {
    let args = ShardHostArgs {
        node_id: node_id.to_string(),
        shards: node.shards.clone(),
        store: node.store.clone(),
        searcher: (*node.searcher).clone(),
        timeout: Duration::from_millis(node.config.ingest.timeout_ms),
        ledger: node.uploads.as_ref().map(|u| u.ledger.clone()),
    };
    let (host, _) = ractor::Actor::spawn(None, ShardHost, args)
        .await
        .map_err(|e| format!("cannot start the shard host: {e}"))?;
    tracing::info!(group = %group_of(node_id), "shard host started");
    Ok(host)
}

/// From now on the node sends writes and deletions to every replica, and answers searches
/// and counts from one whole copy of each shard.
pub fn route(
    node: &Arc<Node>,
    routes: ClusterRoutes,
    settle: Duration,
    publisher: Option<super::SyncedPublisher>,
) -> Result<(), String> {
    node.cold.join_cluster(routes.self_id());
    if !node.shards.join(routes) {
        return Err("the node has joined a cluster already".to_string());
    }
    super::catch_up::spawn(Arc::clone(node), settle, publisher);
    Ok(())
}

/// The member each shard is read from (see [`ClusterRoutes::readers`]), avoiding members
/// that just failed, by node: the shards each node answers for; and the shards with no
/// replica to ask.
fn by_reader(
    routes: &ClusterRoutes,
    shards: &[ShardId],
    avoid: &HashSet<String>,
) -> (BTreeMap<String, Vec<ShardId>>, Vec<ShardId>) {
    let mut by_node: BTreeMap<String, Vec<ShardId>> = BTreeMap::new();
    let mut unplaced = Vec::new();
    for (s, reader) in routes.readers(shards, avoid) {
        match reader {
            Some(node) => by_node.entry(node).or_default().push(s),
            None => unplaced.push(s),
        }
    }
    (by_node, unplaced)
}

/// Searches the cluster: each shard on one whole copy, one request per node, merged.
pub async fn search(
    node: &Node,
    routes: &ClusterRoutes,
    query: SearchQuery,
) -> Result<SearchResponse, SearchError> {
    let span = tracing::info_span!(
        "cluster_search",
        tiers = query.tiers.deepest(),
        system = query.system_id.as_deref().unwrap_or(""),
        limit = query.limit,
    );
    search_members(node, routes, query).instrument(span).await
}

async fn search_members(
    node: &Node,
    routes: &ClusterRoutes,
    query: SearchQuery,
) -> Result<SearchResponse, SearchError> {
    let started = Instant::now();
    let vector = match &query.target {
        QueryTarget::Text(t) => node.searcher.embed_text(t.clone()).await?,
        QueryTarget::Embedding(v) => {
            let mut v = v.clone();
            validate_embedding(&v).map_err(|e| SearchError::Invalid(e.to_string()))?;
            normalize(&mut v);
            v
        }
    };
    let shards: Vec<ShardId> = match &query.system_id {
        Some(system) => {
            crate::record::validate_system_id(system)
                .map_err(|e| SearchError::Invalid(e.to_string()))?;
            vec![shard_for(system)]
        }
        None => (0..SHARD_COUNT as ShardId).collect(),
    };
    let timeout = Duration::from_millis(node.config.search.timeout_ms);
    let asked = ask_readers(routes, &shards, |member, shards| {
        let span = tracing::info_span!("ask_member", member = %member, shards = shards.len());
        ask_node(node, routes, member, shards, &query, &vector, timeout).instrument(span)
    })
    .await;
    let mut missing = asked.unplaced;
    let mut reasons = Vec::new();
    if !missing.is_empty() {
        reasons.push(format!("{} shards have no live replica", missing.len()));
    }
    let mut hits: Vec<SearchHit> = Vec::new();
    for (h, m, reason) in asked.answers {
        hits.extend(h);
        missing.extend(m);
        reasons.extend(reason);
    }
    for (member, shards, e) in asked.failures {
        reasons.push(format!(
            "node {member} did not answer for {shards} shards: {e}"
        ));
    }
    missing.extend(asked.unanswered);
    hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let mut seen = HashSet::new();
    hits.retain(|h| seen.insert((h.system_id.clone(), h.conversation_id.clone())));
    hits.truncate(query.limit);
    missing.sort_unstable();
    missing.dedup();
    let partial = !missing.is_empty();
    Ok(SearchResponse {
        results: hits,
        partial,
        missing_shards: missing,
        partial_reason: partial.then(|| reasons.join("; ")),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// A node's part of a search: its hits, the shards it could not answer, and why.
type NodeAnswer = (Vec<SearchHit>, Vec<ShardId>, Option<String>);

/// What asking each shard's reader gave.
struct Asked<T> {
    /// one answer per node that answered
    answers: Vec<T>,
    /// the nodes that did not: which, how many shards they were asked for, and why
    failures: Vec<(String, usize, String)>,
    /// the shards with no replica to ask at all
    unplaced: Vec<ShardId>,
    /// the shards no node answered for, their other copies asked too
    unanswered: Vec<ShardId>,
}

/// Asks each shard's reader (see [`ClusterRoutes::readers`]) with `ask`, one request per
/// node, all at once; the shards of a node that does not answer (it died, and gossip has
/// not said so yet) are asked once more of their other copies.
async fn ask_readers<T, F, Fut>(routes: &ClusterRoutes, shards: &[ShardId], ask: F) -> Asked<T>
where
    F: Fn(String, Vec<ShardId>) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut avoid = HashSet::new();
    let (mut by_node, unplaced) = by_reader(routes, shards, &avoid);
    let mut asked = Asked {
        answers: Vec::new(),
        failures: Vec::new(),
        unplaced,
        unanswered: Vec::new(),
    };
    for round in 0..2 {
        let parts = by_node.into_iter().map(|(member, shards)| {
            let answer = ask(member.clone(), shards.clone());
            async move { (member, shards, answer.await) }
        });
        let mut again = Vec::new();
        for (member, shards, answer) in futures::future::join_all(parts).await {
            match answer {
                Ok(a) => asked.answers.push(a),
                Err(e) => {
                    asked.failures.push((member.clone(), shards.len(), e));
                    avoid.insert(member);
                    again.extend(shards);
                }
            }
        }
        if again.is_empty() || round == 1 {
            asked.unanswered.extend(again);
            break;
        }
        let (next, none) = by_reader(routes, &again, &avoid);
        asked.unanswered.extend(none);
        by_node = next;
    }
    asked
}

/// One node's part of a search: its hits, the shards it could not answer, and why.
async fn ask_node(
    node: &Node,
    routes: &ClusterRoutes,
    member: String,
    shards: Vec<ShardId>,
    query: &SearchQuery,
    vector: &[f32],
    timeout: Duration,
) -> Result<NodeAnswer, String> {
    let me = routes.self_id();
    if member == me {
        let mut local = query.clone();
        local.target = QueryTarget::Embedding(vector.to_vec());
        return search_here(&node.searcher, Some(routes), me, &shards, local).await;
    }
    let remote = RemoteQuery {
        shards,
        vector: vector.to_vec(),
        limit: query.limit,
        threshold: query.threshold,
        system_id: query.system_id.clone(),
        since: query.since.map(|t| t.timestamp_micros()),
        until: query.until.map(|t| t.timestamp_micros()),
        tiers: (query.tiers.hot, query.tiers.warm, query.tiers.cold),
        metadata_json: query
            .metadata
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string()),
        traceparent: crate::telemetry::traceparent(),
    };
    let called = shard_host::call(
        &member,
        |reply| ShardHostMsg::Search(Payload::Value(remote), reply),
        timeout,
    )
    .await;
    match called {
        Ok(Ok(a)) => Ok((
            a.hits.into_iter().map(SearchHit::from).collect(),
            a.missing_shards,
            a.partial_reason,
        )),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    }
}

/// Counts each shard's records on one whole copy (a node that does not answer has its
/// shards counted once more on their other copies); returns the counts of the shards that
/// answered (the others are missing).
pub async fn counts(node: &Node, routes: &ClusterRoutes) -> Vec<(ShardId, ShardCounts)> {
    let all: Vec<ShardId> = (0..SHARD_COUNT as ShardId).collect();
    let timeout = Duration::from_millis(node.config.search.timeout_ms);
    let me = routes.self_id();
    let local = &node.shards;
    let asked = ask_readers(routes, &all, |member, shards| async move {
        if member == me {
            return Ok(counts_here(local, &shards, timeout).await);
        }
        shard_host::call(
            &member,
            |reply| ShardHostMsg::Counts(Payload::Value(shards), reply),
            timeout,
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await;
    asked
        .answers
        .into_iter()
        .flatten()
        .filter_map(|(s, c)| c.map(|c| (s, c)))
        .collect()
}
