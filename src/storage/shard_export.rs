//! A shard read out in pages for another replica: its cold catalog and visible cold copies,
//! its deletions, then its warm and hot records, each part in key order. Pages are read
//! while the shard keeps taking writes; the receiver applies everything by version, so a
//! record written meanwhile (which reaches both replicas anyway) ends the same.

use serde::{Deserialize, Serialize};

use crate::record::{split_key, ShardId, StoredRecord};
use crate::storage::cold_copy::ColdLive;
use crate::storage::cold_log::Deletion;
use crate::storage::cold_tier::{ColdFile, ColdTier};
use crate::storage::hot_store::decode;
use crate::storage::tombstones::Tombstones;
use crate::storage::warm::{decode_warm, WarmRecord};
use crate::storage::{HotStore, StorageError};

/// The parts of a shard, in the order they are sent: cold first, so that deletions and
/// newer copies that follow find the cold copies they replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportPart {
    /// catalog entries and visible cold copies
    Cold,
    /// deletions of single records
    RecordTombstones,
    /// deletions of whole systems, and systems' floors
    SystemTombstones,
    /// warm records
    Warm,
    /// hot records
    Hot,
}

/// Where the next page of an export starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCursor {
    /// the part being read
    pub part: ExportPart,
    /// the last record key sent of that part
    pub after: Option<Vec<u8>>,
    /// the shard's count of records moved between tiers when the export began (0: not yet
    /// known); a page asked with a count the shard has since left starts the export over,
    /// as a record that aging moved into a part already sent would be in no page
    #[serde(default)]
    pub moves: u64,
}

impl ExportCursor {
    /// The start of a shard.
    pub fn start() -> ExportCursor {
        ExportCursor {
            part: ExportPart::Cold,
            after: None,
            moves: 0,
        }
    }

    fn next_part(part: ExportPart, moves: u64) -> Option<ExportCursor> {
        let part = match part {
            ExportPart::Cold => ExportPart::RecordTombstones,
            ExportPart::RecordTombstones => ExportPart::SystemTombstones,
            ExportPart::SystemTombstones => ExportPart::Warm,
            ExportPart::Warm => ExportPart::Hot,
            ExportPart::Hot => return None,
        };
        Some(ExportCursor {
            part,
            after: None,
            moves,
        })
    }
}

/// One page of a shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardPage {
    /// every catalog entry of the shard (first page only)
    pub cold_files: Vec<ColdFile>,
    /// visible cold copies
    pub cold_live: Vec<ColdLive>,
    /// deletions (`conversation_id` absent: the whole system)
    pub deletions: Vec<Deletion>,
    /// warm records as stored
    pub warm: Vec<WarmRecord>,
    /// hot records as stored
    pub hot: Vec<StoredRecord>,
    /// where the next page starts; `None` once the shard is all sent
    pub next: Option<ExportCursor>,
    /// systems' floors (their forgotten record deletions: a gate for new writes only)
    pub floors: Vec<Deletion>,
}

impl ShardPage {
    /// Items the page holds.
    pub fn len(&self) -> usize {
        self.cold_files.len()
            + self.cold_live.len()
            + self.deletions.len()
            + self.warm.len()
            + self.hot.len()
            + self.floors.len()
    }

    /// Whether the page holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads up to `max` items of a shard from `cursor`; blocking.
pub fn export_page(
    store: &HotStore,
    cold: &ColdTier,
    tombstones: &Tombstones,
    shard: ShardId,
    cursor: &ExportCursor,
    max: usize,
) -> Result<ShardPage, StorageError> {
    let max = max.max(1);
    let after = cursor.after.as_deref();
    let mut page = ShardPage::default();
    // the key of the last item sent, when the part may have more
    let last: Option<Vec<u8>> = match cursor.part {
        ExportPart::Cold => {
            if after.is_none() {
                page.cold_files = cold.files_of(shard);
            }
            page.cold_live = cold.live_page(shard, after, max)?;
            full(&page.cold_live, max).then(|| page.cold_live.last().map(|l| l.key.clone()))
        }
        ExportPart::RecordTombstones => {
            let got = tombstones.records_page(shard, after, max)?;
            let last = full(&got, max).then(|| got.last().map(|(k, _)| k.clone()));
            for (key, version) in got {
                if let Some((s, c)) = split_key(&key) {
                    page.deletions.push(Deletion {
                        system_id: s.to_string(),
                        conversation_id: Some(c.to_string()),
                        version,
                    });
                }
            }
            last
        }
        ExportPart::SystemTombstones => {
            for (system_id, version) in tombstones.systems_of(shard)? {
                page.deletions.push(Deletion {
                    system_id,
                    conversation_id: None,
                    version,
                });
            }
            for (system_id, version) in tombstones.floors_of(shard)? {
                page.floors.push(Deletion {
                    system_id,
                    conversation_id: None,
                    version,
                });
            }
            None
        }
        ExportPart::Warm => {
            let got = tree_page(store.warm_tree(shard), after, max, decode_warm)?;
            let last = full(&got, max).then(|| got.last().map(|(k, _)| k.clone()));
            page.warm = got.into_iter().map(|(_, r)| r).collect();
            last
        }
        ExportPart::Hot => {
            let got = tree_page(store.tree(shard), after, max, decode)?;
            let last = full(&got, max).then(|| got.last().map(|(k, _)| k.clone()));
            page.hot = got.into_iter().map(|(_, r)| r).collect();
            last
        }
    }
    .flatten();
    page.next = match last {
        Some(after) => Some(ExportCursor {
            part: cursor.part,
            after: Some(after),
            moves: cursor.moves,
        }),
        None => ExportCursor::next_part(cursor.part, cursor.moves),
    };
    Ok(page)
}

/// Whether a part's page came back full, so the part may have more.
fn full<T>(got: &[T], max: usize) -> bool {
    got.len() >= max
}

/// Up to `max` decoded records of a tree after key `after`.
fn tree_page<T>(
    tree: &sled::Tree,
    after: Option<&[u8]>,
    max: usize,
    decode: impl Fn(&[u8], &[u8]) -> Result<T, StorageError>,
) -> Result<Vec<(Vec<u8>, T)>, StorageError> {
    let mut out = Vec::new();
    let range = match after {
        Some(a) => {
            tree.range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
        }
        None => tree.iter(),
    };
    for item in range {
        let (k, v) = item?;
        match decode(&k, &v) {
            Ok(r) => out.push((k.to_vec(), r)),
            // a damaged record stays on disk and is not sent; the shard's load skips it too
            Err(e) => tracing::error!(error = %e, "skipping an undecodable record in an export"),
        }
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}
