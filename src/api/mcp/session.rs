//! MCP sessions: made by `initialize`, named by `Mcp-Session-Id`, forgotten when idle or deleted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// When a session was last used, made unique by a sequence number so it can key an index.
type Used = (Instant, u64);

/// The open sessions and when each was last used, by id and in order of use.
#[derive(Debug, Default)]
struct Table {
    /// session id → when it was last used
    by_id: HashMap<String, Used>,
    /// when each session was last used → its id; the first is the one idle longest
    by_use: BTreeMap<Used, String>,
    /// the next sequence number
    seq: u64,
}

impl Table {
    fn stamp(&mut self, now: Instant) -> Used {
        self.seq += 1;
        (now, self.seq)
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(used) => {
                self.by_use.remove(&used);
                true
            }
            None => false,
        }
    }

    /// Drops the sessions idle since before `cutoff`, oldest first; cost grows only with those.
    fn drop_idle_since(&mut self, cutoff: Instant) {
        while let Some(entry) = self.by_use.first_entry() {
            if entry.key().0 > cutoff {
                break;
            }
            let id = entry.remove();
            self.by_id.remove(&id);
        }
    }
}

/// The open sessions, bounded in number and idle time.
#[derive(Debug)]
pub struct Sessions {
    /// the sessions, by id and by last use
    open: parking_lot::Mutex<Table>,
    /// most sessions open at once
    max: usize,
    /// a session unused this long is forgotten
    idle: Duration,
    /// a full table gives up a session for a new one only if it was unused this long
    evict_idle: Duration,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The random source failed.
    #[error("cannot draw a random session id: {0}")]
    Id(String),
    /// Every session was used too recently to give way.
    #[error("{max} mcp sessions are open (mcp.max_sessions) and each was used in the last {secs} s (mcp.session_evict_idle_secs); retry later")]
    Full {
        /// the bound on open sessions
        max: usize,
        /// the idle time that makes a session give way, in seconds
        secs: u64,
    },
}

impl Sessions {
    /// An empty table of at most `max` sessions, each forgotten after `idle` unused; when full,
    /// the one idle longest gives way to a new one if it was unused for `evict_idle`.
    pub fn new(max: usize, idle: Duration, evict_idle: Duration) -> Self {
        Sessions {
            open: parking_lot::Mutex::new(Table::default()),
            max: max.max(1),
            idle,
            evict_idle,
        }
    }

    /// Opens a session; returns its id (128 random bits, hex).
    pub fn open(&self) -> Result<String, SessionError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Id(e.to_string()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.open.lock();
        if let Some(cutoff) = now.checked_sub(self.idle) {
            open.drop_idle_since(cutoff);
        }
        if open.by_id.len() >= self.max {
            let oldest = open.by_use.first_key_value().map(|(used, _)| used.0);
            let gives_way = oldest.is_some_and(|used| now.duration_since(used) >= self.evict_idle);
            if !gives_way {
                return Err(SessionError::Full {
                    max: self.max,
                    secs: self.evict_idle.as_secs(),
                });
            }
            if let Some((_, victim)) = open.by_use.pop_first() {
                open.by_id.remove(&victim);
            }
        }
        let used = open.stamp(now);
        open.by_id.insert(id.clone(), used);
        open.by_use.insert(used, id.clone());
        Ok(id)
    }

    /// Marks a session used now; false when it is unknown or was idle too long.
    pub fn touch(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut open = self.open.lock();
        let Some(&used) = open.by_id.get(id) else {
            return false;
        };
        open.by_use.remove(&used);
        if now.duration_since(used.0) >= self.idle {
            open.by_id.remove(id);
            return false;
        }
        let fresh = open.stamp(now);
        open.by_use.insert(fresh, id.to_string());
        open.by_id.insert(id.to_string(), fresh);
        true
    }

    /// Ends a session; false when it was not open.
    pub fn close(&self, id: &str) -> bool {
        self.open.lock().remove(id)
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.open.lock().by_id.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_touch_close_and_bound() {
        let s = Sessions::new(2, Duration::from_secs(60), Duration::ZERO);
        let a = s.open().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let b = s.open().unwrap();
        assert_ne!(a, b);
        assert!(s.touch(&a));
        // a is now the more recently used: a third session replaces b
        let c = s.open().unwrap();
        assert_eq!(s.len(), 2);
        assert!(!s.touch(&b));
        assert!(s.touch(&a) && s.touch(&c));
        assert!(s.close(&a));
        assert!(!s.close(&a));
        assert!(!s.touch(&a));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sessions_used_recently_do_not_give_way() {
        let s = Sessions::new(2, Duration::from_secs(60), Duration::from_millis(50));
        let a = s.open().unwrap();
        let b = s.open().unwrap();
        // a flood of initialize calls cannot push out sessions in use
        for _ in 0..100 {
            assert!(matches!(s.open(), Err(SessionError::Full { max: 2, .. })));
        }
        assert!(s.touch(&a) && s.touch(&b));
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.touch(&a));
        // b was unused long enough: it gives way, a stays
        let c = s.open().unwrap();
        assert!(!s.touch(&b));
        assert!(s.touch(&a) && s.touch(&c));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let s = Sessions::new(10, Duration::from_millis(1), Duration::ZERO);
        let a = s.open().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!s.touch(&a));
        assert!(s.is_empty());
        let b = s.open().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let _c = s.open().unwrap();
        // opening drops the sessions idle too long
        assert_eq!(s.len(), 1);
        assert!(!s.touch(&b));
    }
}
