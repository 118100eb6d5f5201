//! Mutual TLS on the cluster transport, through real `akosha-node` processes on loopback:
//! two members with certificates from one private CA form a cluster and replicate; a node
//! with a certificate from another CA, and one with no TLS at all, never become members;
//! `akosha-admin` gets in with a client certificate from the CA and is refused without one
//! or with a foreign one; a connection that never says hello does not hold up the others.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::certs::issue;
use common::cluster::{ingest_until_acknowledged, search_ids, start_member, wait_formed, COOKIE};
use common::{batch, NodeProcess};
use serde_json::{json, Value};

/// The name every member's certificate carries (`cluster.tls_server_name`'s default).
const SAN: &str = "DNS:akosha";

/// The environment that points a member at `name`'s certificate in `pki`, trusting the CA
/// in `trusts`.
fn tls_env(pki: &Path, name: &str, trusts: &Path) -> Vec<(String, String)> {
    let path = |dir: &Path, f: String| dir.join(f).display().to_string();
    vec![
        (
            "AKOSHA__CLUSTER__TLS_CERT_FILE".into(),
            path(pki, format!("{name}.pem")),
        ),
        (
            "AKOSHA__CLUSTER__TLS_KEY_FILE".into(),
            path(pki, format!("{name}.key")),
        ),
        (
            "AKOSHA__CLUSTER__TLS_CA_FILE".into(),
            path(trusts, "ca.pem".into()),
        ),
    ]
}

async fn member(
    dir: &Path,
    id: &str,
    port: u16,
    join: &[u16],
    env: &[(String, String)],
) -> NodeProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_member(&dir.join(id), id, port, join, &[], &env).await
}

/// Runs `akosha-admin --json cluster` through `node`, with TLS flags for `name` in `pki`
/// trusting the CA in the third path.
fn admin_cluster(node: &str, tls: Option<(&Path, &str, &Path)>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_akosha-admin"));
    cmd.args(["--node", node, "--json", "--timeout-ms", "5000", "cluster"])
        .env("AKOSHA_COOKIE", COOKIE)
        .env_remove("AKOSHA_NODE")
        .env_remove("AKOSHA_TLS_CERT")
        .env_remove("AKOSHA_TLS_KEY")
        .env_remove("AKOSHA_TLS_CA");
    if let Some((pki, name, trusts)) = tls {
        cmd.arg("--tls-cert")
            .arg(pki.join(format!("{name}.pem")))
            .arg("--tls-key")
            .arg(pki.join(format!("{name}.key")))
            .arg("--tls-ca")
            .arg(trusts.join("ca.pem"));
    }
    cmd.output().expect("cannot run akosha-admin")
}

