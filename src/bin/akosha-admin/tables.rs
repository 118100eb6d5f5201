//! What `akosha-admin` prints for people: aligned tables and the indented actor tree.

use serde_json::Value;

use akosha::client::{ActorView, ClusterInfo, NodeTree, SearchAnswer, ShardInfo, Stats};

/// A node's tree, indented; shard actors of shards not placed on it are summed up unless
/// `all`.
pub fn tree_text(tree: &NodeTree, all: bool) -> String {
    let mut out = format!("node {}\n", tree.node_id);
    walk(&tree.root, 1, all, &mut out);
    out
}

fn walk(a: &ActorView, depth: usize, all: bool, out: &mut String) {
    let mut line = format!("{}{} [{}]", "  ".repeat(depth), a.name, a.state);
    if a.restarts > 0 {
        line.push_str(&format!(" restarts {}", a.restarts));
        let causes: Vec<String> = a
            .restart_causes
            .iter()
            .map(|(cause, n)| format!("{n}x {cause}"))
            .collect();
        if !causes.is_empty() {
            line.push_str(&format!(" [{}]", causes.join("; ")));
        }
    }
    if let Some(doing) = &a.doing {
        line.push_str(&format!(" {doing}"));
    }
    if !a.counters.is_empty() {
        let counters: Vec<String> = a.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" ({})", counters.join(" ")));
    }
    out.push_str(&line);
    out.push('\n');
    let mut hidden = 0;
    for child in &a.children {
        let unplaced = child
            .doing
            .as_deref()
            .is_some_and(|d| d.starts_with("not placed"));
        if !all && unplaced && child.restarts == 0 && child.state == "running" {
            hidden += 1;
            continue;
        }
        walk(child, depth + 1, all, out);
    }
    if hidden > 0 {
        out.push_str(&format!(
            "{}{hidden} more shard actors of shards not placed here (--all lists them)\n",
            "  ".repeat(depth + 1)
        ));
    }
}

/// Rows aligned in columns, the first row a header.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Shards as ranges: `0-3,7,9-10`.
pub fn ranges(shards: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < shards.len() {
        let start = shards[i];
        let mut end = start;
        while i + 1 < shards.len() && shards[i + 1] == end + 1 {
            i += 1;
            end = shards[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "-".to_string()
    } else {
        out.join(",")
    }
}

pub fn cluster_table(info: &ClusterInfo, stats: &Stats) -> String {
    let mut rows = vec![vec![
        "NODE".to_string(),
        "STATE".to_string(),
        "READY".to_string(),
        "LISTEN".to_string(),
        "HTTP".to_string(),
        "SHARDS".to_string(),
        "WHOLE".to_string(),
        "PLACED".to_string(),
    ]];
    for m in &info.members {
        rows.push(vec![
            m.node_id.clone(),
            m.state.clone(),
            m.ready.to_string(),
            m.listen.clone(),
            m.http.clone(),
            m.shards.len().to_string(),
            m.whole_shards.to_string(),
            ranges(&m.shards),
        ]);
    }
    let mut out = table(&rows);
    out.push_str(&format!(
        "replication factor {}, placement {:016x}, under-replicated shards: {}\n",
        info.replication_factor,
        info.placement_version,
        ranges(&stats.under_replicated_shards)
    ));
    out
}

pub fn stats_table(stats: &Stats) -> String {
    let r = stats.records;
    let mut out = table(&[
        vec![
            "HOT".to_string(),
            "WARM".to_string(),
            "COLD".to_string(),
            "TOTAL".to_string(),
        ],
        vec![
            r.hot.to_string(),
            r.warm.to_string(),
            r.cold.to_string(),
            r.total.to_string(),
        ],
    ]);
    out.push_str(&format!(
        "shards up {}/{}, missing: {}, under-replicated: {}\n",
        stats.shards_up,
        stats.shards,
        ranges(&stats.missing_shards),
        ranges(&stats.under_replicated_shards)
    ));
    out
}

pub fn shards_table(shards: &[ShardInfo]) -> String {
    let count = |n: Option<usize>| n.map_or("?".to_string(), |n| n.to_string());
    let mut rows = vec![vec![
        "SHARD".to_string(),
        "HOT".to_string(),
        "WARM".to_string(),
        "COLD".to_string(),
        "PRIMARY".to_string(),
        "REPLICAS".to_string(),
        "WHOLE".to_string(),
    ]];
    for s in shards {
        rows.push(vec![
            s.shard.to_string(),
            count(s.hot),
            count(s.warm),
            count(s.cold),
            s.primary.clone().unwrap_or_else(|| "-".to_string()),
            s.replicas.join(","),
            s.whole.join(","),
        ]);
    }
    table(&rows)
}

pub fn uploads_table(uploads: &Value) -> String {
    let mut out = String::new();
    for key in [
        "done",
        "pending",
        "in_flight",
        "records",
        "retries",
        "paused",
    ] {
        out.push_str(&format!("{key:<10} {}\n", uploads[key]));
    }
    let quarantined = uploads["quarantined"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !quarantined.is_empty() {
        let mut rows = vec![vec!["QUARANTINED".to_string(), "REASON".to_string()]];
        for q in quarantined {
            rows.push(vec![
                q["key"].as_str().unwrap_or_default().to_string(),
                q["reason"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// A JSON object's fields, one per line.
pub fn pairs(value: &Value) -> String {
    match value.as_object() {
        Some(map) => map.iter().map(|(k, v)| format!("{k:<22} {v}\n")).collect(),
        None => format!("{value}\n"),
    }
}

/// Search hits, best first.
pub fn search_table(answer: &SearchAnswer) -> String {
    let mut rows = vec![vec![
        "SIMILARITY".to_string(),
        "TIER".to_string(),
        "SYSTEM".to_string(),
        "CONVERSATION".to_string(),
        "CONTENT".to_string(),
    ]];
    for h in &answer.results {
        let content: String = h.content.chars().take(60).collect();
        rows.push(vec![
            format!("{:.3}", h.similarity),
            h.tier.clone(),
            h.system_id.clone(),
            h.conversation_id.clone(),
            content.replace('\n', " "),
        ]);
    }
    let mut text = table(&rows);
    if answer.partial {
        text.push_str(&format!(
            "partial: shards {:?} did not answer\n",
            answer.missing_shards
        ));
    }
    text
}
