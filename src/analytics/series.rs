//! The time series: per metric and system, hourly buckets for the last week and daily ones
//! before, in a sled tree of the node's store.
//!
//! A key is `metric NUL granularity system NUL bucket` (bucket: hours or days since the
//! Unix epoch, big-endian with the sign bit flipped so that keys sort by time); a value is
//! the bucket's sum and count. Record counts are written with the records (durable by the
//! writer's flush); searches and uploads are gathered in memory and written every few
//! seconds, and read together with what is written.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::storage::logged_batch::{self, LoggedBatch};
use crate::storage::StorageError;

/// Hours of hourly buckets kept; older ones are folded into daily buckets.
pub const HOURLY_HOURS: i64 = 7 * 24;
/// Days of daily buckets kept; older ones are dropped.
pub const DAILY_DAYS: i64 = 400;

const HOURLY: u8 = b'h';
const DAILY: u8 = b'd';

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// records stored for the first time, by the hour of their timestamp
    Records,
    /// uploads read to the end, by the hour they were done
    Uploads,
    /// searches, by the hour they ran (unscoped ones under system `*`)
    Searches,
    /// mean search latency in milliseconds
    SearchLatencyMs,
}

impl Metric {
    /// Every metric, by name.
    pub const ALL: [Metric; 4] = [
        Metric::Records,
        Metric::Uploads,
        Metric::Searches,
        Metric::SearchLatencyMs,
    ];

    /// The metric's name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Records => "records",
            Metric::Uploads => "uploads",
            Metric::Searches => "searches",
            Metric::SearchLatencyMs => "search_latency_ms",
        }
    }

    /// The metric of a name, or a message naming the ones there are.
    pub fn parse(name: &str) -> Result<Metric, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "metric_name must be one of {}, got {name:?}",
                    names.join(", ")
                )
            })
    }

    /// Whether a bucket's value is its mean (latency) rather than its sum (counts); a count
    /// is zero in a bucket with nothing, a mean is missing.
    pub fn is_mean(self) -> bool {
        self == Metric::SearchLatencyMs
    }

    /// The metric whose samples this one's are (latency is kept with searches).
    fn stored_as(self) -> Metric {
        match self {
            Metric::SearchLatencyMs => Metric::Searches,
            m => m,
        }
    }
}

/// A bucket's sum and count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// sum of the values (records, uploads, searches; for searches, latency in ms)
    pub sum: f64,
    /// how many values
    pub n: u64,
}