/// The ids of the members `node` lists alive.
async fn alive(node: &NodeProcess) -> Vec<String> {
    let (_, view) = node.get("/api/v1/cluster").await;
    let mut ids: Vec<String> = view["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| m["state"] == "alive")
        .filter_map(|m| m["node_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// The subject of the certificate a fresh TLS connection to `addr` is shown, connecting
/// with the admin certificate of the CA in `pki`.
fn served_subject(addr: &str, pki: &Path) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "akosha"])
        .arg("-cert")
        .arg(pki.join("admin.pem"))
        .arg("-key")
        .arg(pki.join("admin.key"))
        .arg("-CAfile")
        .arg(pki.join("ca.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

fn member_ids(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["node_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_the_cas_certificates_form_a_cluster_and_no_one_else_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ca-ours"), dir.path().join("ca-theirs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    for name in ["n1", "n2", "admin"] {
        issue(&ours, name, name, SAN);
    }
    // the same names and SAN, signed by another CA
    issue(&theirs, "rogue", "a3", SAN);
    issue(&theirs, "admin", "admin", SAN);

    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let n1 = member(
        dir.path(),
        "n1",
        ports[0],
        &[],
        &tls_env(&ours, "n1", &ours),
    )
    .await;
    let n2 = member(
        dir.path(),
        "n2",
        ports[1],
        &[ports[0]],
        &tls_env(&ours, "n2", &ours),
    )
    .await;
    wait_formed(&[&n1, &n2], 2).await;

    // records written through n1 are replicated to n2 over the TLS sessions
    let tries = ingest_until_acknowledged(&n1, &batch("tls-sys", 0, 40)).await;
    assert!(tries >= 1);
    let (ids, answer) = search_ids(
        &n2,
        &json!({"query": "conversation 7", "system_id": "tls-sys", "limit": 40}),
    )
    .await;
    assert_eq!(ids.len(), 40, "n2 answers every record: {answer}");
    let (_, stats) = n2.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["total"], 40, "{stats}");

    // a node whose certificate another CA signed (trusting ours, which is no secret, and
    // with the smaller id, so that it is the one that dials n1 and n2), and a node with no
    // TLS, both holding the cookie and gossiping with n1: neither ever becomes a member
    let rogue = member(
        dir.path(),
        "a3",
        ports[2],
        &[ports[0]],
        &tls_env(&theirs, "rogue", &ours),
    )
    .await;
    let plain = member(dir.path(), "n4", ports[3], &[ports[0]], &[]).await;
    // a connection to n1's transport that never starts its TLS handshake
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", ports[0]))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for n in [&n1, &n2] {
            assert_eq!(alive(n).await, vec!["n1", "n2"]);
        }
        assert_eq!(alive(&rogue).await, vec!["a3"]);
        assert_eq!(alive(&plain).await, vec!["n4"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, stats) = n1.get("/api/v1/stats").await;
    assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    assert_eq!(stats["under_replicated_shards"], json!([]), "{stats}");

    // akosha-admin with a certificate from the CA gets in, while the silent connection is
    // still open: it holds up no one
    let n1_addr = format!("127.0.0.1:{}", ports[0]);
    let out = admin_cluster(&n1_addr, Some((&ours, "admin", &ours)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = member_ids(&answer);
    assert!(
        listed.contains(&"n1".to_string()) && listed.contains(&"n2".to_string()),
        "{answer}"
    );
    drop(silent);

    // without a certificate, with one from the other CA, or trusting only the other CA:
    // refused, exit 1, saying why
    for tls in [
        None,
        Some((theirs.as_path(), "admin", ours.as_path())),
        Some((ours.as_path(), "admin", theirs.as_path())),
    ] {
        let out = admin_cluster(&n1_addr, tls);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("refused") || stderr.contains("cannot reach"),
            "{stderr}"
        );
    }
    // half the TLS flags is bad usage
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args(["--node", &n1_addr, "cluster", "--tls-cert"])
        .arg(ours.join("admin.pem"))
        .env("AKOSHA_COOKIE", COOKIE)
        .env_remove("AKOSHA_TLS_KEY")
        .env_remove("AKOSHA_TLS_CA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-key") && stderr.contains("--tls-ca"),
        "{stderr}"
    );

    // the members still stand as they were
    wait_formed(&[&n1, &n2], 2).await;

    // n1's certificate renewed in place and SIGHUP: new sessions get the new one, and the
    // cluster stays whole
    issue(&ours, "n1", "n1-renewed", SAN);
    let hup = Command::new("kill")
        .args(["-HUP", &n1.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let subject = served_subject(&n1_addr, &ours);
        if subject.contains("n1-renewed") {
            break;
        }
        assert!(Instant::now() < deadline, "still served: {subject}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = admin_cluster(&n1_addr, Some((&ours, "admin", &ours)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(alive(&n2).await, vec!["n1", "n2"]);
    for n in [n1, n2, rogue, plain] {
        n.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_half_its_tls_settings_or_a_bad_file_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    issue(&pki, "n1", "n1", SAN);
    let run = |env: &[(&str, PathBuf)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_akosha-node"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--node-id",
            "n1",
            "--http",
            &format!("127.0.0.1:{}", common::free_port()),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("AKOSHA_COOKIE", COOKIE)
        .env("AKOSHA__EMBEDDING__MODEL_DIR", common::model_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[("AKOSHA__CLUSTER__TLS_CERT_FILE", pki.join("n1.pem"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.tls_key_file"), "{stderr}");

    // the key file given for the CA: named, and nothing starts
    let out = run(&[
        ("AKOSHA__CLUSTER__TLS_CERT_FILE", pki.join("n1.pem")),
        ("AKOSHA__CLUSTER__TLS_KEY_FILE", pki.join("n1.key")),
        ("AKOSHA__CLUSTER__TLS_CA_FILE", pki.join("n1.key")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.tls_ca_file"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created");

    // --check-config reads the files too
    let check = |ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_akosha-node"))
            .arg("--check-config")
            .env("AKOSHA__CLUSTER__TLS_CERT_FILE", pki.join("n1.pem"))
            .env("AKOSHA__CLUSTER__TLS_KEY_FILE", pki.join("n1.key"))
            .env("AKOSHA__CLUSTER__TLS_CA_FILE", ca)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = check(&pki.join("n1.key"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster.tls_ca_file") && stderr.contains("holds no certificate"),
        "{stderr}"
    );
    let out = check(&pki.join("ca.pem"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
