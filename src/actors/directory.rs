//! Which shard actors exist right now, shared by everyone that routes to shards, and the
//! one way to call them: at most [`SHARD_QUEUE`] calls per shard are queued or running,
//! further callers wait for a turn within their own timeout, so no shard's mailbox grows
//! without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;

use crate::actors::shard::ShardMsg;
use crate::record::{ShardId, SHARD_COUNT};

/// Calls one shard may have queued or running at once.
pub const SHARD_QUEUE: usize = 64;

/// Why a call to a shard got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardCallError {
    /// The shard is not running (starting, restarting, or it stopped during the call).
    #[error("shard {0} is not available, try again shortly")]
    Down(ShardId),
    /// No turn or no answer within the timeout (the call may still be carried out).
    #[error("shard {0} did not answer within {1:?}")]
    Timeout(ShardId, Duration),
}

/// The live shard actors of this node, by shard number.
pub struct ShardDirectory {
    /// `None` while a shard is starting, restarting or not owned
    actors: RwLock<Vec<Option<ActorRef<ShardMsg>>>>,
    /// turns per shard: bounds each shard's mailbox
    turns: Vec<Arc<Semaphore>>,
    /// woken whenever a shard comes up
    came_up: tokio::sync::Notify,
}

impl Default for ShardDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardDirectory {
    /// An empty directory: every shard is down.
    pub fn new() -> Self {
        ShardDirectory {
            actors: RwLock::new(vec![None; SHARD_COUNT]),
            turns: (0..SHARD_COUNT)
                .map(|_| Arc::new(Semaphore::new(SHARD_QUEUE)))
                .collect(),
            came_up: tokio::sync::Notify::new(),
        }
    }

    /// Calls to a shard queued in its mailbox or running now (at most [`SHARD_QUEUE`]; more
    /// callers wait for a turn outside it).
    pub fn in_mailbox(&self, shard: ShardId) -> usize {
        let turns = &self.turns[shard as usize % SHARD_COUNT];
        SHARD_QUEUE.saturating_sub(turns.available_permits())
    }

