//! Where the graph keeps its record markers (what it counted of each record: the copy's
//! version and the names it gave): in pages of up to [`PAGE_ENTRIES`] markers, one value
//! each in the graph's tree, found through an index in memory by a hash of the record's
//! key. Counting a batch of new records writes one page, not one key per record.
//!
//! - A record's marker is its entry in the highest-numbered page that holds its key.
//!   Entries of it in lower pages are dead; they go when their page is rewritten (in place,
//!   under its own number, only ever losing entries) once most of it is dead.
//! - A live entry is removed only after every dead entry of its key: removals rewrite pages
//!   in ascending order, so a crash between two never brings a dead one back.
//! - The index is built from the pages when the graph opens. Keys that share a hash are
//!   kept by their whole key beside it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::marker::Marker;
use super::marker_page::{decode_page, system_of};
pub(super) use super::marker_page::{page_key, read_page, Page, PAGE};
use super::store::GraphError;
use crate::storage::logged_batch::LoggedBatch;

/// Tag of one record's marker under a key of its own, as graphs before pages kept them;
/// moved into pages when the graph opens.
const LEGACY: u8 = b'm';
/// Entries per page at most.
pub(super) const PAGE_ENTRIES: usize = 2_048;
/// Index value of a hash that several keys share: look the key up in `shared`.
const SHARED: u32 = u32::MAX;

