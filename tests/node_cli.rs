//! `akosha-node`'s own flags: `--check-config` (exit 0 for a valid file, 2 with every
//! problem listed) and `--log-format json` (every line a JSON object).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

fn check(file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-node"))
        .arg("--check-config")
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn good_unknown_key_and_bad_value_files() {
    let dir = tempfile::tempdir().unwrap();
    // the shipped configuration is valid
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/akosha.toml");
    let (code, out, err) = check(&shipped);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is valid"), "{out}");

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[search]\nmax_limt = 50\n[indexx]\nm = 16\n").unwrap();
    let (code, _, err) = check(&unknown);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2 problems"), "{err}");
    assert!(err.contains("unknown field `max_limt`"), "{err}");
    assert!(err.contains("indexx"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nhttp_addr = \"localhost\"\n[index]\nsegment_size = \"many\"\n[aging]\nhot_days = 100.0\nwarm_days = 10.0\n",
    )
    .unwrap();
    let (code, _, err) = check(&bad);
    assert_eq!(code, 2, "{err}");
    for key in ["node.http_addr", "index.segment_size", "aging.warm_days"] {
        assert!(err.contains(key), "{key} missing: {err}");
    }

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[node\n").unwrap();
    let (code, _, err) = check(&broken);
    assert_eq!(code, 2);
    assert!(err.contains("not valid toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    akosha::storage::objects::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_akosha-node"))
        .args(["--log-format", "json", "--http", &http, "--data-dir"])
        .arg(dir.path())
        .env("AKOSHA__EMBEDDING__MODEL_DIR", common::model_dir())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = format!("http://{http}/ready");
    let mut up = false;
    for _ in 0..600 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(up, "the node never became ready");
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 2,
        "expected start and stop lines, got {text}"
    );
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
}
