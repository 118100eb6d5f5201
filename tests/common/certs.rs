//! Certificates for TLS tests: a private CA and certificates it signs, made by `openssl`.

use std::path::Path;
use std::process::Command;

/// Runs `openssl` in `dir` and checks it succeeded.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` (made on first use), and a certificate signed by it: `name.pem` and
/// `name.key`, with subject `cn` and subjectAltName `san` (e.g. `DNS:localhost,IP:127.0.0.1`).
pub fn issue(dir: &Path, name: &str, cn: &str, san: &str) {
    if !dir.join("ca.pem").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=akosha test CA",
            ],
        );
    }
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\n")).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}
