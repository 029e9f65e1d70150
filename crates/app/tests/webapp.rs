//! `blindsight app`, the local web app: its access policy through real HTTP (token once,
//! cookie, Host, Origin, CSP on everything), its API end to end (create, ingest, browse,
//! search with private retrieval, delete, compact) with every answer checked for key
//! material, and — with `--ignored`, as `.ci/run` runs it after installing Chromium and
//! playwright-core — the page itself driven in headless Chromium.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use blindsight::commands::Env;
use blindsight::webapp::{self, RunningApp, guard::CONTENT_SECURITY_POLICY};
use blindsight_client::keystore::Keystore;
use reqwest::blocking::{Client, Response};
use reqwest::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An HTTP client that neither follows redirects nor keeps cookies: the tests see each step.
fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// A running app on a fresh home, and its signed-in session cookie.
struct Session {
    app: RunningApp,
    cookie: String,
    http: Client,
    home: PathBuf,
    /// Every answer body read through [`Session::get`] and [`Session::post`].
    seen: Vec<Vec<u8>>,
}

impl Session {
    fn start(home: &Path) -> Self {
        let app = webapp::start(Env::for_home(home), "127.0.0.1:0").unwrap();
        let http = http();
        let r = http.get(app.login_url().as_str()).send().unwrap();
        assert_eq!(r.status(), 303, "the token is exchanged for a cookie");
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        Self {
            app,
            cookie,
            http,
            home: home.to_path_buf(),
            seen: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base_url())
    }

    fn origin(&self) -> String {
        self.app.base_url()
    }

    fn keep(&mut self, r: Response) -> (u16, Vec<u8>) {
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY,
            "every answer carries the CSP"
        );
        let body = r.bytes().unwrap().to_vec();
        self.seen.push(body.clone());
        (status, body)
    }

    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(self.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .unwrap();
        self.keep(r)
    }

    fn post(&mut self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .post(self.url(path))
            .header(COOKIE, &self.cookie)
            .header(ORIGIN, self.origin())
            .header("sec-fetch-site", "same-origin")
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        self.keep(r)
    }

    fn get_json(&mut self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    fn post_json(&mut self, path: &str, value: Value) -> Value {
        let (status, body) = self.post(path, value.to_string().into_bytes(), "application/json");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn the_token_is_good_once_and_only_its_cookie_signs_in() {
    let home = tempdir();
    let app = webapp::start(Env::for_home(home.path()), "127.0.0.1:0").unwrap();
    let http = http();
    let base = app.base_url();
    // nothing without the token or a cookie
    for path in ["/", "/api/overview", "/assets/app.js"] {
        let r = http.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY,
            "a refusal carries the CSP too"
        );
    }
    // a wrong token, and a token of the right length but wrong
    for wrong in ["nope", &"0".repeat(64)] {
        let r = http.get(format!("{base}/?token={wrong}")).send().unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get(SET_COOKIE).is_none());
    }
    // the right one: a cookie, a redirect that drops the token from the address
    let r = http.get(app.login_url().as_str()).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    // used up
    let r = http.get(app.login_url().as_str()).send().unwrap();
    assert_eq!(r.status(), 403, "a token is good once");
    // the cookie signs in; a forged one does not
    let r = http
        .get(format!("{base}/"))
        .header(COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("data-testid=\"query-input\""));
    let (name, _) = cookie.split_once('=').unwrap();
    let forged = format!("{name}={}", "a".repeat(64));
    let r = http
        .get(format!("{base}/api/overview"))
        .header(COOKIE, forged)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop();
}

