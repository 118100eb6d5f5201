//! Object store calls with retries (exponential backoff, full jitter) behind a circuit breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::config::ObjectStoreConfig;

/// Why an object store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {0} not found")]
    NotFound(String),
    /// The object is larger than the caller accepts.
    #[error("object {key} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// the object
        key: String,
        /// its size
        size: u64,
        /// the limit
        limit: u64,
    },
    /// The store did not answer (retries exhausted or circuit breaker open).
    #[error("object store {url} is unavailable: {message}")]
    Unavailable {
        /// the store
        url: String,
        /// what failed last
        message: String,
    },
}

/// The circuit breaker's state, as the uploads endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    /// `closed` (calls go through), `open` (calls refused) or `half_open` (one probe in flight)
    pub state: &'static str,
    /// failed requests in a row
    pub consecutive_failures: u32,
    /// the last failure's message, if any
    pub last_error: Option<String>,
    /// requests retried since start
    pub retries: u64,
}

#[derive(Debug)]
enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    last_error: Option<String>,
}

/// An object store operation, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// listing keys
    List,
    /// reading an object
    Get,
    /// writing an object
    Put,
    /// deleting an object
    Delete,
}

impl Operation {
    /// Every operation, in the order of [`ResilientStore::requests`].
    pub const ALL: [Operation; 4] = [
        Operation::List,
        Operation::Get,
        Operation::Put,
        Operation::Delete,
    ];

    /// The operation's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::Delete => "delete",
        }
    }
}

/// Requests tried and failed, by operation; shared by the stores made with
/// [`ResilientStore::with_own_breaker`].
#[derive(Debug, Default)]
struct RequestCounts {
    tried: [AtomicU64; 4],
    failed: [AtomicU64; 4],
}

/// An object store whose calls retry and stop while the store is down.
pub struct ResilientStore {
    /// requests by operation, shared with the stores made from this one
    counts: Arc<RequestCounts>,
    inner: Arc<dyn ObjectStore>,
    url: String,
    retries: u32,
    base: Duration,
    max_delay: Duration,
    threshold: u32,
    cooldown: Duration,
    breaker: parking_lot::Mutex<Breaker>,
    jitter: AtomicU64,
    retried: AtomicU64,
    /// whether listings come in key order (S3 does; a local directory walk does not)
    sorted_listing: bool,
}

/// A call the breaker let through. The probe after a cooldown holds the breaker half-open
/// until it reports; dropped before that (its caller went away), it counts as a failure, so
/// the breaker opens again and a later call probes, instead of staying half-open forever.
struct Admitted<'a> {
    store: &'a ResilientStore,
    /// whether this call is the half-open breaker's one probe
    probe: bool,
}

impl Admitted<'_> {
    /// The call's outcome has been recorded (or is about to be, by the caller).
    fn reported(mut self) {
        self.probe = false;
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.probe {
            tracing::warn!(store = %self.store.url, "object store probe dropped before it finished, counted as a failure");
            self.store
                .record_failure("probe call dropped before it finished");
        }
    }
}

/// Appends to `out`, in key order, the objects under `dir` whose keys sort after `offset`,
/// until it holds `max`: one directory listing at a time, entries sorted as full keys (a
/// directory as its name and `/`), directories entirely before `offset` skipped.
fn walk_sorted<'a>(
    store: &'a dyn ObjectStore,
    dir: Path,
    offset: Option<&'a str>,
    max: usize,
    out: &'a mut Vec<ObjectMeta>,
) -> futures::future::BoxFuture<'a, Result<(), object_store::Error>> {
    Box::pin(async move {
        let listing = store.list_with_delimiter(Some(&dir)).await?;
        enum Entry {
            Object(ObjectMeta),
            Dir(Path),
        }
        let mut entries: Vec<(String, Entry)> = listing
            .objects
            .into_iter()
            .map(|m| (m.location.to_string(), Entry::Object(m)))
            .chain(
                listing
                    .common_prefixes
                    .into_iter()
                    .map(|p| (format!("{p}/"), Entry::Dir(p))),
            )
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, entry) in entries {
            if out.len() >= max {
                return Ok(());
            }
            match entry {
                Entry::Object(meta) => {
                    if offset.is_none_or(|o| key.as_str() > o) {
                        out.push(meta);
                    }
                }
                Entry::Dir(path) => {
                    // every key under it starts with `key`: all before the offset when `key`
                    // sorts before it and is not a prefix of it
                    let before = offset.is_some_and(|o| key.as_str() < o && !o.starts_with(&key));
                    if !before {
                        walk_sorted(store, path, offset, max, out).await?;
                    }
                }
            }
        }
        Ok(())
    })
}

