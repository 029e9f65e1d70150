//! Search quality, measured (`blindsight eval`): a gallery from a folder (or the embedded
//! images), deterministic edited copies of a sample of it ([`edits`]), each searched through
//! the encrypted path exactly as a user's query (a loopback server, HTTP, encryption,
//! decryption) in one collection per vector kind. The report ([`report`]) gives recall@1
//! and recall@10 of the original per edit and per (kind, rule), and the separation between
//! the original's score and the best unrelated score.
//!
//! The gallery is deduplicated by decoded content first (two files with the same pixels are
//! one image), so that "the original" is well defined.

pub mod edits;
pub mod report;

use crate::errors::{AppError, Result};
use crate::images::list_images;
use crate::sandbox::{Sandbox, remove_store};
use blindsight_search::VectorKind;
use blindsight_search::rank::{RankRule, Similarity};
use blindsight_search::vectors::decode_rgb;
use edits::Edit;
use rayon::prelude::*;
use report::{EvalReport, KindReport, QueryOutcome};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `blindsight eval`.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Folder of images (sorted by name); the embedded Twemoji images when `None`.
    pub images: Option<PathBuf>,
    /// At most this many gallery images (before deduplication).
    pub count: usize,
    /// Originals edited (spread evenly over the gallery).
    pub sample: usize,
    /// HE preset of the collections.
    pub preset: String,
    /// The vector kinds compared, one collection each.
    pub kinds: Vec<VectorKind>,
    /// Working directory (stores and keystores are removed at the end).
    pub work: PathBuf,
    /// Print progress to stderr.
    pub progress: bool,
}

/// One gallery file: name, bytes (as `Client::ingest` takes them).
type GalleryFile = (String, Vec<u8>);

/// One edited copy: which original, which edit, the file.
struct Query {
    original: usize,
    edit: Edit,
    bytes: Vec<u8>,
}

/// Runs the evaluation.
pub fn run(opts: &EvalOptions) -> Result<EvalReport> {
    if opts.kinds.is_empty() {
        return Err(AppError::Usage(
            "eval needs at least one vector kind".into(),
        ));
    }
    let (gallery, skipped) = load_gallery(opts)?;
    if gallery.len() < 2 {
        return Err(AppError::Usage(format!(
            "eval needs at least 2 distinct readable images, found {}",
            gallery.len()
        )));
    }
    let sample = sample_indices(gallery.len(), opts.sample);
    let queries = edited_copies(&gallery, &sample)?;
    let mut kinds = Vec::new();
    for (k, kind) in opts.kinds.iter().enumerate() {
        let work = opts.work.join(format!("kind-{k}"));
        let result = evaluate_kind(opts, kind, &work, &gallery, &queries);
        remove_store(&work)?;
        kinds.extend(result?);
    }
    Ok(EvalReport {
        source: opts.images.as_ref().map_or_else(
            || "embedded Twemoji".to_string(),
            |p| p.display().to_string(),
        ),
        preset: opts.preset.clone(),
        gallery: gallery.len(),
        skipped,
        originals: sample.len(),
        kinds,
    })
}