    /// Asks a shard and waits for its answer, taking a turn first; `timeout` covers both.
    pub async fn call<R: Send + 'static>(
        &self,
        shard: ShardId,
        message: impl FnOnce(RpcReplyPort<R>) -> ShardMsg,
        timeout: Duration,
    ) -> Result<R, ShardCallError> {
        let actor = self.get(shard).ok_or(ShardCallError::Down(shard))?;
        let started = Instant::now();
        let turns = Arc::clone(&self.turns[shard as usize % SHARD_COUNT]);
        let _turn = match tokio::time::timeout(timeout, turns.acquire_owned()).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(ShardCallError::Down(shard)),
            Err(_) => return Err(ShardCallError::Timeout(shard, timeout)),
        };
        let left = timeout.saturating_sub(started.elapsed());
        match actor.call(message, Some(left)).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => Ok(answer),
            Ok(ractor::rpc::CallResult::Timeout) => Err(ShardCallError::Timeout(shard, timeout)),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(ShardCallError::Down(shard)),
        }
    }

    /// Like [`ShardDirectory::call`], but a shard that is restarting is waited for, and a
    /// call cut short by the shard's restart is sent again to the restarted actor, all within
    /// `timeout`: the caller never sees the restart. Only for messages that are safe to
    /// receive twice (writes and deletions are, by version; reads are).
    pub async fn call_through_restarts<R: Send + 'static>(
        &self,
        shard: ShardId,
        mut message: impl FnMut(RpcReplyPort<R>) -> ShardMsg,
        timeout: Duration,
    ) -> Result<R, ShardCallError> {
        let deadline = Instant::now() + timeout;
        let mut gone: Option<ractor::ActorId> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let actor = self.wait_up(shard, gone, left).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            match self.call(shard, &mut message, left).await {
                Err(ShardCallError::Down(_)) if Instant::now() < deadline => {
                    gone = Some(actor.get_id());
                }
                Err(ShardCallError::Down(_)) => {
                    return Err(ShardCallError::Timeout(shard, timeout))
                }
                Err(ShardCallError::Timeout(..)) => {
                    return Err(ShardCallError::Timeout(shard, timeout))
                }
                answered => return answered,
            }
        }
    }

    /// Waits until the shard is up with an actor other than `gone`, up to `within`.
    async fn wait_up(
        &self,
        shard: ShardId,
        gone: Option<ractor::ActorId>,
        within: Duration,
    ) -> Result<ActorRef<ShardMsg>, ShardCallError> {
        let deadline = Instant::now() + within;
        loop {
            // registered before looking, so a shard coming up in between is not missed
            let woken = self.came_up.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(a) = self.get(shard).filter(|a| Some(a.get_id()) != gone) {
                return Ok(a);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // a shard whose old actor is still published is looked at again shortly
            let nap = if gone.is_some() {
                left.min(Duration::from_millis(20))
            } else {
                left
            };
            if left.is_zero() {
                return Err(ShardCallError::Down(shard));
            }
            let _ = tokio::time::timeout(nap, woken).await;
        }
    }

    /// The actor of a shard, if it is up.
    pub fn get(&self, shard: ShardId) -> Option<ActorRef<ShardMsg>> {
        self.actors.read().get(shard as usize).cloned().flatten()
    }

    /// Records that a shard is up (`Some`) or down (`None`).
    pub fn set(&self, shard: ShardId, actor: Option<ActorRef<ShardMsg>>) {
        let up = actor.is_some();
        if let Some(slot) = self.actors.write().get_mut(shard as usize) {
            *slot = actor;
        }
        if up {
            self.came_up.notify_waiters();
        }
    }

    /// A mask of the shards that are up.
    pub fn up_mask(&self) -> [bool; SHARD_COUNT] {
        let actors = self.actors.read();
        let mut mask = [false; SHARD_COUNT];
        for (m, a) in mask.iter_mut().zip(actors.iter()) {
            *m = a.is_some();
        }
        mask
    }

    /// Every shard that is up, with its actor.
    pub fn up(&self) -> Vec<(ShardId, ActorRef<ShardMsg>)> {
        self.actors
            .read()
            .iter()
            .enumerate()
            .filter_map(|(s, a)| a.clone().map(|a| (s as ShardId, a)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};

    /// A shard stand-in: it holds every message a while then drops it, fails on its first
    /// message, or answers counts.
    #[derive(Clone, Copy)]
    enum StandIn {
        Slow,
        Fail,
        Answer,
    }

    impl Actor for StandIn {
        type Msg = ShardMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<ShardMsg>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _myself: ActorRef<ShardMsg>,
            message: ShardMsg,
            _state: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            match (self, message) {
                (StandIn::Slow, message) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    drop(message);
                }
                (StandIn::Fail, _) => return Err("crashed on purpose".into()),
                (StandIn::Answer, ShardMsg::Counts(reply)) => {
                    let counts = crate::actors::shard::ShardCounts {
                        hot: 7,
                        ..Default::default()
                    };
                    let _ = reply.send(counts);
                }
                (StandIn::Answer, _) => {}
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_shard_takes_a_bounded_number_of_calls_and_the_rest_wait_their_turn() {
        let directory = Arc::new(ShardDirectory::new());
        let t = Duration::from_millis(200);
        assert_eq!(
            directory.call(3, ShardMsg::Counts, t).await.err(),
            Some(ShardCallError::Down(3))
        );
        let (actor, handle) = Actor::spawn(None, StandIn::Slow, ()).await.unwrap();
        directory.set(3, Some(actor.clone()));
        // every turn taken: a caller waits, and gives up at its timeout
        let held: Vec<_> = (0..SHARD_QUEUE)
            .map(|_| Arc::clone(&directory.turns[3]).try_acquire_owned().unwrap())
            .collect();
        let started = Instant::now();
        let r = directory.call(3, ShardMsg::Counts, t).await;
        assert_eq!(r.err(), Some(ShardCallError::Timeout(3, t)));
        assert!(started.elapsed() >= t);
        drop(held);
        // with turns free, a call reaches the shard (which drops it: the shard is gone for it)
        let r = directory.call(3, ShardMsg::Counts, t).await;
        assert_eq!(r.err(), Some(ShardCallError::Down(3)));
        assert_eq!(directory.turns[3].available_permits(), SHARD_QUEUE);
        actor.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_caller_through_restarts_waits_for_the_shard_and_resends_what_a_crash_cut_short() {
        let directory = Arc::new(ShardDirectory::new());
        let t = Duration::from_secs(2);
        // down at first, up 100 ms later: the call waits and is answered
        let later = Arc::clone(&directory);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (good, _) = Actor::spawn(None, StandIn::Answer, ()).await.unwrap();
            later.set(5, Some(good));
        });
        let counts = directory
            .call_through_restarts(5, ShardMsg::Counts, t)
            .await;
        assert_eq!(counts.map(|c| c.hot), Ok(7));

        // a shard that dies with the call in hand, and comes back as a new actor
        let (bad, bad_handle) = Actor::spawn(None, StandIn::Fail, ()).await.unwrap();
        directory.set(6, Some(bad));
        let later = Arc::clone(&directory);
        tokio::spawn(async move {
            bad_handle.await.unwrap();
            later.set(6, None);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (good, _) = Actor::spawn(None, StandIn::Answer, ()).await.unwrap();
            later.set(6, Some(good));
        });
        let counts = directory
            .call_through_restarts(6, ShardMsg::Counts, t)
            .await;
        assert_eq!(counts.map(|c| c.hot), Ok(7));

        // a shard that never comes back: an error once the timeout has passed, not before
        let started = Instant::now();
        let short = Duration::from_millis(200);
        let r = directory
            .call_through_restarts(7, ShardMsg::Counts, short)
            .await;
        assert_eq!(r.err(), Some(ShardCallError::Down(7)));
        assert!(started.elapsed() >= short);
    }
}
