//! A writer that keeps a CRC-32 of what passes through it, and little-endian primitives
//! written and read: the framing of the index's segment files.

use std::io::{self, Read, Write};

/// A writer that keeps the CRC-32 of every byte written.
pub struct CrcWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the CRC of everything so far (not itself part of it) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let crc = self.hasher.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a `u16`, little-endian.
pub fn put_u16(w: &mut dyn Write, v: u16) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

/// Writes a `u32`, little-endian.
pub fn put_u32(w: &mut dyn Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

/// Writes a `u64`, little-endian.
pub fn put_u64(w: &mut dyn Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

/// Reads `N` bytes.
fn get<const N: usize>(r: &mut dyn Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads a little-endian `u16`.
pub fn get_u16(r: &mut dyn Read) -> io::Result<u16> {
    get(r).map(u16::from_le_bytes)
}

/// Reads a little-endian `u32`.
pub fn get_u32(r: &mut dyn Read) -> io::Result<u32> {
    get(r).map(u32::from_le_bytes)
}

/// Reads a little-endian `u64`.
pub fn get_u64(r: &mut dyn Read) -> io::Result<u64> {
    get(r).map(u64::from_le_bytes)
}

/// Writes values of a fixed width through a buffer, `to_bytes` encoding each one.
pub fn put_all<T: Copy, const N: usize>(
    w: &mut dyn Write,
    values: impl Iterator<Item = T>,
    to_bytes: impl Fn(T) -> [u8; N],
) -> io::Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf = Vec::with_capacity(CHUNK + N);
    for v in values {
        buf.extend_from_slice(&to_bytes(v));
        if buf.len() >= CHUNK {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

/// Fills `out` with values of `N` bytes each, `from_bytes` decoding each one.
pub fn fill<T, const N: usize>(
    r: &mut dyn Read,
    out: &mut [T],
    from_bytes: impl Fn([u8; N]) -> T,
) -> io::Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf = vec![0u8; CHUNK / N * N];
    for part in out.chunks_mut(CHUNK / N) {
        let bytes = &mut buf[..part.len() * N];
        r.read_exact(bytes)?;
        for (slot, c) in part.iter_mut().zip(bytes.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            *slot = from_bytes(a);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_with_its_checksum() {
        let mut w = CrcWriter::new(Vec::new());
        put_u64(&mut w, 42).unwrap();
        put_all(&mut w, (0..100_000u32).map(|x| x * 3), u32::to_le_bytes).unwrap();
        let bytes = w.finish().unwrap();
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        assert_eq!(crc32fast::hash(body).to_le_bytes(), crc);

        let mut r: &[u8] = body;
        assert_eq!(get_u64(&mut r).unwrap(), 42);
        let mut back = vec![0u32; 100_000];
        fill(&mut r, &mut back, u32::from_le_bytes).unwrap();
        assert_eq!(back[99_999], 299_997);
        assert!(r.is_empty());

        // cut short: reading fails instead of inventing values
        let mut r: &[u8] = &bytes[..1_000];
        get_u64(&mut r).unwrap();
        assert!(fill(&mut r, &mut back, u32::from_le_bytes).is_err());
    }
}
