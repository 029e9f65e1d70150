//! The report of `blindsight bench-server`: per kind of operation its count, rate,
//! latencies, errors and 503s; the server's memory against the bound its defaults state;
//! as one JSON object or tables for a terminal.

use super::{Hostile, Op, tenant};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Counts and latencies of one kind of request.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Requests completed (successfully or not; retries after 503 not counted again).
    pub count: usize,
    /// Latencies of the attempts that succeeded (ms).
    pub latencies_ms: Vec<f64>,
    /// Errors.
    pub errors: usize,
    /// 503 answers (each one retried for a well-formed request).
    pub busy: usize,
    /// Hostile requests answered as expected with a status.
    pub as_expected: usize,
    /// Hostile requests refused by closing the connection.
    pub closed_early: usize,
    /// A few error messages.
    pub samples: Vec<String>,
}

impl Tally {
    pub(super) fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.latencies_ms.extend(other.latencies_ms);
        self.errors += other.errors;
        self.busy += other.busy;
        self.as_expected += other.as_expected;
        self.closed_early += other.closed_early;
        for s in other.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }

    pub(super) fn error(&mut self, message: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(message);
        }
    }

    /// The `q` quantile of the latencies (nearest rank), ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut v = self.latencies_ms.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v.get(rank - 1).copied()
    }
}

/// What was read of the server process.
#[derive(Clone, Debug, Default)]
pub struct ServerFigures {
    /// Process id.
    pub pid: u32,
    /// RSS right after it started listening (bytes).
    pub idle_rss: u64,
    /// Peak RSS (`VmHWM`) at the end of the setup: gallery ingested, one search run (bytes).
    pub setup_peak_rss: u64,
    /// Peak RSS (`VmHWM`) just before SIGTERM (bytes).
    pub peak_rss: u64,
    /// Peak of the sampled `RssAnon` (bytes).
    pub peak_rss_anon: u64,
    /// Peak of the sampled `VmRSS` (bytes).
    pub peak_rss_sampled: u64,
    /// Samples taken (every 50 ms).
    pub samples: usize,
    /// Whether the process exited before it was asked to.
    pub crashed: bool,
    /// Seconds from SIGTERM to exit.
    pub stop_s: f64,
    /// Exit status after SIGTERM.
    pub exit: String,
    /// Log lines at ERROR level (internal faults).
    pub log_errors: usize,
    /// Largest gallery cache the server reported (`cache_bytes` in its log).
    pub cache_logged: u64,
    /// Largest ingest body the server logged during the measured run.
    pub largest_append: u64,
    /// Largest search (request + response bytes) the server logged during the run.
    pub largest_search: u64,
}

/// The memory bound the server's defaults state (server/mod.rs, [`Limits`](blindsight_server::Limits)): the gallery
/// cache in use, plus `max_concurrent` requests of at most three times the largest body of
/// the admitted routes (body, decoded copy, transaction), plus a fixed baseline.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    /// [`BASELINE_BYTES`](super::BASELINE_BYTES).
    pub baseline: u64,
    /// Cache term: the larger of what the server logged and [`Bound::cache_estimate`].
    pub cache: u64,
    /// What the cache holds for the final collection: every segment's prepared operands
    /// (3 channels × ciphertexts per channel × product operand bytes) and the evaluator
    /// (2 × stored key bytes).
    pub cache_estimate: u64,
    /// The admission limit.
    pub max_concurrent: u64,
    /// Largest body of the admitted routes under the defaults (`max_segment_body`).
    pub largest_body: u64,
    /// `baseline + cache + max_concurrent × 3 × largest_body`.
    pub stated: u64,
    /// The same with the largest body this run sent instead of the route limit (for
    /// comparison: it leaves out scoring temporaries).
    pub workload: u64,
}