/// The app listens on loopback only: any other address is refused before anything is
/// opened, with a message that says why.
#[test]
fn a_listen_address_off_loopback_is_refused() {
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080", "10.1.2.3:0"] {
        let err = webapp::loopback_address(listen).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{listen}: {err}");
    }
    for listen in ["127.0.0.1:0", "[::1]:0", "localhost:0"] {
        let addr = webapp::loopback_address(listen).unwrap();
        assert!(addr.ip().is_loopback(), "{listen}");
    }
    // through the command: refused, and no keystore or store made
    let home = tempdir();
    let out = common::blindsight(home.path(), &["app", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(!home.path().join("keystore").exists());
}

#[test]
fn foreign_hosts_and_cross_origin_changes_are_refused() {
    let home = tempdir();
    let mut s = Session::start(home.path());
    let port = s.app.address().port();
    // DNS rebinding: the right address, another name
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let r = s
            .http
            .get(s.url("/api/overview"))
            .header(HOST, host.as_str())
            .header(COOKIE, &s.cookie)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "Host {host}");
        s.keep(r);
    }
    let r = s
        .http
        .get(s.url("/api/overview"))
        .header(HOST, format!("localhost:{port}"))
        .header(COOKIE, &s.cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "localhost is the app's own name");
    // CSRF: a state change without the app's own Origin
    let create = json!({"name": "c", "vectors": "pixels", "scheme": "ckks"}).to_string();
    let cases: [(Option<String>, Option<&str>); 4] = [
        (None, None),
        (Some("http://evil.example".into()), None),
        (
            Some(format!("http://127.0.0.1:{}", port.wrapping_add(1))),
            None,
        ),
        (Some(s.origin()), Some("cross-site")),
    ];
    for (origin, site) in cases {
        let mut req = s
            .http
            .post(s.url("/api/collections"))
            .header(COOKIE, &s.cookie)
            .header("content-type", "application/json")
            .body(create.clone());
        if let Some(o) = &origin {
            req = req.header(ORIGIN, o);
        }
        if let Some(site) = site {
            req = req.header("sec-fetch-site", site);
        }
        let r = req.send().unwrap();
        assert_eq!(
            r.status(),
            403,
            "Origin {origin:?}, Sec-Fetch-Site {site:?}"
        );
        s.keep(r);
    }
    // nothing was created by any of them
    let o = s.get_json("/api/overview");
    assert_eq!(o["collections"], json!([]));
    assert!(!home.path().join("keystore").exists());
}

#[test]
fn the_page_and_every_asset_carry_the_csp_and_load_nothing_from_outside() {
    let home = tempdir();
    let mut s = Session::start(home.path());
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    let mut assets = vec![];
    for piece in page.split(['"', '\'']) {
        if piece.starts_with("/assets/") {
            assets.push(piece.to_string());
        }
    }
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in &assets {
        let (status, body) = s.get(asset);
        assert_eq!(status, 200, "{asset}");
        let text = String::from_utf8_lossy(&body);
        for outside in ["http://", "https://", "//cdn", "@import"] {
            // the SVG icon names its XML namespace, which is not a request
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains(outside), "{asset} refers to {outside}");
        }
    }
    // no inline script or style for the CSP to refuse: every script has a source
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=\"/assets/").count()
    );
    assert!(!page.contains("<style") && !page.contains(" style="));
    let handler = page.split(|c: char| c.is_whitespace()).any(|word| {
        word.strip_prefix("on")
            .and_then(|rest| rest.split_once('='))
            .is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
            })
    });
    assert!(!handler, "no inline event handler");
    for (path, status) in [("/assets/missing.js", 404), ("/api/jobs/77", 404)] {
        assert_eq!(s.get(path).0, status, "{path}");
    }
    // the contract's hooks are on the page
    for hook in [
        "query-input",
        "ingest-path",
        "ingest-start",
        "progress",
        "delete",
    ] {
        assert!(page.contains(&format!("data-testid=\"{hook}\"")), "{hook}");
    }
}

/// A mirrored copy of an image, its central 80 % kept and darkened (PNG).
fn edited_png(bytes: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(bytes).unwrap().to_rgba8();
    let (w, h) = img.dimensions();
    let cropped = image::imageops::crop_imm(&img, w / 10, h / 10, w * 8 / 10, h * 8 / 10);
    let flipped = image::imageops::flip_horizontal(&cropped.to_image());
    let darker = image::imageops::colorops::brighten(&flipped, -20);
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(darker)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// `count` distinct embedded images in `dir` (one in a subfolder, one file that is not an
/// image); returns their names and bytes.
fn write_gallery(dir: &Path, count: usize) -> Vec<(String, Vec<u8>)> {
    let files = blindsight_testdata::distinct_files(count);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let at = if i == 0 {
            dir.join("sub").join(name)
        } else {
            dir.join(name)
        };
        std::fs::write(at, bytes).unwrap();
    }
    std::fs::write(dir.join("notes.png"), b"not an image at all").unwrap();
    files
}

/// Whether `haystack` holds any `window`-byte piece of `needle` (at every offset).
/// Every window of `width` bytes of the forms key material could leave in (raw, hex, and
/// base64 from each of the three byte alignments), except windows too uniform to identify
/// anything (a run of zero coefficients): an index to look answers up in.
struct KeyWindows {
    width: usize,
    windows: std::collections::HashSet<Vec<u8>>,
}