/// The outcome of one attempt.
enum Attempt<T> {
    Done(T),
    NotFound(String),
    Failed(String),
}

impl ResilientStore {
    /// Wraps `inner` (shown as `url` in messages) with the retry and breaker settings of `config`.
    pub fn new(inner: Arc<dyn ObjectStore>, url: String, config: &ObjectStoreConfig) -> Self {
        let sorted_listing = !url.starts_with("file:") && !url.starts_with("memory:");
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        ResilientStore {
            counts: Arc::default(),
            inner,
            url,
            retries: config.retries,
            base: Duration::from_millis(config.retry_base_ms),
            max_delay: Duration::from_millis(config.retry_max_ms),
            threshold: config.breaker_failures.max(1),
            cooldown: Duration::from_millis(config.breaker_cooldown_ms),
            breaker: parking_lot::Mutex::new(Breaker {
                state: BreakerState::Closed,
                failures: 0,
                last_error: None,
            }),
            jitter: AtomicU64::new(seed),
            retried: AtomicU64::new(0),
            sorted_listing,
        }
    }

    /// The same store (shared connection, same settings) behind a breaker of its own, so a use
    /// that trips its breaker (e.g. the cold tier) does not refuse the calls of another (e.g.
    /// ingestion).
    pub fn with_own_breaker(&self) -> ResilientStore {
        ResilientStore {
            counts: Arc::clone(&self.counts),
            inner: Arc::clone(&self.inner),
            url: self.url.clone(),
            retries: self.retries,
            base: self.base,
            max_delay: self.max_delay,
            threshold: self.threshold,
            cooldown: self.cooldown,
            breaker: parking_lot::Mutex::new(Breaker {
                state: BreakerState::Closed,
                failures: 0,
                last_error: None,
            }),
            jitter: AtomicU64::new(self.next_random() | 1),
            retried: AtomicU64::new(0),
            sorted_listing: self.sorted_listing,
        }
    }

    /// The store's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store without retries, for writers such as tests and benchmarks.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Whether calls are refused now (breaker open and its cooldown not over).
    pub fn is_open(&self) -> bool {
        matches!(self.breaker.lock().state, BreakerState::Open { until } if Instant::now() < until)
    }

    /// Requests tried and failed since start, by operation (every try of a retried call),
    /// over this store and every one made from it.
    pub fn requests(&self) -> [(Operation, u64, u64); 4] {
        Operation::ALL.map(|op| {
            let i = op as usize;
            (
                op,
                self.counts.tried[i].load(Ordering::Relaxed),
                self.counts.failed[i].load(Ordering::Relaxed),
            )
        })
    }

    /// Counts one try of `op`, failed or not.
    fn tried(&self, op: Operation, failed: bool) {
        self.counts.tried[op as usize].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.counts.failed[op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The breaker's state and counters.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let b = self.breaker.lock();
        BreakerSnapshot {
            state: match b.state {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen => "half_open",
            },
            consecutive_failures: b.failures,
            last_error: b.last_error.clone(),
            retries: self.retried.load(Ordering::Relaxed),
        }
    }

    /// Names of the "directories" right under `prefix` (e.g. system ids under `systems/`).
    pub async fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let path = Path::from(prefix);
        self.call(Operation::List, || {
            let path = path.clone();
            async move {
                match self.inner.list_with_delimiter(Some(&path)).await {
                    Ok(list) => Attempt::Done(
                        list.common_prefixes
                            .iter()
                            .filter_map(|p| p.filename().map(str::to_string))
                            .collect(),
                    ),
                    Err(e) => classify(e),
                }
            }
        })
        .await
    }

