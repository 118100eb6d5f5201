//! Which record markers the graph may hold: a Bloom filter over their keys, so that a record
//! the graph never counted (most records an upload brings) is not looked up in the store.
//!
//! The filter is kept under the graph's write lock and told of every marker key a change
//! writes before the change is applied, so it never says "absent" of a key the store holds.
//! Removed keys stay in it (a false positive only costs the lookup it would have had). At
//! open, and when it outgrows its size, it is built again by a thread that scans the
//! markers; meanwhile every lookup goes to the store and the keys written are kept for it.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Bits per key the filter is sized for: about 1% false positives with [`HASHES`].
const BITS_PER_KEY: u64 = 10;
/// Bit positions per key.
const HASHES: u64 = 5;
/// Keys a filter is sized for at least.
const MIN_CAPACITY: u64 = 1 << 16;

/// The graph's knowledge of which marker keys it holds.
pub(crate) struct MarkerFilter {
    state: State,
}

enum State {
    /// Not known (a scan failed): every lookup goes to the store.
    Off,
    /// Being built by a scan: lookups go to the store; the keys written meanwhile are kept
    /// for the filter the scan makes.
    Building { written: Vec<u64> },
    /// Every marker key written is in it.
    Ready(Bloom),
}

/// A Bloom filter of 64-bit key hashes.
pub(crate) struct Bloom {
    bits: Vec<u64>,
    keys: u64,
    capacity: u64,
}

