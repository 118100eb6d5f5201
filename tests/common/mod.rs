//! Helpers for tests that run the real `akosha-node` binary.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod netns;
pub mod s3;
pub mod uploads;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `akosha-node` process on a loopback port.
pub struct NodeProcess {
    pub child: Child,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

/// A free loopback port for TCP and UDP (bound then released), below Linux's ephemeral range
/// (32768 and up), so that no outgoing connection of this or another test is given it
/// between its release and the node binding it; each call of a process gets another port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // test binaries run one after another but may overlap another run: start apart by pid
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port from {FIRST} to {}", FIRST + SPAN)
}

/// Where the embedding model is looked for by tests: the repository's default.
pub fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
}

impl NodeProcess {
    /// Starts a node on `data_dir` with extra environment, and waits until /ready says 200.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> NodeProcess {
        Self::start_with(data_dir, &[], env).await
    }

    /// Starts a node with extra flags and environment, and waits until /ready says 200.
    pub async fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let http = format!("127.0.0.1:{}", free_port());
        Self::start_in(None, &http, data_dir, args, env).await
    }

    /// Starts a node serving HTTP on `http`, inside network namespace `netns` when given
    /// (`ip netns exec`), and waits until /ready says 200.
    pub async fn start_in(
        netns: Option<&str>,
        http: &str,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProcess {
        akosha::storage::objects::install_crypto_provider();
        let binary = env!("CARGO_BIN_EXE_akosha-node");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, binary]);
                c
            }
            None => Command::new(binary),
        };
        cmd.args(args);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--http")
            .arg(http)
            .env("AKOSHA__EMBEDDING__MODEL_DIR", model_dir())
            .env("RUST_LOG", "warn")
            // the debug build walks graphs unoptimised, so its index builder is far slower
            // than a release node's and pacing writes to it would slow every test that
            // writes a lot; the test of pacing sets its own limit
            .env("AKOSHA__INDEX__MAX_PENDING_POINTS", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("cannot start akosha-node");
        let (host, port) = http.rsplit_once(':').expect("http is HOST:PORT");
        let node = NodeProcess {
            child,
            host: host.to_string(),
            port: port.parse().expect("http port is a number"),
            data_dir: data_dir.to_path_buf(),
            client: reqwest::Client::new(),
        };
        node.wait_ready(Duration::from_secs(120)).await;
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}", self.host, self.port, path)
    }

    /// Polls /ready until 200 or the deadline.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.client.get(self.url("/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node did not become ready in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs JSON and returns status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request failed");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes as JSON and returns status and body.
    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request failed");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// DELETEs and returns status and body.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("request failed");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET /api/v1/uploads` until `done` holds or the deadline, returning the last report.
    pub async fn wait_uploads(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, report) = self.get("/api/v1/uploads").await;
            assert_eq!(status, 200, "{report}");
            if done(&report) {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "uploads did not reach the expected state in {within:?}: {report}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(mut self) -> PathBuf {
        self.child.kill().expect("kill failed");
        let _ = self.child.wait();
        self.data_dir.clone()
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_term(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        self.child.wait().expect("wait failed")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic unit vector for a seed (xorshift, no dependency).
pub fn unit_vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// An ingest body of `n` conversations of one system with seeded vectors.
pub fn batch(system: &str, from: u64, n: u64) -> Value {
    let conversations: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "id": format!("conv-{i}"),
                "content": format!("conversation {i} of {system}"),
                "embedding": unit_vector(i),
                "timestamp": "2026-11-20T10:00:00Z",
                "metadata": {"project": "akosha", "n": i},
            })
        })
        .collect();
    json!({ "system_id": system, "conversations": conversations })
}

/// `n` records of `system` from seed `from`, dated `days_ago` days back.
pub fn old_conversations(system: &str, from: u64, n: u64, days_ago: i64) -> Vec<Value> {
    let t = (chrono::Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339();
    (from..from + n)
        .map(|i| {
            json!({
                "id": format!("c{i}"),
                "content": format!("Record {i} of {system}. It is old. Very old."),
                "embedding": unit_vector(i),
                "timestamp": t,
            })
        })
        .collect()
}

/// Every Parquet file under `root`.
pub fn walk_parquet(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out
}

/// Every hit of a search of `system` by seed `i`'s vector over all tiers, as (conversation id,
/// tier, hit); the answer must be whole.
pub async fn hits(node: &NodeProcess, i: u64, system: &str) -> Vec<(String, String, Value)> {
    let (status, answer) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(i), "limit": 5, "tiers": ["hot", "warm", "cold"],
                    "system_id": system}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["partial"], false, "{answer}");
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["conversation_id"].as_str().unwrap().to_string(),
                h["tier"].as_str().unwrap().to_string(),
                h.clone(),
            )
        })
        .collect()
}
