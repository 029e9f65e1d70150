//! `blindsight bench`: the benchmark contract of DESIGN.md. Builds a gallery from the first
//! N images of a folder (sorted by name), queries a perturbed copy of one of them through the
//! whole client/server path in-process, and reports timings, sizes, accuracy and memory.
//! With `--synthetic --dim D`, the gallery is N random unit vectors of dimension D instead
//! (the shape of an embedding collection; scoring time does not depend on the content),
//! generated batch by batch so that a million of them never sit in memory.
//!
//! The server side is the real one without HTTP: each batch of `segment_size` images goes
//! through the upload checks into a segment file and a transaction of a SQLite store; the
//! store is then opened afresh (optionally with the page cache dropped: `cold`) and the
//! collection loaded as a server loads it, its segment files mapped. The report adds the
//! ingest rate, the bytes on disk, the open time, and the largest anonymous memory
//! (`RssAnon`: heap, not page cache) from the open through the queries.

use crate::errors::{AppError, Result};
use crate::images::{NamedImage, load_embedded, load_folder};
use crate::pipeline::{AnySession, BuildOptions, Vectors, peak_rss_bytes};
use crate::synthetic::SyntheticVectors;
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
    /// Images per ingest batch (one segment each); None: the size merging and compaction
    /// build the collection's segments up to.
    pub segment_size: Option<usize>,
    /// Where to keep the store (None: a temporary directory, removed afterwards).
    pub store_dir: Option<PathBuf>,
    /// Drop the page cache before opening the store (needs root).
    pub cold: bool,
    /// Where to write the perturbed query as PNG (for the TenSEAL reference).
    pub write_query: Option<PathBuf>,
    /// How many times the query is scored (the report's `score_s` is the first).
    pub repeat: usize,
    /// Instead of images: random unit vectors of this dimension (one channel, as an
    /// embedding collection holds), `count` of them.
    pub synthetic_dim: Option<usize>,
}

/// Runs the benchmark; returns the JSON report.
pub fn run(opts: &BenchOptions) -> Result<serde_json::Value> {
    let bench = match opts.synthetic_dim {
        Some(dim) => synthetic(opts, dim)?,
        None => of_images(opts)?,
    };
    let BenchGallery {
        names,
        vectors,
        query,
        source,
        twins,
        skipped,
    } = bench;
    let build = BuildOptions {
        segment_size: opts.segment_size,
        store_dir: opts.store_dir.clone(),
        cold: opts.cold,
    };
    let session = AnySession::build(&opts.preset, vectors, &build)?;
    let q = session.query(&query, true)?;
    let mut runs = vec![q.score_s];
    for _ in 1..opts.repeat.max(1) {
        runs.push(session.query(&query, false)?.score_s);
    }
    // anonymous memory from the server's open of the store through the queries
    let peak_anon = session.serving_peak_rss_anon();
    let setup = session.setup();
    let top = top_k(&q.similarities, RankRule::ChannelTriple, 1);
    let top_whole = top_k(&q.similarities, RankRule::WholeCosine, 1);
    let correct = |i: &usize| *i == source || twins.contains(i);
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
        "cold": setup.cold,
        "layout": setup.layouts.iter().map(|l| json!({
            "count": l.count, "block": l.block, "baby": l.baby, "giant": l.giant(),
            "ciphertexts_per_channel": l.ciphertexts_per_channel(), "tall": l.is_tall(),
            "rotations_keys": l.galois_steps().len(),
        })).collect::<Vec<_>>(),
        "keygen_s": setup.keygen_s,
        "encrypt_s": setup.encrypt_s,
        "store_s": setup.store_s,
        "ingest_per_s": setup.ingest_per_s(),
        "load_s": setup.load_s,
        "query_encrypt_s": q.query_encrypt_s,
        "score_s": q.score_s,
        "score_s_runs": runs,
        "score_s_median": median(&runs),
        "decrypt_s": q.decrypt_s,
        "query_s": q.query_s(),
        "gallery_bytes": setup.gallery_bytes,
        "disk_bytes": setup.disk_bytes,
        "eval_key_bytes": setup.eval_key_bytes,
        "query_bytes": q.query_bytes,
        "response_bytes": q.response_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_anon_bytes": peak_anon,
        "vectors": if opts.synthetic_dim.is_some() { "synthetic unit vectors" } else { "pixels" },
        "query_source": names[source],
        "top1_name": top.first().map(|&i| names[i].clone()),
        "top1_correct": top.first().is_some_and(correct),
        "top1_whole_cosine_correct": top_whole.first().is_some_and(correct),
        "max_abs_err": q.max_abs_err(),
        "skipped_files": skipped,
    }))
}

