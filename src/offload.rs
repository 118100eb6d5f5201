//! CPU work sized to its input: done in place when small, on a blocking thread when large,
//! so request parsing and checking never hold up the async runtime.

/// Request bodies up to this size are parsed in place.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Batches of up to this many items are checked in place.
pub const INLINE_ITEMS: usize = 16;

/// Runs `work` in place when `small`, else on a blocking thread.
pub async fn sized<T: Send + 'static>(
    small: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if small {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}
