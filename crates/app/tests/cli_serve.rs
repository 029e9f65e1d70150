//! `blindsight serve` as a process: the admin token file (created 0600), plain HTTP refused
//! off loopback, SIGTERM stops it within its shutdown deadline, and a collection created
//! with `--admin-token-file` is then served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blindsight"));
    c.env_remove("BLINDSIGHT_ADMIN_TOKEN")
        .env_remove("BLINDSIGHT_PASSPHRASE");
    c
}

/// Starts `serve` and returns the child and its URL (from its first line).
fn serve(dir: &Path, extra: &[&str]) -> (Child, String) {
    spawn_serve(dir, extra, false)
}

/// Starts `serve`, with `RUST_LOG=debug` and its log piped when `logged`.
fn spawn_serve(dir: &Path, extra: &[&str], logged: bool) -> (Child, String) {
    let mut cmd = bin();
    if logged {
        cmd.env("RUST_LOG", "debug").stderr(Stdio::piped());
    } else {
        cmd.stderr(Stdio::null());
    }
    let mut child = cmd
        .args(["serve", "--db"])
        .arg(dir.join("g.db"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, url)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sigterm_stops_the_server_within_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin");
    let (mut child, url) = serve(
        dir.path(),
        &["--admin-token-file", token_file.to_str().unwrap()],
    );
    // the admin token file was created, private
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&token_file).unwrap().trim().len() >= 32);
    // a half-sent request stays open while the signal arrives
    let addr = url.trim_start_matches("http://");
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"POST /v1/collections HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\nab",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    sigterm(&child);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running {:?} after SIGTERM (deadline 10 s)",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn plain_http_off_loopback_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["serve", "--db"])
        .arg(dir.path().join("g.db"))
        .args(["--listen", "0.0.0.0:0", "--open-registration"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure-http"),
        "{err}"
    );
    // a certificate that is not one is a clear error too
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let out = bin()
        .args(["serve", "--db"])
        .arg(dir.path().join("g.db"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--open-registration",
            "--tls-cert",
        ])
        .arg(dir.path().join("bad.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("bad.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.pem"));
}

#[test]
fn create_needs_the_admin_token_of_a_served_database() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let token_file = dir.path().join("admin");
    let (mut child, url) = serve(
        dir.path(),
        &["--admin-token-file", token_file.to_str().unwrap()],
    );
    let create = |extra: &[&str]| {
        bin()
            .env("BLINDSIGHT_HOME", &home)
            .args(["create", "--scheme", "bfv", "--server", &url])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = create(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("admin"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let created = create(&["--admin-token-file", token_file.to_str().unwrap()]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let info = bin()
        .env("BLINDSIGHT_HOME", &home)
        .args(["info", "--server", &url])
        .output()
        .unwrap();
    assert!(info.status.success());
    assert!(String::from_utf8_lossy(&info.stdout).contains("bfv-8192"));
    sigterm(&child);
    child.wait().unwrap();
}

#[test]
fn logs_name_requests_but_never_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin");
    let (child, url) = spawn_serve(
        dir.path(),
        &["--admin-token-file", token_file.to_str().unwrap()],
        true,
    );
    let admin = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::blocking::Client::new();
    for token in [admin.as_str(), "a-collection-token-that-must-not-be-logged"] {
        let r = http
            .post(format!("{url}/v1/collections"))
            .bearer_auth(token)
            .body(b"not a frame".to_vec())
            .send()
            .unwrap();
        assert!(r.status().is_client_error());
        let _ = http
            .get(format!("{url}/v1/collections/x"))
            .bearer_auth(token)
            .send()
            .unwrap();
    }
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("/v1/collections"),
        "requests are logged: {log}"
    );
    assert!(!log.contains(&admin), "the admin token reached the log");
    assert!(
        !log.contains("must-not-be-logged"),
        "a token reached the log"
    );
}
