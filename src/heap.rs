//! How the process's allocator is set up before the node starts its threads.

/// Arenas glibc's malloc keeps at least; its default is 8 per core.
const MIN_ARENAS: usize = 2;
/// Allocations of at least this many bytes get a mapping of their own, given back to the
/// OS when freed.
const MMAP_THRESHOLD: usize = 4 << 20;

/// Sets glibc's malloc up for the node; call before any thread starts. An operator's own
/// setting (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, or either in `GLIBC_TUNABLES`)
/// wins; elsewhere than glibc this does nothing.
///
/// - One arena per core (at least [`MIN_ARENAS`]). With the default of 8 per core, memory
///   freed by one thread stayed out of the others' reach: at 1M records, 1.71 GB resident
///   after the search benchmark's queries instead of 1.51 GB, for no measured gain in
///   ingest or search.
/// - Blocks of [`MMAP_THRESHOLD`] or more in mappings of their own. glibc's default starts
///   at 128 KiB but rises to the size of each such block freed (up to 32 MiB), so once the
///   index frees its first segment-sized array, the next ones come from the heap and stay
///   there, fragmented, when freed: at 1M records over HTTP, 1,617 MB resident after load
///   with the default, 1,441 MB with this.
pub fn set_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let given = |var: &str, tunable: &str| {
            std::env::var_os(var).is_some() || tunables.contains(tunable)
        };
        if !given("MALLOC_ARENA_MAX", "malloc.arena_max") {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let arenas = i32::try_from(cores.max(MIN_ARENAS)).unwrap_or(i32::MAX);
            // SAFETY: mallopt only sets a tunable of the allocator; no thread allocates yet
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
        if !given("MALLOC_MMAP_THRESHOLD_", "malloc.mmap_threshold") {
            let threshold = i32::try_from(MMAP_THRESHOLD).unwrap_or(i32::MAX);
            // SAFETY: as above
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
            }
        }
    }
}
