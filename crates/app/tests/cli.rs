//! The `blindsight` binary: bad input gets a clear error and changes nothing (wrong
//! passphrase, a keystore that does not match the collection), and a process killed in the
//! middle of an ingest leaves a consistent store that a second ingest completes without
//! duplicates; ingests with their merges, deletions and compactions killed at random
//! points lose no live image and bring no deleted one back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight_he::{Context, Evaluator, Parameters};
use blindsight_search::Layout;
use blindsight_server::store::Store;
use blindsight_server::store::mapped::map_segment_file;
use blindsight_server::store::segment_file::open_segment;
mod common;

use common::{Delays, blindsight, fails_with, ok, run};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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
    // a file that does not decode is listed and makes the ingest fail, after the others
    let out = run(
        &home,
        &["ingest", imgs.to_str().unwrap(), "--passphrase-file", p],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("added 12 images") && stdout.contains("skipped broken.png"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 13 files could not be ingested"),
        "{stderr}"
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
    assert!(out.contains("images:     12"), "nothing changed: {out}");
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

/// Every segment has its whole file and exactly its images, and no other segment file is
/// left; returns the image count.
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
    // opening the store removed whatever a kill left behind: one file per segment
    let files: Vec<String> = std::fs::read_dir(store.files().dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tmp")
        .collect();
    assert_eq!(files.len(), segments.len(), "{files:?}");
    let ctx = Context::new(&Parameters::from_envelope(&c.params).unwrap()).unwrap();
    let ev = Evaluator::new(&ctx);
    for (id, layout_bytes) in segments {
        let layout = Layout::from_bytes(&layout_bytes).unwrap();
        // the whole file, with the header its rows say
        let path = store.segment_path(id);
        let map = std::sync::Arc::new(map_segment_file(&path).unwrap());
        let (_, operands) =
            open_segment(&path, map, &ev, &layout_bytes, c.vectors.channels()).unwrap();
        for ch in &operands {
            assert_eq!(
                ch.len(),
                layout.ciphertexts_per_channel(),
                "segment {id} is missing operands"
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
        .collect::<HashSet<_>>()
        .len();
    ok(&home, &["keygen", "--scheme", "ckks"]);
    // pixels: batches commit within the kill delays below
    ok(&home, &["create", "--vectors", "pixels"]);
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

/// The live and the deleted image ids of the store's collection.
fn live_and_deleted(db: &Path) -> (HashSet<i64>, HashSet<i64>) {
    let store = Store::open(db).unwrap();
    let c = store.collection("default").unwrap();
    let (mut live, mut deleted) = (HashSet::new(), HashSet::new());
    for i in store.images(c.id).unwrap() {
        if i.deleted {
            deleted.insert(i.id);
        } else {
            live.insert(i.id);
        }
    }
    (live, deleted)
}

/// Runs `args` to completion; returns how long it took.
fn timed(home: &Path, args: &[&str]) -> Duration {
    let started = std::time::Instant::now();
    ok(home, args);
    started.elapsed()
}

/// Starts `args` and kills it (SIGKILL) after `delay`.
fn killed_after(home: &Path, args: &[&str], delay: Duration) {
    let mut child = blindsight(home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn merges_deletions_and_compactions_killed_at_random_points_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let db = home.join("gallery.db");
    let mut delays = Delays::from_clock();
    // 8 folders of 24 distinct images: the fourth and the eighth ingest merge a tier
    let night = 24;
    let mut seen = HashSet::new();
    let distinct: Vec<_> = blindsight_testdata::all()
        .iter()
        .filter(|e| seen.insert(e.png))
        .take(8 * night)
        .collect();
    ok(&home, &["keygen", "--scheme", "ckks"]);
    ok(&home, &["create", "--vectors", "pixels"]);
    let (mut expected, mut deleted) = (HashSet::new(), HashSet::<i64>::new());
    // the longest uninterrupted ingest so far (the first night is not killed)
    let mut typical = Duration::ZERO;
    let check = |expected_live: &HashSet<i64>, deleted: &HashSet<i64>, exact: bool| {
        check_consistent(&db);
        let (live, _) = live_and_deleted(&db);
        assert!(live.is_superset(expected_live), "a live image was lost");
        assert!(live.is_disjoint(deleted), "a deleted image is back");
        if exact {
            assert_eq!(&live, expected_live);
        }
        live
    };
    for (k, chunk) in distinct.chunks(night).enumerate() {
        let dir = tmp.path().join(format!("night{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        for e in chunk {
            std::fs::write(dir.join(e.name), e.png).unwrap();
        }
        let args = ["ingest", dir.to_str().unwrap()];
        let (before, delay) = (expected.len(), delays.up_to(typical));
        killed_after(&home, &args, delay);
        expected = check(&expected, &deleted, false);
        eprintln!(
            "night {k}: killed after {delay:?} of {typical:?}: {} images committed",
            expected.len() - before
        );
        typical = typical.max(timed(&home, &args));
        expected = check(&expected, &deleted, false);
        assert_eq!(
            expected.len() + deleted.len(),
            night * (k + 1),
            "every image of night {k}"
        );

        // every other night, a deletion of a third of the live images, killed first
        if k % 2 == 1 {
            let mut victims: Vec<i64> = expected.iter().copied().collect();
            victims.sort_unstable();
            victims.retain(|id| id % 3 == 0);
            let ids: Vec<String> = victims.iter().map(i64::to_string).collect();
            let mut args = vec!["delete"];
            args.extend(ids.iter().map(String::as_str));
            killed_after(&home, &args, delays.up_to(typical / 2));
            let (live, _) = live_and_deleted(&db);
            let after: HashSet<i64> = expected
                .difference(&victims.iter().copied().collect())
                .copied()
                .collect();
            assert!(
                live == expected || live == after,
                "a deletion is all or nothing"
            );
            ok(&home, &args);
            deleted.extend(victims);
            expected = after;
            check(&expected, &deleted, true);
        }
    }
    // compactions killed at random points, then one to the end: one segment remains
    for _ in 0..3 {
        killed_after(&home, &["compact"], delays.up_to(typical));
        check(&expected, &deleted, true);
    }
    ok(&home, &["compact"]);
    check(&expected, &deleted, true);
    let store = Store::open(&db).unwrap();
    let c = store.collection("default").unwrap();
    assert_eq!(store.segments(c.id).unwrap().len(), 1);
    assert_eq!(
        store.usage(c.id).unwrap().images as usize,
        expected.len(),
        "purged"
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
        info.contains("preset:     ckks-8192") && info.contains("images:     5"),
        "{info}"
    );
    fails_with(
        &home,
        &["info", "--collection", "nope"],
        "no token for collection `nope`",
    );
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// keygen creates the keystore's folder 0700, warns about (and leaves alone) a folder of the
/// user's that others can enter, tightens its own default home, and refuses secret files
/// that are empty or too large.
#[cfg(unix)]
#[test]
fn keystore_folders_are_private_and_secret_files_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let ks = tmp.path().join("new/deep/keystore");
    ok(
        &home,
        &[
            "keygen",
            "--scheme",
            "bfv",
            "--keystore",
            ks.to_str().unwrap(),
        ],
    );
    assert_eq!(mode(&tmp.path().join("new/deep")), 0o700);
    assert_eq!(mode(&tmp.path().join("new")), 0o700);
    assert_eq!(mode(&ks), 0o600);

    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    set_mode(&open, 0o755);
    let out = run(
        &home,
        &[
            "keygen",
            "--scheme",
            "bfv",
            "--keystore",
            open.join("keystore").to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: other users can enter") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(mode(&open), 0o755, "the user's folder is theirs to change");

    // blindsight's own default home (no BLINDSIGHT_HOME) is tightened
    let user = tmp.path().join("user");
    std::fs::create_dir_all(user.join(".blindsight")).unwrap();
    set_mode(&user.join(".blindsight"), 0o755);
    let out = Command::new(env!("CARGO_BIN_EXE_blindsight"))
        .env_remove("BLINDSIGHT_HOME")
        .env_remove("BLINDSIGHT_PASSPHRASE")
        .env("HOME", &user)
        .args(["keygen", "--scheme", "bfv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&user.join(".blindsight")), 0o700);
    assert_eq!(mode(&user.join(".blindsight/keystore")), 0o600);

    let big = tmp.path().join("big");
    std::fs::write(&big, vec![b'x'; 4097]).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for (file, needle) in [(&big, "larger than 4096 bytes"), (&empty, "is empty")] {
        let ks = tmp.path().join(format!("ks-{needle}"));
        fails_with(
            &home,
            &[
                "keygen",
                "--keystore",
                ks.to_str().unwrap(),
                "--passphrase-file",
                file.to_str().unwrap(),
            ],
            needle,
        );
        assert!(!ks.exists());
    }
}

/// Tokens are filed under the store id of the database: a collection created in-process is
/// found when the same database is served and reached with --server; lines of older
/// versions (keyed by `sqlite:<path>` or by the URL) still work and are filed again under
/// the store id. A wider tokens file is forced to 0600. A hostile image name never reaches
/// the terminal or the file system as it is: `search --out` writes sanitized names, 0600,
/// and takes a new name rather than follow a symbolic link planted in the folder.
#[cfg(unix)]
#[test]
fn tokens_follow_the_store_and_hostile_names_stay_harmless() {
    use blindsight_server::{LocalServer, ServerOptions};
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    set_mode(&home, 0o700);
    let tokens = home.join("keystore.tokens");
    std::fs::write(&tokens, "http://example.invalid:1\tother\tabc\n").unwrap();
    set_mode(&tokens, 0o644);
    ok(&home, &["create", "--scheme", "ckks"]);
    assert_eq!(
        mode(&tokens),
        0o600,
        "an existing wider tokens file is tightened"
    );
    assert_eq!(mode(&home.join("keystore")), 0o600);
    let text = std::fs::read_to_string(&tokens).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("store:"))
        .unwrap_or_else(|| panic!("no store-keyed line: {text}"))
        .to_string();
    assert!(
        text.starts_with("http://example.invalid:1\tother\tabc\n"),
        "{text}"
    );
    let fields: Vec<&str> = line.split('\t').collect();
    let (key, token) = (fields[0].to_string(), fields[2].to_string());
    assert_eq!(fields[1], "default");
    assert_eq!(key.len(), "store:".len() + 32, "{key}");

    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 4);
    let hostile = "evil\u{1b}[31mred\nline.png";
    let third = blindsight_testdata::first(3)[2].name;
    std::fs::rename(imgs.join(third), imgs.join(hostile)).unwrap();
    let out = ok(&home, &["ingest", imgs.to_str().unwrap()]);
    assert!(out.contains("added 4 images"), "{out}");

    let hits = tmp.path().join("hits");
    std::fs::create_dir(&hits).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let planted = hits.join("01-evil_[31mred_line.png");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let query = imgs.join(hostile);
    let out = ok(
        &home,
        &[
            "search",
            query.to_str().unwrap(),
            "--top",
            "4",
            "--out",
            hits.to_str().unwrap(),
        ],
    );
    assert!(
        !out.contains('\u{1b}'),
        "an escape reached the terminal: {out:?}"
    );
    assert!(out.contains("evil?[31mred?line.png"), "{out}");
    assert!(out.contains("wrote 4 decrypted matches"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let written = hits.join("01-evil_[31mred_line-2.png");
    assert_eq!(
        std::fs::read(&written).unwrap(),
        std::fs::read(&query).unwrap(),
        "the decrypted top match is the query file"
    );
    let mut entries = 0;
    for e in std::fs::read_dir(&hits).unwrap() {
        let p = e.unwrap().path();
        entries += 1;
        if p != planted {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
        }
    }
    assert_eq!(
        entries, 5,
        "four matches and the planted link, nothing else"
    );

    // the same database, served: found by store id with --server
    let db = home.join("gallery.db");
    {
        let server = LocalServer::start(ServerOptions::new(db.clone())).unwrap();
        let url = server.url().to_string();
        let info = ok(&home, &["info", "--server", &url]);
        assert!(info.contains("images:     4"), "{info}");
        // an older version's line, keyed by the URL
        std::fs::write(&tokens, format!("{url}\tdefault\t{token}\n")).unwrap();
        let info = ok(&home, &["info", "--server", &url]);
        assert!(info.contains("images:     4"), "{info}");
        let text = std::fs::read_to_string(&tokens).unwrap();
        assert!(
            text.contains(&format!("{key}\tdefault\t{token}\n")),
            "filed again under the store id (a loopback server): {text}"
        );
        // a token filed under another store is not used
        std::fs::write(
            &tokens,
            format!("store:{}\tdefault\t{token}\n", "0".repeat(32)),
        )
        .unwrap();
        fails_with(
            &home,
            &["info", "--server", &url],
            "no token for collection `default`",
        );
    }
    // an older version's line for the in-process mode, keyed by the database path
    let abs_db = std::path::absolute(&db).unwrap();
    std::fs::write(
        &tokens,
        format!("sqlite:{}\tdefault\t{token}\n", abs_db.display()),
    )
    .unwrap();
    let info = ok(&home, &["info"]);
    assert!(info.contains("images:     4"), "{info}");
    let text = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        text.contains(&format!("{key}\tdefault\t{token}\n")),
        "{text}"
    );
    assert_eq!(mode(&tokens), 0o600);
}

#[test]
fn the_demo_removes_its_store_unless_kept() {
    let tmp = tempfile::tempdir().unwrap();
    for keep in [false, true] {
        let temp = tmp.path().join(format!("keep-{keep}"));
        std::fs::create_dir_all(&temp).unwrap();
        let mut args = vec!["demo", "--count", "24", "--scheme", "ckks", "--top", "2"];
        if keep {
            args.push("--keep");
        }
        let out = blindsight(tmp.path(), &args)
            .env("TMPDIR", &temp)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "embedding (cosine)",
            "pixels (triple rule",
            "searched for itself",
            "BFV and CKKS side by side",
            "edited copies found first",
        ] {
            assert!(stdout.contains(needle), "{needle}: {stdout}");
        }
        let demo_dir = std::fs::read_dir(&temp)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let page = std::fs::read_to_string(demo_dir.join("report.html")).unwrap();
        // three queries, each with its query image and 2 matches per kind (thumbnails), and
        // the enlarged view
        assert_eq!(page.matches("<img ").count(), 3 * (1 + 2 * 2) + 1, "{page}");
        assert!(page.contains("<h2>Summary</h2>"));
        for kind in ["embedding", "pixels"] {
            let work = demo_dir.join("ckks-8192").join(kind);
            let names: Vec<String> = std::fs::read_dir(&work)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().any(|n| n.starts_with("best-match-for-")),
                "{names:?}"
            );
            assert_eq!(names.iter().any(|n| n == "gallery.db"), keep, "{names:?}");
            assert_eq!(names.iter().any(|n| n == "keystore"), keep, "{names:?}");
        }
    }
}

/// `search --report` writes one self-contained page (query and decrypted matches as
/// embedded images, scores, timing); `bench --plot` draws its run beside earlier reports and
/// refuses a file that is not one.
#[test]
fn search_report_page_and_bench_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    ok(
        &home,
        &["create", "--scheme", "ckks", "--vectors", "pixels"],
    );
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 6);
    ok(&home, &["ingest", imgs.to_str().unwrap()]);
    let query = imgs.join(blindsight_testdata::first(6)[4].name);
    let page = tmp.path().join("report.html");
    let html = common::search_report(&home, &query, "3", &page);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(common::report_images(&html), 4);
    assert!(html.contains(blindsight_testdata::first(6)[4].name));
    assert!(
        html.contains("server") && html.contains("whole 1.0000"),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside resource"
    );

    let earlier = tmp.path().join("earlier.json");
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--count", "8", "--scheme", "bfv", "--json"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let json = ok(
        &home,
        &bench(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::fs::write(&earlier, json).unwrap();
    let svg = tmp.path().join("t.svg");
    let args = bench(&[
        "--plot",
        svg.to_str().unwrap(),
        "--compare",
        earlier.to_str().unwrap(),
    ]);
    ok(&home, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("blindsight BFV"));
    // 4 phases x 2 reports, 2 legend boxes, the background
    assert_eq!(drawn.matches("<rect").count(), 4 * 2 + 2 + 1);
    let args = bench(&[
        "--plot",
        svg.to_str().unwrap(),
        "--compare",
        page.to_str().unwrap(),
    ]);
    fails_with(
        &home,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "not a JSON benchmark report",
    );
}

/// Copies `from` into `to`, folders included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A store and keystore written by the release of `c498bb5` (schema 6, wire 6; fixture in
/// `tests/fixtures/c498bb5`): the current build opens them (migrating the store, narrowing
/// its files to the owner), searches them (the deleted image absent), compacts them and
/// searches again.
#[cfg(unix)]
#[test]
fn a_store_and_keystore_of_c498bb5_open_search_and_compact() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("old");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c498bb5"),
        &dir,
    );
    // a checkout does not keep file modes
    set_mode(&dir, 0o700);
    set_mode(&dir.join("keystore"), 0o600);
    set_mode(&dir.join("keystore.tokens"), 0o600);
    let (ks, db) = (dir.join("keystore"), dir.join("gallery.db"));
    let (ks, db) = (ks.to_str().unwrap(), db.to_str().unwrap());
    let with = |args: &[&str]| -> Vec<String> {
        let mut all = args.to_vec();
        all.extend(["--keystore", ks, "--db", db, "--collection", "old"]);
        all.iter().map(|s| s.to_string()).collect()
    };
    let run_ok = |args: &[&str]| {
        let args = with(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(home.path(), &refs)
    };
    // the first row of a search's table
    let first_row = |found: &str| {
        let row = found.lines().find(|l| l.trim_start().starts_with("1 "));
        row.unwrap_or("").to_string()
    };
    let info = run_ok(&["info"]);
    assert!(info.contains("segments:   2"), "{info}");
    let query = dir.join("1f1eb-1f1f0.png");
    let found = run_ok(&["search", query.to_str().unwrap(), "--top", "8"]);
    assert!(first_row(&found).contains("1f1eb-1f1f0.png"), "{found}");
    assert!(
        !found.contains("1f1eb-1f1f7.png"),
        "the deleted image: {found}"
    );
    assert_eq!(found.matches(".png").count(), 7, "{found}");
    // the store was migrated and its files narrowed to the owner
    assert_eq!(mode(&dir.join("gallery.db")), 0o600);
    assert_eq!(mode(&dir.join("gallery.db-segments")), 0o700);
    run_ok(&["compact"]);
    let info = run_ok(&["info"]);
    assert!(info.contains("segments:   1"), "{info}");
    let query = dir.join("1f1eb.png");
    let found = run_ok(&["search", query.to_str().unwrap(), "--top", "3"]);
    assert!(first_row(&found).contains("1f1eb.png"), "{found}");
}

/// Folders are read recursively (each image named by its path below the folder given),
/// single files and several paths are accepted, `--no-recursive` stops at the top, and
/// every file left out is listed with its reason; an unchanged re-ingest adds nothing.
#[test]
fn ingest_walks_folders_files_and_reports_what_it_leaves_out() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    ok(&home, &["keygen", "--scheme", "ckks"]);
    ok(&home, &["create"]);
    let lib = tmp.path().join("library");
    write_images(&lib.join("2024/summer"), 3);
    let extra: Vec<_> = blindsight_testdata::all().iter().skip(10).take(3).collect();
    std::fs::create_dir_all(lib.join("2025")).unwrap();
    for (i, e) in extra.iter().enumerate() {
        std::fs::write(lib.join("2025").join(format!("x{i}.png")), e.png).unwrap();
    }
    std::fs::write(lib.join("notes.txt"), b"not an image").unwrap();
    std::fs::write(lib.join("scan.heic"), b"ftypheic").unwrap();
    let single = tmp.path().join("single.png");
    std::fs::write(&single, blindsight_testdata::all()[20].png).unwrap();

    // --no-recursive: only the top of the folder (no image there), the subfolders listed
    let out = ok(&home, &["ingest", lib.to_str().unwrap(), "--no-recursive"]);
    assert!(out.contains("added 0 images"), "{out}");
    assert!(out.contains("2024: a folder (--no-recursive)"), "{out}");
    assert!(
        out.contains("notes.txt: not a supported image (.txt"),
        "{out}"
    );
    assert!(
        out.contains("scan.heic: HEIC/HEIF is not decoded by blindsight"),
        "{out}"
    );

    // recursive, and a single file beside the folder
    let out = ok(
        &home,
        &["ingest", lib.to_str().unwrap(), single.to_str().unwrap()],
    );
    assert!(out.contains("added 7 images"), "{out}");
    assert!(out.contains("notes.txt: not a supported image"), "{out}");
    let again = ok(&home, &["ingest", lib.to_str().unwrap()]);
    assert!(
        again.contains("added 0 images, skipped 6 already present"),
        "{again}"
    );
    // a path that does not exist is an error, not an empty ingest
    fails_with(
        &home,
        &["ingest", tmp.path().join("nowhere").to_str().unwrap()],
        "nowhere",
    );
}

/// The edges a first-time user meets get errors that say what to do: a command before any
/// keystore, `create` making the keystore it needs, `--top 0`, the pixel rule on an embedding
/// collection, deleting an id that is not there (said, not an error: a delete run again
/// after an interruption finds its ids gone), a compaction with nothing to do.
#[test]
fn first_steps_and_edges_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 3);
    let query = imgs.join(
        std::fs::read_dir(&imgs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name(),
    );
    let q = query.to_str().unwrap();

    fails_with(
        &home,
        &["ingest", imgs.to_str().unwrap()],
        "run `blindsight create` first",
    );
    let made = run(&home, &["create"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(
        String::from_utf8_lossy(&made.stdout).contains("ckks-8192 keystore"),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("not protected by a passphrase"),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    ok(&home, &["ingest", imgs.to_str().unwrap()]);
    fails_with(&home, &["search", q, "--top", "0"], "--top 1 or more");
    fails_with(
        &home,
        &["search", q, "--rule", "triple"],
        "use --rule whole",
    );
    assert!(ok(&home, &["search", q, "--top", "1"]).contains("rank"));
    let out = ok(&home, &["delete", "12345"]);
    assert!(
        out.contains("deleted 0 images") && out.contains("1 of the 1 ids given are not images"),
        "{out}"
    );
    let out = ok(&home, &["compact"]);
    assert!(out.contains("nothing to compact"), "{out}");
}

/// Scripts read `--json` (one object on stdout, parsed here) from ingest, search, info and
/// list; `list --images` pages through every image exactly once; a long name keeps the
/// table's columns aligned.
#[test]
fn json_outputs_parse_and_lists_page_through_every_image() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 7);
    let first = std::fs::read_dir(&imgs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let long = imgs.join(format!(
        "{}-IMG_20240101_123456.png",
        "long-folder-name-".repeat(6)
    ));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes.extend_from_slice(b"trailing bytes: another file, the same picture");
    std::fs::write(&long, bytes).unwrap();
    std::fs::write(imgs.join("broken.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(&home, args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.lines().count(),
            1,
            "{args:?}: one line of JSON: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    };
    ok(&home, &["create", "--vectors", "pixels", "--scheme", "bfv"]);
    let ingest = run(&home, &["ingest", imgs.to_str().unwrap(), "--json"]);
    assert!(!ingest.status.success(), "a broken file fails the ingest");
    let report: serde_json::Value = serde_json::from_slice(&ingest.stdout).unwrap();
    assert_eq!(report["added"], 8);
    assert_eq!(report["failed"][0]["name"], "broken.png");
    assert!(
        report["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("broken.png")
    );
    assert_eq!(report["ids"].as_array().unwrap().len(), 8);

    let found = json(&["search", long.to_str().unwrap(), "--top", "3", "--json"]);
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 3);
    // the same picture under two names: both first, with a cosine of 1
    let names: Vec<&str> = matches[..2]
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("long-folder-name-")),
        "{names:?}"
    );
    assert!(
        names.contains(&first.file_name().unwrap().to_str().unwrap()),
        "{names:?}"
    );
    assert!((matches[1]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(matches[0]["channel_cosines"].as_array().unwrap().len(), 3);
    assert!(found["timing"]["server_s"].as_f64().unwrap() > 0.0);

    let info = json(&["info", "--json"]);
    assert_eq!(
        (info["images"].as_u64(), info["vectors"].as_str()),
        (Some(8), Some("pixels:64"))
    );
    assert!(info["stored_bytes"].as_u64().unwrap() > 8 * 16384);
    let text = ok(&home, &["info"]);
    assert!(
        text.contains("kind:       pixels:64") && text.contains("segments:   1"),
        "{text}"
    );

    let listed = json(&["list", "--json"]);
    assert_eq!(listed["collections"][0]["collection"], "default");
    assert_eq!(listed["collections"][0]["images"], 8);

    // pages of 3: every image once, in id order
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["list", "--images", "--limit", "3", "--json"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = json(&args);
        let images = page["images"].as_array().unwrap();
        assert!(images.len() <= 3);
        seen.extend(images.iter().map(|i| i["id"].as_i64().unwrap()));
        assert!(
            images
                .iter()
                .all(|i| i["thumbnail"] == true && i["deleted"] == false)
        );
        match page["next"].as_i64() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // the table: the long name is cut in its middle, the columns stay aligned
    let table = ok(&home, &["search", long.to_str().unwrap(), "--top", "8"]);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("   ")).collect();
    assert_eq!(rows.len(), 8, "{table}");
    let width = |l: &str| l.trim_end().chars().count();
    assert!(rows.iter().all(|r| width(r) == width(rows[0])), "{table}");
    assert!(
        table.contains('…') && table.contains("123456.png"),
        "{table}"
    );
}

/// `blindsight ARGS` on a pseudo-terminal (util-linux `script`), typing `lines` one by one
/// when asked: (exit success, everything the terminal showed).
fn on_terminal(home: &Path, args: &[&str], lines: &[&str]) -> Option<(bool, String)> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let command = std::iter::once(env!("CARGO_BIN_EXE_blindsight"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env("BLINDSIGHT_HOME", home)
        .env_remove("BLINDSIGHT_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let typed: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || {
        for l in typed {
            std::thread::sleep(Duration::from_millis(700));
            let _ = std::io::Write::write_all(&mut stdin, l.as_bytes());
        }
        std::thread::sleep(Duration::from_millis(3000));
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// On a terminal, a new keystore's passphrase is asked twice (never echoed) and an existing
/// one's once; off a terminal, the error says how to give it.
#[test]
fn the_passphrase_is_asked_for_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let imgs = tmp.path().join("imgs");
    write_images(&imgs, 2);
    let Some((made, shown)) = on_terminal(
        &home,
        &["keygen", "--scheme", "bfv"],
        &["s3cret-words", "other-words"],
    ) else {
        panic!("util-linux `script` is needed to test the terminal prompt");
    };
    assert!(!made && shown.contains("differ"), "{shown}");
    assert!(!home.join("keystore").exists(), "nothing written");
    let (made, shown) = on_terminal(
        &home,
        &["keygen", "--scheme", "bfv"],
        &["s3cret-words", "s3cret-words"],
    )
    .unwrap();
    assert!(made && shown.contains("passphrase-protected"), "{shown}");
    assert!(!shown.contains("s3cret"), "never echoed: {shown}");
    let (made, shown) =
        on_terminal(&home, &["create", "--vectors", "pixels"], &["s3cret-words"]).unwrap();
    assert!(made, "{shown}");
    let (added, shown) =
        on_terminal(&home, &["ingest", imgs.to_str().unwrap()], &["wrong words"]).unwrap();
    assert!(!added && shown.contains("wrong passphrase"), "{shown}");
    let (added, shown) = on_terminal(
        &home,
        &["ingest", imgs.to_str().unwrap()],
        &["s3cret-words"],
    )
    .unwrap();
    assert!(added && shown.contains("added 2 images"), "{shown}");
    fails_with(&home, &["ingest", imgs.to_str().unwrap()], "on a terminal");
}
