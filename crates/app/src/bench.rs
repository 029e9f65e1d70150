//! `blindsight bench`: the benchmark contract of DESIGN.md. Builds a gallery from the first
//! N images of a folder (sorted by name), queries a perturbed copy of one of them through the
//! whole client/server path in-process, and reports timings, sizes, accuracy and memory.

use crate::errors::{AppError, Result};
use crate::images::{NamedImage, load_embedded, load_folder};
use crate::pipeline::{AnySession, peak_rss_bytes};
use blindsight_search::rank::{RankRule, top_k};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `blindsight bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Folder of images (None: the embedded Twemoji images).
    pub images: Option<PathBuf>,
    /// Gallery size.
    pub count: usize,
    /// Parameter preset (`bfv-8192`, `ckks-8192`, ...).
    pub preset: String,
    /// Side of the square images are resized to.
    pub side: u32,
    /// Index of the gallery image whose perturbed copy is the query.
    pub query_index: Option<usize>,
    /// Largest segment.
    pub segment_size: usize,
    /// Where to write the perturbed query as PNG (for the TenSEAL reference).
    pub write_query: Option<PathBuf>,
    /// Bytes of memory for resident gallery operands (beyond it, segments are streamed).
    pub memory_budget: usize,
    /// How many times the query is scored (the report's `score_s` is the first).
    pub repeat: usize,
}

/// Runs the benchmark; returns the JSON report.
pub fn run(opts: &BenchOptions) -> Result<serde_json::Value> {
    let (gallery, skipped): (Vec<NamedImage>, Vec<String>) = match &opts.images {
        Some(dir) => load_folder(dir, opts.count, opts.side)?,
        None => (load_embedded(opts.count, opts.side)?, Vec::new()),
    };
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    if gallery.is_empty() {
        return Err(AppError::Usage("no readable images in the gallery".into()));
    }
    let source = opts
        .query_index
        .unwrap_or(gallery.len() * 2 / 3)
        .min(gallery.len() - 1);
    let query = gallery[source].vector.perturbed();
    if let Some(path) = &opts.write_query {
        query
            .to_rgb()
            .save(path)
            .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
    }
    let vectors: Vec<_> = gallery.iter().map(|g| g.vector.clone()).collect();
    let session = AnySession::build(
        &opts.preset,
        &vectors,
        opts.segment_size,
        opts.memory_budget,
    )?;
    let q = session.query(&query)?;
    let mut runs = vec![q.score_s];
    for _ in 1..opts.repeat.max(1) {
        runs.push(session.query(&query)?.score_s);
    }
    let setup = session.setup();
    let top = top_k(&q.similarities, RankRule::ChannelTriple, 1);
    let top_whole = top_k(&q.similarities, RankRule::WholeCosine, 1);
    // Any pixel-identical twin of the source counts as the right answer.
    let correct = |i: &usize| gallery[*i].vector == gallery[source].vector;
    let scheme = if opts.preset.starts_with("bfv") {
        "bfv"
    } else {
        "ckks"
    };
    Ok(json!({
        "system": "blindsight",
        "scheme": scheme,
        "preset": setup.preset,
        "n": setup.n,
        "d": setup.d,
        "threads": rayon::current_num_threads(),
        "segments": setup.layouts.len(),
        "resident": setup.resident,
        "layout": setup.layouts.iter().map(|l| json!({
            "count": l.count, "block": l.block, "baby": l.baby, "giant": l.giant(),
            "ciphertexts_per_channel": l.ciphertexts_per_channel(), "tall": l.is_tall(),
            "rotations_keys": l.galois_steps().len(),
        })).collect::<Vec<_>>(),
        "keygen_s": setup.keygen_s,
        "encrypt_s": setup.encrypt_s,
        "load_s": setup.load_s,
        "query_encrypt_s": q.query_encrypt_s,
        "score_s": q.score_s,
        "score_s_runs": runs,
        "score_s_median": median(&runs),
        "decrypt_s": q.decrypt_s,
        "query_s": q.query_s(),
        "gallery_bytes": setup.gallery_bytes,
        "eval_key_bytes": setup.eval_key_bytes,
        "query_bytes": q.query_bytes,
        "response_bytes": q.response_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "query_source": gallery[source].name,
        "top1_name": top.first().map(|&i| gallery[i].name.clone()),
        "top1_correct": top.first().is_some_and(correct),
        "top1_whole_cosine_correct": top_whole.first().is_some_and(correct),
        "max_abs_err": q.max_abs_err(),
        "skipped_files": skipped.len(),
    }))
}

/// Largest report file read by [`plot`].
const MAX_REPORT_BYTES: u64 = 16 << 20;

/// Writes the SVG of `report`'s timings beside the reports of the `compare` files.
pub fn plot(path: &Path, report: serde_json::Value, compare: &[PathBuf]) -> Result<()> {
    let mut reports = vec![report];
    for file in compare {
        let len = std::fs::metadata(file)
            .map_err(|e| AppError::io(file, e))?
            .len();
        if len > MAX_REPORT_BYTES {
            return Err(AppError::Usage(format!(
                "{}: {len} bytes is not a benchmark report (at most {MAX_REPORT_BYTES})",
                file.display()
            )));
        }
        let text = std::fs::read_to_string(file).map_err(|e| AppError::io(file, e))?;
        let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            AppError::Usage(format!(
                "{}: not a JSON benchmark report ({e}); give the output of `bench --json` or of a peer",
                file.display()
            ))
        })?;
        reports.push(parsed);
    }
    let svg = crate::plot::timings_svg(&reports)?;
    std::fs::write(path, svg).map_err(|e| AppError::io(path, e))?;
    eprintln!("wrote the plot to {}", path.display());
    Ok(())
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
