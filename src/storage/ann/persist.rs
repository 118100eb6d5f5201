//! A full segment's graph and vectors as bytes, written once the segment takes no more
//! points and read back at start instead of building the graph again. The caller frames the
//! bytes (format version, checksum); what is read is checked before it is trusted, since a
//! link out of range would send a walk outside the segment.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::graph::{atomic_zeroed, Graph, EMPTY};
use super::mem::advise_huge_pages;
use super::quant::quant_kernels;
use super::rows::{into_cells, Halves, Rows};
use super::AnnParams;
use crate::storage::checked_io::{fill, get_u32, get_u64, put_all, put_u32, put_u64};
use parking_lot::RwLock;

/// Bytes before the levels: points, dim, m, code scale, entry, upper link count.
const HEADER_BYTES: usize = 8 + 4 + 4 + 4 + 8 + 8;

/// Highest level a slot can be at (as drawn by [`Graph::new`]).
const MAX_LEVEL: u8 = 15;

/// Why a graph could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum GraphFileError {
    /// the bytes could not be read or written
    #[error("cannot read or write a segment graph: {0}")]
    Io(#[from] io::Error),
    /// the graph was made with other settings than the index has now
    #[error("segment graph made with other settings: {0}")]
    Settings(String),
    /// the bytes do not describe a valid graph
    #[error("segment graph is inconsistent: {0}")]
    Invalid(String),
    /// the graph is still taking points
    #[error("segment graph is not full: {inserted} of {capacity} points inserted")]
    NotFull {
        /// points inserted
        inserted: usize,
        /// slots
        capacity: usize,
    },
}

impl Graph {
    /// Writes every slot's levels, links, codes, f16 vectors and label; the graph must be
    /// full (every slot inserted), so nothing changes while it is written.
    pub(super) fn write_to(&self, w: &mut dyn Write) -> Result<(), GraphFileError> {
        let n = self.rows.cap();
        if self.inserted() < n || !self.rows.ready.iter().all(|r| r.load(Ordering::Acquire)) {
            return Err(GraphFileError::NotFull {
                inserted: self.inserted(),
                capacity: n,
            });
        }
        put_u64(w, n as u64)?;
        put_u32(w, self.rows.dim as u32)?;
        put_u32(w, self.m as u32)?;
        put_u32(w, self.rows.scale.to_bits())?;
        put_u64(w, self.entry.load(Ordering::Acquire))?;
        put_u64(w, self.upper.len() as u64)?;
        w.write_all(&self.levels)?;
        let atomics = |a: &AtomicU32| a.load(Ordering::Acquire);
        put_all(w, self.links0.iter().map(atomics), u32::to_le_bytes)?;
        put_all(w, self.upper.iter().map(atomics), u32::to_le_bytes)?;
        // SAFETY: every slot is written and published (checked above) and never written again
        unsafe {
            let codes = std::slice::from_raw_parts(
                self.rows.codes.as_ptr() as *const u8,
                self.rows.codes.len(),
            );
            w.write_all(codes)?;
            let mut halves = Vec::new();
            let slots: Vec<u32> = (0..n as u32).collect();
            for chunk in slots.chunks(1024) {
                halves.clear();
                self.rows.halves_into(chunk, &mut halves)?;
                put_all(w, halves.iter().copied(), u16::to_le_bytes)?;
            }
            let labels = std::slice::from_raw_parts(
                self.rows.labels.as_ptr() as *const u64,
                self.rows.labels.len(),
            );
            put_all(w, labels.iter().copied(), u64::to_le_bytes)?;
        }
        Ok(())
    }

    /// Byte offset of the f16 vectors in what [`Graph::write_to`] writes.
    pub(super) fn halves_offset(&self) -> u64 {
        (HEADER_BYTES
            + self.levels.len()
            + (self.links0.len() + self.upper.len()) * 4
            + self.rows.codes.len()) as u64
    }