impl Bucket {
    fn add(&mut self, other: Bucket) {
        self.sum += other.sum;
        self.n += other.n;
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.sum.to_le_bytes());
        b[8..].copy_from_slice(&self.n.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Bucket {
        let word = |r: std::ops::Range<usize>| {
            b.get(r)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .unwrap_or_default()
        };
        Bucket {
            sum: f64::from_le_bytes(word(0..8)),
            n: u64::from_le_bytes(word(8..16)),
        }
    }
}

fn key(metric: Metric, granularity: u8, system: &str, bucket: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(metric.name().len() + system.len() + 12);
    k.extend_from_slice(metric.name().as_bytes());
    k.push(0);
    k.push(granularity);
    k.extend_from_slice(system.as_bytes());
    k.push(0);
    k.extend_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The system and bucket of a key under `prefix` (metric NUL granularity).
fn split(k: &[u8], prefix_len: usize) -> Option<(String, i64)> {
    let rest = k.get(prefix_len..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let system = String::from_utf8_lossy(&rest[..nul]).into_owned();
    let raw = <[u8; 8]>::try_from(rest.get(nul + 1..)?).ok()?;
    Some((system, (u64::from_be_bytes(raw) ^ (1 << 63)) as i64))
}

fn prefix(metric: Metric, granularity: u8) -> Vec<u8> {
    let mut p = metric.name().as_bytes().to_vec();
    p.push(0);
    p.push(granularity);
    p
}

/// Hours since the Unix epoch of a time.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// The node's series.
pub struct Series {
    tree: sled::Tree,
    /// one writer at a time: each write reads the bucket it adds to
    write: parking_lot::Mutex<()>,
    /// samples not written yet, by key
    pending: parking_lot::Mutex<HashMap<Vec<u8>, Bucket>>,
}

impl Series {
    /// The series kept in `tree`, finishing the write a crash cut short, if any.
    pub fn open(tree: sled::Tree) -> Result<Self, StorageError> {
        logged_batch::recover(&tree)?;
        Ok(Series {
            tree,
            write: parking_lot::Mutex::new(()),
            pending: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// The key a sample at `at` goes to, as of `now` (daily when older than a week).
    fn key_at(metric: Metric, system: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Vec<u8> {
        let hour = hour_of(at);
        if hour <= hour_of(now) - HOURLY_HOURS {
            key(metric.stored_as(), DAILY, system, hour.div_euclid(24))
        } else {
            key(metric.stored_as(), HOURLY, system, hour)
        }
    }

    /// Adds samples now, to be made durable by the caller's next flush of the store.
    pub fn add(
        &self,
        metric: Metric,
        samples: &[(&str, DateTime<Utc>, f64)],
    ) -> Result<(), StorageError> {
        let now = Utc::now();
        let mut sums: HashMap<Vec<u8>, Bucket> = HashMap::new();
        for (system, at, value) in samples {
            sums.entry(Self::key_at(metric, system, *at, now))
                .or_default()
                .add(Bucket { sum: *value, n: 1 });
        }
        self.write_sums(sums)
    }

    /// Notes a sample, written with the next [`Series::persist`].
    pub fn observe(&self, metric: Metric, system: &str, at: DateTime<Utc>, value: f64) {
        let k = Self::key_at(metric, system, at, Utc::now());
        self.pending
            .lock()
            .entry(k)
            .or_default()
            .add(Bucket { sum: value, n: 1 });
    }

    /// Writes the samples noted so far (durable with the next flush of the store).
    pub fn persist(&self) -> Result<(), StorageError> {
        let sums = std::mem::take(&mut *self.pending.lock());
        self.write_sums(sums)
    }

    fn write_sums(&self, sums: HashMap<Vec<u8>, Bucket>) -> Result<(), StorageError> {
        if sums.is_empty() {
            return Ok(());
        }
        let _write = self.write.lock();
        let mut batch = LoggedBatch::default();
        self.add_to_stored(&mut batch, sums)?;
        batch.apply(&self.tree)
    }

    /// Puts into `batch` each stored bucket of `sums` with its sum added.
    fn add_to_stored(
        &self,
        batch: &mut LoggedBatch,
        sums: HashMap<Vec<u8>, Bucket>,
    ) -> Result<(), StorageError> {
        for (k, add) in sums {
            let mut b = self
                .tree
                .get(&k)?
                .map(|v| Bucket::from_bytes(&v))
                .unwrap_or_default();
            b.add(add);
            batch.insert(k, b.to_bytes().to_vec());
        }
        Ok(())
    }

    /// Folds hourly buckets older than a week into daily ones and drops daily ones older
    /// than [`DAILY_DAYS`]; answers how many buckets went.
    pub fn compact(&self, now: DateTime<Utc>) -> Result<usize, StorageError> {
        let oldest_hour = hour_of(now) - HOURLY_HOURS;
        let oldest_day = hour_of(now).div_euclid(24) - DAILY_DAYS;
        let _write = self.write.lock();
        let mut batch = LoggedBatch::default();
        let mut folded: HashMap<Vec<u8>, Bucket> = HashMap::new();
        let mut gone = 0;
        for metric in [Metric::Records, Metric::Uploads, Metric::Searches] {
            let hourly = prefix(metric, HOURLY);
            for item in self.tree.scan_prefix(&hourly) {
                let (k, v) = item?;
                let Some((system, hour)) = split(&k, hourly.len()) else {
                    continue;
                };
                if hour > oldest_hour {
                    continue;
                }
                folded
                    .entry(key(metric, DAILY, &system, hour.div_euclid(24)))
                    .or_default()
                    .add(Bucket::from_bytes(&v));
                batch.remove(k.to_vec());
                gone += 1;
            }
            let daily = prefix(metric, DAILY);
            for item in self.tree.scan_prefix(&daily) {
                let (k, _) = item?;
                if split(&k, daily.len()).is_some_and(|(_, day)| day < oldest_day) {
                    folded.remove(&k.to_vec());
                    batch.remove(k.to_vec());
                    gone += 1;
                }
            }
        }
        self.add_to_stored(&mut batch, folded)?;
        batch.apply(&self.tree)?;
        Ok(gone)
    }

    /// Buckets of `metric` by system since `from` (hourly when `daily` is false, else
    /// daily, hourly buckets summed into their days), written and pending alike.
    pub fn read(
        &self,
        metric: Metric,
        from: DateTime<Utc>,
        daily: bool,
    ) -> Result<BTreeMap<String, BTreeMap<i64, Bucket>>, StorageError> {
        let stored = metric.stored_as();
        let mut out: BTreeMap<String, BTreeMap<i64, Bucket>> = BTreeMap::new();
        let from_hour = hour_of(from);
        let mut put = |system: String, granularity: u8, bucket: i64, b: Bucket| {
            let (start_hour, slot) = match (granularity, daily) {
                (HOURLY, false) => (bucket, bucket),
                (HOURLY, true) => (bucket, bucket.div_euclid(24)),
                // a daily bucket in an hourly read has no hour to go to
                (_, false) => return,
                (_, true) => (bucket * 24 + 23, bucket),
            };
            if start_hour < from_hour {
                return;
            }
            out.entry(system)
                .or_default()
                .entry(slot)
                .or_default()
                .add(b);
        };
        for granularity in [HOURLY, DAILY] {
            let p = prefix(stored, granularity);
            for item in self.tree.scan_prefix(&p) {
                let (k, v) = item?;
                if let Some((system, bucket)) = split(&k, p.len()) {
                    put(system, granularity, bucket, Bucket::from_bytes(&v));
                }
            }
            for (k, b) in self.pending.lock().iter() {
                if k.starts_with(&p) {
                    if let Some((system, bucket)) = split(k, p.len()) {
                        put(system, granularity, bucket, *b);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The start of bucket `slot` (an hour, or with `daily` a day, since the Unix epoch).
pub fn bucket_start(slot: i64, daily: bool) -> DateTime<Utc> {
    let hours = if daily { slot * 24 } else { slot };
    Utc.timestamp_opt(0, 0).single().unwrap_or_default() + Duration::hours(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> (tempfile::TempDir, Series) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (
            dir,
            Series::open(db.open_tree("analytics").unwrap()).unwrap(),
        )
    }

    #[test]
    fn samples_land_in_their_hour_and_old_ones_fold_into_days() {
        let (_d, s) = series();
        let now = Utc::now();
        let hour = |h: i64| now - Duration::hours(h);
        s.add(
            Metric::Records,
            &[
                ("a", hour(1), 1.0),
                ("a", hour(1), 1.0),
                ("b", hour(2), 1.0),
            ],
        )
        .unwrap();
        s.observe(Metric::Searches, "*", hour(0), 12.0);
        s.observe(Metric::Searches, "*", hour(0), 8.0);
        let read = s
            .read(Metric::Records, now - Duration::days(1), false)
            .unwrap();
        assert_eq!(read["a"][&hour_of(hour(1))].sum, 2.0);
        assert_eq!(read["b"].len(), 1);
        // pending searches are read before they are written, and after
        for _ in 0..2 {
            let lat = s
                .read(Metric::SearchLatencyMs, now - Duration::days(1), false)
                .unwrap();
            let b = lat["*"][&hour_of(now)];
            assert_eq!((b.sum, b.n), (20.0, 2));
            s.persist().unwrap();
        }
        // samples older than a week go to daily buckets; compacting folds hourly ones (the
        // records of a and b, the searches)
        s.add(Metric::Records, &[("a", now - Duration::days(9), 1.0)])
            .unwrap();
        assert_eq!(s.compact(now + Duration::days(8)).unwrap(), 3);
        let days = s
            .read(Metric::Records, now - Duration::days(30), true)
            .unwrap();
        let total: f64 = days["a"].values().map(|b| b.sum).sum();
        assert_eq!(total, 3.0);
        assert!(s
            .read(Metric::Records, now - Duration::days(30), false)
            .unwrap()
            .is_empty());
        assert!(Metric::parse("nope")
            .unwrap_err()
            .contains("records, uploads"));
    }
}
