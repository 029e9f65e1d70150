//! The server against a hostile network, on loopback: authorization before the body, bounded
//! answers, cut-off slow requests, admission (503), layouts that do not come from the
//! collection, shutdown within its deadline, TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_he::Context;
use blindsight_proto::{self as wire, AppendSegment};
use blindsight_search::Layout;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::slots::SlotShape;
use blindsight_server::store::ImageRecord;
use blindsight_server::{Limits, LocalServer, ServerOptions};
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
                thumbnail: vec![],
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
    opts.tls = Some(blindsight_server::tls::server_config(&cert_path, &key_path).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            blindsight_server::serve(listener, opts, async move {
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
        Err(blindsight_client::ClientError::Remote { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    // a deletion acknowledged after the client listed the segment
    assert_eq!(remote.delete("photos", &[live[0]]).unwrap(), 1);
    let stale = wire::CompactSegment {
        olds: vec![(segment, live.clone())],
        batch: None,
    };
    match remote.compact("photos", &stale) {
        Err(blindsight_client::ClientError::Remote { status: 409, .. }) => {}
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

/// A collection `p` holding one image whose payload (24 MB) is far more than the socket
/// buffers hold; returns a connection that has asked for it.
fn ask_for_a_large_payload(server: &LocalServer) -> TcpStream {
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
        let (client, token) = pixel_client(server, &remote, "p");
        let report = client.ingest(&[("big.png".into(), png)], |_| {}).unwrap();
        (report.ids[0].1, token)
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut stream = TcpStream::connect(addr(server)).unwrap();
    let body = wire::encode_ids(&[id.0]);
    stream
        .write_all(
            format!(
                "POST /v1/collections/p/payloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
                id.1,
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&body).unwrap();
    stream
}

/// A reader that takes its answer in small sips, always making some progress but far
/// below the minimum rate, loses its connection: the server frees its place (one per
/// address here) while the reader is still draining what the kernel had buffered. (The
/// rate rule itself, on a pipe without kernel buffers: `listener::tests`.)
#[test]
fn a_trickling_reader_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        Limits {
            write_timeout: Duration::from_secs(1),
            min_write_rate: 1 << 20,
            max_connections_per_address: 1,
            ..Limits::default()
        },
        dir.path(),
    );
    let mut reader = ask_for_a_large_payload(&server);
    reader
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 16 << 10];
    let mut received = 0usize;
    // 16 KiB every 100 ms: 160 KiB/s, a sixth of the minimum rate
    let mut freed = None;
    while started.elapsed() < Duration::from_secs(20) {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_millis(300) && freed.is_none() {
            let (status, _) = raw_status(
                &server,
                "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                &[],
                Duration::from_millis(500),
            );
            if status.contains(" 200 ") {
                freed = Some(started.elapsed());
            }
        }
    }
    eprintln!(
        "place freed after {freed:?}; {received} bytes read in {:?}",
        started.elapsed()
    );
    let freed = freed.expect("the trickling reader kept its place");
    assert!(freed < Duration::from_secs(8), "{freed:?}");
    assert!(received < 24 << 20, "{received} bytes: the whole answer");
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
    // ask for a large payload and never read
    let stalled = ask_for_a_large_payload(&server);
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
    let token = Client::create(
        &ks,
        &admin,
        name,
        &blindsight_client::encoder::pixels_kind(),
    )
    .unwrap();
    let client = Client::new(ks, remote.with_token(&token), name).unwrap();
    (client, token)
}

/// Segment files in the store's segment folder.
fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("gallery.db-segments"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

/// A collection's owner uploading one-image segments without ever merging: past the
/// collection's segment quota (256 by default) every ingest is refused before anything is
/// written, with an error that says to merge; a search over the capped collection stays
/// bounded; a client that merges (the default) then does it by itself and ingests.
#[test]
fn tiny_segments_past_the_cap_are_refused_and_the_client_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Limits::default(), dir.path());
    let cap = blindsight_server::DEFAULT_QUOTA.segments as usize;
    let remote = Remote::new(server.url()).unwrap();
    let ks = Keystore::generate("ckks-8192").unwrap();
    let kind = blindsight_search::VectorKind::Pixels { side: 8 };
    let admin = remote.with_token(server.admin_token());
    let token = Client::create(&ks, &admin, "tiny", &kind).unwrap();
    let hostile = Client::new(ks.duplicate(), remote.with_token(&token), "tiny")
        .unwrap()
        .without_merging();
    let files = blindsight_testdata::distinct_files(cap + 60);
    for f in &files[..cap] {
        assert_eq!(
            hostile
                .ingest(std::slice::from_ref(f), |_| {})
                .unwrap()
                .added,
            1
        );
    }
    let written = segment_files(dir.path());
    for f in &files[cap..cap + 50] {
        match hostile.ingest(std::slice::from_ref(f), |_| {}) {
            Err(blindsight_client::ClientError::TooManySegments { limit, actual }) => {
                assert_eq!((limit, actual), (cap as u64, cap as u64));
            }
            other => panic!("an ingest past the cap: {other:?}"),
        }
    }
    let info = hostile.check_collection().unwrap();
    assert_eq!(info["segments"].as_u64(), Some(cap as u64));
    assert_eq!(
        segment_files(dir.path()),
        written,
        "a refused upload wrote a file"
    );
    // the capped collection answers a search with bounded work and bytes
    let started = Instant::now();
    let (matches, timing) = hostile
        .search(
            &files[17].1,
            "q",
            3,
            blindsight_search::rank::RankRule::WholeCosine,
        )
        .unwrap();
    let took = started.elapsed();
    assert_eq!(matches[0].name, files[17].0);
    eprintln!(
        "{cap} one-image segments: search {took:?} (server {:.3} s), {} response bytes",
        timing.server_s, timing.down_bytes
    );
    // one-image segments share response ciphertexts: 256 of them answer in a few
    assert!(timing.down_bytes < 2 << 20, "{} bytes", timing.down_bytes);
    // a client that merges does it when the server refuses, then ingests
    let merging = Client::new(ks, remote.with_token(&token), "tiny").unwrap();
    let report = merging.ingest(&files[cap + 50..], |_| {}).unwrap();
    assert_eq!(report.added, 10);
    assert!(report.merged.replaced >= cap, "{:?}", report.merged);
    let segments = merging.check_collection().unwrap()["segments"]
        .as_u64()
        .unwrap();
    assert!(segments < 16, "{segments} segments after merging");
}

/// Four uploads of one collection that declare 512 MiB and then trickle (within the body
/// grace, so none is cut off) hold only their own collection's places (three of the four,
/// the fourth waits and gets 503): another collection's searches, all the while, are never
/// answered 503.
#[test]
fn slow_uploads_of_one_collection_never_deny_another_collections_searches() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Limits::default(), dir.path());
    let remote = Remote::new(server.url()).unwrap();
    let (victim, victim_token) = pixel_client(&server, &remote, "victim");
    let files = blindsight_testdata::distinct_files(3);
    assert_eq!(victim.ingest(&files, |_| {}).unwrap().added, 3);
    let (_, hostile_token) = pixel_client(&server, &remote, "hostile");
    let head = format!(
        "POST /v1/collections/hostile/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \
         {hostile_token}\r\nContent-Length: {}\r\n\r\n",
        (512 << 20) - 1
    );
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&server)).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&[0u8; 1024]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/collections/victim/search", server.url());
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut searches = 0;
    while started.elapsed() < Duration::from_secs(8) {
        for s in &mut slow {
            let _ = s.write_all(&[0u8; 64]);
        }
        // a body the server decodes only once admitted: 400 if admitted, 503 if not
        let r = http
            .post(&url)
            .bearer_auth(&victim_token)
            .body(vec![1u8; 100])
            .send()
            .unwrap();
        statuses.push(r.status().as_u16());
        if searches < 3 {
            let (matches, _) = victim
                .search(
                    &files[1].1,
                    "q",
                    1,
                    blindsight_search::rank::RankRule::WholeCosine,
                )
                .unwrap();
            assert_eq!(matches[0].name, files[1].0);
            searches += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(statuses.len() >= 10, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 400), "{statuses:?}");
    // the hostile collection's own further upload is the one refused (after the wait)
    let (status, _) = raw_status(&server, &head, &[], Duration::from_secs(6));
    assert!(status.contains(" 503 "), "{status}");
    drop(slow);
}