/// A gallery and its query, as the bench runs them.
struct BenchGallery {
    names: Vec<String>,
    vectors: Vectors,
    query: Vectors,
    /// Index of the image the query was made from.
    source: usize,
    /// Other indices that count as a right answer (pixel-identical twins of the source).
    twins: Vec<usize>,
    skipped: usize,
}

/// Images of a folder (or embedded), the query a perturbed copy of one of them.
fn of_images(opts: &BenchOptions) -> Result<BenchGallery> {
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
    let twins = (0..gallery.len())
        .filter(|&i| i != source && gallery[i].vector == gallery[source].vector)
        .collect();
    let (names, pixels): (Vec<String>, Vec<[Vec<u8>; 3]>) = gallery
        .into_iter()
        .map(|g| (g.name, g.vector.channels))
        .unzip();
    Ok(BenchGallery {
        names,
        vectors: Vectors::Pixels(pixels),
        query: Vectors::of_images(std::slice::from_ref(&query)),
        source,
        twins,
        skipped: skipped.len(),
    })
}

/// `count` random unit vectors of dimension `dim` with non-negative entries (as the image
/// model's normalized features), from a fixed seed; the query is a noisy copy (cosine about
/// 0.9) of one of them, which must come first.
fn synthetic(opts: &BenchOptions, dim: usize) -> Result<BenchGallery> {
    if dim == 0 || opts.count == 0 {
        return Err(AppError::Usage(
            "a synthetic gallery needs --dim and --count above 0".into(),
        ));
    }
    let vectors = SyntheticVectors {
        count: opts.count,
        dim,
        seed: 0x5eed,
    };
    let source = opts
        .query_index
        .unwrap_or(opts.count * 2 / 3)
        .min(opts.count - 1);
    Ok(BenchGallery {
        names: (0..opts.count).map(|i| format!("synthetic-{i}")).collect(),
        vectors: Vectors::Synthetic(vectors),
        query: Vectors::Features(vec![vectors.query(source)]),
        source,
        twins: Vec::new(),
        skipped: 0,
    })
}

/// Largest report file read by [`plot`].
const MAX_REPORT_BYTES: u64 = 16 << 20;

/// Writes the SVG of `report`'s timings beside the reports of the `compare` files.
pub fn plot(path: &Path, report: serde_json::Value, compare: &[PathBuf]) -> Result<()> {
    let mut reports = vec![report];
    for file in compare {
        let bytes = blindsight_os::files::read_at_most(file, MAX_REPORT_BYTES)
            .map_err(|e| AppError::io(file, e))?;
        let text = String::from_utf8_lossy(&bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_opts(preset: &str) -> BenchOptions {
        BenchOptions {
            images: None,
            count: 300,
            preset: preset.into(),
            side: 64,
            query_index: Some(123),
            segment_size: Some(1 << 20),
            store_dir: None,
            cold: false,
            write_query: None,
            repeat: 1,
            synthetic_dim: Some(320),
        }
    }

    /// Synthetic embedding galleries run the whole path in both schemes: the planted
    /// near-copy comes first, CKKS within 1e-5 of the f64 cosines, BFV exact.
    #[test]
    fn synthetic_unit_vectors_through_the_whole_path() -> Result<()> {
        for (preset, bound) in [("ckks-8192", 1e-5), ("bfv-8192", 0.0)] {
            let r = run(&synthetic_opts(preset))?;
            assert_eq!(r["n"], 300);
            assert_eq!(r["d"], 320);
            assert_eq!(r["query_source"], "synthetic-123");
            assert_eq!(r["top1_whole_cosine_correct"], true, "{preset}: {r}");
            let err = r["max_abs_err"].as_f64().unwrap_or(f64::NAN);
            assert!(err <= bound, "{preset}: {err}");
        }
        let mut empty = synthetic_opts("ckks-8192");
        empty.synthetic_dim = Some(0);
        assert!(run(&empty).is_err());
        Ok(())
    }
}
