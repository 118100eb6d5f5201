//! Large arrays backed by transparent huge pages where the OS allows it.
//!
//! A graph walk reads a few hundred codes at random addresses over hundreds of megabytes: with
//! 4 KiB pages nearly every read also misses the TLB and walks the page tables. Asking for
//! 2 MiB pages (`madvise(MADV_HUGEPAGE)`, honoured when THP is `madvise` or `always`) before the
//! memory is first touched removes most of those walks. It is only advice: on failure or on
//! other systems nothing changes.

/// Advises the kernel to back `s` with huge pages; call before its pages are first written.
pub(crate) fn advise_huge_pages<T>(s: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(s);
        if bytes < HUGE {
            return;
        }
        let start = s.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end <= aligned {
            return;
        }
        // SAFETY: madvise only changes how the kernel backs this range, which lies inside a
        // live allocation; MADV_HUGEPAGE never alters its contents. The result is ignored
        // because the advice is optional.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}
