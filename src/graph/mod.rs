//! The knowledge graph: entities (systems, users, projects, sessions, and what Session-Buddy
//! pushes) and the relations between them, fed by ingestion and by push, persisted in the
//! node's store, and answered as neighbourhoods, paths and counts.
//!
//! Where it lives: today one node holds the whole graph in its store, fed by the writes and
//! deletions it takes. Every count in it is kept by system (an entity's and a relation's
//! `systems`, and per record the names it gave), so when shards spread over several nodes
//! the graph moves with them: the node that owns a system's shard keeps what that system
//! gave, and a query merges at each hop the neighbours every node holds for the frontier.

mod adjacency;
mod feed;
mod forget;
mod marker;
mod marker_page;
mod marker_pages;
mod model;
mod push;
mod query;
mod service;
mod store;

pub use feed::{Names, RecordFacts};
pub use model::{Entity, GraphInputError, Relation, MAX_ID_BYTES};
pub use push::{Pushed, PushedEntity, PushedRelation};
pub use query::{Neighbourhood, Path, MAX_DEPTH, MAX_HOPS};
pub use service::{FeedCost, Graph, PushedMany};
pub use store::{GraphError, KnowledgeGraph};

#[cfg(test)]
mod marker_tests;
#[cfg(test)]
mod tests;
