//! The server against a hostile network, on loopback: authorization before the body, bounded
//! answers, cut-off slow requests, admission (503), layouts that do not come from the
//! collection, shutdown within its deadline, TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight::client::Client;
use blindsight::keystore::Keystore;
use blindsight::remote::Remote;
use blindsight::server::{Limits, LocalServer, ServerOptions};
use blindsight::store::ImageRecord;
use blindsight::wire::{self, AppendSegment};
use blindsight_he::Context;
use blindsight_search::Layout;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::slots::SlotShape;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

struct Fixture {
    server: LocalServer,
    token: String,
    _dir: tempfile::TempDir,
}

fn start(limits: Limits, dir: &Path) -> LocalServer {
    let mut opts = ServerOptions::new(dir.join("gallery.db"));
    opts.limits = limits;
    LocalServer::start(opts).unwrap()
}

/// A server with a CKKS collection `photos` holding 3 real images.
fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = start(limits, dir.path());
    let remote = Remote::new(server.url()).unwrap();
    let (client, token) = pixel_client(&server, &remote, "photos");
    let files: Vec<(String, Vec<u8>)> = blindsight_testdata::first(3)
        .iter()
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect();
    assert_eq!(client.ingest(&files, |_| {}).unwrap().added, 3);
    Fixture {
        server,
        token,
        _dir: dir,
    }
}

fn addr(server: &LocalServer) -> String {
    server.url().trim_start_matches("http://").to_string()
}

/// Sends `head` (and `body`, if any) on a raw connection and reads the status line within
/// `within`; returns it and how long it took.
fn raw_status(
    server: &LocalServer,
    head: &str,
    body: &[u8],
    within: Duration,
) -> (String, Duration) {
    let mut s = TcpStream::connect(addr(server)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    (
        text.lines().next().unwrap_or("").to_string(),
        started.elapsed(),
    )
}

#[test]
fn bodies_with_a_wrong_token_are_refused_before_they_are_uploaded() {
    let f = fixture(Limits::default());
    let first_chunk = vec![0u8; 64 << 10];
    for (path, auth) in [
        ("/v1/collections/photos/segments", "Bearer wrong"),
        ("/v1/collections/nope/segments", "Bearer wrong"),
        ("/v1/collections/photos/compact", "Basic abc"),
        ("/v1/collections", "Bearer not-the-admin"),
    ] {
        // 300 MB declared, 64 KiB sent: the answer comes while almost all is unsent
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 300000000\r\n\r\n"
        );
        let (status, took) = raw_status(&f.server, &head, &first_chunk, Duration::from_secs(5));
        assert!(status.contains(" 401 "), "{path}: {status}");
        assert!(took < Duration::from_secs(2), "{path}: {took:?}");
    }
    // with the right token, a declared size over the limit is refused before reading it
    let head = format!(
        "POST /v1/collections/photos/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 3000000000\r\n\r\n",
        f.token
    );
    let (status, _) = raw_status(&f.server, &head, &first_chunk, Duration::from_secs(5));
    assert!(status.contains(" 413 "), "{status}");
}