    /// Reads a graph written by [`Graph::write_to`] with the same settings, every slot
    /// inserted; its links are checked to stay inside the graph. With `file` (the file the
    /// bytes come from, and where in it they start) the f16 vectors are left there and read
    /// on demand, else they are read into memory.
    pub(super) fn read_from(
        r: &mut dyn Read,
        params: &AnnParams,
        file: Option<(File, u64)>,
    ) -> Result<Graph, GraphFileError> {
        params
            .validate()
            .map_err(|e| GraphFileError::Settings(e.to_string()))?;
        let n = get_u64(r)? as usize;
        let dim = get_u32(r)? as usize;
        let m = get_u32(r)? as usize;
        let scale = f32::from_bits(get_u32(r)?);
        let entry = get_u64(r)?;
        let upper_len = get_u64(r)? as usize;
        if dim != params.dim || m != params.m || scale != params.code_scale() {
            return Err(GraphFileError::Settings(format!(
                "expected dim {}, m {}, code scale {}; the file has dim {dim}, m {m}, code scale {scale}",
                params.dim,
                params.m,
                params.code_scale()
            )));
        }
        let m0 = 2 * m;
        let too_large = n >= u32::MAX as usize
            || n.checked_mul(m0 + 1).is_none()
            || n.checked_mul(dim * 2).is_none()
            || upper_len > n.saturating_mul(MAX_LEVEL as usize * (m + 1));
        if too_large {
            return Err(GraphFileError::Invalid(format!(
                "{n} points with {upper_len} upper links is more than a segment holds"
            )));
        }
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels)?;
        let mut upper_off = Vec::with_capacity(n);
        let mut total = 0usize;
        for level in &levels {
            if *level > MAX_LEVEL {
                return Err(GraphFileError::Invalid(format!(
                    "level {level} above {MAX_LEVEL}"
                )));
            }
            upper_off.push(total);
            total += *level as usize * (m + 1);
        }
        if total != upper_len {
            return Err(GraphFileError::Invalid(format!(
                "levels need {total} upper links, the file has {upper_len}"
            )));
        }
        let links0 = read_links(r, n * (m0 + 1), m0 + 1, n)?;
        let upper = read_links(r, upper_len, m + 1, n)?;
        if entry != EMPTY {
            let (slot, level) = ((entry & 0xffff_ffff) as usize, (entry >> 32) as usize);
            if slot >= n || levels[slot] as usize != level {
                return Err(GraphFileError::Invalid(format!(
                    "entry point {slot} at level {level} is not a slot of the graph"
                )));
            }
        } else if n > 0 {
            return Err(GraphFileError::Invalid(format!(
                "{n} points but no entry point"
            )));
        }
        let halves_at = file.map(|(f, start)| {
            let at = start + (HEADER_BYTES + n + (links0.len() + upper.len()) * 4 + n * dim) as u64;
            (f, at)
        });
        let rows = read_rows(r, n, dim, scale, halves_at)?;
        Ok(Graph {
            m,
            m0,
            ef_construction: params.ef_construction.max(m),
            levels: levels.into_boxed_slice(),
            upper_off: upper_off.into_boxed_slice(),
            links0,
            upper,
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            entry: AtomicU64::new(entry),
            top_lock: Mutex::new(()),
            inserted: AtomicUsize::new(n),
            kern: quant_kernels(),
            rows,
        })
    }
}

/// Reads `len` link words in blocks of `block` (a count, then ids): each count must fit its
/// block and each id be a slot below `slots`.
fn read_links(
    r: &mut dyn Read,
    len: usize,
    block: usize,
    slots: usize,
) -> Result<Box<[AtomicU32]>, GraphFileError> {
    let mut words = atomic_zeroed(len);
    // SAFETY: nothing else holds `words` yet; AtomicU32 has the layout of u32
    let plain =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u32, words.len()) };
    fill(r, plain, u32::from_le_bytes)?;
    for b in plain.chunks_exact(block) {
        let count = b[0] as usize;
        if count >= block || b[1..=count].iter().any(|id| *id as usize >= slots) {
            return Err(GraphFileError::Invalid(
                "a link list is longer than its block or names a slot outside the graph".into(),
            ));
        }
    }
    Ok(words)
}

/// Reads the codes, f16 vectors and labels of `n` slots, every one of them ready; with
/// `file`, the f16 vectors are skipped and read from there (at its offset) when needed.
fn read_rows(
    r: &mut dyn Read,
    n: usize,
    dim: usize,
    scale: f32,
    file: Option<(File, u64)>,
) -> Result<Rows, GraphFileError> {
    let mut codes = vec![0i8; n * dim].into_boxed_slice();
    advise_huge_pages(&codes);
    // SAFETY: i8 and u8 have the same layout
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(codes.as_mut_ptr() as *mut u8, codes.len()) };
    r.read_exact(bytes)?;
    let halves = match file {
        None => {
            let mut halves = vec![0u16; n * dim].into_boxed_slice();
            advise_huge_pages(&halves);
            fill(r, &mut halves, u16::from_le_bytes)?;
            Halves::Memory(into_cells(halves))
        }
        Some((file, offset)) => {
            let len = (n * dim * 2) as u64;
            if io::copy(&mut Read::take(&mut *r, len), &mut io::sink())? < len {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            Halves::File { file, offset }
        }
    };
    let mut labels = vec![0u64; n].into_boxed_slice();
    fill(r, &mut labels, u64::from_le_bytes)?;
    Ok(Rows {
        dim,
        scale,
        codes: into_cells(codes),
        halves: RwLock::new(halves),
        labels: into_cells(labels),
        ready: (0..n).map(|_| AtomicBool::new(true)).collect(),
    })
}
