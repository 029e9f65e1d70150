//! A killed ingest resumes where it stopped. The client, then the server, is SIGKILLed at a
//! random point of an ingest (against a `serve` process, batches of 25 images); then:
//! every batch the client reported uploaded is on the server, the work lost (images encoded
//! but not committed when its last window ended) is at most one batch, the re-run skips
//! every committed file by its bytes and adds exactly the others, and in the end every file
//! is in the collection exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{Delays, Served as Server, blindsight, ok};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FILES: usize = 400;
const BATCH: usize = 25;

fn serve(dir: &Path) -> Server {
    common::serve(dir, &dir.join("g.db"), &[])
}

/// The live images of the collection.
fn images(home: &Path, url: &str) -> u64 {
    let info = ok(home, &["info", "--server", url, "--json"]);
    serde_json::from_str::<serde_json::Value>(&info).unwrap()["images"]
        .as_u64()
        .unwrap()
}

/// A field `key=a/b` or `key=a` of a progress line, as its first number.
fn field(line: &str, key: &str) -> usize {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// Starts `ingest` of `dir` (batches of [`BATCH`]), kills `victim` (the client, or the
/// server through `kill_server`) after `delay`, and returns the last progress line the
/// client printed and whether it finished before the kill.
fn ingest_killed(
    home: &Path,
    url: &str,
    dir: &Path,
    delay: Duration,
    kill_server: Option<&mut Server>,
) -> (Option<String>, bool) {
    let mut child = blindsight(home, &["ingest", dir.to_str().unwrap(), "--server", url])
        .args(["--batch-images", &BATCH.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("progress "))
            .last()
    });
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished = child.try_wait().unwrap().is_some_and(|s| s.success());
    match kill_server {
        Some(server) => {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            // the client fails on its next request (or had finished)
            let _ = child.wait().unwrap();
        }
        None => {
            let _ = child.kill();
            child.wait().unwrap();
        }
    }
    (reader.join().unwrap(), finished)
}

fn library(dir: &Path) -> PathBuf {
    let lib = dir.join("lib");
    for (k, (name, bytes)) in blindsight_testdata::distinct_files(FILES)
        .iter()
        .enumerate()
    {
        let sub = lib.join(format!("{:02}", k % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(name), bytes).unwrap();
    }
    lib
}

#[test]
fn a_killed_ingest_resumes_redoing_at_most_one_batch() {
    let mut delays = Delays::from_clock();
    let seed = delays.seed;
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let server_dir = tmp.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let home = tmp.path().join("client");
    let mut server = serve(&server_dir);
    let token = server_dir.join("g.db.admin-token");
    ok(
        &home,
        &[
            "create",
            "--server",
            &server.url,
            "--admin-token-file",
            token.to_str().unwrap(),
            "--vectors",
            "pixels",
            "--scheme",
            "bfv",
        ],
    );
    let mut committed = 0u64;
    let mut rounds = 0;
    // client kills, then server kills, until the library is in
    for victim_is_server in [false, false, true, true, false, true] {
        let delay = Duration::from_millis(150) + delays.up_to(Duration::from_millis(900));
        let url = server.url.clone();
        let (last, finished) = if victim_is_server {
            ingest_killed(&home, &url, &lib, delay, Some(&mut server))
        } else {
            ingest_killed(&home, &url, &lib, delay, None)
        };
        if victim_is_server {
            server = serve(&server_dir);
        }
        rounds += 1;
        // a batch whose body had arrived when the client died is still committed by the
        // server: read once it has settled
        let mut now = images(&home, &server.url);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let again = images(&home, &server.url);
            if again == now {
                break;
            }
            now = again;
        }
        eprintln!(
            "round {rounds}: killed the {} after {delay:?}: {now} images committed (finished: \
             {finished}); last progress: {last:?}",
            if victim_is_server { "server" } else { "client" }
        );
        if let Some(line) = &last {
            let (done, added, present, failed) = (
                field(line, "files"),
                field(line, "added"),
                field(line, "present"),
                field(line, "failed"),
            );
            assert_eq!(failed, 0, "{line}");
            // what the client reported uploaded is committed
            assert!(
                now >= committed + added as u64,
                "seed {seed}: {line}: {now} images, {committed} before"
            );
            // encoded but not committed at the last window's end: at most one batch (the
            // window in flight when the kill came adds at most WINDOW files more)
            let encoded = done - present;
            let lost = (encoded as u64).saturating_sub(now - committed);
            assert!(
                lost <= BATCH as u64,
                "seed {seed}: {lost} images lost to the kill: {line}"
            );
            // a re-run skips exactly what is committed
            assert!(present as u64 <= committed, "seed {seed}: {line}");
        }
        assert!(now >= committed, "seed {seed}: nothing committed is lost");
        committed = now;
        if finished || committed == FILES as u64 {
            break;
        }
    }
    // the last run completes: every file once
    let out = ok(
        &home,
        &[
            "ingest",
            lib.to_str().unwrap(),
            "--server",
            &server.url,
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["duplicates"].as_u64().unwrap(),
        committed,
        "seed {seed}: every committed file skipped by its bytes"
    );
    assert_eq!(
        report["added"].as_u64().unwrap(),
        FILES as u64 - committed,
        "seed {seed}: exactly the others added"
    );
    assert_eq!(images(&home, &server.url), FILES as u64, "seed {seed}");
    assert!(rounds >= 1);
}