/// An image list of 10^5 images comes in pages of at most `MAX_PAGE_IMAGES` (whatever the
/// `limit` asked), each continuing where the last ended; the client reads them all.
#[test]
fn a_list_of_100_000_images_is_paged() {
    use blindsight_server::store::{NewCollection, Quota, SegmentBatch, Store};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gallery.db");
    let token = "paged-list-token-0123456789";
    let total = 100_000usize;
    {
        let mut store = Store::open(&db).unwrap();
        let collection = store
            .create_collection(
                &NewCollection {
                    name: "big",
                    params: b"params",
                    fingerprint: b"fp",
                    vectors: &blindsight_search::VectorKind::Pixels { side: 64 },
                    relin_key: b"rk",
                    galois_keys: b"gk",
                    galois_elements: &[],
                    response_key: b"rsk",
                    token_hash: &blindsight_server::auth::token_hash(token),
                    key_id: "k",
                },
                &Quota::UNLIMITED,
            )
            .unwrap();
        for batch in 0..4 {
            let images: Vec<ImageRecord> = (0..total / 4)
                .map(|i| {
                    let n = (batch * total / 4 + i) as i64;
                    ImageRecord {
                        // ids in no particular order
                        id: n.wrapping_mul(2_654_435_761) % 1_000_000_007,
                        position: i,
                        tag: n.to_le_bytes().to_vec(),
                        meta: vec![7; 100],
                        payload: vec![],
                        source: vec![],
                        thumbnail: vec![],
                    }
                })
                .collect();
            let mut file = store.files().stage().unwrap();
            file.write(b"segment").unwrap();
            let batch = SegmentBatch {
                layout: b"layout",
                file: file.finish().unwrap(),
                images: &images,
            };
            store
                .append_segment(collection, batch, None, &Quota::UNLIMITED)
                .unwrap();
        }
    }
    let server = LocalServer::start(ServerOptions::new(db)).unwrap();
    // a page holds at most MAX_PAGE_IMAGES, whatever the limit asked
    let page = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/collections/big/images?limit=1000000",
            server.url()
        ))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = wire::decode_image_page(&page.bytes().unwrap()).unwrap();
    assert_eq!(page.images.len(), wire::MAX_PAGE_IMAGES);
    assert_eq!(page.next, page.images.last().map(|e| e.id));
    // the client reads every page
    let remote = Remote::new(server.url()).unwrap().with_token(token);
    let started = Instant::now();
    let list = remote.images("big").unwrap();
    eprintln!("{total} images listed in {:?}", started.elapsed());
    assert_eq!(list.images.len(), total);
    assert!(list.images.windows(2).all(|w| w[0].id < w[1].id));
    // a bad cursor is a clear error, not a 500
    let bad = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/collections/big/images?after=x",
            server.url()
        ))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// A connection to `server` from the loopback address `from` (127.0.0.x).
