//! The server under load as a child process: started, its log and `/proc` figures read,
//! its memory sampled, killed if the benchmark fails.

use crate::errors::{AppError, Result};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server process; killed if still running when dropped (an error path).
pub(super) struct ServerProcess {
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(VmRSS, RssAnon, VmHWM)` of a process, bytes.
pub(super) fn proc_memory(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| blindsight_os::procfs::field_bytes(&status, name);
    Some((field("VmRSS:")?, field("RssAnon:")?, field("VmHWM:")?))
}

pub(super) fn start_server(
    exe: &Path,
    dir: &Path,
    max_concurrent: usize,
) -> Result<(ServerProcess, std::thread::JoinHandle<()>)> {
    let log = std::fs::File::create(dir.join("server.log"))
        .map_err(|e| AppError::io(dir.join("server.log"), e))?;
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--db")
        .arg(dir.join("gallery.db"))
        .args(["--listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(dir.join("admin"))
        .args(["--max-concurrent", &max_concurrent.to_string()])
        .env("RUST_LOG", "warn,blindsight=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| AppError::io(exe, e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| AppError::Internal("the server's stdout is not piped".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // reads the first line, hands it over, then drains the rest so the server never blocks
    let drain = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let mut process = ServerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let addr = first
        .trim()
        .rsplit_once(" on http://")
        .and_then(|(_, a)| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            AppError::Internal(format!(
                "the server did not announce its address (first line {first:?}; log: {})",
                log.chars().take(2000).collect::<String>()
            ))
        })?;
    process.addr = addr;
    Ok((process, drain))
}

/// Peak memory of the server, sampled every 50 ms until `stop`.
#[derive(Default)]
pub(super) struct Sampled {
    pub(super) rss: u64,
    pub(super) anon: u64,
    pub(super) samples: usize,
    /// `unix_ms,vm_rss,rss_anon` lines (written to `rss.csv` in the working folder).
    pub(super) series: String,
}

pub(super) fn sampler(pid: u32, stop: Arc<AtomicBool>, out: Arc<Mutex<Sampled>>) {
    while !stop.load(Ordering::SeqCst) {
        if let Some((rss, anon, _)) = proc_memory(pid)
            && let Ok(mut s) = out.lock()
        {
            s.rss = s.rss.max(rss);
            s.anon = s.anon.max(anon);
            s.samples += 1;
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            s.series.push_str(&format!("{ms},{rss},{anon}\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Figures the server wrote in its log: (ERROR lines, largest `cache_bytes`, largest
/// appended body, largest search bytes in + out); only lines after `skip` lines count for
/// the bodies (the setup's gallery upload is not part of the run).
pub(super) fn log_figures(log: &str, skip: usize) -> (usize, u64, u64, u64) {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let (mut errors, mut cache, mut append, mut search) = (0, 0, 0, 0);
    for (i, raw) in log.lines().enumerate() {
        let line = strip_ansi(raw);
        if line.contains(" ERROR ") {
            errors += 1;
        }
        if let Some(c) = field(&line, "cache_bytes") {
            cache = cache.max(c);
        }
        if i < skip {
            continue;
        }
        if line.contains("segment appended")
            && let Some(b) = field(&line, "bytes")
        {
            append = append.max(b);
        }
        if let (Some(a), Some(b)) = (field(&line, "bytes_in"), field(&line, "bytes_out")) {
            search = search.max(a + b);
        }
    }
    (errors, cache, append, search)
}

pub(super) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
