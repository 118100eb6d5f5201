//! Write-once storage of a segment's vectors (int8 codes and f16 copies) and labels.
//!
//! The int8 codes stay in memory: every step of a graph walk reads them. The f16 copies are
//! read only to rescore a query's few best candidates, so once a segment is in its file they
//! are read from there (the OS page cache) and their memory is given back: at 384
//! dimensions that is 768 of a point's ~1,300 resident bytes.
//!
//! A growing segment is searched while it is written to, without a lock on the read path:
//! each slot is claimed by exactly one writer, written once, and only then published (marked
//! ready, then linked into the graph with release stores). A reader reaches a slot only
//! through an acquire load of that publication, so it never sees a slot being written.

use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use super::mem::advise_huge_pages;
use super::quant::{f16_to_f32, f32_to_f16, quantize};

/// Vectors (row-major, `dim` values per slot), labels and readiness of a fixed number of slots.
pub(crate) struct Rows {
    /// Values per vector.
    pub(super) dim: usize,
    /// Codes per unit of a vector component (int8 code = round(x * scale)).
    pub(super) scale: f32,
    /// `cap * dim` int8 codes, for the graph walk; written once, before the slot is published.
    pub(super) codes: Box<[UnsafeCell<i8>]>,
    /// The f16 copies (raw bits), for rescoring; written with the codes.
    pub(super) halves: RwLock<Halves>,
    /// Caller-chosen label of each slot, written with the slot's vector.
    pub(super) labels: Box<[UnsafeCell<u64>]>,
    /// Set (release) once a slot's vector and label are written.
    pub(super) ready: Box<[AtomicBool]>,
}

// SAFETY: the cells are written only through `write`, whose contract gives one writer per slot
// and no reader before the slot is published; published slots are never written again.
unsafe impl Sync for Rows {}

/// Where a segment's f16 copies are.
pub(crate) enum Halves {
    /// Not kept (a codes-only graph, rescored elsewhere).
    None,
    /// In memory: `cap * dim` values, each slot written once before it is published.
    Memory(Box<[UnsafeCell<u16>]>),
    /// In the segment's file, `cap * dim` little-endian values from byte `offset`.
    File {
        /// the segment file, open for reading (it stays readable after a merge unlinks it)
        file: File,
        /// byte offset of slot 0's values
        offset: u64,
    },
}

/// Reinterprets a boxed slice as a slice of `UnsafeCell`s, which have the same layout.
pub(super) fn into_cells<T>(b: Box<[T]>) -> Box<[UnsafeCell<T>]> {
    // SAFETY: UnsafeCell<T> is repr(transparent) over T, so the slice layouts are identical.
    unsafe { Box::from_raw(Box::into_raw(b) as *mut [UnsafeCell<T>]) }
}

impl Rows {
    /// Empty storage for `cap` slots; the memory is zeroed lazily by the OS, so unused
    /// capacity costs address space, not resident memory.
    pub fn with_capacity(dim: usize, cap: usize, scale: f32) -> Self {
        Self::allocate(dim, cap, scale, true)
    }

    /// Empty storage for `cap` slots that keeps only int8 codes, no f16 copies: for graphs
    /// whose candidates are rescored elsewhere ([`Rows::halves_into`] fails).
    pub fn codes_only(dim: usize, cap: usize, scale: f32) -> Self {
        Self::allocate(dim, cap, scale, false)
    }

    fn allocate(dim: usize, cap: usize, scale: f32, halves: bool) -> Self {
        let codes = vec![0i8; cap * dim].into_boxed_slice();
        advise_huge_pages(&codes);
        let halves = if halves {
            let h = vec![0u16; cap * dim].into_boxed_slice();
            advise_huge_pages(&h);
            Halves::Memory(into_cells(h))
        } else {
            Halves::None
        };
        Rows {
            dim,
            scale,
            codes: into_cells(codes),
            halves: RwLock::new(halves),
            labels: into_cells(vec![0u64; cap].into_boxed_slice()),
            ready: (0..cap).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Storage holding `labels.len()` vectors (row-major in `vectors`); every slot is ready.
    pub fn from_vecs(dim: usize, scale: f32, labels: &[u64], vectors: &[f32]) -> Self {
        let rows = Rows::with_capacity(dim, labels.len(), scale);
        for (i, (label, v)) in labels.iter().zip(vectors.chunks_exact(dim)).enumerate() {
            // SAFETY: `rows` is not shared yet; each slot is written once.
            unsafe { rows.write(i, *label, v) };
        }
        rows
    }

    /// Number of slots.
    pub fn cap(&self) -> usize {
        self.labels.len()
    }

    /// Floats per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Writes slot `i` and publishes it as ready.
    ///
    /// # Safety
    /// The caller has claimed slot `i` exclusively (no other writer, ever) and no reader can
    /// reach it before this call returns. `i < cap` and `v.len() == dim`.
    pub unsafe fn write(&self, i: usize, label: u64, v: &[f32]) {
        let start = i * self.dim;
        let cells = &self.codes[start..start + self.dim];
        // SAFETY: exclusive access to this slot per the contract; UnsafeCell<i8> has i8's layout.
        let codes = unsafe {
            std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), self.dim)
        };
        quantize(v, self.scale, codes);
        if let Halves::Memory(halves) = &*self.halves.read() {
            let cells = halves.get(start..start + self.dim).unwrap_or(&[]);
            for (cell, x) in cells.iter().zip(v) {
                // SAFETY: exclusive access to this slot per the contract.
                unsafe { *cell.get() = f32_to_f16(*x) };
            }
        }
        // SAFETY: as above.
        unsafe { *self.labels[i].get() = label };
        self.ready[i].store(true, Ordering::Release);
    }

