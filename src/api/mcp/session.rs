//! MCP sessions: made by `initialize`, named by `Mcp-Session-Id`, forgotten when idle or deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the node remembers of one session.
#[derive(Debug, Clone)]
pub struct Session {
    /// the protocol version agreed at initialize
    pub protocol_version: String,
    /// whether the client sent `notifications/initialized`
    pub initialized: bool,
    last_used: Instant,
}

/// The open sessions, bounded in number and idle time.
#[derive(Debug)]
pub struct Sessions {
    open: parking_lot::Mutex<HashMap<String, Session>>,
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

    /// Opens a session at a protocol version; returns its id (128 random bits, hex).
    pub fn open(&self, protocol_version: &str) -> Result<String, SessionIdError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionIdError(e.to_string()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.open.lock();
        if open.len() >= self.max {
            open.retain(|_, s| now.duration_since(s.last_used) < self.idle);
        }
        if open.len() >= self.max {
            let oldest = open
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                open.remove(&k);
            }
        }
        open.insert(
            id.clone(),
            Session {
                protocol_version: protocol_version.to_string(),
                initialized: false,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The session under an id, marked used now; None when unknown or idle too long.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut open = self.open.lock();
        let session = open.get_mut(id)?;
        if now.duration_since(session.last_used) >= self.idle {
            open.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Records that the client finished initializing.
    pub fn mark_initialized(&self, id: &str) {
        if let Some(s) = self.open.lock().get_mut(id) {
            s.initialized = true;
        }
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
        let a = s.open("2025-06-18").unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let b = s.open("2025-06-18").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.touch(&a).unwrap().protocol_version, "2025-06-18");
        // a is now the more recently used: a third session replaces b
        let c = s.open("2025-03-26").unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.touch(&b).is_none());
        assert!(s.touch(&a).is_some() && s.touch(&c).is_some());
        s.mark_initialized(&c);
        assert!(s.touch(&c).unwrap().initialized);
        assert!(s.close(&a));
        assert!(!s.close(&a));
        assert!(s.touch(&a).is_none());
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let s = Sessions::new(10, Duration::from_millis(1));
        let a = s.open("2025-06-18").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.touch(&a).is_none());
        assert!(s.is_empty());
    }
}