    /// The first `max` objects under `prefix` whose keys sort after `offset`, in key order.
    ///
    /// A store that lists in key order is read only as far as needed; any other (a local
    /// directory) is walked one directory at a time in key order, skipping directories
    /// whose keys all sort before `offset` and stopping after `max` objects, so a poll costs
    /// what is new, not everything ever uploaded.
    pub async fn list_after(
        &self,
        prefix: &str,
        offset: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        if !self.sorted_listing {
            let (prefix, offset) = (Path::from(prefix), offset.map(str::to_string));
            return self
                .call(Operation::List, || {
                    let (prefix, offset) = (prefix.clone(), offset.clone());
                    async move {
                        let mut out = Vec::new();
                        match walk_sorted(&*self.inner, prefix, offset.as_deref(), max, &mut out)
                            .await
                        {
                            Ok(()) => Attempt::Done(out),
                            Err(object_store::Error::NotFound { .. }) => Attempt::Done(out),
                            Err(e) => classify(e),
                        }
                    }
                })
                .await;
        }
        let prefix = Path::from(prefix);
        let mut out: Vec<ObjectMeta> = Vec::new();
        let mut failures = 0u32;
        loop {
            let admitted = self.admit()?;
            // resume after the last key received when a listing failed part way
            let from = out
                .last()
                .map(|m| m.location.clone())
                .or_else(|| offset.and_then(|o| Path::parse(o).ok()));
            let mut stream = match &from {
                Some(from) => self.inner.list_with_offset(Some(&prefix), from),
                None => self.inner.list(Some(&prefix)),
            };
            let mut failed = None;
            while !self.sorted_listing || out.len() < max {
                match stream.next().await {
                    Some(Ok(meta)) => out.push(meta),
                    Some(Err(object_store::Error::NotFound { .. })) | None => break,
                    Some(Err(e)) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            admitted.reported();
            self.tried(Operation::List, failed.is_some());
            match failed {
                None => {
                    self.record_success();
                    out.sort_by(|a, b| a.location.cmp(&b.location));
                    out.truncate(max);
                    return Ok(out);
                }
                Some(message) => {
                    self.record_failure(&message);
                    failures += 1;
                    if failures > self.retries {
                        return Err(self.unavailable(message));
                    }
                    if !self.sorted_listing {
                        // an unordered listing cannot be resumed from its last key
                        out.clear();
                    }
                    self.backoff(failures).await;
                }
            }
        }
    }

    /// Reads a whole object, refusing one larger than `limit` bytes.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        let path = Path::parse(key).map_err(|_| StoreError::NotFound(key.to_string()))?;
        let result = self
            .call(Operation::Get, || {
                let path = path.clone();
                async move {
                    let got = match self.inner.get(&path).await {
                        Ok(g) => g,
                        Err(e) => return classify(e),
                    };
                    if got.meta.size > limit {
                        return Attempt::Done(Err(got.meta.size));
                    }
                    match got.bytes().await {
                        Ok(b) => Attempt::Done(Ok(b)),
                        Err(e) => classify(e),
                    }
                }
            })
            .await?;
        result.map_err(|size| StoreError::TooLarge {
            key: key.to_string(),
            size,
            limit,
        })
    }

    /// Writes a whole object (replacing one of the same key).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = Path::from(key);
        self.call(Operation::Put, || {
            let (path, bytes) = (path.clone(), bytes.clone());
            async move {
                match self.inner.put(&path, bytes.into()).await {
                    Ok(_) => Attempt::Done(()),
                    Err(e) => classify(e),
                }
            }
        })
        .await
    }

