//! Private retrieval through the real interfaces: `search --report` against a served
//! collection, every byte the server receives recorded by a proxy in between. The report
//! shows the matches' thumbnails, yet no request names an image; and two searches with
//! different results send the same requests, of the same sizes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;
use common::{ok, serve};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The bytes one connection's client sent.
type Log = Arc<Mutex<Vec<u8>>>;

/// A loopback TCP proxy that forwards to `target` and records, per connection, every byte
/// the client sent.
struct Recorder {
    url: String,
    sent: Arc<Mutex<Vec<Log>>>,
}

impl Recorder {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_string();
        let sent: Arc<Mutex<Vec<Log>>> = Arc::default();
        let all = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = TcpStream::connect(&target).unwrap();
                let log: Log = Arc::default();
                all.lock().unwrap().push(log.clone());
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { url, sent }
    }

    /// Forgets what was recorded.
    fn clear(&self) {
        self.sent.lock().unwrap().clear();
    }

    /// Every request recorded so far: (request line, body), per connection in order.
    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for conn in self.sent.lock().unwrap().iter() {
            let bytes = conn.lock().unwrap().clone();
            let mut rest = &bytes[..];
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let body_end = (end + 4 + len).min(rest.len());
                out.push((line, rest[end + 4..body_end].to_vec()));
                rest = &rest[body_end..];
            }
        }
        out
    }
}

/// The requests' shapes: method and path (query string included) and body size.
fn shapes(requests: &[(String, Vec<u8>)]) -> Vec<(String, usize)> {
    let mut s: Vec<(String, usize)> = requests
        .iter()
        .map(|(line, body)| {
            let mut parts = line.split_whitespace();
            (
                format!(
                    "{} {}",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                ),
                body.len(),
            )
        })
        .collect();
    s.sort();
    s
}

#[test]
fn search_report_retrieves_thumbnails_without_naming_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let c = served_collection(tmp.path(), 12, true);
    let (home, imgs) = (c.home.clone(), c.imgs.clone());
    let proxy = c.proxy.as_ref().unwrap();
    let gallery = blindsight_testdata::first(12);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&home, &["list", "--images", "--json"])).unwrap();
    let ids: Vec<i64> = listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 12);

    let mut runs = Vec::new();
    for (q, top) in [(2usize, "3"), (9, "3")] {
        proxy.clear();
        let page = tmp.path().join(format!("report-{q}.html"));
        let query = imgs.join(gallery[q].name);
        let out = ok(&home, &common::report_args(&query, top, &page));
        assert!(out.contains("wrote the report"), "{out}");
        let html = std::fs::read_to_string(&page).unwrap();
        // the query and its three matches, their thumbnails retrieved privately
        assert_eq!(common::report_images(&html), 4, "{html}");
        assert!(html.contains(gallery[q].name));
        let requests = proxy.requests();
        assert!(
            requests.iter().any(|(l, _)| l.contains("/pir ")),
            "{requests:?}"
        );
        for (line, body) in &requests {
            assert!(
                !line.contains("/payloads")
                    && !line.contains("/thumbnails")
                    && !line.contains("/sources"),
                "a request by id: {line}"
            );
            for id in &ids {
                let text = id.to_string();
                assert!(!line.contains(&text), "{line} names image {id}");
                let le = id.to_le_bytes();
                let be = id.to_be_bytes();
                let named = |bytes: &[u8]| {
                    bytes.windows(8).any(|w| w == le || w == be)
                        || bytes.windows(text.len()).any(|w| w == text.as_bytes())
                };
                assert!(!named(body), "{line}: the body names image {id}");
            }
        }
        runs.push((out, shapes(&requests)));
    }
    // different queries, different best matches; the same requests
    assert_ne!(runs[0].0, runs[1].0);
    assert_eq!(runs[0].1, runs[1].1);
}

/// A served collection of the first `n` embedded images, made through a recording proxy
/// when `recorded`.
struct Collection {
    served: common::Served,
    proxy: Option<Recorder>,
    home: std::path::PathBuf,
    imgs: std::path::PathBuf,
    db: std::path::PathBuf,
}

