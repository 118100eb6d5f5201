//! The hot index's sealed segments on disk, one file each (`seg-NNNNNNNN.idx` in the
//! index directory), so that a restart reads graphs back instead of building them again.
//!
//! Format version 1, little-endian, followed by a CRC-32 of every byte before it:
//! magic `AKOSHAIX`, format version (u32), segment number (u32), the systems named in the
//! segment (count, then a u16 length and UTF-8 bytes each), the points (count, then per
//! point: stable id u64, shard u16, system as an index into that list u32, timestamp i64,
//! key as a u32 length and bytes), then the graph and vectors (`ann::persist`). A file is
//! written under a temporary name, synced and renamed, so a crash leaves either the whole
//! file or none. Once a segment is in its file (written, or read back) its f16 vectors are
//! read from there when a query rescores its candidates, not kept in memory. A file that fails any check is removed with a log line and never trusted:
//! its records are indexed again from their shards.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::record::SHARD_COUNT;
use crate::storage::ann::{AnnParams, GraphFileError, GrowingSegment};
use crate::storage::checked_io::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, CrcWriter};
use crate::storage::segment::{PointId, PointMeta, Segment};

/// First bytes of every segment file.
const MAGIC: &[u8; 8] = b"AKOSHAIX";
/// Version of the layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Longest record key a file may name (keys are a system and a conversation id).
const MAX_KEY: usize = 64 * 1024;

/// Why a segment file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SegmentFileError {
    /// the file could not be read or written
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// what failed
        source: io::Error,
    },
    /// the file does not start as a segment file does
    #[error("{path} is not an index segment file (expected magic AKOSHAIX)")]
    NotASegment {
        /// the file
        path: PathBuf,
    },
    /// the file is of another format version
    #[error("{path} has format version {found}, this build reads version {FORMAT_VERSION}")]
    Version {
        /// the file
        path: PathBuf,
        /// version in the file
        found: u32,
    },
    /// the checksum does not match the bytes
    #[error("{path} fails its checksum (damaged or cut short)")]
    Checksum {
        /// the file
        path: PathBuf,
    },
    /// the bytes pass the checksum but do not make a segment
    #[error("{path} is inconsistent: {reason}")]
    Invalid {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
    /// the graph part failed
    #[error("{path}: {source}")]
    Graph {
        /// the file
        path: PathBuf,
        /// what failed
        source: GraphFileError,
    },
}

/// The file of segment `number` in `dir`.
pub fn path_of(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("seg-{number:08}.idx"))
}

/// The segment number a file name stands for, if it is a segment file's name.
fn number_of(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?
        .strip_suffix(".idx")?
        .parse()
        .ok()
}

