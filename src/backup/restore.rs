//! Restoring a backup into a new data directory: the cold files and logs into the object
//! store the restored node will use, the copied trees into its store, then each shard's
//! pages through a node opened on it (which applies them by version, as a replica does),
//! and one aging pass, which puts the warm records (taken in as hot) back in the warm tier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use super::layout::{decode_entries, BackupError, BackupStore};
use super::take::decode_pages;
use crate::config::Config;
use crate::node::Node;
use crate::storage::objects::open_object_store;
use crate::storage::HotStore;

/// How long the store's lock may stay held after the trees are written (sled lets go of
/// its lock file a moment after the last handle drops).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// the backup restored
    pub id: String,
    /// the data directory written
    pub data_dir: String,
    /// the object store the cold files went to
    pub object_store: String,
    /// shards restored
    pub shards: usize,
    /// records written into the hot and warm tiers
    pub records: usize,
    /// cold copies taken in
    pub cold: usize,
    /// deletions taken in
    pub deletions: usize,
    /// trees written
    pub trees: usize,
    /// cold files and logs written
    pub objects: usize,
    /// records the closing aging pass moved from hot to warm
    pub aged: usize,
    /// how long it took, in milliseconds
    pub took_ms: f64,
}

/// Restores backup `id` (the latest without one) of `source` into the data directory and
/// object store of `config`; the directory must not hold anything yet.
///
/// Everything is written into `<dir>.restoring` beside it, renamed to `dir` at the end, so
/// a restore cut short (SIGKILL, a full disk) never leaves a half-restored directory a node
/// could start on; running it again clears what the cut one left there. An object store
/// outside the data directory is written in place (the same keys again on a second run).
pub async fn restore(
    mut config: Config,
    source: &BackupStore,
    id: Option<&str>,
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let dir = config.node.data_dir.clone();
    if has_entries(&dir) {
        return Err(BackupError::Invalid(format!(
            "{} is not empty; restore into a new data directory",
            dir.display()
        )));
    }
    let manifest = source.manifest(id).await?.ok_or_else(|| {
        BackupError::Invalid(match id {
            Some(id) => format!("no backup {id} at {}", source.url),
            None => format!("no backup at {}", source.url),
        })
    })?;
    // the object store the restored node will use, as it will name it
    let restored_url = config
        .object_store_url()
        .map_err(|e| BackupError::Node(e.to_string()))?;
    let staging = staging_dir(&dir)?;
    // held to the end: a second restore into the same directory meanwhile would clear this
    // one's staging directory as if it had been cut short (a SIGKILL lets go of it)
    let lock = lock_staging(&staging)?;
    if has_entries(&dir) {
        return Err(BackupError::Invalid(format!(
            "{} is not empty; restore into a new data directory",
            dir.display()
        )));
    }
    prepare_staging(&staging, &manifest.id)?;
    config.node.data_dir = staging.clone();
    let url = config
        .object_store_url()
        .map_err(|e| BackupError::Node(e.to_string()))?;
    let mut report = RestoreReport {
        id: manifest.id.clone(),
        data_dir: dir.display().to_string(),
        object_store: restored_url.to_string(),
        ..RestoreReport::default()
    };

    if url.scheme() == "file" {
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path)
                .map_err(|e| BackupError::Node(format!("cannot create {}: {e}", path.display())))?;
        }
    }
    let objects = open_object_store(&url, &config.object_store)
        .map_err(|e| BackupError::Node(format!("cannot open {url}: {e}")))?;
    for o in &manifest.objects {
        let bytes = source.blob(&o.blob).await?;
        objects
            .put(&Path::from(o.key.as_str()), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| BackupError::Node(format!("cannot write {} to {url}: {e}", o.key)))?;
        report.objects += 1;
    }

    let mut trees = Vec::new();
    for t in &manifest.trees {
        let bytes = source.blob(&t.blob).await?;
        let entries = decode_entries(&bytes).ok_or_else(|| {
            BackupError::Invalid(format!(
                "tree {} of backup {} does not decode",
                t.name, manifest.id
            ))
        })?;
        trees.push((t.name.clone(), entries));
    }
    let store_dir = staging.join("hot");
    let cache_mb = config.storage.cache_mb;
    report.trees = tokio::task::spawn_blocking(move || -> Result<usize, BackupError> {
        let store = HotStore::open(&store_dir, cache_mb)
            .map_err(|e| BackupError::Node(format!("cannot open {}: {e}", store_dir.display())))?;
        for (name, entries) in &trees {
            let tree = store
                .open_tree(name)
                .map_err(|e| BackupError::Node(e.to_string()))?;
            for (k, v) in entries {
                tree.insert(k.as_slice(), v.as_slice())
                    .map_err(|e| BackupError::Node(format!("cannot write tree {name}: {e}")))?;
            }
        }
        store
            .flush_blocking()
            .map_err(|e| BackupError::Node(e.to_string()))?;
        Ok(trees.len())
    })
    .await
    .map_err(|e| BackupError::Node(e.to_string()))??;

    // the restored node only takes the pages in: nothing else runs meanwhile
    config.uploads.enabled = false;
    config.aging.enabled = false;
    let node = open_when_free(config).await?;
    node.start()
        .await
        .map_err(|e| BackupError::Node(format!("restored node did not start: {e}")))?;
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    let imported = import_shards(
        &node,
        source,
        &manifest.shards,
        manifest.format,
        timeout,
        &mut report,
    )
    .await;
    // a shard's pages bring warm records in as hot ones (as a replica takes them): one aging
    // pass puts each record in the tier its age says, as the backed-up node had
    let aged = match imported {
        Ok(()) => node
            .age()
            .await
            .map(|r| report.aged = r.hot_to_warm)
            .map_err(|e| BackupError::Node(format!("restored records could not be aged: {e}"))),
        Err(e) => Err(e),
    };
    node.shutdown().await;
    drop(node);
    aged?;
    finish_staging(&staging, &dir)?;
    // a restore that comes after finds the directory full and stops there
    let _ = std::fs::remove_file(lock_path(&staging));
    drop(lock);
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Name of the file that marks a directory as a restore's staging directory.
const STAGING_MARK: &str = "RESTORING";