/// Remembers the server at `url` (the store `db`'s admin token) as the default, `box`.
fn remember(home: &std::path::Path, url: &str, db: &std::path::Path) {
    let token = db.with_extension("db.admin-token");
    ok(
        home,
        &[
            "remote",
            "add",
            "box",
            url,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
}

fn served_collection(tmp: &std::path::Path, n: usize, recorded: bool) -> Collection {
    let (server_home, home) = (tmp.join("server"), tmp.join("client"));
    std::fs::create_dir_all(&server_home).unwrap();
    let db = server_home.join("g.db");
    let imgs = tmp.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for e in blindsight_testdata::first(n) {
        std::fs::write(imgs.join(e.name), e.png).unwrap();
    }
    let served = serve(&server_home, &db, &[]);
    let proxy = recorded.then(|| Recorder::start(&served.url));
    let url = proxy.as_ref().map_or(served.url.clone(), |p| p.url.clone());
    remember(&home, &url, &db);
    ok(&home, &["create", "--vectors", "pixels", "--scheme", "bfv"]);
    ok(&home, &["ingest", imgs.to_str().unwrap()]);
    Collection {
        served,
        proxy,
        home,
        imgs,
        db,
    }
}

/// A server whose records are swapped or damaged (here: its stored thumbnails) makes the
/// search fail with an error naming the image, never show a wrong picture.
#[test]
fn swapped_or_damaged_records_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let Collection {
        served,
        home,
        imgs,
        db,
        ..
    } = served_collection(tmp.path(), 6, false);
    let gallery = blindsight_testdata::first(6);
    let query = imgs.join(gallery[1].name);
    let page = tmp.path().join("r.html");
    let search = || common::run(&home, &common::report_args(&query, "2", &page));
    assert!(search().status.success());
    // the server's table holds a slot's record once read: tamper with the store while the
    // server is down, and serve it again (the table is read afresh)
    drop(served);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT thumbnail_slot, thumbnail FROM images ORDER BY thumbnail_slot")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let of = |slot: i64| stored.iter().find(|(s, _)| *s == slot).unwrap().1.clone();
    let server_home = tmp.path().join("server");
    let serve_with = |by_slot: &dyn Fn(i64) -> Vec<u8>| {
        for (slot, _) in &stored {
            conn.execute(
                "UPDATE images SET thumbnail = ?2 WHERE thumbnail_slot = ?1",
                rusqlite::params![slot, by_slot(*slot)],
            )
            .unwrap();
        }
        let served = serve(&server_home, &db, &[]);
        remember(&home, &served.url, &db);
        served
    };
    // every pair of records swapped
    let served = serve_with(&|slot| of(if slot % 2 == 0 { slot + 1 } else { slot - 1 }));
    let out = search();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a swapped record must fail");
    assert!(err.contains("a record that is not it"), "{err}");
    drop(served);
    // every record damaged (one bit flipped)
    let served = serve_with(&|slot| {
        let mut t = of(slot);
        t[100] ^= 1;
        t
    });
    let out = search();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged record must fail");
    assert!(err.contains("a record that is not it"), "{err}");
    drop(served);
    // restored: the search works again (with a fresh retrieval secret)
    let _served = serve_with(&of);
    assert!(search().status.success());
}

/// Searches keep retrieving their thumbnails while images are added, deleted and merged:
/// the server's table follows the store (new slots read, nothing rebuilt).
#[test]
fn retrieval_follows_ingests_deletions_and_compactions() {
    let tmp = tempfile::tempdir().unwrap();
    let c = served_collection(tmp.path(), 8, false);
    let (home, imgs) = (c.home.clone(), c.imgs.clone());
    let gallery = blindsight_testdata::first(20);
    let more = tmp.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    for e in &gallery[8..] {
        std::fs::write(more.join(e.name), e.png).unwrap();
    }
    let searcher = {
        let (home, imgs) = (home.clone(), imgs.clone());
        let page = tmp.path().join("r.html");
        std::thread::spawn(move || {
            for round in 0..4 {
                let query = imgs.join(blindsight_testdata::first(8)[round].name);
                let html = common::search_report(&home, &query, "3", &page);
                // the query and three matches; a match purged meanwhile would be noted
                assert!(
                    common::report_images(&html) == 4 || html.contains("no thumbnail yet"),
                    "{html}"
                );
            }
        })
    };
    ok(&home, &["ingest", more.to_str().unwrap()]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&home, &["list", "--images", "--json"])).unwrap();
    let victims: Vec<String> = listed["images"].as_array().unwrap()[..3]
        .iter()
        .map(|i| i["id"].as_i64().unwrap().to_string())
        .collect();
    let mut args = vec!["delete"];
    args.extend(victims.iter().map(String::as_str));
    ok(&home, &args);
    ok(&home, &["compact"]);
    searcher.join().unwrap();
    // after all of it: a search of an added image finds it, with its thumbnail
    let page = tmp.path().join("after.html");
    let query = more.join(gallery[15].name);
    let html = common::search_report(&home, &query, "1", &page);
    assert_eq!(common::report_images(&html), 2, "{html}");
    assert!(html.contains(gallery[15].name));
}

/// `bench-pir` measures any valid layout (its JSON says which, and that every record came
/// back) and refuses one the batch layout cannot build, saying why.
#[test]
fn bench_pir_compares_layouts_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let args = |b: &'static str, w: &'static str| {
        [
            "bench-pir",
            "--records",
            "300",
            "--record-bytes",
            "512",
            "--k",
            "5",
            "--queries",
            "1",
            "--buckets",
            b,
            "--hashes",
            w,
            "--json",
        ]
    };
    let out: serde_json::Value = serde_json::from_str(&ok(home, &args("18", "3"))).unwrap();
    assert_eq!(out["buckets"], 18);
    assert_eq!(out["hashes"], 3);
    assert_eq!(out["correct"], true);
    common::fails_with(home, &args("16", "3"), "a multiple of them as buckets");
    common::fails_with(home, &args("4", "1"), "at least 2 hashes");
}