    /// Deletes an object; one already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = Path::from(key);
        self.call(Operation::Delete, || {
            let path = path.clone();
            async move {
                match self.inner.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Attempt::Done(()),
                    Err(e) => classify(e),
                }
            }
        })
        .await
    }

    /// Runs `op` with retries; a not-found answer is final and counts as the store answering.
    async fn call<T, F, Fut>(&self, operation: Operation, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut failures = 0u32;
        loop {
            let admitted = self.admit()?;
            let outcome = op().await;
            admitted.reported();
            self.tried(operation, matches!(outcome, Attempt::Failed(_)));
            match outcome {
                Attempt::Done(v) => {
                    self.record_success();
                    return Ok(v);
                }
                Attempt::NotFound(key) => {
                    self.record_success();
                    return Err(StoreError::NotFound(key));
                }
                Attempt::Failed(message) => {
                    self.record_failure(&message);
                    failures += 1;
                    if failures > self.retries {
                        return Err(self.unavailable(message));
                    }
                    self.backoff(failures).await;
                }
            }
        }
    }

    /// Lets a call through unless the breaker is open; after the cooldown one probe goes.
    ///
    /// The caller reports the call's outcome (success or failure) and then calls
    /// [`Admitted::reported`]; a probe dropped before that counts as a failure.
    fn admit(&self) -> Result<Admitted<'_>, StoreError> {
        let mut b = self.breaker.lock();
        match b.state {
            BreakerState::Closed => Ok(Admitted {
                store: self,
                probe: false,
            }),
            BreakerState::Open { until } if Instant::now() >= until => {
                b.state = BreakerState::HalfOpen;
                Ok(Admitted {
                    store: self,
                    probe: true,
                })
            }
            BreakerState::Open { until } => Err(StoreError::Unavailable {
                url: self.url.clone(),
                message: format!(
                    "circuit breaker open after {} failed requests, next probe in {} ms (last error: {})",
                    b.failures,
                    until.saturating_duration_since(Instant::now()).as_millis(),
                    b.last_error.as_deref().unwrap_or("none")
                ),
            }),
            BreakerState::HalfOpen => Err(StoreError::Unavailable {
                url: self.url.clone(),
                message: "circuit breaker is probing the store, try again shortly".to_string(),
            }),
        }
    }

    fn record_success(&self) {
        let mut b = self.breaker.lock();
        if !matches!(b.state, BreakerState::Closed) {
            tracing::info!(store = %self.url, "object store answers again, circuit breaker closed");
        }
        b.state = BreakerState::Closed;
        b.failures = 0;
    }

    fn record_failure(&self, message: &str) {
        let mut b = self.breaker.lock();
        b.failures = b.failures.saturating_add(1);
        b.last_error = Some(message.to_string());
        let trip = matches!(b.state, BreakerState::HalfOpen)
            || (matches!(b.state, BreakerState::Closed) && b.failures >= self.threshold);
        if trip {
            tracing::warn!(store = %self.url, failures = b.failures, error = message, cooldown_ms = self.cooldown.as_millis() as u64, "object store failing, circuit breaker open");
            b.state = BreakerState::Open {
                until: Instant::now() + self.cooldown,
            };
        }
    }

    fn unavailable(&self, message: String) -> StoreError {
        StoreError::Unavailable {
            url: self.url.clone(),
            message,
        }
    }

    /// Sleeps a random time up to `base * 2^(attempt-1)`, capped (full jitter).
    async fn backoff(&self, attempt: u32) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let fraction = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        tokio::time::sleep(ceiling.mul_f64(fraction)).await;
    }

    fn next_random(&self) -> u64 {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        x
    }
}

