//! A full disk under the real binary: writes fail with a JSON error, `/ready` says the node is
//! not ready and why while `/health` answers, and after a restart on the freed disk every
//! acknowledged record is there and writes go on. The disk is a small tmpfs mounted for the
//! test (root only; elsewhere the test says it is skipped and passes).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{batch, NodeProcess};

/// A tmpfs of `mb` MiB mounted on a new directory, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(parent: &Path, mb: u32) -> Option<SmallDisk> {
        let dir = parent.join("disk");
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler file");
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_node_not_ready_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), 96) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = disk.dir.join("data");
    let env = [("AKOSHA__AGING__ENABLED", "false")];
    let node = NodeProcess::start(&data, &env).await;
    let (status, body) = node.post("/api/v1/ingest", &batch("full", 0, 200)).await;
    assert_eq!(
        (status, body["stored"].as_u64()),
        (200, Some(200)),
        "{body}"
    );

    let filler = disk.fill();
    let mut failed = 0;
    for k in 1..4 {
        let (status, body) = node
            .post("/api/v1/ingest", &batch("full", k * 1000, 200))
            .await;
        if status != 200 {
            failed += 1;
            assert!(status >= 500, "{status} {body}");
            assert!(body["error"].as_str().is_some(), "errors are JSON: {body}");
        }
    }
    assert!(failed > 0, "writes to a full disk must fail");
    let (status, ready) = node.get("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("writes are failing")),
        "{ready}"
    );
    let (status, _) = node.get("/health").await;
    assert_eq!(status, 200);

    // space again: the node either takes writes again or keeps saying it is not ready
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = node.post("/api/v1/ingest", &batch("full", 9000, 10)).await;
    let (ready_status, ready) = node.get("/ready").await;
    if status != 200 {
        assert_eq!(
            ready_status, 503,
            "a node that cannot write is not ready: {body} {ready}"
        );
    }

    // a restart on the freed disk has every acknowledged record and takes writes
    let data = node.kill9();
    let node = NodeProcess::start(&data, &env).await;
    let (_, stats) = node.get("/api/v1/stats").await;
    let hot = stats["records"]["hot"].as_u64().unwrap();
    assert!(hot >= 200, "the acknowledged records are there: {stats}");
    let (status, body) = node
        .post("/api/v1/ingest", &batch("full", 20_000, 10))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = node.get("/ready").await;
    assert_eq!(status, 200);
    drop(node);
}