    /// Whether slot `i` is written (acquire: its data may be read afterwards).
    #[inline]
    pub fn is_ready(&self, i: usize) -> bool {
        self.ready.get(i).is_some_and(|r| r.load(Ordering::Acquire))
    }

    /// The int8 codes of a published slot.
    ///
    /// # Safety
    /// Slot `i` is published: `is_ready(i)` returned true on this thread, or `i` was read from
    /// a graph link with acquire ordering (links are stored after the slot is written).
    #[inline]
    pub unsafe fn code(&self, i: usize) -> &[i8] {
        let cells = &self.codes[i * self.dim..(i + 1) * self.dim];
        // SAFETY: UnsafeCell<i8> has the layout of i8 and the slot is no longer written.
        unsafe { std::slice::from_raw_parts(cells.as_ptr() as *const i8, self.dim) }
    }

    /// Appends the f16 values (raw bits) of each published slot in `slots` to `out`, read
    /// from memory or from the segment's file.
    ///
    /// # Safety
    /// Every slot is published (same contract as [`Rows::code`]).
    pub unsafe fn halves_into(&self, slots: &[u32], out: &mut Vec<u16>) -> io::Result<()> {
        let dim = self.dim;
        match &*self.halves.read() {
            Halves::None => Err(io::Error::other("this graph keeps no f16 vectors")),
            Halves::Memory(cells) => {
                for &i in slots {
                    let i = i as usize;
                    let slot = cells.get(i * dim..(i + 1) * dim).ok_or_else(|| {
                        io::Error::other(format!("slot {i} is outside the segment"))
                    })?;
                    // SAFETY: UnsafeCell<u16> has the layout of u16 and the slot is no
                    // longer written (published, per the contract).
                    out.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(slot.as_ptr() as *const u16, dim)
                    });
                }
                Ok(())
            }
            Halves::File { file, offset } => {
                let mut bytes = vec![0u8; dim * 2];
                for &i in slots {
                    if i as usize >= self.cap() {
                        return Err(io::Error::other(format!("slot {i} is outside the segment")));
                    }
                    file.read_exact_at(&mut bytes, offset + i as u64 * (dim as u64 * 2))?;
                    out.extend(
                        bytes
                            .chunks_exact(2)
                            .map(|b| u16::from_le_bytes([b[0], b[1]])),
                    );
                }
                Ok(())
            }
        }
    }

    /// The vector of a published slot, widened back to f32 (`None` if it cannot be read).
    ///
    /// # Safety
    /// Same contract as [`Rows::code`].
    pub unsafe fn vector(&self, i: usize) -> Option<Vec<f32>> {
        let mut h = Vec::with_capacity(self.dim);
        // SAFETY: forwarded contract.
        match unsafe { self.halves_into(&[i as u32], &mut h) } {
            Ok(()) => Some(h.into_iter().map(f16_to_f32).collect()),
            Err(e) => {
                tracing::error!(slot = i, error = %e, "cannot read a stored vector");
                None
            }
        }
    }

    /// Whether a published slot holds `v` as kept (each component rounded to f16); false
    /// when its vector cannot be read.
    ///
    /// # Safety
    /// Same contract as [`Rows::code`].
    pub unsafe fn holds(&self, i: usize, v: &[f32]) -> bool {
        let mut kept = Vec::with_capacity(self.dim);
        // SAFETY: forwarded contract.
        let read = unsafe { self.halves_into(&[i as u32], &mut kept) };
        read.is_ok()
            && kept.len() == v.len()
            && kept.iter().zip(v).all(|(h, x)| *h == f32_to_f16(*x))
    }

    /// Reads the f16 copies from `file` (where they were written, from byte `offset`) from now
    /// on, and gives back their memory. For a full segment whose file is written.
    pub fn spill(&self, file: File, offset: u64) {
        *self.halves.write() = Halves::File { file, offset };
    }

    /// Raw address of slot `i`'s codes, for prefetching (never dereferenced).
    #[inline]
    pub fn code_ptr(&self, i: usize) -> *const i8 {
        self.codes
            .get(i * self.dim)
            .map_or(std::ptr::null(), |c| c.get() as *const i8)
    }

    /// Raw address of slot `i`'s label, for prefetching (never dereferenced).
    #[inline]
    pub fn label_ptr(&self, i: usize) -> *const u64 {
        self.labels
            .get(i)
            .map_or(std::ptr::null(), |c| c.get() as *const u64)
    }

    /// The label of a published slot.
    ///
    /// # Safety
    /// Same contract as [`Rows::vector`].
    #[inline]
    pub unsafe fn label(&self, i: usize) -> u64 {
        // SAFETY: published slots are no longer written.
        unsafe { *self.labels[i].get() }
    }

    /// Bytes held in memory by the vectors, labels and flags (capacity, not only written
    /// slots).
    pub fn bytes(&self) -> usize {
        let halves = match &*self.halves.read() {
            Halves::None => 0,
            Halves::Memory(cells) => cells.len() * 2,
            Halves::File { .. } => 0,
        };
        self.codes.len() + halves + self.labels.len() * 9
    }
}