/// A well-mixed 64-bit hash of `key`, from `seed`.
fn mixed(key: &[u8], seed: u64) -> u64 {
    fn mix(mut x: u64) -> u64 {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let mut h = seed ^ key.len() as u64;
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

/// The hash the index is keyed by.
pub(super) fn index_hash(key: &[u8]) -> u64 {
    let h = mixed(key, 0x9e37_79b9_7f4a_7c15);
    #[cfg(test)]
    if FEW_HASHES.with(|f| f.get()) {
        // tests make many keys share a hash
        return h % 16;
    }
    h
}

#[cfg(test)]
thread_local! {
    /// Whether [`index_hash`] gives only 16 values on this thread.
    pub(super) static FEW_HASHES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A second, independent hash, to tell a key seen again from another key of its hash.
fn check_hash(key: &[u8]) -> u64 {
    mixed(key, 0x6a09_e667_f3bc_c909)
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
pub(super) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// What the book knows of a page.
#[derive(Debug, Clone, Default)]
pub(super) struct PageInfo {
    /// entries it holds
    entries: u32,
    /// entries of it that are markers (not dead)
    live: u32,
    /// systems it holds entries of
    pub(super) systems: Vec<Box<[u8]>>,
}

impl PageInfo {
    /// What a page of `keys` holds, `live` of them markers.
    fn of<'a>(keys: impl Iterator<Item = &'a [u8]>, live: u32) -> PageInfo {
        let mut systems: Vec<&[u8]> = keys.map(system_of).collect();
        let entries = systems.len() as u32;
        systems.sort_unstable();
        systems.dedup();
        PageInfo {
            entries,
            live,
            systems: systems.into_iter().map(Box::from).collect(),
        }
    }
}

/// Keys of a change placed so far in the index, by hash: where in the change's keys.
type Placed = HashMap<u64, usize, BuildHasherDefault<Prehashed>>;

/// A page's entries as kept by a change: keys and their markers' bytes.
pub(super) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a key's marker is, before a change.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Located {
    /// the graph holds no marker of it
    Absent,
    /// its marker is in this page
    At(u32),
    /// it has none, and another key of its hash holds the index's slot, in this page
    Beside {
        /// the page the other key's marker is in
        page: u32,
        /// the other key
        owner: Vec<u8>,
    },
}

/// The index of the graph's record markers, kept under its write lock.
#[derive(Default)]
pub(super) struct MarkerBook {
    /// the page of each key's marker, by the key's hash
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    /// the page of each key whose hash another key has
    shared: HashMap<Vec<u8>, u32>,
    /// every page, by number
    pub(super) pages: BTreeMap<u32, PageInfo>,
    /// the next page's number
    next: u32,
    /// a write failed and the index could not be read again from the store
    broken: bool,
}

impl MarkerBook {
    /// The index of the pages in `tree`, after moving the markers of older graphs into
    /// pages. Blocking, proportional to the markers held.
    pub(super) fn open(tree: &sled::Tree) -> Result<MarkerBook, GraphError> {
        let moved = move_legacy(tree)?;
        if moved > 0 {
            tracing::info!(
                markers = moved,
                "knowledge graph: moved record markers into pages"
            );
        }
        MarkerBook::load(tree)
    }

    /// The index read again from `tree` after a write to it failed (finishing the write's
    /// batch when its intent is there); unusable when that fails too.
    pub(super) fn reload(tree: &sled::Tree) -> MarkerBook {
        let read = crate::storage::logged_batch::recover(tree)
            .map_err(GraphError::from)
            .and_then(|_| MarkerBook::load(tree));
        match read {
            Ok(book) => book,
            Err(e) => {
                tracing::error!(error = %e, "knowledge graph: cannot read its record markers again after a failed write; restart the node");
                MarkerBook {
                    broken: true,
                    ..MarkerBook::default()
                }
            }
        }
    }

    /// Fails when the index cannot be trusted (see [`MarkerBook::reload`]).
    pub(super) fn check(&self) -> Result<(), GraphError> {
        if self.broken {
            return Err(GraphError::Task(
                "the graph's record markers could not be read again after a failed write; restart the node".to_string(),
            ));
        }
        Ok(())
    }

    /// The index built from the pages in `tree`.
    pub(super) fn load(tree: &sled::Tree) -> Result<MarkerBook, GraphError> {
        let mut book = MarkerBook::default();
        // the check hash of the key each index slot holds, while loading
        let mut checks: HashMap<u64, u64, BuildHasherDefault<Prehashed>> = HashMap::default();
        for item in tree.scan_prefix([PAGE]) {
            let (k, v) = item?;
            let seq = match <[u8; 4]>::try_from(&k[1..]) {
                Ok(b) => u32::from_be_bytes(b),
                Err(_) => {
                    return Err(GraphError::Decode {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        message: "not a marker page's key".to_string(),
                    })
                }
            };
            let page = decode_page(&k, v)?;
            for (key, _) in page.iter() {
                book.place_loaded(tree, key, seq, &mut checks)?;
            }
            book.pages
                .insert(seq, PageInfo::of(page.iter().map(|(k, _)| k), 0));
            book.next = seq.saturating_add(1);
        }
        let live = book.index.values().chain(book.shared.values());
        for seq in live.filter(|s| **s != SHARED) {
            if let Some(info) = book.pages.get_mut(seq) {
                info.live += 1;
            }
        }
        Ok(book)
    }

    /// Notes, while loading, that page `seq` holds `key` (pages come in ascending order).
    fn place_loaded(
        &mut self,
        tree: &sled::Tree,
        key: &[u8],
        seq: u32,
        checks: &mut HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    ) -> Result<(), GraphError> {
        let (h, check) = (index_hash(key), check_hash(key));
        match self.index.get(&h).copied() {
            None => {
                self.index.insert(h, seq);
                checks.insert(h, check);
            }
            Some(SHARED) => {
                self.shared.insert(key.to_vec(), seq);
            }
            Some(_) if checks.get(&h) == Some(&check) => {
                // the same key again, in a newer page
                self.index.insert(h, seq);
            }
            Some(page) => {
                let want = checks.get(&h).copied();
                let held = read_page(tree, page)?;
                let owner = held
                    .iter()
                    .map(|(k, _)| k)
                    .find(|k| index_hash(k) == h && Some(check_hash(k)) == want)
                    .ok_or_else(|| GraphError::Decode {
                        key: format!("marker page {page}"),
                        message: "a key the index was built from is not in it".to_string(),
                    })?;
                self.shared.insert(owner.to_vec(), page);
                self.shared.insert(key.to_vec(), seq);
                self.index.insert(h, SHARED);
                checks.remove(&h);
            }
        }
        Ok(())
    }

    /// The page `key`'s marker may be in.
    pub(super) fn candidate(&self, key: &[u8]) -> Option<u32> {
        match self.index.get(&index_hash(key)).copied() {
            Some(SHARED) => self.shared.get(key).copied(),
            other => other,
        }
    }

    /// Where `key` is, given page `page` that [`MarkerBook::candidate`] named and whether
    /// it holds the key.
    pub(super) fn located(&self, key: &[u8], page: &Page, seq: u32, held: bool) -> Located {
        if held {
            return Located::At(seq);
        }
        let h = index_hash(key);
        if self.index.get(&h) == Some(&SHARED) {
            // a shared key is found by its whole key: the candidate was its own page
            return Located::Absent;
        }
        match page.iter().map(|(k, _)| k).find(|k| index_hash(k) == h) {
            Some(owner) => Located::Beside {
                page: seq,
                owner: owner.to_vec(),
            },
            None => Located::Absent,
        }
    }

    /// Whether the entry of `key` in page `seq` is its marker.
    pub(super) fn is_live(&self, key: &[u8], seq: u32) -> bool {
        match self.index.get(&index_hash(key)).copied() {
            Some(SHARED) => self.shared.get(key) == Some(&seq),
            Some(s) => s == seq,
            None => false,
        }
    }

    /// Page numbers, in ascending order.
    pub(super) fn page_numbers(&self) -> Vec<u32> {
        self.pages.keys().copied().collect()
    }

    /// Writes `markers` (key, marker bytes; each key located before as `located` says)
    /// into new pages of `batch`, and rewrites or removes the pages most of whose entries
    /// they leave dead. `cached` reads a page that a location named. The index changes at
    /// once; if the batch is then not applied, reload the book.
    pub(super) fn write(
        &mut self,
        batch: &mut LoggedBatch,
        mut markers: Vec<(Vec<u8>, Vec<u8>)>,
        located: &HashMap<Vec<u8>, Located>,
        cached: &mut dyn FnMut(u32) -> Result<Page, GraphError>,
    ) -> Result<(), GraphError> {
        if markers.is_empty() {
            return Ok(());
        }
        self.check()?;
        markers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut dead: BTreeMap<u32, u32> = BTreeMap::new();
        // keys of this change placed so far, by hash
        let mut placed = Placed::default();
        for (c, chunk) in markers.chunks(PAGE_ENTRIES).enumerate() {
            let seq = self.next;
            self.next = self.next.checked_add(1).ok_or_else(|| {
                GraphError::Task("the graph has used every marker page number".to_string())
            })?;
            let bytes = Page::encode(chunk.iter().map(|(k, m)| (k.as_slice(), m.as_slice())))?;
            let keys = chunk.iter().map(|(k, _)| k.as_slice());
            self.pages
                .insert(seq, PageInfo::of(keys, chunk.len() as u32));
            batch.insert(page_key(seq).to_vec(), bytes);
            for (j, (key, _)) in chunk.iter().enumerate() {
                let at = located.get(key).unwrap_or(&Located::Absent);
                if let Located::At(old) = at {
                    *dead.entry(*old).or_default() += 1;
                }
                self.place(&markers, c * PAGE_ENTRIES + j, at, seq, &mut placed);
            }
        }
        for (seq, gone) in dead {
            let Some(info) = self.pages.get_mut(&seq) else {
                continue;
            };
            info.live = info.live.saturating_sub(gone);
            if info.live == 0 {
                self.pages.remove(&seq);
                batch.remove(page_key(seq).to_vec());
            } else if info.live * 2 < info.entries {
                let page = cached(seq)?;
                let keep: Vec<(&[u8], &[u8])> =
                    page.iter().filter(|(k, _)| self.is_live(k, seq)).collect();
                self.rewrite(batch, seq, &keep)?;
            }
        }
        Ok(())
    }

    /// Points the index at page `seq` for the key `all[mine]`, which was at `at` before
    /// this change; `placed` holds the keys of this change placed so far (indices into
    /// `all`, by hash).
    fn place(
        &mut self,
        all: &[(Vec<u8>, Vec<u8>)],
        mine: usize,
        at: &Located,
        seq: u32,
        placed: &mut Placed,
    ) {
        let key = all[mine].0.as_slice();
        let h = index_hash(key);
        let owner = match self.index.get(&h).copied() {
            None => {
                self.index.insert(h, seq);
                placed.insert(h, mine);
                return;
            }
            Some(SHARED) => {
                self.shared.insert(key.to_vec(), seq);
                return;
            }
            Some(page) => match (placed.get(&h), at) {
                // another key of this change took the slot
                (Some(i), _) => (all[*i].0.clone(), page),
                (None, Located::At(old)) if *old == page => {
                    self.index.insert(h, seq);
                    placed.insert(h, mine);
                    return;
                }
                (None, Located::Beside { owner, .. }) => (owner.clone(), page),
                // the slot's key is not known: not reached, as every key is located first
                (None, _) => {
                    self.index.insert(h, seq);
                    return;
                }
            },
        };
        self.shared.insert(owner.0, owner.1);
        self.shared.insert(key.to_vec(), seq);
        self.index.insert(h, SHARED);
    }

    /// Rewrites page `seq` in `batch` to hold only `keep` (removed when empty). Keys it
    /// no longer holds must be dead or be [`MarkerBook::forget`]ten by the caller.
    pub(super) fn rewrite(
        &mut self,
        batch: &mut LoggedBatch,
        seq: u32,
        keep: &[(&[u8], &[u8])],
    ) -> Result<(), GraphError> {
        if keep.is_empty() {
            self.pages.remove(&seq);
            batch.remove(page_key(seq).to_vec());
            return Ok(());
        }
        let bytes = Page::encode(keep.iter().copied())?;
        let live = keep.iter().filter(|(k, _)| self.is_live(k, seq)).count() as u32;
        let info = PageInfo::of(keep.iter().map(|(k, _)| *k), live);
        self.pages.insert(seq, info);
        batch.insert(page_key(seq).to_vec(), bytes);
        Ok(())
    }

    /// Forgets the marker of `key` in page `seq` (its entry is being removed).
    pub(super) fn forget(&mut self, key: &[u8], seq: u32) {
        let h = index_hash(key);
        match self.index.get(&h).copied() {
            Some(SHARED) if self.shared.get(key) == Some(&seq) => {
                self.shared.remove(key);
            }
            Some(s) if s == seq => {
                self.index.remove(&h);
            }
            _ => {}
        }
    }

    /// Markers the index holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.values().filter(|s| **s != SHARED).count() + self.shared.len()
    }
}

/// Moves the markers that graphs before pages kept under a key each into pages, a page
/// per logged batch (a crash leaves each marker either moved or not); answers how many.
fn move_legacy(tree: &sled::Tree) -> Result<usize, GraphError> {
    let mut next = match tree.scan_prefix([PAGE]).keys().next_back() {
        Some(k) => {
            let k = k?;
            <[u8; 4]>::try_from(&k[1..]).map_or(0, |b| u32::from_be_bytes(b).saturating_add(1))
        }
        None => 0,
    };
    let mut moved = 0;
    loop {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for item in tree.scan_prefix([LEGACY]).take(PAGE_ENTRIES) {
            let (k, v) = item?;
            let marker = Marker::decode(&k, &v)?;
            entries.push((k[1..].to_vec(), marker.to_bytes()));
        }
        if entries.is_empty() {
            return Ok(moved);
        }
        let mut batch = LoggedBatch::default();
        batch.insert(
            page_key(next).to_vec(),
            Page::encode(entries.iter().map(|(k, m)| (k.as_slice(), m.as_slice())))?,
        );
        for (k, _) in &entries {
            let mut legacy = Vec::with_capacity(k.len() + 1);
            legacy.push(LEGACY);
            legacy.extend_from_slice(k);
            batch.remove(legacy);
        }
        batch.apply(tree)?;
        moved += entries.len();
        next = next.saturating_add(1);
    }
}
