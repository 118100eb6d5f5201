//! A tree's records by timestamp, kept in the same tree so one batch writes a record and its
//! entry together: `0xFF`, the timestamp (8 bytes, order-preserving), the record's key.
//! Record keys start with a system id's first byte (`[A-Za-z0-9_-]`), so entries sort after
//! every record. Aging reads the oldest entries instead of decoding the whole tree.
//!
//! An entry whose record is gone or has another timestamp (deleted, or written again) is
//! stale; it is removed when aging meets it, so writes and deletions need not look up the
//! old timestamp.

use std::ops::RangeTo;

use crate::storage::StorageError;

/// First byte of every entry.
pub const TIME_PREFIX: u8 = 0xFF;

/// The keys of records only (every entry sorts after them).
pub fn records_range() -> RangeTo<&'static [u8]> {
    ..&[TIME_PREFIX][..]
}

/// The entry of a record with key `key` and timestamp `micros`.
pub fn time_key(micros: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(TIME_PREFIX);
    k.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The timestamp and record key of an entry.
fn parse(entry: &[u8]) -> Option<(i64, &[u8])> {
    if entry.len() < 9 || entry[0] != TIME_PREFIX {
        return None;
    }
    let ts = u64::from_be_bytes(entry[1..9].try_into().ok()?) ^ (1 << 63);
    Some((ts as i64, &entry[9..]))
}

/// Up to `max` records with a timestamp before `cutoff`, oldest first, as (key, decoded);
/// `decode` gives a record's timestamp and value, or `None` for one it cannot read (left in
/// place). Stale entries met on the way are removed.
pub fn due<T>(
    tree: &sled::Tree,
    cutoff: i64,
    max: usize,
    decode: impl Fn(&[u8], &[u8]) -> Option<(i64, T)>,
) -> Result<Vec<(Vec<u8>, T)>, StorageError> {
    let mut out = Vec::new();
    let mut stale = sled::Batch::default();
    let mut any_stale = false;
    for item in tree.range(time_key(i64::MIN, b"")..) {
        let (entry, _) = item?;
        let Some((ts, key)) = parse(&entry) else {
            continue;
        };
        if ts >= cutoff || out.len() >= max {
            break;
        }
        match tree.get(key)? {
            Some(value) => match decode(key, &value) {
                Some((t, v)) if t == ts => out.push((key.to_vec(), v)),
                Some(_) => {
                    stale.remove(&*entry);
                    any_stale = true;
                }
                None => {}
            },
            None => {
                stale.remove(&*entry);
                any_stale = true;
            }
        }
    }
    if any_stale {
        tree.apply_batch(stale)?;
    }
    Ok(out)
}

/// Writes the entries of a tree written before the index (one with records and no entry);
/// returns how many. `timestamp` reads a record's timestamp.
pub fn ensure(
    tree: &sled::Tree,
    timestamp: impl Fn(&[u8], &[u8]) -> Option<i64>,
) -> Result<usize, StorageError> {
    let has_entries = tree.range(time_key(i64::MIN, b"")..).next().is_some();
    if has_entries {
        return Ok(0);
    }
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in tree.range(records_range()) {
        let (key, value) = item?;
        if let Some(ts) = timestamp(&key, &value) {
            batch.insert(time_key(ts, &key), &[]);
            n += 1;
        }
    }
    if n > 0 {
        tree.apply_batch(batch)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_by_time_after_records_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("t").unwrap();
        // a tree from before the index: records only
        for (k, ts) in [("s\0a", 30i64), ("s\0b", -5), ("z\0c", 10), ("s\0d", 99)] {
            t.insert(k, &ts.to_be_bytes()).unwrap();
        }
        let ts = |_: &[u8], v: &[u8]| Some(i64::from_be_bytes(v.try_into().unwrap()));
        assert_eq!(ensure(&t, ts).unwrap(), 4);
        assert_eq!(ensure(&t, ts).unwrap(), 0);
        assert_eq!(t.range(records_range()).count(), 4);
        let decode = |k: &[u8], v: &[u8]| ts(k, v).map(|t| (t, t));
        let got = due(&t, 50, 10, decode).unwrap();
        let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"s\0b"[..], b"z\0c", b"s\0a"]);
        assert_eq!(due(&t, 50, 2, decode).unwrap().len(), 2);
        // one deleted, one written again with another timestamp: their entries are stale
        t.remove("z\0c").unwrap();
        t.insert("s\0a", &70i64.to_be_bytes()).unwrap();
        t.insert(time_key(70, b"s\0a"), &[]).unwrap();
        let got = due(&t, 100, 10, decode).unwrap();
        let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"s\0b"[..], b"s\0a", b"s\0d"]);
        assert_eq!(
            t.range(time_key(i64::MIN, b"")..).count(),
            3,
            "stale entries removed"
        );
    }
}
