//! Blocking work shared out over scoped threads.

/// Runs `work` on the calling thread, always, and on more named `name`: one thread per
/// core, `most` in all at most; returns once every one has returned. A thread that cannot
/// be started only leaves fewer.
pub(crate) fn on_threads(name: &str, most: usize, work: impl Fn() + Sync) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(most);
    std::thread::scope(|s| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new()
                .name(name.to_string())
                .spawn_scoped(s, &work);
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_thread_runs_the_work_once_and_all_are_done_on_return() {
        let runs = AtomicUsize::new(0);
        let named = AtomicUsize::new(0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        on_threads("worker", 3, || {
            runs.fetch_add(1, Ordering::SeqCst);
            if std::thread::current().name() == Some("worker") {
                named.fetch_add(1, Ordering::SeqCst);
            }
        });
        let threads = cores.min(3);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            threads,
            "one per core, three at most"
        );
        assert_eq!(named.load(Ordering::SeqCst), threads - 1, "started here");
    }
}
