//! `akosha-node --check-config`: exit 0 for a valid file, 2 with every problem listed.

use std::process::Command;

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
