//! Decoded cold files kept in memory, first in first out, up to a byte budget.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::storage::cold_file::ColdColumns;

/// Decoded cold files by object key, bounded in bytes.
pub struct ColdCache {
    inner: parking_lot::Mutex<Inner>,
    budget: usize,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Arc<ColdColumns>>,
    order: VecDeque<(String, usize)>,
    bytes: usize,
}

impl ColdCache {
    /// An empty cache holding at most `budget` bytes of decoded files.
    pub fn new(budget: usize) -> ColdCache {
        ColdCache {
            inner: parking_lot::Mutex::new(Inner::default()),
            budget,
        }
    }

    /// A cached file's columns.
    pub fn get(&self, path: &str) -> Option<Arc<ColdColumns>> {
        self.inner.lock().files.get(path).map(Arc::clone)
    }

    /// Keeps a file's columns, evicting the oldest files over the budget.
    pub fn insert(&self, path: &str, columns: Arc<ColdColumns>) {
        let size = columns.memory_bytes();
        let mut c = self.inner.lock();
        if c.files.contains_key(path) {
            return;
        }
        while c.bytes + size > self.budget {
            let Some((old, n)) = c.order.pop_front() else {
                break;
            };
            c.files.remove(&old);
            c.bytes -= n;
        }
        c.files.insert(path.to_string(), columns);
        c.order.push_back((path.to_string(), size));
        c.bytes += size;
    }

    /// Drops a file.
    pub fn remove(&self, path: &str) {
        let mut c = self.inner.lock();
        if c.files.remove(path).is_some() {
            if let Some(i) = c.order.iter().position(|(p, _)| p == path) {
                if let Some((_, n)) = c.order.remove(i) {
                    c.bytes -= n;
                }
            }
        }
    }
}
