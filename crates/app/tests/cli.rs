//! The `blindsight` binary: bad input gets a clear error and changes nothing (wrong
//! passphrase, a keystore that does not match the collection), and a process killed in the
//! middle of an ingest leaves a consistent store that a second ingest completes without
//! duplicates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight::store::Store;
use blindsight_search::Layout;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn blindsight(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blindsight"));
    c.env("BLINDSIGHT_HOME", home)
        .env_remove("BLINDSIGHT_PASSPHRASE")
        .args(args);
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    blindsight(home, args).output().unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(home: &Path, args: &[&str], needle: &str) {
    let out = run(home, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
}

fn write_images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for e in blindsight_testdata::first(n) {
        std::fs::write(dir.join(e.name), e.png).unwrap();
    }
}

#[test]
fn wrong_passphrase_and_foreign_keystore_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let pass = tmp.path().join("pass");
    let wrong = tmp.path().join("wrong");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    std::fs::write(&wrong, "tr0ub4dor&3\n").unwrap();
    let (p, w) = (pass.to_str().unwrap(), wrong.to_str().unwrap());
    ok(
        &home,
        &["keygen", "--scheme", "bfv", "--passphrase-file", p],
    );
    fails_with(
        &home,
        &["keygen", "--scheme", "bfv"],
        "refusing to overwrite",
    );
    fails_with(
        &home,
        &["create", "--passphrase-file", w],
        "wrong passphrase",
    );
    fails_with(&home, &["create"], "protected by a passphrase");
    ok(&home, &["create", "--passphrase-file", p]);
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 12);
    std::fs::write(imgs.join("broken.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let out = ok(
        &home,
        &["ingest", imgs.to_str().unwrap(), "--passphrase-file", p],
    );
    assert!(
        out.contains("added 12 images") && out.contains("skipped broken.png"),
        "{out}"
    );
    fails_with(
        &home,
        &["ingest", imgs.to_str().unwrap(), "--passphrase-file", w],
        "wrong passphrase",
    );

    // another keystore, given the first one's token, is refused by the collection
    let other = tmp.path().join("other.key");
    ok(
        &home,
        &[
            "keygen",
            "--scheme",
            "bfv",
            "--keystore",
            other.to_str().unwrap(),
        ],
    );
    std::fs::copy(
        home.join("keystore.tokens"),
        tmp.path().join("other.key.tokens"),
    )
    .unwrap();
    let query = imgs.join(blindsight_testdata::first(3)[2].name);
    fails_with(
        &home,
        &[
            "search",
            query.to_str().unwrap(),
            "--keystore",
            other.to_str().unwrap(),
        ],
        "does not match",
    );
    fails_with(
        &home,
        &[
            "ingest",
            imgs.to_str().unwrap(),
            "--keystore",
            other.to_str().unwrap(),
        ],
        "does not match",
    );
    let out = ok(&home, &["info", "--passphrase-file", p]);
    assert!(out.contains("images: 12"), "nothing changed: {out}");
    let out = ok(
        &home,
        &[
            "search",
            query.to_str().unwrap(),
            "--passphrase-file",
            p,
            "--top",
            "1",
        ],
    );
    assert!(out.contains(blindsight_testdata::first(3)[2].name), "{out}");
}

/// Every segment has all its ciphertexts and exactly its images; returns the image count.
fn check_consistent(db: &Path) -> usize {
    let store = Store::open(db).unwrap();
    let c = store.collection("default").unwrap();
    let images = store.images(c.id).unwrap();
    let mut by_segment: HashMap<i64, Vec<usize>> = HashMap::new();
    for i in &images {
        by_segment.entry(i.segment_id).or_default().push(i.position);
    }
    let segments = store.segments(c.id).unwrap();
    assert_eq!(
        segments.len(),
        by_segment.len(),
        "images without a segment, or segments without images"
    );
    for (id, layout) in segments {
        let layout = Layout::from_bytes(&layout).unwrap();
        let cts = store.segment_ciphertexts(id).unwrap();
        for ch in &cts {
            assert_eq!(
                ch.len(),
                layout.ciphertexts_per_channel(),
                "segment {id} is missing ciphertexts"
            );
        }
        let mut positions = by_segment.remove(&id).unwrap_or_default();
        positions.sort_unstable();
        assert_eq!(
            positions,
            (0..layout.count).collect::<Vec<_>>(),
            "segment {id} has half its images"
        );
    }
    images.len()
}

#[test]
fn an_ingest_killed_mid_batch_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let imgs = tmp.path().join("imgs");
    let n = 1500; // two batches
    write_images(&imgs, n);
    // byte-identical files are one image (the same keyed content tag)
    let unique = blindsight_testdata::first(n)
        .iter()
        .map(|e| e.png)
        .collect::<std::collections::HashSet<_>>()
        .len();
    ok(&home, &["keygen", "--scheme", "ckks"]);
    ok(&home, &["create"]);
    let db = home.join("gallery.db");
    for delay_ms in [700u64, 1800, 2900] {
        let mut child = blindsight(&home, &["ingest", imgs.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL: no cleanup of any kind
        let _ = child.wait();
        let count = check_consistent(&db);
        assert!(
            count == 0 || count == 1024 || count == unique,
            "a batch is all or nothing: {count}"
        );
    }
    let out = ok(&home, &["ingest", imgs.to_str().unwrap()]);
    assert!(out.contains("already present"), "{out}");
    assert_eq!(check_consistent(&db), unique, "every image exactly once");
    let again = ok(&home, &["ingest", imgs.to_str().unwrap()]);
    assert!(
        again.contains(&format!("added 0 images, skipped {n} already present")),
        "{again}"
    );
}

#[test]
fn create_with_a_scheme_makes_the_keystore_first() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = ok(
        &home,
        &["create", "--scheme", "ckks", "--collection", "pics"],
    );
    assert!(
        out.contains("wrote ckks-8192 keystore") && out.contains("created collection `pics`"),
        "{out}"
    );
    fails_with(
        &home,
        &["create", "--scheme", "bfv", "--collection", "more"],
        "holds a ckks-8192 key",
    );
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 5);
    let out = ok(
        &home,
        &["ingest", imgs.to_str().unwrap(), "--collection", "pics"],
    );
    assert!(out.contains("added 5 images"), "{out}");
    let info = ok(&home, &["info", "--collection", "pics"]);
    assert!(
        info.contains("preset: \"ckks-8192\"") && info.contains("images: 5"),
        "{info}"
    );
    fails_with(
        &home,
        &["info", "--collection", "nope"],
        "no token for collection `nope`",
    );
}