/// Reads the gallery: files of the folder (or embedded images), undecodable ones skipped
/// (counted), content duplicates dropped.
fn load_gallery(opts: &EvalOptions) -> Result<(Vec<GalleryFile>, usize)> {
    let files: Vec<(String, Vec<u8>)> = match &opts.images {
        Some(dir) => list_images(dir)?
            .into_iter()
            .take(opts.count)
            .map(|p| {
                let name = p
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                std::fs::read(&p)
                    .map(|b| (name, b))
                    .map_err(|e| AppError::io(&p, e))
            })
            .collect::<Result<_>>()?,
        None => blindsight_testdata::first(opts.count)
            .iter()
            .map(|e| (e.name.to_string(), e.png.to_vec()))
            .collect(),
    };
    let digests: Vec<Option<[u8; 32]>> = files
        .par_iter()
        .map(|(name, bytes)| {
            decode_rgb(bytes, name).ok().map(|img| {
                let mut h = Sha256::new();
                h.update(img.width().to_le_bytes());
                h.update(img.height().to_le_bytes());
                h.update(img.as_raw());
                h.finalize().into()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut gallery = Vec::new();
    let mut skipped = 0;
    for ((name, bytes), digest) in files.into_iter().zip(digests) {
        match digest {
            None => skipped += 1,
            Some(d) if seen.insert(d) => gallery.push((name, bytes)),
            Some(_) => {}
        }
    }
    Ok((gallery, skipped))
}

/// `sample` indices spread evenly over `0..len` (all of them if `sample ≥ len`).
fn sample_indices(len: usize, sample: usize) -> Vec<usize> {
    let sample = sample.clamp(1, len);
    (0..sample).map(|i| i * len / sample).collect()
}

/// Every edit of every sampled original, as files.
fn edited_copies(gallery: &[GalleryFile], sample: &[usize]) -> Result<Vec<Query>> {
    let per_original: Vec<Result<Vec<Query>>> = sample
        .par_iter()
        .map(|&i| {
            let (name, bytes) = &gallery[i];
            let img = decode_rgb(bytes, name)?;
            Edit::ALL
                .iter()
                .map(|&edit| {
                    Ok(Query {
                        original: i,
                        edit,
                        bytes: edit.file(&img)?,
                    })
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for q in per_original {
        out.extend(q?);
    }
    Ok(out)
}

/// The rules a kind is ranked by: its default first, then the whole cosine for pixels.
fn rules_of(kind: &VectorKind) -> Vec<RankRule> {
    match kind {
        VectorKind::Pixels { .. } => vec![RankRule::ChannelTriple, RankRule::WholeCosine],
        _ => vec![RankRule::WholeCosine],
    }
}

/// One collection of `kind`: ingest the gallery, search every query, score each rule.
fn evaluate_kind(
    opts: &EvalOptions,
    kind: &VectorKind,
    work: &std::path::Path,
    gallery: &[GalleryFile],
    queries: &[Query],
) -> Result<Vec<KindReport>> {
    let sandbox = Sandbox::create(work, &opts.preset, "eval", kind)?;
    let t = Instant::now();
    let ingest = sandbox.client.ingest(gallery, |_| {})?;
    let ingest_s = t.elapsed().as_secs_f64();
    if let Some((name, why)) = ingest.failed.first() {
        return Err(AppError::Usage(format!(
            "{name} could not be ingested as {kind}: {why}"
        )));
    }
    if opts.progress {
        eprintln!(
            "eval: {kind}: {} images ingested in {ingest_s:.1} s; {} queries",
            ingest.added,
            queries.len()
        );
    }
    let rules = rules_of(kind);
    let mut outcomes: Vec<Vec<QueryOutcome>> = vec![Vec::new(); rules.len()];
    let mut search_s = 0.0;
    for (n, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let name = format!("{}.query", q.edit.name());
        let (matches, _) = sandbox
            .client
            .search(&q.bytes, &name, gallery.len(), rules[0])?;
        search_s += t.elapsed().as_secs_f64();
        let original = &gallery[q.original].0;
        let scored: Vec<(bool, Similarity)> = matches
            .iter()
            .map(|m| (&m.name == original, m.similarity()))
            .collect();
        for (r, &rule) in rules.iter().enumerate() {
            outcomes[r].push(QueryOutcome::of(q.edit, rule, &scored));
        }
        if opts.progress && (n + 1) % 50 == 0 {
            eprintln!("eval: {kind}: {}/{} queries", n + 1, queries.len());
        }
    }
    Ok(rules
        .into_iter()
        .zip(outcomes)
        .map(|(rule, outcomes)| KindReport {
            kind: kind.spec(),
            rule,
            ingest_s,
            mean_search_s: search_s / queries.len().max(1) as f64,
            outcomes,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_and_distinct() {
        assert_eq!(sample_indices(10, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(sample_indices(3, 10), vec![0, 1, 2]);
        assert_eq!(sample_indices(7, 0), vec![0]);
        let s = sample_indices(1000, 50);
        assert_eq!(s.len(), 50);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
