//! Several writes to one tree that a crash cannot split, without sled's batches.
//!
//! sled 0.34's `apply_batch` and transactions take a process-wide exclusive lock, and the
//! first one switches every later read and write of the process onto that lock: measured
//! here, a batch per ingest batch cost a quarter of the ingest rate. A [`LoggedBatch`] is
//! written instead as one value under the tree's intent key (one insert, atomic), then key
//! by key, then the intent is removed. sled recovers a prefix of its log, so after a crash
//! either the intent is gone (every write of it done) or it is there and [`recover`] writes
//! it again; its values are final values, not increments, so writing them twice is safe.
//! The caller keeps one batch at a time per tree (it holds a lock while it computes and
//! applies one).

use crate::storage::StorageError;

/// The key an intent is kept under; no other key of the tree may start with it.
const INTENT: &[u8] = b"\xff~intent";

/// Writes and removals to apply to one tree as one.
#[derive(Debug, Default)]
pub struct LoggedBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl LoggedBatch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.ops {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        out
    }

    fn decode(mut b: &[u8]) -> Option<LoggedBatch> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (b.get(..n)?, b.get(n..)?);
            *b = tail;
            Some(head)
        }
        fn len(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        let mut batch = LoggedBatch::default();
        while !b.is_empty() {
            let n = len(&mut b)?;
            let key = take(&mut b, n)?.to_vec();
            let value = match take(&mut b, 1)?[0] {
                1 => {
                    let n = len(&mut b)?;
                    Some(take(&mut b, n)?.to_vec())
                }
                _ => None,
            };
            batch.ops.push((key, value));
        }
        Some(batch)
    }

    /// Applies every write to `tree` so that a crash leaves all of them or, once
    /// [`recover`] ran, all of them too.
    pub fn apply(self, tree: &sled::Tree) -> Result<(), StorageError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let single = self.ops.len() == 1;
        if !single {
            tree.insert(INTENT, self.encode())?;
        }
        self.write(tree)?;
        if !single {
            tree.remove(INTENT)?;
        }
        Ok(())
    }

    fn write(self, tree: &sled::Tree) -> Result<(), StorageError> {
        for (k, v) in self.ops {
            match v {
                Some(v) => tree.insert(k, v)?,
                None => tree.remove(k)?,
            };
        }
        Ok(())
    }
}

/// Finishes a batch a crash cut short, if any; call before the tree is used. Answers
/// whether there was one.
pub fn recover(tree: &sled::Tree) -> Result<bool, StorageError> {
    let Some(intent) = tree.get(INTENT)? else {
        return Ok(false);
    };
    let batch = LoggedBatch::decode(&intent).ok_or_else(|| StorageError::Decode {
        key: String::from_utf8_lossy(INTENT).into_owned(),
        message: "a logged batch cut short".to_string(),
    })?;
    batch.write(tree)?;
    tree.remove(INTENT)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_left_by_a_crash_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert("gone", "x").unwrap();
        let mut batch = LoggedBatch::default();
        batch.insert("a", "1");
        batch.insert("b", vec![0u8; 300]);
        batch.remove("gone");
        // a crash after the intent, before its writes
        tree.insert(INTENT, batch.encode()).unwrap();
        assert!(recover(&tree).unwrap());
        assert_eq!(tree.get("a").unwrap().unwrap().as_ref(), b"1");
        assert_eq!(tree.get("b").unwrap().unwrap().len(), 300);
        assert!(tree.get("gone").unwrap().is_none());
        assert!(tree.get(INTENT).unwrap().is_none());
        assert!(!recover(&tree).unwrap());

        let mut batch = LoggedBatch::default();
        batch.insert("c", "3");
        batch.remove("a");
        batch.apply(&tree).unwrap();
        assert_eq!(tree.get("c").unwrap().unwrap().as_ref(), b"3");
        assert!(tree.get("a").unwrap().is_none());
        assert!(tree.get(INTENT).unwrap().is_none());
        // a torn intent is refused with a message, not applied
        tree.insert(INTENT, &[9u8, 0, 0][..]).unwrap();
        assert!(recover(&tree)
            .unwrap_err()
            .to_string()
            .contains("cut short"));
    }
}
