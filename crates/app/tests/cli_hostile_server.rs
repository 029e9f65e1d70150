//! The `blindsight` binary against a fake server: `create` sends the admin token (and says
//! how to give one when the server wants it), and nothing a hostile server answers — escape
//! sequences in messages, a store id or a token that would break the tokens file — reaches
//! the terminal or the tokens file as it is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server on a loopback port: `/health` answers `store_id`, everything
/// else `handler`. Returns its URL and the requests it saw.
fn fake_server(store_id: &str, handler: Box<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let health = serde_json::json!({ "status": "ok", "store_id": store_id }).to_string();
    let handler: Arc<Handler> = Arc::from(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (log, handler, health) = (Arc::clone(&log), Arc::clone(&handler), health.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let (mut length, mut authorization) = (0usize, None);
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (name, value) = h.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => authorization = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
                std::io::copy(
                    &mut reader.by_ref().take(length as u64),
                    &mut std::io::sink(),
                )
                .unwrap();
                let req = Seen {
                    method,
                    path,
                    authorization,
                };
                let (status, body) = if req.path == "/health" {
                    (200, health)
                } else {
                    handler(&req)
                };
                log.lock().unwrap().push(req);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, seen)
}

fn run(home: &Path, args: &[&str], admin_env: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blindsight"));
    c.env("BLINDSIGHT_HOME", home)
        .env_remove("BLINDSIGHT_PASSPHRASE")
        .env_remove("BLINDSIGHT_ADMIN_TOKEN")
        .args(args);
    if let Some(t) = admin_env {
        c.env("BLINDSIGHT_ADMIN_TOKEN", t);
    }
    c.output().unwrap()
}

fn stderr_of(out: &Output) -> String {
    assert!(!out.status.success(), "should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const STORE: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn create_sends_the_admin_token_and_says_how_to_give_one() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (url, seen) = fake_server(
        STORE,
        Box::new(|req| {
            match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/collections") => {
                if req.authorization.as_deref() == Some("Bearer s3cret") {
                    (200, r#"{"collection":"default","token":"tok-123"}"#.into())
                } else {
                    (401, r#"{"error":"\u001b[2Jadmin token required"}"#.into())
                }
            }
            ("GET", "/v1/collections/default")
                if req.authorization.as_deref() == Some("Bearer tok-123") =>
            {
                (
                    200,
                    r#"{"collection":"default\u001b]0;pwned\u0007","preset":"bfv-8192\u009b31m","images":3}"#
                        .into(),
                )
            }
            _ => (401, r#"{"error":"no"}"#.into()),
        }
        }),
    );
    let out = run(&home, &["keygen", "--scheme", "bfv"], None);
    assert!(out.status.success());

    let err = stderr_of(&run(&home, &["create", "--server", &url], None));
    assert!(
        err.contains("--admin-token-file") && err.contains("BLINDSIGHT_ADMIN_TOKEN"),
        "{err}"
    );
    let err = stderr_of(&run(&home, &["create", "--server", &url], Some("wrong")));
    assert!(err.contains("refused the admin token"), "{err}");
    assert!(err.contains("?[2Jadmin token required"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "an escape reached the terminal: {err:?}"
    );
    assert!(!home.join("keystore.tokens").exists(), "nothing saved");

    let file = tmp.path().join("admin");
    std::fs::write(&file, "s3cret\n").unwrap();
    let out = run(
        &home,
        &[
            "create",
            "--server",
            &url,
            "--admin-token-file",
            file.to_str().unwrap(),
        ],
        Some("wrong"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creates: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/v1/collections")
        .map(|r| r.authorization.clone())
        .collect();
    assert_eq!(
        creates,
        [
            None,
            Some("Bearer wrong".into()),
            Some("Bearer s3cret".into())
        ],
        "the file wins over the environment"
    );
    let tokens = std::fs::read_to_string(home.join("keystore.tokens")).unwrap();
    // filed under the URL, and (a loopback server) under its store id
    assert_eq!(
        tokens,
        format!("{url}\tdefault\ttok-123\nstore:{STORE}\tdefault\ttok-123\n")
    );

    // the token is found by store id; the server's strings are made harmless
    let out = run(&home, &["info", "--server", &url], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "control characters reached the terminal: {text:?}"
    );
    assert!(text.contains("images:     3"), "{text}");
}

#[test]
fn a_hostile_server_or_token_file_cannot_corrupt_the_tokens_file() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(
        run(&home, &["keygen", "--scheme", "bfv"], None)
            .status
            .success()
    );
    let tokens = home.join("keystore.tokens");
    let admin = tmp.path().join("admin");
    std::fs::write(&admin, "s3cret\n").unwrap();
    let admin_arg = admin.to_str().unwrap();
    let any = |_: &Seen| {
        (
            200,
            r#"{"collection":"default","token":"tok-123"}"#.to_string(),
        )
    };

    // a store id that would add a line to the tokens file
    let (url, seen) = fake_server("abc\tdefault\tx\nstore:evil", Box::new(any));
    let err = stderr_of(&run(
        &home,
        &["create", "--server", &url, "--admin-token-file", admin_arg],
        None,
    ));
    assert!(
        err.contains("store id") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        seen.lock().unwrap().iter().all(|r| r.path == "/health"),
        "refused before sending the keys"
    );
    assert!(!tokens.exists());

    // a collection token that would add a line to the tokens file
    let (url, _) = fake_server(
        STORE,
        Box::new(|_| {
            (
                200,
                r#"{"collection":"default","token":"tok\nstore:evil\tdefault\tstolen"}"#.into(),
            )
        }),
    );
    let err = stderr_of(&run(
        &home,
        &["create", "--server", &url, "--admin-token-file", admin_arg],
        None,
    ));
    assert!(err.contains("unusable collection token"), "{err}");
    assert!(!tokens.exists());

    // admin tokens that cannot be sent are refused before anything is sent
    let (url, seen) = fake_server(STORE, Box::new(any));
    std::fs::write(&admin, vec![b'a'; 5000]).unwrap();
    let err = stderr_of(&run(
        &home,
        &["create", "--server", &url, "--admin-token-file", admin_arg],
        None,
    ));
    assert!(err.contains("larger than 4096 bytes"), "{err}");
    let err = stderr_of(&run(
        &home,
        &["create", "--server", &url],
        Some("two words"),
    ));
    assert!(err.contains("visible ASCII"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    assert!(!tokens.exists());
}
