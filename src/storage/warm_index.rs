//! The warm tier's search structure: every warm record's int8 codes in one flat array,
//! scanned with the int8 kernel, the best candidates rescored on the dequantized vectors.

use parking_lot::RwLock;

use crate::record::EMBEDDING_DIM;
use crate::storage::ann::quant_kernels;
use crate::storage::distance::TopK;
use crate::storage::segment::{IndexFilter, PointMeta};
use crate::storage::warm::quantize;
use crate::storage::ScoredPoint;

/// A warm point: its slot in the flat array.
pub type WarmPointId = u64;

/// Points scanned under one hold of the lock.
const SCAN_CHUNK: usize = 16 * 1024;

/// Candidates kept from the int8 scan per result asked for, before rescoring.
const RESCORE_FACTOR: usize = 8;

#[derive(Default)]
struct Points {
    codes: Vec<i8>,
    steps: Vec<f32>,
    meta: Vec<Option<PointMeta>>,
    free: Vec<usize>,
    live: usize,
}

/// Warm records' codes, searchable by a scan; rebuilt from the warm trees on start.
#[derive(Default)]
pub struct WarmIndex {
    points: RwLock<Points>,
}

impl WarmIndex {
    /// Adds points (codes, step, meta); returns their ids.
    pub fn insert(&self, items: Vec<(Vec<i8>, f32, PointMeta)>) -> Vec<WarmPointId> {
        let mut p = self.points.write();
        items
            .into_iter()
            .map(|(codes, step, meta)| {
                let slot = match p.free.pop() {
                    Some(slot) => {
                        p.codes[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM]
                            .copy_from_slice(&codes);
                        p.steps[slot] = step;
                        p.meta[slot] = Some(meta);
                        slot
                    }
                    None => {
                        p.codes.extend_from_slice(&codes);
                        p.steps.push(step);
                        p.meta.push(Some(meta));
                        p.meta.len() - 1
                    }
                };
                p.live += 1;
                slot as WarmPointId
            })
            .collect()
    }

    /// Removes points; their slots are reused.
    pub fn delete(&self, ids: &[WarmPointId]) {
        let mut p = self.points.write();
        for id in ids {
            let slot = *id as usize;
            if p.meta.get_mut(slot).and_then(Option::take).is_some() {
                p.free.push(slot);
                p.live -= 1;
            }
        }
    }

    /// Removes every point of a shard (before the shard reloads from disk).
    pub fn delete_shard(&self, shard: crate::record::ShardId) {
        let mut p = self.points.write();
        let doomed: Vec<usize> = p
            .meta
            .iter()
            .enumerate()
            .filter(|(_, m)| m.as_ref().is_some_and(|m| m.shard == shard))
            .map(|(i, _)| i)
            .collect();
        for slot in doomed {
            p.meta[slot] = None;
            p.free.push(slot);
            p.live -= 1;
        }
    }

    /// The storage key of a point's record.
    pub fn key_of(&self, id: WarmPointId) -> Option<Box<[u8]>> {
        let p = self.points.read();
        p.meta.get(id as usize)?.as_ref().map(|m| m.key.clone())
    }

    /// Points in the index.
    pub fn live_points(&self) -> usize {
        self.points.read().live
    }

    /// The `k` points most similar to a unit `query` that pass `filter`, best first.
    /// CPU work proportional to the warm tier: run it on a blocking thread. The scan takes
    /// the lock for one chunk of points at a time, so a shard's write waits for one chunk
    /// at most, never for a whole scan.
    pub fn search(&self, query: &[f32], k: usize, filter: &IndexFilter) -> Vec<ScoredPoint> {
        let (qcodes, qstep) = quantize(query);
        let dot_i8 = quant_kernels().dot_i8;
        let mut rough = TopK::new((k * RESCORE_FACTOR).max(64));
        let mut from = 0;
        loop {
            let p = self.points.read();
            let to = (from + SCAN_CHUNK).min(p.meta.len());
            for slot in from..to {
                let Some(meta) = &p.meta[slot] else { continue };
                if !filter.accepts(meta) {
                    continue;
                }
                let codes = &p.codes[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM];
                let score = dot_i8(&qcodes, codes) as f32 * qstep * p.steps[slot];
                rough.push(slot as u64, score);
            }
            if to >= p.meta.len() {
                break;
            }
            from = to;
        }
        let p = self.points.read();
        let mut exact = TopK::new(k);
        let mut metas = std::collections::HashMap::new();
        for c in rough.into_sorted() {
            let slot = c.id as usize;
            // a slot freed or reused since the scan is checked again
            let Some(Some(meta)) = p.meta.get(slot) else {
                continue;
            };
            if !filter.accepts(meta) {
                continue;
            }
            let codes = &p.codes[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM];
            let dot: f32 = codes.iter().zip(query).map(|(c, q)| *c as f32 * q).sum();
            exact.push(c.id, dot * p.steps[slot]);
            metas.insert(c.id, (meta.shard, meta.key.clone()));
        }
        exact
            .into_sorted()
            .into_iter()
            .filter_map(|s| {
                let (shard, key) = metas.remove(&s.id)?;
                Some(ScoredPoint {
                    point: s.id,
                    score: s.score,
                    shard,
                    key,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter().map(|a| a / n).collect()
    }

    fn meta(i: u64, system: u32) -> PointMeta {
        PointMeta {
            shard: (i % 256) as u16,
            system,
            timestamp: i as i64,
            key: format!("k{i}").into_bytes().into_boxed_slice(),
        }
    }

    #[test]
    fn finds_its_own_points_honours_filters_and_deletes() {
        let index = WarmIndex::default();
        let items = (0..2_000u64)
            .map(|i| {
                let (codes, step) = quantize(&unit(i));
                (codes, step, meta(i, (i % 2) as u32))
            })
            .collect();
        let ids = index.insert(items);
        for i in [0u64, 17, 1_999] {
            let hits = index.search(&unit(i), 3, &IndexFilter::default());
            assert_eq!(&*hits[0].key, format!("k{i}").as_bytes());
            assert!(hits[0].score > 0.99, "{}", hits[0].score);
        }
        let odd = IndexFilter {
            system: Some(1),
            ..IndexFilter::default()
        };
        assert!(index
            .search(&unit(4), 5, &odd)
            .iter()
            .all(|h| h.point % 2 == 1));
        index.delete(&ids[17..18]);
        assert_eq!(index.live_points(), 1_999);
        let hits = index.search(&unit(17), 1, &IndexFilter::default());
        assert_ne!(&*hits[0].key, b"k17");
        let again = index.insert(vec![(quantize(&unit(9_999)).0, 0.01, meta(9_999, 0))]);
        assert_eq!(again, vec![17], "a freed slot is reused");
    }
}