/// Segment files in `dir`, by number; unfinished temporary files are removed.
pub fn list(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".idx.tmp") {
            // a write cut short by a crash
            let _ = std::fs::remove_file(&path);
        } else if let Some(n) = number_of(name) {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a sealed segment's file in `dir`; `system_name` names each interned system code.
/// With `vectors_on_disk` the segment reads its f16 vectors from the file from then on.
/// Answers the bytes written.
pub fn write(
    dir: &Path,
    segment: &Segment,
    system_name: impl Fn(u32) -> Option<String>,
    vectors_on_disk: bool,
) -> Result<u64, SegmentFileError> {
    let path = path_of(dir, segment.id);
    let tmp = path.with_extension("idx.tmp");
    let io_err = |source| SegmentFileError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let file = File::create(&tmp).map_err(io_err)?;
    let mut w = CrcWriter::new(BufWriter::with_capacity(1 << 20, file));
    let written = write_body(&mut w, segment, system_name).map_err(|e| match e {
        BodyError::Io(source) => SegmentFileError::Io {
            path: path.clone(),
            source,
        },
        BodyError::Graph(source) => SegmentFileError::Graph {
            path: path.clone(),
            source,
        },
        BodyError::Invalid(reason) => SegmentFileError::Invalid {
            path: path.clone(),
            reason,
        },
    });
    let finished = written.and_then(|graph_at| {
        let file = w
            .finish()
            .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
            .map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        let bytes = file.metadata().map_err(io_err)?.len();
        std::fs::rename(&tmp, &path).map_err(io_err)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        if vectors_on_disk {
            segment.spill(File::open(&path).map_err(io_err)?, graph_at);
        }
        Ok(bytes)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    finished
}

/// What can go wrong inside a file, before the path is known to the error.
enum BodyError {
    Io(io::Error),
    Graph(GraphFileError),
    Invalid(String),
}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        BodyError::Io(e)
    }
}

/// Everything of the file before its checksum; answers where the graph starts.
fn write_body<W: Write>(
    w: &mut CrcWriter<W>,
    segment: &Segment,
    system_name: impl Fn(u32) -> Option<String>,
) -> Result<u64, BodyError> {
    w.write_all(MAGIC)?;
    put_u32(w, FORMAT_VERSION)?;
    put_u32(w, segment.id)?;
    segment.with_points(|meta, ids| {
        // the systems named, each once, by index
        let mut index: HashMap<u32, u32> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        for m in meta {
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry(m.system) {
                let name = system_name(m.system).ok_or_else(|| {
                    BodyError::Invalid(format!("system code {} has no name", m.system))
                })?;
                e.insert(names.len() as u32);
                names.push(name);
            }
        }
        put_u32(w, names.len() as u32)?;
        for name in &names {
            put_u16(w, name.len() as u16)?;
            w.write_all(name.as_bytes())?;
        }
        put_u64(w, meta.len() as u64)?;
        for (m, id) in meta.iter().zip(ids) {
            put_u64(w, *id)?;
            put_u16(w, m.shard)?;
            put_u32(w, index[&m.system])?;
            put_u64(w, m.timestamp as u64)?;
            put_u32(w, m.key.len() as u32)?;
            w.write_all(&m.key)?;
        }
        Ok::<(), BodyError>(())
    })?;
    let graph_at = w.written();
    segment.write_graph(w).map_err(BodyError::Graph)?;
    Ok(graph_at)
}

/// Reads a segment file back, checked end to end before any of it is used;
/// `system_code` interns each system name. Every point of the segment starts deleted (see
/// [`Segment::restored`]). With `vectors_on_disk` its f16 vectors stay in the file and are
/// read from there, else they are read into memory.
pub fn read(
    path: &Path,
    params: &AnnParams,
    system_code: impl FnMut(&str) -> u32,
    vectors_on_disk: bool,
) -> Result<Segment, SegmentFileError> {
    let path_buf = path.to_path_buf();
    let io_error = |source| SegmentFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let opened = File::open(path).map_err(io_error)?;
    // a file too short for a header cannot be mapped (an empty one) nor be a segment
    if opened.metadata().map_err(io_error)?.len() < (MAGIC.len() + 8) as u64 {
        return Err(SegmentFileError::NotASegment { path: path_buf });
    }
    // mapped, not read into a buffer: the checksum and the parse read the page cache in
    // place, and the f16 vectors, which stay in the file, are never copied
    // SAFETY: segment files are written under a temporary name and renamed into place,
    // never written again, only removed (which leaves a mapping valid); nothing else
    // writes the index directory
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&opened) }.map_err(io_error)?;
    let bytes: &[u8] = &map;
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SegmentFileError::NotASegment { path: path_buf });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 4]);
    let found = u32::from_le_bytes(version);
    if found != FORMAT_VERSION {
        return Err(SegmentFileError::Version {
            path: path_buf,
            found,
        });
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(stored);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(SegmentFileError::Checksum { path: path_buf });
    }
    let file = vectors_on_disk.then_some(opened);
    let mut r: &[u8] = &body[MAGIC.len() + 4..];
    let read = read_body(&mut r, body.len() as u64, file, params, system_code);
    let rest = r.len();
    match read {
        Ok(_) if rest > 0 => Err(SegmentFileError::Invalid {
            path: path_buf,
            reason: format!("{rest} bytes after the segment"),
        }),
        Ok(segment) => Ok(segment),
        Err(BodyError::Graph(source)) => Err(SegmentFileError::Graph {
            path: path_buf,
            source,
        }),
        Err(BodyError::Io(e)) => Err(SegmentFileError::Invalid {
            path: path_buf,
            reason: format!("it ends early ({e})"),
        }),
        Err(BodyError::Invalid(reason)) => Err(SegmentFileError::Invalid {
            path: path_buf,
            reason,
        }),
    }
}