fn connect_from(server: &LocalServer, from: [u8; 4]) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let to: std::net::SocketAddr = addr(server).parse().unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind((std::net::Ipv4Addr::from(from), 0).into())
            .unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Sends `GET /health` on a kept-alive connection and reads its answer's status line.
fn health_on(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return String::new();
    }
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Four addresses holding 64 keep-alive connections each (all the server's 256), each
/// sending a request now and then so that none times out: a fifth address still gets in,
/// at once, by the close of the longest-idle of them.
#[test]
fn a_fifth_address_gets_a_place_while_four_hold_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Limits::default(), dir.path());
    let mut held: Vec<TcpStream> = Vec::new();
    for host in 1..=4u8 {
        for _ in 0..64 {
            let mut s = connect_from(&server, [127, 0, 0, host]);
            assert!(health_on(&mut s).contains(" 200 "));
            held.push(s);
        }
    }
    // a 65th from one of them finds only its own network's connections to close: one goes
    let mut extra = connect_from(&server, [127, 0, 0, 1]);
    assert!(health_on(&mut extra).contains(" 200 "));
    // the holders keep their connections busy (a request each, well within the timeouts)
    for s in held.iter_mut().take(32) {
        health_on(s);
    }
    let started = Instant::now();
    let mut newcomer = connect_from(&server, [127, 0, 0, 5]);
    let status = health_on(&mut newcomer);
    let took = started.elapsed();
    assert!(status.contains(" 200 "), "{status:?} after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // a connection was closed to make room: the server still holds at most 256
    let mut alive = 0;
    for s in &mut held {
        if health_on(s).contains(" 200 ") {
            alive += 1;
        }
    }
    assert!(alive < 256, "{alive} of the holders still connected");
}

/// A valid one-image batch for a `pixels:8` collection whose every ciphertext is a fresh
/// encryption under `ks`, serialized by `form` (the honest client's, or a compact one).
fn one_image_batch(
    ks: &Keystore,
    id: i64,
    form: impl Fn(&blindsight_he::Ciphertext) -> Vec<u8>,
) -> AppendSegment {
    use blindsight_he::CkksEncoder;
    let ctx = &ks.context;
    let layout = segment_layout(ctx, 1, 64).unwrap();
    let enc = CkksEncoder::new(ctx).unwrap();
    let pt = enc
        .encode(&[0.25], enc.default_scale(), ctx.max_level())
        .unwrap();
    let ct = ks.secret_key.encrypt(ctx, &pt).unwrap();
    let per_channel = layout.ciphertexts_per_channel();
    AppendSegment {
        layout: layout.to_bytes(),
        ciphertexts: vec![vec![form(&ct); per_channel]; 3],
        images: vec![ImageRecord {
            id,
            position: 0,
            tag: id.to_le_bytes().to_vec(),
            meta: vec![0; 60],
            payload: vec![0; 40],
            source: vec![],
            thumbnail: vec![],
        }],
        // the keys its layout needs, as the client sends them with a first batch
        galois_keys: blindsight_he::GaloisKeys::generate(
            ctx,
            &ks.secret_key,
            &layout.galois_steps(),
            false,
        )
        .and_then(|k| blindsight_he::Serializable::to_bytes(&k, ctx))
        .unwrap(),
    }
}

