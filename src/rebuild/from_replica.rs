//! A rebuild from another node's whole copy of the shard, page by page.

use std::time::Duration;

use super::{Position, Step};
use crate::cluster::catch_up::export_page;
use crate::cluster::shard_host::{self, ShardHostMsg};
use crate::cluster::wire::Payload;
use crate::node::Node;
use crate::record::ShardId;
use crate::storage::shard_export::{ExportCursor, ShardPage};
/// Tries of one page before the rebuild stops.
const TRIES: u32 = 3;

/// Reads the shard from `source` from `cursor` on, into this node's copy.
pub(super) async fn run(
    node: &Node,
    shard: ShardId,
    source: &str,
    mut cursor: ExportCursor,
    step: &Step<'_>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    let counts = shard_host::call(
        source,
        |reply| ShardHostMsg::Counts(Payload::Value(vec![shard]), reply),
        timeout,
    )
    .await
    .map_err(|e| format!("cannot count the records of node {source}: {e}"))?;
    let total = counts
        .into_iter()
        .find(|(s, _)| *s == shard)
        .and_then(|(_, c)| c)
        .map_or(0, |c| (c.hot + c.warm + c.cold) as u64);
    step.update(|p| p.total = total.max(p.done));
    loop {
        let page = page(source, shard, &cursor, timeout).await?;
        let records = (page.hot.len() + page.warm.len() + page.cold_live.len()) as u64;
        let next = page.next.clone();
        let counts = node
            .shards
            .import(shard, page, timeout)
            .await
            .map_err(|e| format!("cannot write a page into this node's copy: {e}"))?;
        node.store
            .flush()
            .await
            .map_err(|e| format!("cannot make a page durable: {e}"))?;
        let at = Position::Replica {
            cursor: next.clone().unwrap_or_else(ExportCursor::start),
        };
        step.advance(
            |p| {
                p.done += records;
                p.records += records;
                p.written += counts.written as u64;
                p.unchanged += counts.unchanged as u64;
                p.deletions += counts.deletions as u64;
                p.cold += counts.cold as u64;
            },
            at,
        )?;
        match next {
            Some(n) => cursor = n,
            None => return Ok(()),
        }
    }
}

/// One page of the source's copy, tried a few times.
async fn page(
    source: &str,
    shard: ShardId,
    cursor: &ExportCursor,
    timeout: Duration,
) -> Result<ShardPage, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match export_page(source, shard, cursor.clone(), timeout).await {
            Ok(page) => return Ok(page),
            Err(e) if tries >= TRIES => {
                return Err(format!("cannot read a page from node {source}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
