//! Blocking work shared out over scoped threads.

/// Runs `work` on the calling thread and on `threads - 1` more named `name`, and returns
/// once every one has returned; a thread that cannot be started only leaves fewer.
pub(crate) fn on_threads(name: &str, threads: usize, work: impl Fn() + Sync) {
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
        on_threads("worker", 3, || {
            runs.fetch_add(1, Ordering::SeqCst);
            if std::thread::current().name() == Some("worker") {
                named.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(named.load(Ordering::SeqCst), 2, "two threads started here");
    }
}