impl Bound {
    /// The formula, in words.
    pub const FORMULA: &'static str = "baseline (64 MiB) + gallery cache in use + max_concurrent × 3 × largest admitted body (max_segment_body)";
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct BenchServerReport {
    /// The options.
    pub preset: String,
    /// Gallery images ingested at setup.
    pub gallery: usize,
    /// Pixel-identical twins left out of the gallery and the ingest pool.
    pub twins_skipped: usize,
    /// Client threads.
    pub clients: usize,
    /// Admission limit passed to the server.
    pub max_concurrent: usize,
    /// Seed.
    pub seed: u64,
    /// Setup time (keys, collection, gallery ingest), seconds.
    pub setup_s: f64,
    /// Measured run, seconds (until the last thread finished).
    pub duration_s: f64,
    /// Well-formed operations.
    pub ops: BTreeMap<Op, Tally>,
    /// Hostile requests by kind.
    pub hostile: BTreeMap<Hostile, Tally>,
    /// Images added during the run.
    pub ingested: usize,
    /// The collection at the end: images, segments, key bytes.
    pub final_images: u64,
    /// Segments at the end.
    pub final_segments: u64,
    /// Evaluation key bytes at the end.
    pub final_key_bytes: u64,
    /// The server process.
    pub server: ServerFigures,
    /// The memory bound.
    pub bound: Bound,
    /// The hostile tenant, if one ran.
    pub tenant: Option<tenant::TenantReport>,
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

impl BenchServerReport {
    /// Errors of well-formed requests (must be 0), a crash included.
    pub fn well_formed_errors(&self) -> usize {
        self.ops.values().map(|t| t.errors).sum::<usize>()
            + usize::from(self.server.crashed)
            + self.server.log_errors
    }

    /// Hostile requests that did not get their expected refusal (must be 0).
    pub fn hostile_unexpected(&self) -> usize {
        self.hostile.values().map(|t| t.errors).sum()
    }

    /// Every hostile request, all kinds.
    pub fn hostile_total(&self) -> Tally {
        let mut all = Tally::default();
        for t in self.hostile.values() {
            all.merge(t.clone());
        }
        all
    }

    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.duration_s.max(1e-9)
    }

    fn op_json(&self, t: &Tally) -> Value {
        json!({
            "count": t.count,
            "per_s": self.rate(t.count),
            "p50_ms": t.quantile_ms(0.5),
            "p99_ms": t.quantile_ms(0.99),
            "errors": t.errors,
            "busy_503": t.busy,
            "error_samples": t.samples,
        })
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let ops: serde_json::Map<String, Value> = self
            .ops
            .iter()
            .map(|(op, t)| (op.name().to_string(), self.op_json(t)))
            .collect();
        let hostile: serde_json::Map<String, Value> = self
            .hostile
            .iter()
            .map(|(h, t)| {
                let mut v = self.op_json(t);
                if let Some(m) = v.as_object_mut() {
                    m.insert("expected".into(), json!(h.expected()));
                    m.insert("as_expected".into(), json!(t.as_expected));
                    m.insert("closed_early".into(), json!(t.closed_early));
                }
                (h.name().to_string(), v)
            })
            .collect();
        let all_ops: usize = self.ops.values().map(|t| t.count).sum();
        let hostile_all = self.hostile_total();
        let http: usize = self
            .ops
            .iter()
            .map(|(op, t)| op.http_requests() * t.count)
            .sum::<usize>()
            + hostile_all.count;
        let s = &self.server;
        let b = &self.bound;
        json!({
            "system": "blindsight bench-server",
            "preset": self.preset,
            "gallery": self.gallery,
            "twins_skipped": self.twins_skipped,
            "clients": self.clients,
            "max_concurrent": self.max_concurrent,
            "seed": self.seed,
            "setup_s": self.setup_s,
            "duration_s": self.duration_s,
            "ops": ops,
            "hostile": hostile,
            "hostile_all": self.op_json(&hostile_all),
            "overall": {
                "operations": all_ops + hostile_all.count,
                "per_s": self.rate(all_ops + hostile_all.count),
                "http_requests": http,
                "http_per_s": self.rate(http),
            },
            "well_formed_errors": self.well_formed_errors(),
            "hostile_unexpected": self.hostile_unexpected(),
            "ingested": self.ingested,
            "final_collection": {
                "images": self.final_images,
                "segments": self.final_segments,
                "key_bytes": self.final_key_bytes,
            },
            "server": {
                "pid": s.pid,
                "idle_rss_bytes": s.idle_rss,
                "setup_peak_rss_bytes": s.setup_peak_rss,
                "peak_rss_bytes": s.peak_rss,
                "peak_rss_anon_bytes": s.peak_rss_anon,
                "peak_rss_sampled_bytes": s.peak_rss_sampled,
                "rss_samples": s.samples,
                "crashed": s.crashed,
                "stop_after_sigterm_s": s.stop_s,
                "exit": s.exit,
                "log_error_lines": s.log_errors,
                "cache_bytes_logged": s.cache_logged,
                "largest_append_body_bytes": s.largest_append,
                "largest_search_bytes": s.largest_search,
            },
            "hostile_tenant": self.tenant.as_ref().map(tenant::TenantReport::to_json),
            "bound": {
                "formula": Bound::FORMULA,
                "baseline_bytes": b.baseline,
                "cache_bytes": b.cache,
                "cache_estimate_bytes": b.cache_estimate,
                "max_concurrent": b.max_concurrent,
                "largest_body_bytes": b.largest_body,
                "stated_bytes": b.stated,
                "workload_bytes": b.workload,
                "peak_rss_within_stated": s.peak_rss <= b.stated,
                "peak_rss_within_workload": s.peak_rss <= b.workload,
            },
        })
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let ms = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "blindsight bench-server: {}, gallery {}, {} clients, {:.1} s (setup {:.1} s), server --max-concurrent {}",
            self.preset,
            self.gallery,
            self.clients,
            self.duration_s,
            self.setup_s,
            self.max_concurrent
        );
        let _ = writeln!(
            out,
            "\n| operation | count | per s | p50 ms | p99 ms | errors | 503s |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let mut total = Tally::default();
        for (op, t) in &self.ops {
            let _ = writeln!(
                out,
                "| {} ({} HTTP) | {} | {:.2} | {} | {} | {} | {} |",
                op.name(),
                op.http_requests(),
                t.count,
                self.rate(t.count),
                ms(t.quantile_ms(0.5)),
                ms(t.quantile_ms(0.99)),
                t.errors,
                t.busy
            );
            total.merge(t.clone());
        }
        let h = self.hostile_total();
        let _ = writeln!(
            out,
            "| hostile (raw) | {} | {:.2} | {} | {} | {} unexpected | {} |",
            h.count,
            self.rate(h.count),
            ms(h.quantile_ms(0.5)),
            ms(h.quantile_ms(0.99)),
            h.errors,
            h.busy
        );
        total.merge(h);
        let _ = writeln!(
            out,
            "| **all** | {} | {:.2} | {} | {} | {} | {} |",
            total.count,
            self.rate(total.count),
            ms(total.quantile_ms(0.5)),
            ms(total.quantile_ms(0.99)),
            total.errors,
            total.busy
        );
        let _ = writeln!(
            out,
            "\n| hostile request | expected | count | as expected | closed early | 503s | unexpected |\n|---|---|---:|---:|---:|---:|---:|"
        );
        for (k, t) in &self.hostile {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                k.name(),
                k.expected(),
                t.count,
                t.as_expected,
                t.closed_early,
                t.busy,
                t.errors
            );
        }
        let s = &self.server;
        let b = &self.bound;
        let _ = writeln!(
            out,
            "\nserver (pid {}): idle RSS {:.1} MiB; peak RSS after setup {:.1} MiB; peak RSS (VmHWM) {:.1} MiB; peak RssAnon during the run {:.1} MiB ({} samples)",
            s.pid,
            mib(s.idle_rss),
            mib(s.setup_peak_rss),
            mib(s.peak_rss),
            mib(s.peak_rss_anon),
            s.samples
        );
        let _ = writeln!(
            out,
            "stated bound: {} = {:.0} + {:.1} + {} × 3 × {:.0} MiB = {:.1} MiB → peak RSS is {:.1} % of it",
            Bound::FORMULA,
            mib(b.baseline),
            mib(b.cache),
            b.max_concurrent,
            mib(b.largest_body),
            mib(b.stated),
            100.0 * s.peak_rss as f64 / b.stated.max(1) as f64
        );
        let _ = writeln!(
            out,
            "  cache: server-logged {:.1} MiB, estimate for the final collection ({} images, {} segments, {:.1} MiB of keys) {:.1} MiB",
            mib(s.cache_logged),
            self.final_images,
            self.final_segments,
            mib(self.final_key_bytes),
            mib(b.cache_estimate)
        );
        let _ = writeln!(
            out,
            "  with this run's largest body ({:.2} MiB) instead of the route limit: {:.1} MiB",
            mib(s.largest_append.max(s.largest_search)),
            mib(b.workload)
        );
        let _ = writeln!(
            out,
            "server stopped {:.2} s after SIGTERM ({}); crashed during the run: {}; ERROR log lines: {}",
            s.stop_s, s.exit, s.crashed, s.log_errors
        );
        if let Some(t) = &self.tenant {
            let _ = writeln!(out, "{}", t.line());
        }
        let _ = writeln!(
            out,
            "well-formed errors: {}; hostile requests without their expected refusal: {}; images ingested during the run: {}",
            self.well_formed_errors(),
            self.hostile_unexpected(),
            self.ingested
        );
        for (name, t) in self
            .ops
            .iter()
            .map(|(o, t)| (o.name(), t))
            .chain(self.hostile.iter().map(|(h, t)| (h.name(), t)))
        {
            for m in &t.samples {
                let _ = writeln!(
                    out,
                    "  {name} error: {}",
                    blindsight_client::names::for_terminal(m)
                );
            }
        }
        out
    }
}