#[test]
fn repeated_ids_do_not_multiply_the_response() {
    let f = fixture(Limits::default());
    let remote = Remote::new(f.server.url()).unwrap().with_token(&f.token);
    let list = remote.images("photos").unwrap();
    let id = list.images[0].id;
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/collections/photos/payloads", f.server.url());
    let one = http
        .post(&url)
        .bearer_auth(&f.token)
        .body(wire::encode_ids(&[id]))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let many = http
        .post(&url)
        .bearer_auth(&f.token)
        .body(wire::encode_ids(&vec![id; 8000]))
        .send()
        .unwrap();
    assert_eq!(many.status(), 200);
    let many = many.bytes().unwrap();
    assert_eq!(
        many.len(),
        one.len(),
        "8000 copies of an id cost one payload"
    );
    assert_eq!(wire::decode_payloads(&many).unwrap().found.len(), 1);
    // too many distinct ids: refused, not served
    let ids: Vec<i64> = (0..5000).collect();
    let r = http
        .post(&url)
        .bearer_auth(&f.token)
        .body(wire::encode_ids(&ids))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn slow_and_half_sent_requests_are_cut_off() {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        min_body_rate: 1 << 30,
        ..Limits::default()
    };
    let f = fixture(limits);
    // headers never finished
    let (status, took) = raw_status(
        &f.server,
        "POST /v1/collections/photos/search HTTP/1.1\r\nHost: x\r\n",
        &[],
        Duration::from_secs(10),
    );
    assert!(took < Duration::from_secs(5), "{took:?} {status}");
    assert!(status.is_empty() || status.contains(" 408 "), "{status}");
    // a body that stops half-way
    let head = format!(
        "POST /v1/collections/photos/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\r\n",
        f.token
    );
    let (status, took) = raw_status(&f.server, &head, &[0u8; 1000], Duration::from_secs(10));
    assert!(status.contains(" 408 "), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn beyond_the_admission_limit_requests_get_503_with_retry_after() {
    let f = fixture(Limits {
        max_concurrent: 1,
        body_timeout: Duration::from_secs(5),
        ..Limits::default()
    });
    // a slow upload holds the only permit
    let mut slow = TcpStream::connect(addr(&f.server)).unwrap();
    slow.write_all(
        format!(
            "POST /v1/collections/photos/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100000\r\n\r\n",
            f.token
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/collections/photos/search", f.server.url()))
        .bearer_auth(&f.token)
        .body(vec![0u8; 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    drop(slow);
}

#[test]
fn shutdown_finishes_within_its_deadline_despite_a_stalled_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        Limits {
            shutdown_deadline: Duration::from_secs(1),
            body_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        dir.path(),
    );
    let mut stalled = TcpStream::connect(addr(&server)).unwrap();
    stalled
        .write_all(b"POST /v1/collections HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A valid batch for the fixture's collection: one image, the derived layout, real
/// ciphertexts (re-used from nothing: the server checks the layout before them).
fn append_body(layout: &[u8], images: usize) -> Vec<u8> {
    AppendSegment {
        layout: layout.to_vec(),
        ciphertexts: vec![vec![], vec![], vec![]],
        images: (0..images)
            .map(|i| ImageRecord {
                id: 1000 + i as i64,
                position: i,
                tag: vec![i as u8; 32],
                meta: vec![0; 60],
                payload: vec![0; 40],
                source: vec![],
            })
            .collect(),
        galois_keys: vec![],
    }
    .encode()
}

fn shared() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(Limits::default()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Layouts the collection's parameters do not give are refused with 400, whatever their
    /// fields (huge, inconsistent, or valid for other parameters): never a 500, never a
    /// crash, and the server keeps serving.
    #[test]
    fn layouts_not_derived_from_the_collection_are_refused(
        fields in any::<[u64; 7]>(), small in any::<[u8; 7]>(), mix in any::<u8>(), count in 1usize..40
    ) {
        let f = shared();
        let ctx = Context::preset("ckks-8192").unwrap();
        let derived = segment_layout(&ctx, count, 4096).unwrap().to_bytes();
        let mut layout = b"BLSL\x01".to_vec();
        for (i, (&w, &s)) in fields.iter().zip(&small).enumerate() {
            let v = if mix >> i & 1 == 0 { w } else { u64::from(s).next_power_of_two() };
            layout.extend_from_slice(&v.to_le_bytes());
        }
        prop_assume!(layout != derived);
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/collections/photos/segments", f.server.url()))
            .bearer_auth(&f.token)
            .body(append_body(&layout, count))
            .send()
            .unwrap();
        prop_assert_eq!(r.status().as_u16(), 400);
    }
}

#[test]
fn layouts_valid_for_other_parameters_are_refused() {
    let f = shared();
    let other = [
        Layout::new(
            3,
            4096,
            4096,
            SlotShape {
                rows: 2,
                row_len: 4096,
            },
        )
        .unwrap(),
        Layout::new(
            3,
            1024,
            512,
            SlotShape {
                rows: 1,
                row_len: 4096,
            },
        )
        .unwrap(),
        Layout::new(
            4,
            4096,
            2048,
            SlotShape {
                rows: 1,
                row_len: 4096,
            },
        )
        .unwrap(),
    ];
    for l in other {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/collections/photos/segments", f.server.url()))
            .bearer_auth(&f.token)
            .body(append_body(&l.to_bytes(), 3))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{l:?}");
    }
    assert!(Remote::new(f.server.url()).unwrap().health().is_ok());
}

#[test]
fn tls_serves_clients_that_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut opts = ServerOptions::new(dir.path().join("gallery.db"));
    opts.tls = Some(blindsight::server::tls::server_config(&cert_path, &key_path).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            blindsight::server::serve(listener, opts, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    let url = format!("https://localhost:{port}");
    let trusted = Remote::with_ca_file(&url, Some(&cert_path)).unwrap();
    let mut health = trusted.health();
    for _ in 0..100 {
        if health.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        health = trusted.health();
    }
    assert_eq!(health.unwrap()["status"], "ok");
    // without the CA the certificate is refused; plain HTTP gets no answer
    assert!(Remote::new(&url).unwrap().health().is_err());
    assert!(
        Remote::new(&format!("http://localhost:{port}"))
            .unwrap()
            .health()
            .is_err()
    );
    tx.send(()).unwrap();
    thread.join().unwrap();
}

#[test]
fn compactions_from_a_stale_live_set_or_dropping_live_images_get_409() {
    let f = fixture(Limits::default());
    let remote = Remote::new(f.server.url()).unwrap().with_token(&f.token);
    let list = remote.images("photos").unwrap();
    let segment = list.images[0].segment_id;
    let live: Vec<i64> = list.images.iter().map(|i| i.id).collect();
    // dropping a segment whose images are live
    let drop_live = wire::CompactSegment {
        olds: vec![(segment, live.clone())],
        batch: None,
    };
    match remote.compact("photos", &drop_live) {
        Err(blindsight::errors::AppError::Remote { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    // a deletion acknowledged after the client listed the segment
    assert_eq!(remote.delete("photos", &[live[0]]).unwrap(), 1);
    let stale = wire::CompactSegment {
        olds: vec![(segment, live.clone())],
        batch: None,
    };
    match remote.compact("photos", &stale) {
        Err(blindsight::errors::AppError::Remote { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    let after = remote.images("photos").unwrap();
    assert_eq!(after.images.len(), 3, "nothing was dropped");
    assert_eq!(
        after
            .images
            .iter()
            .filter(|i| i.deleted)
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![live[0]],
        "the deletion stands"
    );
    assert!(after.version > list.version);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn authorization_takes_the_same_time_whether_the_collection_exists_or_not() {
    let f = shared();
    let http = reqwest::blocking::Client::new();
    let time = |name: &str| {
        let started = Instant::now();
        let r = http
            .get(format!("{}/v1/collections/{name}", f.server.url()))
            .bearer_auth("0123456789abcdef0123456789abcdef")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
        started.elapsed()
    };
    let (mut existing, mut missing) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        existing.push(time("photos"));
        missing.push(time("no-such-collection"));
    }
    let (a, b) = (median(existing), median(missing));
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "{a:?} vs {b:?}");
}

#[test]
fn requests_without_a_valid_token_do_not_slow_other_collections() {
    let f = shared();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), f.server.url().to_string());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http
                        .post(format!("{url}/v1/collections/photos/segments"))
                        .bearer_auth("wrong")
                        .body(vec![0u8; 1 << 20])
                        .send();
                }
            })
        })
        .collect();
    let http = reqwest::blocking::Client::new();
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let r = http
            .get(format!("{}/v1/collections/photos", f.server.url()))
            .bearer_auth(&f.token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        times.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let m = median(times);
    assert!(m < Duration::from_millis(100), "median {m:?} under attack");
}

#[test]
fn a_collection_larger_than_the_cache_budget_is_served_from_its_files_and_still_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions::new(dir.path().join("gallery.db"));
    opts.memory_budget = 1 << 10;
    let server = LocalServer::start(opts).unwrap();
    let remote = Remote::new(server.url()).unwrap();
    let (client, _) = pixel_client(&server, &remote, "p");
    let files: Vec<(String, Vec<u8>)> = blindsight_testdata::first(6)
        .iter()
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect();
    client.ingest(&files[..3], |_| {}).unwrap();
    client.ingest(&files[3..], |_| {}).unwrap();
    for (name, bytes) in [&files[1], &files[4]] {
        let (m, _) = client
            .search(
                bytes,
                "q.png",
                1,
                blindsight_search::rank::RankRule::WholeCosine,
            )
            .unwrap();
        assert_eq!(&m[0].name, name);
    }
}

#[test]
fn idle_connections_are_closed_and_do_not_hold_the_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        Limits {
            header_timeout: Duration::from_secs(1),
            max_connections: 4,
            ..Limits::default()
        },
        dir.path(),
    );
    // four keep-alive connections that each sent one request, then went quiet
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&server)).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            s.read(&mut buf).unwrap_or(0),
            0,
            "an idle connection stayed open"
        );
    }
    // and a new client is served
    let (status, _) = raw_status(
        &server,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        &[],
        Duration::from_secs(3),
    );
    assert!(status.contains(" 200 "), "{status}");
}