/// The segment after the magic and version, from the `body_len` bytes of the file before
/// its checksum (with `file`, the graph's f16 vectors stay there).
fn read_body(
    r: &mut &[u8],
    body_len: u64,
    file: Option<File>,
    params: &AnnParams,
    mut system_code: impl FnMut(&str) -> u32,
) -> Result<Segment, BodyError> {
    let number = get_u32(r)?;
    let systems = get_u32(r)? as usize;
    let mut codes = Vec::with_capacity(systems.min(1 << 16));
    for _ in 0..systems {
        let len = get_u16(r)? as usize;
        let mut name = vec![0u8; len];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name)
            .map_err(|_| BodyError::Invalid("a system name is not UTF-8".into()))?;
        codes.push(system_code(&name));
    }
    let n = get_u64(r)? as usize;
    if n >= u32::MAX as usize {
        return Err(BodyError::Invalid(format!("{n} points")));
    }
    let mut entries: Vec<(PointMeta, PointId)> = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let id = get_u64(r)?;
        let shard = get_u16(r)?;
        let system = get_u32(r)? as usize;
        let timestamp = get_u64(r)? as i64;
        let key_len = get_u32(r)? as usize;
        if shard as usize >= SHARD_COUNT || system >= codes.len() || key_len > MAX_KEY {
            return Err(BodyError::Invalid(format!(
                "point {id} names shard {shard}, system {system} of {}, a key of {key_len} bytes",
                codes.len()
            )));
        }
        let mut key = vec![0u8; key_len];
        r.read_exact(&mut key)?;
        let meta = PointMeta {
            shard,
            system: codes[system],
            timestamp,
            key: key.into_boxed_slice(),
        };
        entries.push((meta, id));
    }
    let graph_at = body_len - r.len() as u64;
    let graph = GrowingSegment::read_from(r, params, file.map(|f| (f, graph_at)))
        .map_err(BodyError::Graph)?;
    Segment::restored(number, entries, graph).map_err(|e| BodyError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::hot_index::tests::vector;
    use std::sync::atomic::AtomicBool;

    fn meta(i: u64) -> PointMeta {
        PointMeta {
            shard: (i % 7) as u16,
            system: (i % 3) as u32,
            timestamp: i as i64 * 1_000,
            key: format!("sys{}/conv{i}", i % 3)
                .into_bytes()
                .into_boxed_slice(),
        }
    }

    /// A sealed segment of `n` points numbered 5, built as a merge builds one.
    fn sealed(n: u64) -> Segment {
        let entries = (0..n).map(|i| (meta(i), 1_000 + i)).collect();
        let stop = AtomicBool::new(false);
        Segment::merged(
            5,
            entries,
            |i| Some(vector(i as u64)),
            &AnnParams::default(),
            &stop,
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_segment_reads_back_whole_and_its_points_come_back_only_when_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let segment = sealed(300);
        let names = ["alpha", "beta", "gamma"];
        let bytes = write(
            dir.path(),
            &segment,
            |c| names.get(c as usize).map(|s| s.to_string()),
            false,
        )
        .unwrap();
        assert!(bytes > 300 * 1_000, "{bytes} bytes");
        assert_eq!(list(dir.path()).unwrap(), vec![(5, path_of(dir.path(), 5))]);

        // systems are interned again, here to other codes
        let back = read(
            &path_of(dir.path(), 5),
            &AnnParams::default(),
            |name| 10 + names.iter().position(|n| *n == name).unwrap() as u32,
            true,
        )
        .unwrap();
        assert_eq!(back.id, 5);
        assert_eq!(back.len(), 300);
        assert_eq!(back.live(), 0, "every point waits for its record");
        let moved = |i: u64| PointMeta {
            system: 10 + (i % 3) as u32,
            ..meta(i)
        };
        assert_eq!(back.adopt(7, &vector(7), &moved(7)), Some(1_007));
        // a second adoption of the same point, another vector, another time: refused
        assert_eq!(back.adopt(7, &vector(7), &moved(7)), None);
        assert_eq!(back.adopt(8, &vector(9), &moved(8)), None);
        let later = PointMeta {
            timestamp: 1,
            ..moved(9)
        };
        assert_eq!(back.adopt(9, &vector(9), &later), None);
        assert_eq!(back.live(), 1);
        // the graph answers as the original did
        for i in 0..300u64 {
            back.adopt(i as usize, &vector(i), &moved(i));
        }
        let (offset, score) = best_of(&back, &vector(123));
        assert_eq!(offset, 123);
        assert!((score - 1.0).abs() < 1e-3, "{score}");
    }

    /// The best point of a segment's search for `q`, rescored from its stored vectors.
    fn best_of(segment: &Segment, q: &[f32]) -> (u32, f32) {
        let mut exact = crate::storage::distance::TopK::new(1);
        let mut approx = crate::storage::distance::TopK::new(8);
        let filter = crate::storage::segment::IndexFilter::default();
        segment.search(q, 1, 64, &filter, &mut exact, &mut approx);
        assert!(
            exact.into_sorted().is_empty(),
            "every point is in the graph"
        );
        let offsets: Vec<u32> = approx
            .into_sorted()
            .iter()
            .map(|c| (c.id & 0xffff_ffff) as u32)
            .collect();
        let scores = segment.rescore(q, &offsets);
        offsets
            .into_iter()
            .zip(scores)
            .map(|(o, s)| (o, s.expect("every candidate is scored")))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("candidates")
    }

    #[test]
    fn a_written_segment_reads_its_vectors_from_the_file_even_once_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let segment = sealed(3_000);
        let in_memory = segment.memory_bytes();
        let before: Vec<Option<f32>> = segment.rescore(&vector(42), &[0, 42, 2_999]);
        write(dir.path(), &segment, |c| Some(format!("s{c}")), true).unwrap();
        let spilled = segment.memory_bytes();
        assert!(
            in_memory - spilled >= 3_000 * 384 * 2 - 3_000 * 8,
            "the f16 vectors left memory: {in_memory} -> {spilled} bytes"
        );
        // the same scores, now read from the file; still so once a merge has removed it
        assert_eq!(segment.rescore(&vector(42), &[0, 42, 2_999]), before);
        std::fs::remove_file(path_of(dir.path(), 5)).unwrap();
        assert_eq!(segment.rescore(&vector(42), &[0, 42, 2_999]), before);
        assert_eq!(best_of(&segment, &vector(42)).0, 42);
        let v = segment.vector(42).unwrap();
        assert!((crate::storage::distance::dot(&v, &vector(42)) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn a_damaged_cut_or_foreign_file_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let segment = sealed(200);
        write(dir.path(), &segment, |c| Some(format!("s{c}")), false).unwrap();
        assert!(
            segment.memory_bytes() > 200 * 384 * 3,
            "vectors kept in memory"
        );
        let path = path_of(dir.path(), 5);
        let good = std::fs::read(&path).unwrap();
        let code = |_: &str| 0u32;
        let params = AnnParams::default();

        let mut flipped = good.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let e = read(&path, &params, code, true).err().unwrap();
        assert!(matches!(e, SegmentFileError::Checksum { .. }), "{e}");

        std::fs::write(&path, &good[..good.len() - 1_000]).unwrap();
        let e = read(&path, &params, code, true).err().unwrap();
        assert!(matches!(e, SegmentFileError::Checksum { .. }), "{e}");

        std::fs::write(&path, b"PAR1 not an index file at all").unwrap();
        let e = read(&path, &params, code, true).err().unwrap();
        assert!(matches!(e, SegmentFileError::NotASegment { .. }), "{e}");

        // too short for a header, down to empty (which cannot be mapped)
        for short in [&good[..10], &b""[..]] {
            std::fs::write(&path, short).unwrap();
            let e = read(&path, &params, code, true).err().unwrap();
            assert!(matches!(e, SegmentFileError::NotASegment { .. }), "{e}");
        }

        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let e = read(&path, &params, code, true).err().unwrap();
        assert!(e.to_string().contains("format version 2"), "{e}");

        // other index settings: the graph is not used
        std::fs::write(&path, &good).unwrap();
        let other = AnnParams {
            m: 8,
            ..AnnParams::default()
        };
        let e = read(&path, &other, code, true).err().unwrap();
        assert!(e.to_string().contains("other settings"), "{e}");
        assert!(read(&path, &params, code, true).is_ok());

        // a temporary file left by a crash is cleared away
        std::fs::write(dir.path().join("seg-00000009.idx.tmp"), b"half").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        assert!(!dir.path().join("seg-00000009.idx.tmp").exists());
    }
}
