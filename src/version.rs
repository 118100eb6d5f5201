//! Record versions: a hybrid logical clock (wall milliseconds and a counter) and the node
//! that wrote the copy. A copy replaces another only when its version is newer; a deletion
//! is a tombstone with a version, hiding every copy not newer than it.
//!
//! Pushed records take the writing node's clock when they are written. Pulled records take
//! the time of their upload (so of two uploads, the later one's copy wins however the
//! uploads are processed); see [`Version::of_upload`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Bits of an HLC value that hold the logical counter (below the wall milliseconds).
const COUNTER_BITS: u32 = 16;

/// The version of a record copy or a tombstone; ordered by clock, then by writing node.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// wall milliseconds since the Unix epoch, shifted left 16 bits, plus a counter
    pub hlc: u64,
    /// the node that assigned the version (0 for versions taken from an upload)
    pub node: u32,
}

impl Version {
    /// Bytes of [`Version::to_bytes`].
    pub const BYTES: usize = 12;

    /// Newer than every version a clock gives.
    pub const MAX: Version = Version {
        hlc: u64::MAX,
        node: u32::MAX,
    };

    /// The version of records read from an upload made at `uploaded_at_micros`.
    pub fn of_upload(uploaded_at_micros: i64) -> Version {
        let ms = (uploaded_at_micros.max(0) / 1000) as u64;
        Version {
            hlc: ms << COUNTER_BITS,
            node: 0,
        }
    }

    /// The wall time part, in milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> u64 {
        self.hlc >> COUNTER_BITS
    }

    /// A fixed-size big-endian form that sorts as the version does.
    pub fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.hlc.to_be_bytes());
        out[8..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Reads [`Version::to_bytes`]; `None` when the length is not 12.
    pub fn from_bytes(b: &[u8]) -> Option<Version> {
        if b.len() != Self::BYTES {
            return None;
        }
        let hlc = u64::from_be_bytes(b[..8].try_into().ok()?);
        let node = u32::from_be_bytes(b[8..].try_into().ok()?);
        Some(Version { hlc, node })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            self.wall_ms(),
            self.hlc & ((1 << COUNTER_BITS) - 1),
            self.node
        )
    }
}

/// A node's hybrid logical clock: never goes backwards, and stays ahead of every version
/// it has seen.
#[derive(Debug)]
pub struct Clock {
    last: AtomicU64,
    node: u32,
}

impl Clock {
    /// A clock for the node numbered `node`.
    pub fn new(node: u32) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            node,
        }
    }

    /// A version newer than every one this clock gave or saw.
    pub fn now(&self) -> Version {
        let wall = (chrono::Utc::now().timestamp_millis().max(0) as u64) << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Version {
                        hlc: next,
                        node: self.node,
                    }
                }
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves the clock past a version seen elsewhere (a stored copy, a peer's write).
    pub fn observe(&self, v: Version) {
        self.last.fetch_max(v.hlc, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_moves_forward_and_past_what_it_saw() {
        let clock = Clock::new(7);
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        assert_eq!(a.node, 7);
        let far = Version {
            hlc: a.hlc + (10_000 << COUNTER_BITS),
            node: 1,
        };
        clock.observe(far);
        assert!(clock.now().hlc > far.hlc);
    }

    #[test]
    fn versions_order_by_clock_then_node_and_round_trip() {
        let a = Version { hlc: 5, node: 9 };
        let b = Version { hlc: 6, node: 1 };
        let c = Version { hlc: 6, node: 2 };
        assert!(a < b && b < c);
        for v in [a, b, c] {
            assert_eq!(Version::from_bytes(&v.to_bytes()), Some(v));
            assert!(v.to_bytes() <= c.to_bytes());
        }
        assert_eq!(Version::from_bytes(&[1, 2]), None);
    }

    #[test]
    fn a_later_upload_has_a_newer_version() {
        let earlier = Version::of_upload(1_700_000_000_000_000);
        let later = Version::of_upload(1_700_000_001_000_000);
        assert!(later > earlier);
        assert_eq!(earlier.wall_ms(), 1_700_000_000_000);
        // a push made now is newer than an upload made a second ago
        let clock = Clock::new(1);
        let now_micros = chrono::Utc::now().timestamp_micros();
        assert!(clock.now() > Version::of_upload(now_micros - 1_000_000));
    }
}
