//! A real S3-compatible server (moto_server from PyPI's `moto[server]`) on a loopback port.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

/// A running moto_server process.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    /// Starts moto_server on a free port and waits until it answers.
    pub async fn start() -> S3Server {
        akosha::storage::objects::install_crypto_provider();
        let port = super::free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server: install it with pip install 'moto[server]' (.ci/run does)");
        let server = S3Server { child, port };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(server.endpoint()).send().await {
                if r.status().as_u16() < 500 {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("cannot reach moto_server");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// An S3 client for a bucket of this server.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        akosha::storage::objects::install_crypto_provider();
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_bucket_name(bucket)
                .build()
                .expect("cannot build the S3 client"),
        )
    }

    /// Environment a node needs to reach this server (the usual AWS variables).
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ]
    }

    /// Stops the server process (SIGSTOP): it holds its data and answers nothing.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

impl Drop for S3Server {
    fn drop(&mut self) {
        signal_quietly(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_quietly(pid: u32) {
    let _ = Command::new("kill")
        .arg("-CONT")
        .arg(pid.to_string())
        .status();
}