#[test]
fn a_trickling_upload_is_cut_off_at_the_minimum_rate() {
    let f = fixture(Limits {
        body_timeout: Duration::from_secs(1),
        min_body_rate: 10_000,
        ..Limits::default()
    });
    let mut s = TcpStream::connect(addr(&f.server)).unwrap();
    s.write_all(
        format!(
            "POST /v1/collections/photos/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 10000000\r\n\r\n",
            f.token
        )
        .as_bytes(),
    )
    .unwrap();
    // 100 bytes every 100 ms: 1 kB/s, a tenth of the minimum rate, for as long as it lasts
    let started = Instant::now();
    s.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let _ = s.write_all(&[0u8; 100]);
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf)
            && n > 0
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[test]
fn a_client_that_stops_reading_loses_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        Limits {
            write_timeout: Duration::from_secs(1),
            max_connections_per_address: 1,
            ..Limits::default()
        },
        dir.path(),
    );
    // one image with a 24 MB payload: far more than the socket buffers hold
    let noise: Vec<u8> = (0..2800u32 * 2800 * 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut png = Vec::new();
    image::RgbImage::from_raw(2800, 2800, noise)
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let id = {
        let remote = Remote::new(server.url()).unwrap();
        let (client, token) = pixel_client(&server, &remote, "p");
        let report = client.ingest(&[("big.png".into(), png)], |_| {}).unwrap();
        (report.ids[0].1, token)
    };
    std::thread::sleep(Duration::from_millis(300));
    // ask for it and never read
    let mut stalled = TcpStream::connect(addr(&server)).unwrap();
    let body = wire::encode_ids(&[id.0]);
    stalled
        .write_all(
            format!(
                "POST /v1/collections/p/payloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
                id.1,
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stalled.write_all(&body).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // the address's only place is taken: a second connection is closed at once
    let (status, _) = raw_status(
        &server,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        &[],
        Duration::from_secs(2),
    );
    assert!(status.is_empty(), "{status}");
    // after the write timeout the stalled connection is gone and its place free
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = raw_status(
        &server,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        &[],
        Duration::from_secs(3),
    );
    assert!(status.contains(" 200 "), "{status:?}");
    drop(stalled);
}

/// A fresh CKKS keystore's client of a new pixel collection `name`, and its token.
fn pixel_client(server: &LocalServer, remote: &Remote, name: &str) -> (Client, String) {
    let ks = Keystore::generate("ckks-8192").unwrap();
    let admin = remote.with_token(server.admin_token());
    let token = Client::create(&ks, &admin, name, &blindsight::encoder::pixels_kind()).unwrap();
    let client = Client::new(ks, remote.with_token(&token), name).unwrap();
    (client, token)
}
