//! Which shards of this node were whole, kept on disk: after a restart, a node whose copy of
//! a shard was whole merges it with what the other placed replicas took meanwhile, even
//! when every other copy that was whole is gone.

use std::collections::HashSet;

use crate::record::{ShardId, SHARD_COUNT};
use crate::storage::HotStore;

/// The sled tree the marks live in.
const TREE: &str = "cluster/whole";

/// The shards whose copy here was whole when last recorded.
pub struct WholeMarks {
    tree: Option<sled::Tree>,
    marks: HashSet<ShardId>,
}

impl WholeMarks {
    /// Reads the marks of the node's store; without them (the tree cannot be opened) none
    /// are kept, which is safe: a shard is then rebuilt or copied rather than trusted.
    pub fn open(store: &HotStore) -> WholeMarks {
        let tree = match store.open_tree(TREE) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the whole-shard marks; none are kept");
                None
            }
        };
        let marks = tree
            .iter()
            .flat_map(|t| t.iter().keys())
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 2]>::try_from(k.as_ref()).ok())
            .map(ShardId::from_be_bytes)
            .filter(|s| (*s as usize) < SHARD_COUNT)
            .collect();
        WholeMarks { tree, marks }
    }

    /// Whether this node's copy of a shard was whole when last recorded.
    pub fn was_whole(&self, shard: ShardId) -> bool {
        self.marks.contains(&shard)
    }

    /// Records whether this node's copy of a shard is whole.
    pub fn set(&mut self, shard: ShardId, whole: bool) {
        let changed = if whole {
            self.marks.insert(shard)
        } else {
            self.marks.remove(&shard)
        };
        let Some(tree) = &self.tree else {
            return;
        };
        if !changed {
            return;
        }
        let key = shard.to_be_bytes();
        let written = if whole {
            tree.insert(key, &[]).map(|_| ())
        } else {
            tree.remove(key).map(|_| ())
        };
        if let Err(e) = written {
            tracing::warn!(shard, error = %e, "cannot record whether a shard is whole");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_a_reopen_and_unmarking() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = HotStore::open(dir.path(), 8).unwrap();
            let mut marks = WholeMarks::open(&store);
            assert!(!marks.was_whole(7));
            marks.set(7, true);
            marks.set(200, true);
            marks.set(200, false);
            marks.set(255, true);
            store.flush_blocking().unwrap();
        }
        let store = HotStore::reopen(dir.path());
        let marks = WholeMarks::open(&store);
        assert!(marks.was_whole(7) && marks.was_whole(255));
        assert!(!marks.was_whole(200) && !marks.was_whole(0));
    }
}