impl KeyWindows {
    fn new(width: usize, secrets: &[&[u8]]) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut windows = std::collections::HashSet::new();
        for secret in secrets {
            let mut forms = vec![secret.to_vec(), hex(secret)];
            for shift in 0..3.min(secret.len()) {
                forms.push(b64.encode(&secret[shift..]).into_bytes());
            }
            for form in &forms {
                for w in form.windows(width) {
                    let mut distinct = [false; 256];
                    w.iter().for_each(|&b| distinct[usize::from(b)] = true);
                    if distinct.iter().filter(|&&d| d).count() >= width / 3 {
                        windows.insert(w.to_vec());
                    }
                }
            }
        }
        Self { width, windows }
    }

    /// Whether `body` holds any window of the key material.
    fn found_in(&self, body: &[u8]) -> bool {
        body.windows(self.width).any(|w| self.windows.contains(w))
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect()
}

/// Every answer of a whole session (create, ingest, browse, search with private retrieval,
/// delete, compact) checked for key material: no piece of the payload key or of the HE
/// secret key (raw, hex or base64) is in any of them.
#[test]
fn the_api_end_to_end_never_sends_key_material() {
    let home = tempdir();
    let gallery = home.path().join("photos");
    let files = write_gallery(&gallery, 24);
    let mut s = Session::start(home.path());
    let o = s.get_json("/api/overview");
    assert_eq!(o["keystore"]["preset"], Value::Null);
    // create (the keystore is made for it) and a second create of the same name refused
    s.post_json(
        "/api/collections",
        json!({"name": "holiday", "vectors": "pixels", "scheme": "bfv"}),
    );
    let (status, body) = s.post(
        "/api/collections",
        json!({"name": "holiday", "vectors": "pixels"})
            .to_string()
            .into_bytes(),
        "application/json",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = s.post(
        "/api/collections",
        json!({"name": "other", "vectors": "pixels", "scheme": "ckks"})
            .to_string()
            .into_bytes(),
        "application/json",
    );
    assert_eq!(status, 400, "a scheme the keystore does not hold");
    let o = s.get_json("/api/overview");
    assert_eq!(o["keystore"]["preset"], "bfv-8192");
    assert_eq!(o["collections"][0]["name"], "holiday");
    // ingest: a job whose progress counts every file, the subfolder's included
    let job = s.post_json(
        "/api/collections/holiday/ingest",
        json!({"path": gallery.display().to_string()}),
    );
    let id = job["job"].as_u64().unwrap();
    let started = Instant::now();
    let done = loop {
        let j = s.get_json(&format!("/api/jobs/{id}"));
        assert!(j["done"].as_u64() <= j["total"].as_u64(), "{j}");
        if j["state"] == "done" || j["state"] == "failed" {
            break j;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["total"], files.len() + 1, "{done}");
    assert_eq!(done["done"], done["total"]);
    assert_eq!(done["added"], files.len());
    assert_eq!(
        done["failed"][0]["name"], "notes.png",
        "a file that is not an image is reported"
    );
    // browse: every image once, in pages, with a decodable thumbnail
    let mut browsed = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.get_json(&format!("/api/collections/holiday/images?limit=7{after}"));
        for i in page["images"].as_array().unwrap() {
            let url = i["thumbnail"].as_str().unwrap();
            let b64 = url.strip_prefix("data:image/jpeg;base64,").unwrap();
            use base64::Engine;
            let jpeg = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert!(image::load_from_memory(&jpeg).is_ok());
            browsed.push((
                i["id"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
            ));
        }
        match page["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(browsed.len(), files.len());
    // search with an edited copy: its original first, thumbnails by private retrieval
    let target = 5;
    let query = edited_png(&files[target].1);
    let (status, body) = s.post(
        "/api/collections/holiday/search?k=10&name=edited.png",
        query,
        "image/png",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert_eq!(results[0]["name"], files[target].0.as_str(), "{answer}");
    assert_eq!(
        results[0]["channels"].as_array().unwrap().len(),
        3,
        "pixels: the triple"
    );
    assert!(results.iter().all(|r| r["thumbnail"].as_str().is_some()));
    for key in [
        "encrypt_s",
        "upload_s",
        "server_s",
        "download_s",
        "decrypt_s",
        "retrieval_s",
    ] {
        assert!(answer["timing"][key].as_f64().unwrap() >= 0.0, "{key}");
    }
    // not an image: a clear refusal, nothing lost
    let (status, body) = s.post(
        "/api/collections/holiday/search",
        b"hello".to_vec(),
        "image/png",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // the original, asked for explicitly
    let first = results[0]["id"].as_str().unwrap().to_string();
    let (status, original) = s.get(&format!("/api/collections/holiday/original/{first}"));
    assert_eq!(status, 200);
    assert_eq!(original, files[target].1);
    // delete, then it is gone from the pages; compact purges it
    let gone = s.post_json("/api/collections/holiday/delete", json!({"ids": [first]}));
    assert_eq!(gone["deleted"], 1);
    let page = s.get_json("/api/collections/holiday/images?limit=200");
    assert_eq!(page["images"].as_array().unwrap().len(), files.len() - 1);
    assert!(
        page["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != first.as_str())
    );
    let c = s.post_json("/api/collections/holiday/compact", json!({}));
    assert_eq!(c["purged"], 1, "{c}");
    let info = s.get_json("/api/collections/holiday");
    assert_eq!(info["images"], files.len() - 1);
    let p = &info["parameters"];
    assert_eq!(p["preset"], "bfv-8192", "{info}");
    assert_eq!(p["degree"], 8192);
    assert!(p["modulus_bits"].as_u64().unwrap() <= p["max_secure_modulus_bits"].as_u64().unwrap());
    assert!(p["plain_modulus"].as_u64().unwrap() > 0);
    s.get_json("/api/overview");
    // no answer holds key material: any 24 bytes of the secret key's serialization or of
    // the payload key, raw, in hex or in base64
    let ks = Keystore::load(&s.home.join("keystore"), None).unwrap();
    let secret = ks.secret_key.to_bytes(&ks.context).unwrap();
    let payload_key: &[u8] = &ks.payload_key[..];
    let index = KeyWindows::new(24, &[&secret, payload_key]);
    assert!(
        index.windows.len() > secret.len(),
        "the index covers the secret"
    );
    assert!(s.seen.len() > 10);
    for body in &s.seen {
        assert!(!index.found_in(body), "key material in an answer");
    }
    // the check itself finds a key sent in any of those forms
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let middle = &secret[secret.len() / 2..][..300];
    for leak in [
        middle.to_vec(),
        hex(middle),
        b64.encode(middle).into_bytes(),
        b64.encode(payload_key).into_bytes(),
    ] {
        let mut body = b"{\"thumbnail\":\"".to_vec();
        body.extend_from_slice(&leak);
        assert!(index.found_in(&body), "a leak would be seen");
    }
    s.app.stop();
}

/// The page itself in headless Chromium (playwright-core, `crates/app/tests/browser`): open
/// the app, create a collection, ingest a folder of the embedded images, drop an edited
/// copy of one and see its original among the results as a decoded image, "similar" on a
/// result, delete an image and see it gone; screenshots into `$BLINDSIGHT_SCREENSHOTS` when
/// set. `.ci/run` installs Chromium and playwright-core, then runs it with `--ignored`.
#[test]
#[ignore = "needs Chromium and playwright-core: .ci/run installs them and runs this"]
fn the_page_in_headless_chromium() {
    let home = tempdir();
    let gallery = home.path().join("photos");
    let files = write_gallery(&gallery, 40);
    // two more, outside the gallery: dropped on the page later
    let extra: Vec<PathBuf> = blindsight_testdata::distinct_files(42)[40..]
        .iter()
        .map(|(name, bytes)| {
            let at = home.path().join(format!("extra-{name}"));
            std::fs::write(&at, bytes).unwrap();
            at
        })
        .collect();
    let query = home.path().join("edited-copy.png");
    let target = 17;
    std::fs::write(&query, edited_png(&files[target].1)).unwrap();
    let mut app = common::blindsight(home.path(), &["app", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(app.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the app printed its URL").unwrap();
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/app.e2e.mjs");
    let mut node = Command::new("node");
    if let Some(dir) = std::env::var_os("BLINDSIGHT_SCREENSHOTS") {
        node.env("SHOTS", dir);
    }
    let status = node
        .arg(&script)
        .env("APP_URL", &url)
        .env("GALLERY", &gallery)
        .env("QUERY", &query)
        .env("EXPECTED_NAME", &files[target].0)
        .env("IMAGES", (files.len()).to_string())
        .env("EXTRA", std::env::join_paths(&extra).unwrap())
        .status()
        .expect("node runs (.ci/run installs playwright-core beside the script)");
    let _ = app.kill();
    let _ = app.wait();
    assert!(status.success(), "the browser test failed: {status}");
}

/// Files dropped on the page are ingested as one batch (a file that is not an image
/// reported, hostile names kept inside the staging folder, which goes afterwards); the page
/// switches between the server it was started with and the in-process store, creating a
/// collection on each.
#[test]
fn dropped_files_are_ingested_and_servers_are_switched() {
    let home = tempdir();
    let db = home.path().join("served.db");
    let served = common::serve(home.path(), &db, &[]);
    let env = Env {
        server: Some(served.url.clone()),
        admin_token_file: Some(home.path().join("served.db.admin-token")),
        ..Env::for_home(home.path())
    };
    let app = webapp::start(env, "127.0.0.1:0").unwrap();
    let http = http();
    let r = http.get(app.login_url().as_str()).send().unwrap();
    let cookie = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut s = Session {
        app,
        cookie,
        http,
        home: home.path().to_path_buf(),
        seen: Vec::new(),
    };
    let o = s.get_json("/api/overview");
    let keys: Vec<&str> = o["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app", "local"], "{o}");
    assert_eq!(o["servers"][0]["active"], true);
    assert_eq!(o["server"], served.url.as_str());
    s.post_json(
        "/api/collections",
        json!({"name": "served", "vectors": "pixels", "scheme": "ckks"}),
    );
    // a drop of four files, one not an image, one with a hostile name
    let files = blindsight_testdata::distinct_files(3);
    let names = ["a.png", "../../escape.png", "a.png"];
    for ((_, bytes), name) in files.iter().zip(names) {
        let (status, body) = s.post(
            &format!(
                "/api/collections/served/uploads?batch=drop-1&file={}",
                name.replace('/', "%2F")
            ),
            bytes.clone(),
            "application/octet-stream",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let kept: Value = serde_json::from_slice(&body).unwrap();
        assert!(!kept["file"].as_str().unwrap().contains('/'), "{kept}");
    }
    let (status, _) = s.post(
        "/api/collections/served/uploads?batch=drop-1&file=notes.png",
        b"no image here".to_vec(),
        "application/octet-stream",
    );
    assert_eq!(status, 200);
    let (status, _) = s.post(
        "/api/collections/served/uploads?batch=..%2Fx&file=x.png",
        b"x".to_vec(),
        "application/octet-stream",
    );
    assert_eq!(status, 400, "a batch is never a path");
    let job = s.post_json(
        "/api/collections/served/ingest",
        json!({"uploaded": "drop-1"}),
    );
    let id = job["job"].as_u64().unwrap();
    let done = loop {
        let j = s.get_json(&format!("/api/jobs/{id}"));
        if j["state"] == "done" || j["state"] == "failed" {
            break j;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["total"], 4);
    assert_eq!(done["added"], 3, "{done}");
    assert_eq!(done["failed"].as_array().unwrap().len(), 1, "{done}");
    assert!(
        !Path::new(done["path"].as_str().unwrap()).exists(),
        "the staging folder goes"
    );
    let (status, _) = s.post(
        "/api/collections/served/ingest",
        json!({"uploaded": "drop-1"}).to_string().into_bytes(),
        "application/json",
    );
    assert_eq!(status, 400, "a batch is ingested once");
    // the in-process store: its own collections
    let o = s.post_json("/api/server", json!({"key": "local"}));
    assert!(o["server"].as_str().unwrap().starts_with("sqlite:"), "{o}");
    assert_eq!(o["collections"], json!([]));
    s.post_json(
        "/api/collections",
        json!({"name": "here", "vectors": "pixels"}),
    );
    let o = s.post_json("/api/server", json!({"key": "app"}));
    assert_eq!(o["collections"][0]["name"], "served");
    assert_eq!(o["collections"][0]["images"], 3);
    assert_eq!(o["collections"].as_array().unwrap().len(), 1);
    let (status, _) = s.post(
        "/api/server",
        json!({"key": "remote:nowhere"}).to_string().into_bytes(),
        "application/json",
    );
    assert_eq!(status, 400);
    drop(served);
}
