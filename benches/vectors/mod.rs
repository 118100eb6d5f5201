//! Reading the files `shared/bench/vectors.py` writes.
#![allow(dead_code)]

use std::path::Path;

/// Reads a little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Reads a little-endian u32 file.
pub fn read_u32(path: &Path) -> Vec<u32> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The system id of a system index, as vectors.py names them.
pub fn system_id(s: u32) -> String {
    format!("sys-{s:05}")
}
