//! How the process's allocator is set up before the node starts its threads.

/// Arenas glibc's malloc keeps at least; its default is 8 per core.
const MIN_ARENAS: usize = 2;

/// Limits glibc's malloc to one arena per core (at least [`MIN_ARENAS`]); call before any
/// thread starts. Its default of 8 per core keeps memory freed by one thread out of every
/// other thread's reach: at 1M records, 1.71 GB resident after the search benchmark's
/// queries instead of 1.51 GB, for no measured gain in ingest or search. An operator's
/// own `MALLOC_ARENA_MAX` wins; elsewhere than glibc this does nothing.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = i32::try_from(cores.max(MIN_ARENAS)).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets a tunable of the allocator; no thread allocates yet
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