fn classify<T>(e: object_store::Error) -> Attempt<T> {
    match e {
        object_store::Error::NotFound { path, .. } => Attempt::NotFound(path),
        other => Attempt::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn config() -> ObjectStoreConfig {
        ObjectStoreConfig {
            retries: 1,
            retry_base_ms: 1,
            retry_max_ms: 2,
            breaker_failures: 2,
            breaker_cooldown_ms: 50,
            ..ObjectStoreConfig::default()
        }
    }

    #[tokio::test]
    async fn lists_after_an_offset_and_refuses_large_objects() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for k in ["s/a/1", "s/a/2", "s/b/1"] {
            inner.put(&Path::from(k), "abc".into()).await.unwrap();
        }
        let store = ResilientStore::new(inner, "memory://".into(), &config());
        assert_eq!(store.list_children("s").await.unwrap(), vec!["a", "b"]);
        let after = store.list_after("s", Some("s/a/1"), 10).await.unwrap();
        let keys: Vec<&str> = after.iter().map(|m| m.location.as_ref()).collect();
        assert_eq!(keys, vec!["s/a/2", "s/b/1"]);
        let first = store.list_after("s", None, 2).await.unwrap();
        let keys: Vec<&str> = first.iter().map(|m| m.location.as_ref()).collect();
        assert_eq!(keys, vec!["s/a/1", "s/a/2"], "the first keys, not any two");
        assert_eq!(&store.get("s/a/1", 3).await.unwrap()[..], b"abc");
        let e = store.get("s/a/1", 2).await.unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { size: 3, .. }), "{e}");
        assert!(matches!(
            store.get("s/zz", 9).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_local_directory_is_listed_in_key_order_from_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        // '-' sorts before '/', so s/a-b/... comes before s/a/... in key order (as S3 lists)
        let keys = ["s/a/1", "s/a/2", "s/a-b/x", "s/b/1", "s/b/c/d", "s/c"];
        for k in keys {
            inner.put(&Path::from(k), "x".into()).await.unwrap();
        }
        let store = ResilientStore::new(inner, "file:///t".into(), &config());
        let list = |offset: Option<&'static str>, max| {
            let store = &store;
            async move {
                store
                    .list_after("s", offset, max)
                    .await
                    .unwrap()
                    .iter()
                    .map(|m| m.location.to_string())
                    .collect::<Vec<_>>()
            }
        };
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort();
        assert_eq!(list(None, 100).await, sorted);
        assert_eq!(list(None, 2).await, sorted[..2]);
        assert_eq!(
            list(Some("s/a/1"), 3).await,
            vec!["s/a/2", "s/b/1", "s/b/c/d"]
        );
        assert_eq!(list(Some("s/b/1"), 10).await, vec!["s/b/c/d", "s/c"]);
        assert!(list(Some("s/c"), 10).await.is_empty());
        assert!(store
            .list_after("nothing", None, 5)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.snapshot().state, "closed");
    }

    #[test]
    fn breaker_opens_after_failures_and_probes_after_cooldown() {
        let store = ResilientStore::new(Arc::new(InMemory::new()), "x".into(), &config());
        store.record_failure("down");
        assert!(store.admit().is_ok());
        store.record_failure("down");
        let Err(e) = store.admit() else {
            panic!("the breaker must be open");
        };
        assert!(e.to_string().contains("circuit breaker open"), "{e}");
        std::thread::sleep(Duration::from_millis(60));
        let probe = store.admit();
        assert!(probe.is_ok(), "one probe after the cooldown");
        assert!(store.admit().is_err(), "only one probe at a time");
        store.record_success();
        if let Ok(p) = probe {
            p.reported();
        }
        assert!(store.admit().is_ok());
        assert_eq!(store.snapshot().state, "closed");
    }

    /// Opens the breaker of `store` and waits out its cooldown, so the next call is the probe.
    fn trip_and_cool(store: &ResilientStore) {
        store.record_failure("down");
        store.record_failure("down");
        assert_eq!(store.snapshot().state, "open");
        std::thread::sleep(Duration::from_millis(60));
    }

    #[tokio::test]
    async fn a_dropped_probe_counts_as_a_failure() {
        let store = ResilientStore::new(Arc::new(InMemory::new()), "x".into(), &config());
        trip_and_cool(&store);
        // the probe hangs (a client that went away mid-call drops it)
        let probe = store.call(Operation::Get, std::future::pending::<Attempt<()>>);
        let dropped = tokio::time::timeout(Duration::from_millis(20), probe).await;
        assert!(dropped.is_err(), "the probe was still running when dropped");
        assert_eq!(
            store.snapshot().state,
            "open",
            "a dropped probe must not leave the breaker half-open"
        );
        assert!(store
            .snapshot()
            .last_error
            .is_some_and(|e| e.contains("dropped")));
        std::thread::sleep(Duration::from_millis(60));
        let answered = store
            .call(Operation::Get, || async { Attempt::Done(7) })
            .await;
        assert_eq!(answered.ok(), Some(7), "a later call probes and closes it");
        assert_eq!(store.snapshot().state, "closed");
    }

    #[tokio::test]
    async fn requests_are_counted_by_operation_across_stores_made_from_one() {
        let store = ResilientStore::new(Arc::new(InMemory::new()), "memory://".into(), &config());
        let other = store.with_own_breaker();
        store.put("a/1", "x".into()).await.unwrap();
        other.get("a/1", 10).await.unwrap();
        assert!(matches!(
            other.get("a/2", 10).await,
            Err(StoreError::NotFound(_))
        ));
        store.list_after("a", None, 10).await.unwrap();
        store.delete("a/1").await.unwrap();
        let failed = store
            .call(Operation::Put, || async {
                Attempt::<()>::Failed("down".into())
            })
            .await;
        assert!(failed.is_err());
        let counts: Vec<(&str, u64, u64)> = store
            .requests()
            .iter()
            .map(|(op, tried, failed)| (op.name(), *tried, *failed))
            .collect();
        // the failing put was tried once and retried `retries` times
        let puts = 2 + u64::from(config().retries);
        assert_eq!(
            counts,
            [
                ("list", 1, 0),
                ("get", 2, 0),
                ("put", puts, puts - 1),
                ("delete", 1, 0)
            ]
        );
    }

    #[tokio::test]
    async fn a_store_with_its_own_breaker_is_not_refused_by_another() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner.put(&Path::from("k"), "v".into()).await.unwrap();
        let ingest = ResilientStore::new(inner, "memory://".into(), &config());
        let cold = ingest.with_own_breaker();
        ingest.record_failure("down");
        ingest.record_failure("down");
        assert!(ingest.is_open());
        assert!(ingest.get("k", 9).await.is_err(), "its own breaker refuses");
        assert_eq!(&cold.get("k", 9).await.unwrap()[..], b"v");
        assert_eq!(cold.snapshot().state, "closed");
    }
}