/// Gallery ciphertexts rounded to two bits per coefficient (a request about 70× smaller
/// than the file it would make) are refused before their segment file is written; the same batch
/// in the honest form is stored.
#[test]
fn compact_form_gallery_ciphertexts_are_refused_before_a_file_is_written() {
    use blindsight_he::{Evaluator, Serializable};
    let dir = tempfile::tempdir().unwrap();
    let server = start(Limits::default(), dir.path());
    let remote = Remote::new(server.url()).unwrap();
    let ks = Keystore::generate("ckks-8192").unwrap();
    let kind = blindsight_search::VectorKind::Pixels { side: 8 };
    let admin = remote.with_token(server.admin_token());
    let token = Client::create(&ks, &admin, "c", &kind).unwrap();
    let authed = remote.with_token(&token);
    let ctx = ks.context.clone();
    let tiny = one_image_batch(&ks, 1, |ct| {
        Evaluator::new(&ctx)
            .round_for_transfer(ct, [2, 0])
            .unwrap()
            .to_bytes(&ctx)
            .unwrap()
    });
    let body = tiny.encode().len();
    match authed.append("c", &tiny) {
        Err(blindsight_client::ClientError::Remote {
            status: 400,
            message,
        }) => {
            assert!(message.contains("expand"), "{message}");
        }
        other => panic!("a compact-form batch of {body} bytes: {other:?}"),
    }
    assert_eq!(segment_files(dir.path()), 0, "a file was written");
    let info = authed.info("c").unwrap();
    assert_eq!(info["stored_bytes"].as_u64(), Some(0));
    // the honest form (full polynomials here) passes
    let full = one_image_batch(&ks, 2, |ct| ct.to_bytes(&ctx).unwrap());
    authed.append("c", &full).unwrap();
    assert_eq!(segment_files(dir.path()), 1);
}

/// An ingest whose segment file would pass the collection's stored-bytes quota is refused
/// (507) from the counters and the file's expanded size, before the file is written.
#[test]
fn an_ingest_past_the_stored_bytes_quota_is_refused_before_its_file() {
    use blindsight_he::Serializable;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions::new(dir.path().join("gallery.db"));
    opts.quota.stored_bytes = 64 << 10;
    let server = LocalServer::start(opts).unwrap();
    let remote = Remote::new(server.url()).unwrap();
    let ks = Keystore::generate("ckks-8192").unwrap();
    let kind = blindsight_search::VectorKind::Pixels { side: 8 };
    let token = Client::create(&ks, &remote.with_token(server.admin_token()), "c", &kind).unwrap();
    let authed = remote.with_token(&token);
    let ctx = ks.context.clone();
    let batch = one_image_batch(&ks, 1, |ct| ct.to_bytes(&ctx).unwrap());
    match authed.append("c", &batch) {
        Err(blindsight_client::ClientError::Remote {
            status: 507,
            message,
        }) => {
            assert!(message.contains("stored bytes"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(segment_files(dir.path()), 0);
    let staged = std::fs::read_dir(dir.path().join("gallery.db-segments/tmp"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "a staged file was left");
}

/// Large uploads that fill the server's budget of bodies in flight make other large uploads
/// wait (then 503), never a search: small bodies reserve nothing.
#[test]
fn a_full_body_budget_delays_uploads_but_never_a_search() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        Limits {
            max_body_bytes_in_flight: 32 << 20,
            ..Limits::default()
        },
        dir.path(),
    );
    let remote = Remote::new(server.url()).unwrap();
    let (_, hostile_token) = pixel_client(&server, &remote, "hostile");
    let (_, victim_token) = pixel_client(&server, &remote, "victim");
    let upload = |collection: &str, token: &str, declared: usize| {
        format!(
            "POST /v1/collections/{collection}/segments HTTP/1.1\r\nHost: x\r\nAuthorization: \
             Bearer {token}\r\nContent-Length: {declared}\r\n\r\n"
        )
    };
    // 30 of the 32 MiB, trickling
    let mut slow = TcpStream::connect(addr(&server)).unwrap();
    slow.write_all(upload("hostile", &hostile_token, 30 << 20).as_bytes())
        .unwrap();
    slow.write_all(&[0u8; 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // another large upload waits for the budget, then gets 503
    let (status, took) = raw_status(
        &server,
        &upload("victim", &victim_token, 20 << 20),
        &[],
        Duration::from_secs(6),
    );
    assert!(status.contains(" 503 "), "{status}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    // a search is admitted at once (its body is junk: 400 once admitted)
    let started = Instant::now();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/collections/victim/search", server.url()))
        .bearer_auth(&victim_token)
        .body(vec![1u8; 100])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(slow);
}