impl Bloom {
    fn new(capacity: u64) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        let words = (capacity * BITS_PER_KEY).div_ceil(64);
        Bloom {
            bits: vec![0; words as usize],
            keys: 0,
            capacity,
        }
    }

    /// The word and bit of each of `hash`'s positions in a filter of `bits` bits.
    fn positions(hash: u64, bits: u64) -> impl Iterator<Item = (usize, u64)> {
        let step = hash.rotate_left(32) | 1;
        (0..HASHES).map(move |i| {
            let at = hash.wrapping_add(i.wrapping_mul(step));
            // a multiply-shift maps the hash onto the bits without a division
            let bit = ((u128::from(at) * u128::from(bits)) >> 64) as u64;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, hash: u64) {
        for (word, bit) in Bloom::positions(hash, self.bits.len() as u64 * 64) {
            self.bits[word] |= bit;
        }
        self.keys += 1;
    }

    fn may_hold(&self, hash: u64) -> bool {
        Bloom::positions(hash, self.bits.len() as u64 * 64)
            .all(|(word, bit)| self.bits[word] & bit != 0)
    }
}

/// A well-mixed 64-bit hash of `key`.
fn hash(key: &[u8]) -> u64 {
    fn mix(mut x: u64) -> u64 {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let mut h = 0x9e37_79b9_7f4a_7c15 ^ key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(tail)).wrapping_add(h.rotate_left(17))
}

impl MarkerFilter {
    /// The filter of a graph that holds no marker.
    pub(crate) fn empty() -> Self {
        MarkerFilter {
            state: State::Ready(Bloom::new(MIN_CAPACITY)),
        }
    }

    /// Whether the graph may hold a marker under `key` (false only when it surely does not).
    pub(crate) fn may_hold(&self, key: &[u8]) -> bool {
        match &self.state {
            State::Ready(bloom) => bloom.may_hold(hash(key)),
            State::Off | State::Building { .. } => true,
        }
    }

    /// Whether the filter is built (tests wait for it).
    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// Notes that a marker is written under `key`; answers whether the filter has outgrown
    /// its size and should be built again.
    pub(crate) fn wrote(&mut self, key: &[u8]) -> bool {
        match &mut self.state {
            State::Ready(bloom) => {
                bloom.insert(hash(key));
                bloom.keys > bloom.capacity
            }
            State::Building { written } => {
                written.push(hash(key));
                false
            }
            State::Off => false,
        }
    }

    /// Keys the filter is sized for next: twice those it holds.
    fn next_capacity(&self) -> u64 {
        match &self.state {
            State::Ready(bloom) => bloom.keys.saturating_mul(2),
            _ => MIN_CAPACITY,
        }
    }
}

/// Starts building `shared`'s filter again from the markers in `tree`, with `held` (its
/// lock, taken by the caller) left building until the scan is done.
pub(crate) fn rebuild(
    shared: &Arc<Mutex<MarkerFilter>>,
    held: &mut MarkerFilter,
    tree: &sled::Tree,
) {
    if matches!(held.state, State::Building { .. }) {
        return;
    }
    let capacity = held.next_capacity();
    held.state = State::Building {
        written: Vec::new(),
    };
    // the thread holds the graph weakly: a graph closed meanwhile ends it, and with it
    // its hold on the store
    let (weak, tree) = (Arc::downgrade(shared), tree.clone());
    let spawned = std::thread::Builder::new()
        .name("graph-markers".to_string())
        .spawn(move || {
            let scanned = match scan(&tree, capacity, &weak) {
                Ok(Some(bloom)) => Ok(bloom),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let mut filter = shared.lock();
            let written = match std::mem::replace(&mut filter.state, State::Off) {
                State::Building { written } => written,
                _ => return,
            };
            match scanned {
                Ok(mut bloom) => {
                    for h in written {
                        bloom.insert(h);
                    }
                    filter.state = State::Ready(bloom);
                }
                Err(e) => tracing::warn!(
                    "knowledge graph: cannot scan the record markers ({e}); every record is looked up in the store"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("knowledge graph: cannot start the marker scan ({e}); every record is looked up in the store");
        held.state = State::Off;
    }
}

/// A filter of every marker key in `tree`, sized for `capacity` keys or twice those found;
/// `None` when the graph it is for was closed meanwhile.
fn scan(
    tree: &sled::Tree,
    capacity: u64,
    graph: &Weak<Mutex<MarkerFilter>>,
) -> Result<Option<Bloom>, sled::Error> {
    let mut hashes = Vec::new();
    for k in tree.scan_prefix([super::store::MARKER]).keys() {
        hashes.push(hash(&k?));
        if hashes.len() % 4096 == 0 && graph.strong_count() == 0 {
            return Ok(None);
        }
    }
    let mut bloom = Bloom::new(capacity.max(hashes.len() as u64 * 2));
    for h in hashes {
        bloom.insert(h);
    }
    Ok(Some(bloom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_is_always_held_and_few_others_seem_to_be() {
        let mut f = MarkerFilter::empty();
        for i in 0..50_000u32 {
            assert!(!f.wrote(format!("m\u{1}sys\0c{i}").as_bytes()));
        }
        for i in 0..50_000u32 {
            assert!(f.may_hold(format!("m\u{1}sys\0c{i}").as_bytes()));
        }
        let false_positives = (50_000..150_000u32)
            .filter(|i| f.may_hold(format!("m\u{1}sys\0c{i}").as_bytes()))
            .count();
        assert!(false_positives < 2_000, "{false_positives} of 100000");
    }

    #[test]
    fn a_filter_built_again_holds_the_keys_of_the_store_and_those_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("g").unwrap();
        let marker = |i: u32| {
            let mut k = vec![super::super::store::MARKER];
            k.extend_from_slice(format!("sys\0c{i}").as_bytes());
            k
        };
        for i in 0..1_000 {
            tree.insert(marker(i), b"x").unwrap();
        }
        let shared = Arc::new(Mutex::new(MarkerFilter::empty()));
        {
            let mut held = shared.lock();
            rebuild(&shared, &mut held, &tree);
            assert!(
                held.may_hold(b"anything"),
                "a filter being built holds everything"
            );
            // written while the scan waits for the lock
            held.wrote(&marker(5_000));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !matches!(shared.lock().state, State::Ready(_)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the scan never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let f = shared.lock();
        assert!((0..1_000).all(|i| f.may_hold(&marker(i))));
        assert!(f.may_hold(&marker(5_000)));
        let false_positives = (10_000..20_000).filter(|&i| f.may_hold(&marker(i))).count();
        assert!(false_positives < 300, "{false_positives} of 10000");
    }
}
