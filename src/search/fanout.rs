//! Runs one task per item with a shared bound on how many run at once, until a deadline.

use std::future::Future;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a bounded fan-out came back with.
#[derive(Debug)]
pub struct Fanout<I, T, E> {
    /// items whose task finished, with its answer
    pub done: Vec<(I, T)>,
    /// items whose task failed, with its error
    pub failed: Vec<(I, E)>,
    /// items whose task had not finished (or not started) at the deadline
    pub unfinished: Vec<I>,
}

/// Runs `task` for every item, at most as many at once as `permits` has free (shared with
/// every other fan-out over the same semaphore), and stops waiting at `deadline`.
///
/// # Cancel safety
/// Tasks not finished at the deadline are dropped: `task` must leave nothing half done when
/// its future is dropped (reads only).
pub async fn bounded_fanout<I, T, E, F, Fut>(
    items: Vec<I>,
    permits: &Arc<Semaphore>,
    deadline: Instant,
    task: F,
) -> Fanout<I, T, E>
where
    I: Clone,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut outcome = Fanout {
        done: Vec::with_capacity(items.len()),
        failed: Vec::new(),
        unfinished: Vec::new(),
    };
    let mut pending: Vec<Option<I>> = items.iter().cloned().map(Some).collect();
    let mut running: FuturesUnordered<_> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let started = task(item);
            async move {
                // a closed semaphore only happens at shutdown: run without a permit then
                let _permit = permits.acquire().await.ok();
                (i, started.await)
            }
        })
        .collect();
    loop {
        match tokio::time::timeout_at(deadline, running.next()).await {
            Ok(Some((i, answer))) => {
                let Some(item) = pending.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                match answer {
                    Ok(v) => outcome.done.push((item, v)),
                    Err(e) => outcome.failed.push((item, e)),
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    outcome.unfinished = pending.into_iter().flatten().collect();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn runs_at_most_the_permits_at_once_and_stops_at_the_deadline() {
        let permits = Arc::new(Semaphore::new(2));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let deadline = Instant::now() + Duration::from_millis(500);
        // each task takes 200 ms: two at a time finish 4 by 400 ms, the other 4 miss 500 ms
        let out: Fanout<u32, u32, String> =
            bounded_fanout((0..8).collect(), &permits, deadline, |i| {
                let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
                async move {
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(running, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    if i == 1 {
                        return Err(format!("item {i} failed"));
                    }
                    Ok(i * 10)
                }
            })
            .await;
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "never more than the permits"
        );
        assert_eq!(out.done.len() + out.failed.len(), 4, "{out:?}");
        assert_eq!(out.failed.len(), 1, "{out:?}");
        assert_eq!(out.unfinished.len(), 4, "{out:?}");
        assert_eq!(
            permits.available_permits(),
            2,
            "dropped tasks give back their permit"
        );
    }

    #[tokio::test]
    async fn everything_done_before_the_deadline_returns_at_once() {
        let permits = Arc::new(Semaphore::new(4));
        let started = Instant::now();
        let out: Fanout<u32, u32, ()> = bounded_fanout(
            (0..3).collect(),
            &permits,
            started + Duration::from_secs(60),
            |i| async move { Ok(i) },
        )
        .await;
        assert_eq!(out.done.len(), 3);
        assert!(out.unfinished.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
