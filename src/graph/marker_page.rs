//! A page of record markers as the graph stores it: a `u32` count n, n `u32` ends of
//! entries, then the entries in key order, each a `u16` key length, the key and the
//! marker's bytes; a key is found by binary search without reading the others.

use sled::IVec;

use super::store::GraphError;

/// Tag of a marker page's key; the page's number follows, big-endian.
pub(super) const PAGE: u8 = b'p';

/// The key of page `seq`.
pub(super) fn page_key(seq: u32) -> [u8; 5] {
    let b = seq.to_be_bytes();
    [PAGE, b[0], b[1], b[2], b[3]]
}

/// The system of a record key (`system NUL conversation`).
pub(super) fn system_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or_default()
}

/// A page as stored: a `u32` count n, n `u32` ends of entries, then the entries in key
/// order, each a `u16` key length, the key and the marker's bytes.
#[derive(Clone)]
pub(super) struct Page {
    bytes: IVec,
    n: usize,
}

impl Page {
    /// Reads a page, checking its layout; `None` when it is not one.
    pub(super) fn parse(bytes: IVec) -> Option<Page> {
        let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let data = n.checked_mul(4)?.checked_add(4)?;
        if data > bytes.len() {
            return None;
        }
        let page = Page { bytes, n };
        let mut start = 0;
        for i in 0..n {
            let end = page.end(i);
            let key_len = usize::from(u16::from_le_bytes(
                page.bytes
                    .get(data + start..data + start + 2)?
                    .try_into()
                    .ok()?,
            ));
            if end < start + 2 + key_len || data + end > page.bytes.len() {
                return None;
            }
            start = end;
        }
        Some(page)
    }

    fn end(&self, i: usize) -> usize {
        let at = 4 + 4 * i;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[at..at + 4]);
        u32::from_le_bytes(b) as usize
    }

    /// Entries in the page.
    pub(super) fn len(&self) -> usize {
        self.n
    }

    /// Entry `i`: its key and its marker's bytes (`i` below [`Page::len`]).
    pub(super) fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let data = 4 + 4 * self.n;
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let entry = &self.bytes[data + start..data + self.end(i)];
        let key_len = usize::from(u16::from_le_bytes([entry[0], entry[1]]));
        (&entry[2..2 + key_len], &entry[2 + key_len..])
    }

    /// The marker's bytes of `key`, when the page holds it.
    pub(super) fn find(&self, key: &[u8]) -> Option<&[u8]> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (k, m) = self.entry(mid);
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(m),
            }
        }
        None
    }

    /// Every entry, in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.n).map(|i| self.entry(i))
    }

    /// A page of `entries`, which must be in key order with no key twice.
    pub(super) fn encode<'a>(
        entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<Vec<u8>, GraphError> {
        let n = entries.len();
        let size: usize = entries.clone().map(|(k, m)| 2 + k.len() + m.len()).sum();
        let mut out = Vec::with_capacity(4 + 4 * n + size);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        let mut end = 0usize;
        for (k, m) in entries.clone() {
            end += 2 + k.len() + m.len();
            out.extend_from_slice(&(end as u32).to_le_bytes());
        }
        for (k, m) in entries {
            let len = u16::try_from(k.len()).map_err(|_| {
                GraphError::Task(format!(
                    "record key of {} bytes is longer than a marker page holds",
                    k.len()
                ))
            })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(m);
        }
        Ok(out)
    }
}

/// Reads the page stored under `key`.
pub(super) fn decode_page(key: &[u8], bytes: IVec) -> Result<Page, GraphError> {
    Page::parse(bytes).ok_or_else(|| GraphError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        message: "not a marker page".to_string(),
    })
}

/// Reads page `seq` from `tree`.
pub(super) fn read_page(tree: &sled::Tree, seq: u32) -> Result<Page, GraphError> {
    let key = page_key(seq);
    match tree.get(key)? {
        Some(bytes) => decode_page(&key, bytes),
        None => Err(GraphError::Decode {
            key: format!("marker page {seq}"),
            message: "the index names a page the store does not hold".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_finds_each_key_it_holds_and_no_other() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..500)
            .map(|i| (format!("s\0c{i:04}").into_bytes(), vec![i as u8; i % 7]))
            .collect();
        let bytes =
            Page::encode(entries.iter().map(|(k, m)| (k.as_slice(), m.as_slice()))).unwrap();
        let page = Page::parse(IVec::from(bytes.as_slice())).unwrap();
        assert_eq!(page.len(), 500);
        for (k, m) in &entries {
            assert_eq!(page.find(k), Some(m.as_slice()));
        }
        assert_eq!(page.find(b"s\0c9999"), None);
        assert_eq!(page.find(b""), None);
        assert!(Page::parse(IVec::from(&bytes[..bytes.len() - 1])).is_none());
        assert!(Page::parse(IVec::from(&[9u8, 0, 0, 0][..])).is_none());
        let empty = Page::encode(std::iter::empty::<(&[u8], &[u8])>()).unwrap();
        assert_eq!(Page::parse(IVec::from(empty.as_slice())).unwrap().len(), 0);
    }
}
