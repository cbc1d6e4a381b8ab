//! Certificates for tests of TLS, made by openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a certificate `name` for `localhost` and 127.0.0.1 signed by
/// it, made with openssl in a fresh directory: (CA, certificate, key).
pub fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (scripts/test installs it)");
        assert!(
            ok.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=roomring test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.csr"),
    ]);
    std::fs::write(
        path("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        &format!("{name}.pem"),
    ]);
    (
        path("ca.pem"),
        path(&format!("{name}.pem")),
        path(&format!("{name}.key")),
    )
}