/// `<dir>.restoring`, beside `dir` (on its file system, so that the rename is atomic).
fn staging_dir(dir: &std::path::Path) -> Result<std::path::PathBuf, BackupError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| BackupError::Node(format!("cannot make {} absolute: {e}", dir.display())))?;
    let name = dir.file_name().ok_or_else(|| {
        BackupError::Invalid(format!(
            "expected a data directory with a name, got {}",
            dir.display()
        ))
    })?;
    let mut staged = name.to_os_string();
    staged.push(".restoring");
    Ok(dir.with_file_name(staged))
}

/// The lock file of a staging directory.
fn lock_path(staging: &std::path::Path) -> std::path::PathBuf {
    staging.with_extension("restoring.lock")
}

/// Takes the lock of a staging directory, or says that another restore holds it.
fn lock_staging(staging: &std::path::Path) -> Result<std::fs::File, BackupError> {
    let path = lock_path(staging);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| BackupError::Node(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Invalid(format!(
            "another restore into {} is running (it holds {})",
            staging.with_extension("").display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(BackupError::Node(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Makes an empty staging directory with its mark; one a cut restore left (it has the
/// mark) is cleared first, anything else there is refused.
fn prepare_staging(staging: &std::path::Path, id: &str) -> Result<(), BackupError> {
    let io = |what: &str, e: std::io::Error| {
        BackupError::Node(format!("cannot {what} {}: {e}", staging.display()))
    };
    if staging.exists() {
        if !staging.join(STAGING_MARK).is_file() {
            return Err(BackupError::Invalid(format!(
                "{} exists and is not a restore's staging directory; move it away",
                staging.display()
            )));
        }
        tracing::warn!(dir = %staging.display(), "clearing what a restore cut short left");
        std::fs::remove_dir_all(staging).map_err(|e| io("clear", e))?;
    }
    std::fs::create_dir_all(staging).map_err(|e| io("create", e))?;
    std::fs::write(staging.join(STAGING_MARK), format!("{id}\n")).map_err(|e| io("mark", e))
}

/// Moves the finished staging directory to `dir` (which may exist, empty).
fn finish_staging(staging: &std::path::Path, dir: &std::path::Path) -> Result<(), BackupError> {
    let io = |what: String, e: std::io::Error| BackupError::Node(format!("cannot {what}: {e}"));
    std::fs::remove_file(staging.join(STAGING_MARK))
        .map_err(|e| io(format!("unmark {}", staging.display()), e))?;
    if dir.exists() {
        std::fs::remove_dir(dir)
            .map_err(|e| io(format!("replace the empty {}", dir.display()), e))?;
    }
    // (files sled still has open follow the rename: they are the same files)
    std::fs::rename(staging, dir).map_err(|e| {
        io(
            format!("move {} to {}", staging.display(), dir.display()),
            e,
        )
    })
}

/// Whether `dir` exists and holds anything.
fn has_entries(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Opens the node on the restored store, waiting for sled to let go of its lock.
async fn open_when_free(config: Config) -> Result<Arc<Node>, BackupError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Node::open(config.clone()).await {
            Ok(node) => return Ok(node),
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(BackupError::Node(format!(
                    "cannot open the restored node: {e}"
                )))
            }
        }
    }
}

async fn import_shards(
    node: &Node,
    source: &BackupStore,
    shards: &[super::layout::ShardEntry],
    format: u32,
    timeout: Duration,
    report: &mut RestoreReport,
) -> Result<(), BackupError> {
    for s in shards {
        let bytes = source.blob(&s.blob).await?;
        let pages = tokio::task::spawn_blocking(move || decode_pages(&bytes, format))
            .await
            .map_err(|e| BackupError::Node(e.to_string()))??;
        for page in pages {
            let counts = node
                .shards
                .import(s.shard, page, timeout)
                .await
                .map_err(|e| BackupError::Node(format!("cannot restore shard {}: {e}", s.shard)))?;
            report.records += counts.written;
            report.cold += counts.cold;
            report.deletions += counts.deletions;
        }
        report.shards += 1;
    }
    node.store
        .flush()
        .await
        .map_err(|e| BackupError::Node(e.to_string()))?;
    Ok(())
}
