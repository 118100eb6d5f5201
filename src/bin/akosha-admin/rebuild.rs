//! `akosha-admin rebuild shard N`: starts a rebuild on a member that holds the shard and
//! follows it with a progress bar until it ends.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use akosha::client::{Client, RebuildProgress, RebuildState};

use crate::{print_or, Failure};

/// How often the bar asks how far the rebuild got.
const POLL: Duration = Duration::from_millis(500);

/// What was asked.
pub struct Ask<'a> {
    pub shard: u64,
    pub from: &'a str,
    pub on: Option<&'a str>,
    pub detach: bool,
    pub json: bool,
}

/// Starts (or follows) the rebuild and answers what to print once it has ended.
pub async fn rebuild(client: &Client, ask: Ask<'_>) -> Result<String, Failure> {
    let (me, _) = client.members_around().await?;
    let on = match ask.on {
        Some(on) => on.to_string(),
        None => {
            // the member talked to if it holds the shard, else the shard's primary
            let shards = client.shards().await?;
            let row = shards
                .iter()
                .find(|r| u64::from(r.shard) == ask.shard)
                .ok_or_else(|| Failure(1, format!("no shard {} in the cluster", ask.shard)))?;
            if row.replicas.contains(&me) || row.replicas.is_empty() {
                me.clone()
            } else {
                row.replicas[0].clone()
            }
        }
    };
    let peer = if on == me {
        None
    } else {
        Some(client.on_member(&on).await?)
    };
    let target = peer.as_ref().unwrap_or(client);
    let started = target.rebuild_shard(ask.shard, ask.from).await?;
    if ask.detach {
        return print_or(ask.json, &started, || {
            format!(
                "rebuilding shard {} on {} from {}; `akosha-admin rebuild shard {}` follows it\n",
                started.shard, started.node, started.source, started.shard
            )
        });
    }
    let ended = follow(target, &started, ask.json).await;
    if let Some(peer) = peer {
        peer.close();
    }
    let ended = ended?;
    match ended.state {
        RebuildState::Failed => Err(Failure(
            1,
            format!(
                "rebuild of shard {} on {} stopped at {} of {} {}: {}; the same command goes on from there",
                ended.shard,
                ended.node,
                ended.done,
                ended.total,
                ended.unit,
                ended.error.as_deref().unwrap_or("no reason given")
            ),
        )),
        _ => print_or(ask.json, &ended, || summary(&ended)),
    }
}

/// Polls the rebuild, drawing a bar (not with `--json`), until it is no longer running.
async fn follow(
    target: &Client,
    started: &RebuildProgress,
    json: bool,
) -> Result<RebuildProgress, Failure> {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(started.total)
    };
    let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}")
        .map_err(|e| Failure(1, format!("cannot draw the progress bar: {e}")))?
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!(
        "shard {} on {} from {}",
        started.shard, started.node, started.source
    ));
    if started.resumed_at > 0 {
        bar.println(format!(
            "going on from {} of {} {} read before it was interrupted",
            started.resumed_at, started.total, started.unit
        ));
    }
    loop {
        let p = target.rebuild_status(u64::from(started.shard)).await?;
        bar.set_length(p.total.max(p.done));
        bar.set_position(p.done);
        let eta = p
            .eta_ms
            .map_or("eta ?".to_string(), |ms| format!("eta {}", seconds(ms)));
        bar.set_message(format!("{} {eta}", p.unit));
        if p.state != RebuildState::Running {
            bar.finish_and_clear();
            return Ok(p);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                return Err(Failure(1, format!(
                    "stopped following; the rebuild goes on on {}: the same command follows it again",
                    p.node
                )));
            }
        }
    }
}

fn seconds(ms: u64) -> String {
    match ms {
        0..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// What a rebuild that ended did, in a few lines.
fn summary(p: &RebuildProgress) -> String {
    let read = if p.unit == "uploads" {
        format!(
            "{} uploads ({} records) read again, {} skipped, {} cold copies restored",
            p.done, p.records, p.skipped, p.cold
        )
    } else {
        format!(
            "{} records read, {} written, {} already here, {} deletions, {} cold copies",
            p.records, p.written, p.unchanged, p.deletions, p.cold
        )
    };
    let mut out = format!(
        "shard {} rebuilt on {} from {} in {}: {read}\n",
        p.shard,
        p.node,
        p.source,
        seconds(p.elapsed_ms)
    );
    for note in &p.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
