//! HTTPS with a private CA, through the real binary: ingest, search and the official MCP
//! Python SDK over TLS, and a new certificate taken on SIGHUP without a restart.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::certs::issue;
use common::{batch, unit_vector};
use serde_json::{json, Value};

/// The subject of the certificate a fresh connection to `addr` is shown.
fn served_subject(addr: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_certificate_renewed_on_sighup() {
    akosha::storage::objects::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    issue(&pki, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
    // the files the node reads: replaced in place on renewal
    std::fs::copy(pki.join("server.pem"), pki.join("live.pem")).unwrap();
    std::fs::copy(pki.join("server.key"), pki.join("live.key")).unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_akosha-node"))
        .args(["--http", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("AKOSHA__EMBEDDING__MODEL_DIR", common::model_dir())
        .env("AKOSHA__HTTP__TLS_CERT_FILE", pki.join("live.pem"))
        .env("AKOSHA__HTTP__TLS_KEY_FILE", pki.join("live.key"))
        .env("AKOSHA__UPLOADS__ENABLED", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let mut ready = false;
    for _ in 0..600 {
        if client
            .get(url("/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the node never answered over https");
    // plain HTTP to the same port gets no answer
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/health"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    // a client that does not trust the CA is refused
    assert!(reqwest::Client::new()
        .get(url("/health"))
        .send()
        .await
        .is_err());

    let r = client
        .post(url("/api/v1/ingest"))
        .json(&batch("tls-sys", 0, 20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: Value = client
        .post(url("/api/v1/search"))
        .json(&json!({"embedding": unit_vector(7), "limit": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["results"][0]["conversation_id"], "conv-7", "{found}");

    // the official SDK client over https, trusting the CA through SSL_CERT_FILE
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/sdk_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(url("/mcp"))
        .arg("legacy")
        .env("SSL_CERT_FILE", pki.join("ca.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or(Value::Null);
    assert!(
        out.status.success() && seen["ok"] == true,
        "sdk client over https: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a renewed certificate: new files, SIGHUP, and new connections get it
    assert!(
        served_subject(&addr).contains("CN = localhost"),
        "{}",
        served_subject(&addr)
    );
    issue(
        &pki,
        "renewed",
        "localhost-renewed",
        "DNS:localhost,IP:127.0.0.1",
    );
    std::fs::copy(pki.join("renewed.pem"), pki.join("live.pem")).unwrap();
    std::fs::copy(pki.join("renewed.key"), pki.join("live.key")).unwrap();
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let mut renewed = false;
    for _ in 0..50 {
        if served_subject(&addr).contains("localhost-renewed") {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        renewed,
        "the renewed certificate was not served: {}",
        served_subject(&addr)
    );
    let r = client.get(url("/api/v1/stats")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the node"
    );
    let _ = child.kill();
    let _ = child.wait();
}
