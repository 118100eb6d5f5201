//! Approximate nearest-neighbour search for global queries over a node's hot records.
//!
//! Vectors are L2-normalised, so cosine similarity is the inner product. A node indexes its
//! records in segments that span shards: one [`GrowingSegment`] takes new records (an HNSW
//! graph built by insertion, searchable while it grows, so there is no exactly-scanned
//! buffer), and when it is full it becomes an immutable [`SealedSegment`] (no copy, no
//! rebuild). [`SealedSegment::build`] builds a segment from a batch on several threads, for
//! rebuilding after a restart. A global query searches every segment and the caller merges
//! the results (the hot index's top-k); the `keep` filter of each search drops replaced or deleted records
//! and shards the node does not own: rejected points are walked through but never returned,
//! and a segment whose sample passes the filter less than `exact_fraction` is scanned exactly.
//!
//! Memory per point at 384 d: int8 codes 384 B (the graph walk), f16 copy 768 B (exact
//! rescoring of the best candidates), level-0 links 132 B, label and bookkeeping ~20 B:
//! about 1.3 KB, 1.26 GiB for 1M points. Once a segment is in its file
//! ([`GrowingSegment::spill`]) its f16 copies are read from there and leave memory: about
//! 0.55 KB resident per point.
//!
//! Measured on the 2-core benchmark machine at 1M points (a stand-alone index benchmark; `benches/search.rs` measures the whole node): segments
//! of [`DEFAULT_SEGMENT_CAPACITY`] with m 16 and ef_construction 24 build at 21-27k
//! points per CPU-second on one thread, and ef 48 gives recall@10 0.956 over all 20
//! segments for 2.5 ms of CPU per query. The walk is bound by memory latency, so what
//! matters is how many cache lines a search touches, hence the int8 codes.
//!
//! Files: `distance.rs` (f32 dot product), `quant.rs` (int8 and f16 encodings and kernels),
//! `rows.rs` (write-once vector storage), `graph.rs` (the HNSW graph), `scan.rs`
//! (rescoring and int8 scans), `scratch.rs`
//! (per-thread search memory), `segment.rs` (the public segments), `mem.rs` (huge pages),
//! `persist.rs` (a full segment's graph as bytes).

mod distance;
mod graph;
mod mem;
mod persist;
mod quant;
mod rows;
mod scan;
mod scratch;
mod segment;

pub use distance::{dot, dot_kernel, dot_scalar, kernel_name, DotFn};
pub use persist::GraphFileError;
pub use quant::{f16_to_f32, f32_to_f16, quant_kernels, quantize, QuantKernels};
pub use segment::{GrowingSegment, SealedSegment};

use std::fmt;

/// Instruction sets chosen at run time, e.g. "f32 avx512, int8/f16 avx512bw".
pub fn kernel_names() -> String {
    format!(
        "f32 {}, int8/f16 {}",
        kernel_name(),
        quant::quant_kernels().name
    )
}

/// Dimension of Akosha's embeddings.
pub const DIM: usize = 384;

/// Points per segment: small enough that one thread inserts faster than 20k points/s (the
/// graph's working set stays partly in cache), large enough that a query over 1M points
/// searches only 20 segments.
pub const DEFAULT_SEGMENT_CAPACITY: usize = 50_000;

/// Search beam per segment for recall@10 ≈ 0.97 at 1M points in default segments.
pub const DEFAULT_EF_SEARCH: usize = 64;

/// Index parameters; [`AnnParams::default`] gives the measured defaults.
#[derive(Clone, Debug)]
pub struct AnnParams {
    /// Floats per vector.
    pub dim: usize,
    /// Links per node above level 0; level 0 keeps `2 * m`.
    pub m: usize,
    /// Beam width while inserting; higher builds slower and searches better.
    pub ef_construction: usize,
    /// Threads used by [`SealedSegment::build`] (1 for background sealing).
    pub build_threads: usize,
    /// Seed of the level generator (same seed and order of inserts give the same graph).
    pub seed: u64,
    /// A search scans the segment exactly when the `keep` filter passes fewer than this
    /// fraction of a sample of its points (a graph walk would visit too many rejected ones).
    pub exact_fraction: f32,
    /// A segment with at most this many points is always scanned exactly.
    pub exact_below: usize,
    /// Largest vector component kept exactly by the int8 codes used to walk the graph;
    /// larger ones clip. `None`: 6 standard deviations of a random unit vector's component,
    /// `6 / sqrt(dim)` (0.31 at 384 dimensions).
    pub code_range: Option<f32>,
    /// Best candidates of a segment's walk or scan (by their int8 codes) kept to be
    /// rescored against the stored vectors (at least `k`; 0: all `ef` of them).
    pub rescore: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            dim: DIM,
            m: 16,
            ef_construction: 24,
            build_threads: 1,
            seed: 7,
            exact_fraction: 0.15,
            exact_below: 2_048,
            code_range: None,
            rescore: 24,
        }
    }
}

impl AnnParams {
    /// Codes per unit of a component: the int8 code of `x` is `round(x * code_scale())`.
    pub fn code_scale(&self) -> f32 {
        let range = self
            .code_range
            .unwrap_or(6.0 / (self.dim.max(1) as f32).sqrt());
        quant::CODE_MAX / range
    }

    /// The int8 codes of a query, as the graphs' codes are made.
    pub fn query_code(&self, query: &[f32]) -> Vec<i8> {
        let mut code = vec![0i8; query.len()];
        quant::quantize(query, self.code_scale(), &mut code);
        code
    }

    /// Checks that the parameters make sense.
    pub fn validate(&self) -> Result<(), AnnError> {
        if self.dim == 0 {
            return Err(AnnError::BadParams("dim must be positive"));
        }
        if !(2..=256).contains(&self.m) {
            return Err(AnnError::BadParams("m must be within 2..=256"));
        }
        if self.code_range.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(AnnError::BadParams("code_range must be positive"));
        }
        if self.ef_construction == 0 {
            return Err(AnnError::BadParams("ef_construction must be positive"));
        }
        Ok(())
    }
}

/// Why an index operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnError {
    /// A vector or batch does not have the expected number of floats (caller's input).
    BadLength {
        /// Floats expected.
        expected: usize,
        /// Floats given.
        got: usize,
    },
    /// Parameters out of range (caller's configuration).
    BadParams(&'static str),
    /// The growing segment has no free slot: seal it and start another.
    Full,
    /// The growing segment was sealed: insert into its successor.
    Sealed,
    /// More slots than 32-bit slot ids can address.
    TooLarge {
        /// Slots asked for.
        slots: usize,
    },
}

impl fmt::Display for AnnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnError::BadLength { expected, got } => {
                write!(
                    f,
                    "vector length {got} does not match the expected {expected}"
                )
            }
            AnnError::BadParams(why) => write!(f, "bad index parameters: {why}"),
            AnnError::Full => write!(f, "growing segment is full"),
            AnnError::Sealed => write!(f, "segment is sealed"),
            AnnError::TooLarge { slots } => write!(f, "segment of {slots} slots is too large"),
        }
    }
}

impl std::error::Error for AnnError {}

#[cfg(test)]
mod tests;
