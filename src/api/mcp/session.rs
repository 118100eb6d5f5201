//! MCP sessions: made by `initialize`, named by `Mcp-Session-Id`, forgotten when idle or deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The open sessions (id and when last used), bounded in number and idle time.
#[derive(Debug)]
pub struct Sessions {
    open: parking_lot::Mutex<HashMap<String, Instant>>,
    max: usize,
    idle: Duration,
}

/// Why a session id could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw a random session id: {0}")]
pub struct SessionIdError(String);

impl Sessions {
    /// An empty table holding at most `max` sessions, each forgotten after `idle` unused.
    pub fn new(max: usize, idle: Duration) -> Self {
        Sessions {
            open: parking_lot::Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
        }
    }

    /// Opens a session; returns its id (128 random bits, hex).
    pub fn open(&self) -> Result<String, SessionIdError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionIdError(e.to_string()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.open.lock();
        if open.len() >= self.max {
            open.retain(|_, used| now.duration_since(*used) < self.idle);
        }
        if open.len() >= self.max {
            let oldest = open
                .iter()
                .min_by_key(|(_, used)| **used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                open.remove(&k);
            }
        }
        open.insert(id.clone(), now);
        Ok(id)
    }

    /// Marks a session used now; false when it is unknown or was idle too long.
    pub fn touch(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut open = self.open.lock();
        let Some(used) = open.get_mut(id) else {
            return false;
        };
        if now.duration_since(*used) >= self.idle {
            open.remove(id);
            return false;
        }
        *used = now;
        true
    }

    /// Ends a session; false when it was not open.
    pub fn close(&self, id: &str) -> bool {
        self.open.lock().remove(id).is_some()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.open.lock().len()
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
        let s = Sessions::new(2, Duration::from_secs(60));
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
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let s = Sessions::new(10, Duration::from_millis(1));
        let a = s.open().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!s.touch(&a));
        assert!(s.is_empty());
    }
}
