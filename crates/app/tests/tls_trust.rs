//! Setting up a TLS server the usual ways, as a new user would: `serve --tls-self-signed`
//! (its certificate kept across restarts, its fingerprint printed and pinned by a
//! remembered server that later commands use without repeating anything), and a certificate
//! made with `openssl req -x509` (marked as a CA, no subjectAltName) trusted by file or by
//! OpenSSL's own fingerprint line; a wrong fingerprint or no trust is refused with what to do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{fails_with, ok, serve};
use std::path::Path;
use std::process::{Command, Stdio};

fn fingerprint_in(printed: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("certificate fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {printed}"))
        .trim()
        .to_string()
}

#[test]
fn a_self_signed_server_is_pinned_remembered_and_kept_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (server_home, home) = (tmp.path().join("server"), tmp.path().join("client"));
    std::fs::create_dir_all(&server_home).unwrap();
    let db = server_home.join("g.db");
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for e in blindsight_testdata::first(4) {
        std::fs::write(imgs.join(e.name), e.png).unwrap();
    }
    let served = serve(&server_home, &db, &["--tls-self-signed"]);
    assert!(served.printed.contains("(made now)"), "{}", served.printed);
    let fp = fingerprint_in(&served.printed);
    assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 64, "{fp}");
    let url = served.url.clone();
    let token = db.with_extension("db.admin-token");

    // without trust: refused, with what to do
    fails_with(&home, &["info", "--server", &url], "--server-fingerprint");
    // a wrong fingerprint: refused, nothing remembered
    let wrong = format!("SHA256:{}", "ab".repeat(32));
    fails_with(
        &home,
        &["remote", "add", "nas", &url, "--server-fingerprint", &wrong],
        "not the trusted",
    );
    assert!(!home.join("remotes.json").exists());
    let added = ok(
        &home,
        &[
            "remote",
            "add",
            "nas",
            &url,
            "--server-fingerprint",
            &fp,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert!(added.contains("remembered server `nas`"), "{added}");
    assert!(ok(&home, &["remote", "list"]).contains("nas (default)"));

    // later commands name nothing: the default remembered server, its trust, its token
    ok(&home, &["create", "--vectors", "pixels", "--scheme", "bfv"]);
    ok(&home, &["ingest", imgs.to_str().unwrap()]);
    let q = std::fs::read_dir(&imgs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let found = ok(&home, &["search", q.to_str().unwrap(), "--top", "1"]);
    assert!(found.contains("1.0000"), "{found}");
    // and by name
    assert!(ok(&home, &["info", "--server", "nas"]).contains("images:     4"));

    // restarted: the same certificate, so the pinned fingerprint still holds
    drop(served);
    let again = serve(&server_home, &db, &["--tls-self-signed"]);
    assert!(
        again.printed.contains("(kept from before)"),
        "{}",
        again.printed
    );
    assert_eq!(fingerprint_in(&again.printed), fp);
    // (on another port: the pinned fingerprint given again, the token found by store id)
    let info = ok(
        &home,
        &[
            "info",
            "--server",
            &again.url,
            "--server-fingerprint",
            &fp,
            "--json",
        ],
    );
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["images"], 4);

    ok(&home, &["remote", "remove", "nas"]);
    fails_with(&home, &["remote", "remove", "nas"], "no remembered server");
}

/// `openssl req -x509 …` as people type it (with the `openssl` tool when this machine has
/// it, else the same certificate made here: CA:TRUE, a common name, no subjectAltName).
fn openssl_style_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let kp = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&kp).unwrap();
        std::fs::write(&cert, c.pem()).unwrap();
        std::fs::write(&key, kp.serialize_pem()).unwrap();
    }
    (cert, key)
}

#[test]
fn a_certificate_made_with_openssl_req_x509_is_accepted_by_file_or_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("client");
    let (cert, key) = openssl_style_certificate(tmp.path());
    let served = serve(
        tmp.path(),
        &tmp.path().join("g.db"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = served.url.replace("127.0.0.1", "localhost");
    // not trusted: refused, saying how to trust it
    fails_with(&home, &["info", "--server", &url], "--ca-file");
    // trusted by file (the certificate itself): accepted although it is marked as a CA
    ok(
        &home,
        &[
            "remote",
            "add",
            "by-file",
            &url,
            "--ca-file",
            cert.to_str().unwrap(),
        ],
    );
    // or by OpenSSL's fingerprint line, whatever address reaches it
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(&cert).unwrap()
    };
    let digest = <sha2::Sha256 as sha2::Digest>::digest(der.as_ref());
    let colons: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    let openssl_line = format!("sha256 Fingerprint={}", colons.join(":"));
    ok(
        &home,
        &[
            "remote",
            "add",
            "by-fp",
            &served.url,
            "--server-fingerprint",
            &openssl_line,
        ],
    );
    let list = ok(&home, &["remote", "list"]);
    assert!(
        list.contains("by-file (default)") && list.contains("by-fp"),
        "{list}"
    );
}
