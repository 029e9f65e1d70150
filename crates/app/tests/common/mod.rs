//! What the tests of the `blindsight` binary share: running it in a home of its own, and a
//! `serve` process on an ephemeral loopback port.
#![allow(dead_code, reason = "each test file uses its part")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary with `home` as its home, no passphrase or admin token from the environment.
pub fn blindsight(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blindsight"));
    c.env("BLINDSIGHT_HOME", home)
        .env_remove("BLINDSIGHT_ADMIN_TOKEN")
        .env_remove("BLINDSIGHT_PASSPHRASE")
        .args(args);
    c
}

/// Runs it to the end.
pub fn run(home: &Path, args: &[&str]) -> Output {
    blindsight(home, args).output().unwrap()
}

/// Runs it; it must succeed. Its standard output.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The arguments of `search QUERY --top TOP --report PAGE`.
pub fn report_args<'a>(query: &'a Path, top: &'a str, page: &'a Path) -> [&'a str; 6] {
    [
        "search",
        query.to_str().unwrap(),
        "--top",
        top,
        "--report",
        page.to_str().unwrap(),
    ]
}

/// Runs `search QUERY --top TOP --report PAGE`; it must succeed and say it wrote the
/// report. The report's HTML.
pub fn search_report(home: &Path, query: &Path, top: &str, page: &Path) -> String {
    let out = ok(home, &report_args(query, top, page));
    assert!(out.contains("wrote the report"), "{out}");
    std::fs::read_to_string(page).unwrap()
}

/// Images a report shows (the query and its matches' thumbnails).
pub fn report_images(html: &str) -> usize {
    html.matches("<img src=\"data:image/jpeg;base64,").count()
}

/// Runs it; it must fail, saying `needle` on its standard error.
pub fn fails_with(home: &Path, args: &[&str], needle: &str) {
    let out = run(home, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
}

/// A `serve` process on an ephemeral loopback port (killed on drop): its URL and what it
/// printed before serving (through the line naming its admin token file).
pub struct Served {
    /// The process.
    pub child: Child,
    /// `http://…` or `https://…`.
    pub url: String,
    /// Its first lines.
    pub printed: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --db DB --listen 127.0.0.1:0 EXTRA…` with `home` as its home.
pub fn serve(home: &Path, db: &Path, extra: &[&str]) -> Served {
    let mut child = blindsight(home, &["serve", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("admin token") && !printed.contains("open registration") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "serve stopped: {printed}"
        );
        printed.push_str(&line);
    }
    // keep reading what it prints (a closed pipe would stop it)
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = printed
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no address in {printed}"))
        .to_string();
    Served {
        child,
        url,
        printed,
    }
}

/// Kill delays, uniform in `0..max` (xorshift), seeded from the clock: the seed is printed
/// (and kept in [`Delays::seed`]) to replay a failure.
pub struct Delays {
    state: u64,
    /// The seed the delays were drawn from.
    pub seed: u64,
}

impl Delays {
    /// Delays from a seed taken from the clock (printed on stderr).
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill delays seed: {seed}");
        Self { state: seed, seed }
    }

    /// The next delay, uniform in `0..max`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        max.mul_f64((self.state >> 11) as f64 / (1u64 << 53) as f64)
    }
}
