//! The bounds every search a node coordinates shares, whether its shards are all here or
//! spread over a cluster: how many run at once, and how many more may wait for a turn.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::search::SearchError;

/// How many searches run at once, and how many more wait; over that, refused at once.
pub struct SearchAdmission {
    /// one permit per running search
    running: Arc<Semaphore>,
    /// one permit per search admitted (running or waiting): `max_concurrent + max_queued`
    admitted: Arc<Semaphore>,
    /// how many may run at once
    max_concurrent: usize,
    /// how many may wait, for the refusal's message
    max_queued: usize,
}

/// A search's place: held while it waits, then while it runs.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

/// A search's turn to run; dropping it frees both its turn and its place.
pub struct Turn {
    _slot: OwnedSemaphorePermit,
    _run: OwnedSemaphorePermit,
}

impl SearchAdmission {
    /// Bounds of `max_concurrent` running and `max_queued` more waiting.
    pub fn new(max_concurrent: usize, max_queued: usize) -> Arc<SearchAdmission> {
        Arc::new(SearchAdmission {
            running: Arc::new(Semaphore::new(max_concurrent)),
            admitted: Arc::new(Semaphore::new(max_concurrent + max_queued)),
            max_concurrent,
            max_queued,
        })
    }

    /// Searches admitted now: (running, waiting for a turn).
    pub fn load(&self) -> (usize, usize) {
        let running = self
            .max_concurrent
            .saturating_sub(self.running.available_permits());
        let admitted = (self.max_concurrent + self.max_queued)
            .saturating_sub(self.admitted.available_permits());
        (running, admitted.saturating_sub(running))
    }

    /// A place for one more search, or [`SearchError::Overloaded`] at once when the waiting
    /// places are all taken; never waits.
    pub fn admit(&self) -> Result<Admitted, SearchError> {
        let slot = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| SearchError::Overloaded {
                waiting: self.max_queued,
            })?;
        Ok(Admitted {
            _slot: slot,
            running: Arc::clone(&self.running),
        })
    }
}

impl Admitted {
    /// Waits for a turn to run.
    pub async fn turn(self) -> Result<Turn, SearchError> {
        let run = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| SearchError::Unavailable("the node is stopping searches".to_string()))?;
        Ok(Turn {
            _slot: self._slot,
            _run: run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_turn_and_refuses_beyond_the_waiting_places() {
        let admission = SearchAdmission::new(1, 1);
        let first = admission.admit().unwrap().turn().await.unwrap();
        let waiting = admission.admit().unwrap();
        assert!(
            matches!(
                admission.admit(),
                Err(SearchError::Overloaded { waiting: 1 })
            ),
            "a third search neither runs nor waits"
        );
        let second = tokio::spawn(waiting.turn());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "the second waits while the first runs"
        );
        drop(first);
        let _second = second.await.unwrap().unwrap();
        assert!(admission.admit().is_ok(), "a place is free again");
    }
}
