//! `blindsight demo`: zero-setup end to end, on images shipped inside a crate (no network).
//!
//! For each scheme (BFV, CKKS), in a temporary directory: one keystore per collection, an
//! SQLite store, the server on a loopback port, and two collections of the same thousand
//! Twemoji images ingested over HTTP, one of each vector kind (the image model's
//! embeddings, the original demo's 64×64 RGB pixels). Edited copies of three of them (a
//! crop, a mirror image, a rotation) are searched in both, the rankings printed side by
//! side; the decrypted best matches are written as files, everything into one HTML page,
//! and a BFV-vs-CKKS table closes the run.

use crate::commands::default_rule;
use crate::errors::{AppError, Result};
use crate::eval::edits::Edit;
use crate::report_page::{QuerySection, ReportPage, ResultColumn, ShownMatch, Thumbnail, file_of};
use crate::sandbox::{Sandbox, remove_store};
use blindsight_client::client::{Client, Match, SearchTiming};
use blindsight_client::encoder::{embedding_kind, pixels_kind};
use blindsight_client::names;
use blindsight_he::params::Parameters;
use blindsight_search::VectorKind;
use blindsight_search::vectors::decode_rgb;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `blindsight demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Gallery size.
    pub count: usize,
    /// Presets to run.
    pub presets: Vec<String>,
    /// Matches to print per query.
    pub top: usize,
    /// Keep each collection's store (hundreds of MB) and keystore after the run.
    pub keep: bool,
}

/// What one scheme did, for the closing table.
#[derive(Default)]
struct SchemeSummary {
    preset: String,
    parameters: String,
    keygen_s: f64,
    /// Per kind (embedding, pixels).
    ingest_s: [f64; 2],
    server_s: [f64; 2],
    client_s: [f64; 2],
    up_bytes: [usize; 2],
    down_bytes: [usize; 2],
    found_first: [usize; 2],
    queries: usize,
    self_cosine: [f64; 2],
}

/// Short labels of the two kinds, in display order (the order of [`kinds`]).
const KIND_LABELS: [&str; 2] = ["embedding", "pixels"];

/// The two kinds, in display order.
fn kinds() -> [VectorKind; 2] {
    [embedding_kind(), pixels_kind()]
}

/// The demo's queries: (gallery index, edit).
fn queries(len: usize) -> [(usize, Edit); 3] {
    [
        (len / 7, Edit::CentreCrop),
        (len / 2, Edit::Mirror),
        (len * 9 / 10, Edit::Rotate),
    ]
}

/// Runs the demo, printing to stdout.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let files: Vec<(String, Vec<u8>)> = blindsight_testdata::first(opts.count)
        .iter()
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect();
    if files.is_empty() {
        return Err(AppError::Usage("demo needs at least one image".into()));
    }
    let dir = std::env::temp_dir().join(format!("blindsight-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| AppError::io(&dir, e))?;
    println!(
        "blindsight demo: {} Twemoji images, encrypted, stored in SQLite, searched over HTTP,\n\
         in two collections each: image-model embeddings and the original demo's 64×64 RGB pixels\n\
         working directory: {}\n",
        files.len(),
        dir.display()
    );
    let mut page = ReportPage {
        title: "blindsight demo".into(),
        notes: vec![format!(
            "{} Twemoji images (CC-BY-4.0) in each collection; queries are edited copies of three of them",
            files.len()
        )],
        ..ReportPage::default()
    };
    let mut summaries = Vec::new();
    for preset in &opts.presets {
        summaries.push(run_scheme(opts, preset, &files, &dir, &mut page)?);
    }
    let table = summary_table(&summaries);
    print_table(&table);
    page.summary = Some(table);
    let report = dir.join("report.html");
    page.write(&report)?;
    println!("\nthe whole run as one page: {}", report.display());
    Ok(())
}

/// One scheme: both collections, the queries, the decrypted matches.
fn run_scheme(
    opts: &DemoOptions,
    preset: &str,
    files: &[(String, Vec<u8>)],
    dir: &Path,
    page: &mut ReportPage,
) -> Result<SchemeSummary> {
    let params = Parameters::preset(preset)?;
    let mut summary = SchemeSummary {
        preset: preset.to_string(),
        parameters: match params.scheme() {
            blindsight_he::Scheme::Bfv => format!(
                "N = {}, t = {}, log Q = {}",
                params.degree(),
                params.plain_modulus(),
                params.total_modulus_bits()
            ),
            _ => format!(
                "N = {}, scale 2^{}, log Q = {}",
                params.degree(),
                params.scale_bits(),
                params.total_modulus_bits()
            ),
        },
        ..SchemeSummary::default()
    };
    println!("== {preset} ({})", summary.parameters);
    let mut boxes: Vec<(Sandbox, PathBuf)> = Vec::new();
    for (k, (kind, label)) in kinds().iter().zip(KIND_LABELS).enumerate() {
        let work = dir.join(preset).join(label);
        let sandbox = Sandbox::create(&work, preset, "demo", kind)?;
        summary.keygen_s += sandbox.keygen_s;
        let t = Instant::now();
        let report = sandbox.client.ingest(files, |_| {})?;
        summary.ingest_s[k] = t.elapsed().as_secs_f64();
        println!(
            "   {label:<9} collection: keys {:.2} s · {} images encoded, encrypted and ingested in {:.2} s ({} duplicates skipped) · server {}",
            sandbox.keygen_s,
            report.added,
            summary.ingest_s[k],
            report.duplicates,
            sandbox.url()
        );
        boxes.push((sandbox, work));
    }
    for (pick, edit) in queries(files.len()) {
        let (name, bytes) = &files[pick];
        let query = edit.file(&decode_rgb(bytes, name)?)?;
        println!("\n   query: {} of {name}", edit.name());
        let mut columns = Vec::new();
        let mut results = Vec::new();
        for (k, (sandbox, work)) in boxes.iter().enumerate() {
            let client = &sandbox.client;
            let (matches, timing) = client.search(
                &query,
                "query.png",
                opts.top,
                default_rule(client.vectors()),
            )?;
            summary.add_search(k, &timing);
            if matches.first().is_some_and(|m| &m.name == name) {
                summary.found_first[k] += 1;
            }
            let shown = show_matches(client, &matches, name, work)?;
            columns.push(ResultColumn {
                title: format!("{} · {preset}", KIND_LABELS[k]),
                matches: shown,
                timing,
            });
            results.push((matches, timing));
        }
        summary.queries += 1;
        print_side_by_side(&results, name);
        println!(
            "   thumbnails retrieved privately (the server cannot tell which); the best match's \
             original fetched by id (that request tells the server which image it is)"
        );
        page.sections.push(QuerySection {
            heading: format!("{preset}: {} of {name}", edit.name()),
            query: Thumbnail::of_file(&query, "query").ok(),
            columns,
        });
    }
    // an image searched for itself: exactly 1 under BFV, 1 within CKKS's precision
    let (name, bytes) = &files[queries(files.len())[0].0];
    for (k, (sandbox, _)) in boxes.iter().enumerate() {
        let (matches, _) =
            sandbox
                .client
                .search(bytes, name, 1, default_rule(sandbox.client.vectors()))?;
        summary.self_cosine[k] = matches.first().map_or(f64::NAN, |m| m.whole_cosine);
    }
    println!(
        "\n   {name} searched for itself: cosine {:.9} (embedding), {:.9} (pixels)",
        summary.self_cosine[0], summary.self_cosine[1]
    );
    for (sandbox, work) in boxes {
        drop(sandbox);
        if !opts.keep {
            remove_store(&work)?;
        }
    }
    if !opts.keep {
        println!("   stores and keystores removed (run with --keep to keep them)");
    }
    println!();
    Ok(summary)
}

impl SchemeSummary {
    fn add_search(&mut self, k: usize, t: &SearchTiming) {
        self.server_s[k] += t.server_s;
        self.client_s[k] += t.encrypt_s + t.decrypt_s;
        self.up_bytes[k] = t.up_bytes;
        self.down_bytes[k] = t.down_bytes;
    }
}

/// Fetches and decrypts the matches' thumbnails (for the page) and the best one's file, which
/// it writes to
/// `work/best-match-for-<original>`.
fn show_matches(
    client: &Client,
    matches: &[Match],
    original: &str,
    work: &Path,
) -> Result<Vec<ShownMatch>> {
    // thumbnails by private retrieval (the server learns nothing of the matches)...
    let (thumbnails, _) = crate::commands::private_thumbnails(client, matches)?;
    // ...and the original of the best match, fetched by id: an explicit fetch, which tells
    // the server which image that is (the demo says so)
    let best = matches.first().map(|m| vec![m.id]).unwrap_or_default();
    let files = client.fetch(&best)?;
    if let Some(data) = matches.first().and_then(|m| file_of(&files, m.id)) {
        let path = work.join(format!("best-match-for-{}", names::for_file(original)));
        std::fs::write(&path, data).map_err(|e| AppError::io(&path, e))?;
    }
    Ok(ShownMatch::list(
        matches,
        &thumbnails,
        &files,
        Some(original),
    ))
}

fn print_side_by_side(results: &[(Vec<Match>, SearchTiming)], original: &str) {
    println!(
        "   rank  {:<34}  {:<44}",
        "embedding (cosine)", "pixels (triple rule; R G B cosines)"
    );
    let rows = results.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let mark = |m: &Match| if m.name == original { "◀" } else { " " };
    for r in 0..rows {
        let cell = |k: usize| -> String {
            match results.get(k).and_then(|(m, _)| m.get(r)) {
                Some(m) if m.channel_cosines.len() == 1 => {
                    format!("{:<24} {:>7.4} {}", m.name, m.whole_cosine, mark(m))
                }
                Some(m) => {
                    let c: Vec<String> = m
                        .channel_cosines
                        .iter()
                        .map(|c| format!("{c:.3}"))
                        .collect();
                    format!("{:<24} {} {}", m.name, c.join(" "), mark(m))
                }
                None => String::new(),
            }
        };
        println!("   {:>4}  {:<34}  {:<44}", r + 1, cell(0), cell(1));
    }
    for (k, (_, t)) in results.iter().enumerate() {
        println!("         {}: {t}", KIND_LABELS[k]);
    }
}

/// The closing table, as the original demo's README compares its two schemes: header row,
/// then one row per measure, one column per scheme.
fn summary_table(s: &[SchemeSummary]) -> Vec<Vec<String>> {
    let mut rows = vec![
        std::iter::once(String::new())
            .chain(s.iter().map(|x| x.preset.clone()))
            .collect::<Vec<_>>(),
    ];
    let mut row = |label: &str, f: &dyn Fn(&SchemeSummary) -> String| {
        rows.push(
            std::iter::once(label.to_string())
                .chain(s.iter().map(f))
                .collect(),
        );
    };
    let per_query = |x: &SchemeSummary, v: f64| v / x.queries.max(1) as f64;
    row("parameters", &|x| x.parameters.clone());
    row("keys and collections (2)", &|x| {
        format!("{:.2} s", x.keygen_s)
    });
    for (k, label) in KIND_LABELS.iter().enumerate() {
        row(
            &format!("{label}: gallery encoded + encrypted + stored"),
            &|x| format!("{:.2} s", x.ingest_s[k]),
        );
        row(&format!("{label}: server time per query"), &|x| {
            format!("{:.3} s", per_query(x, x.server_s[k]))
        });
        row(&format!("{label}: client time per query"), &|x| {
            format!("{:.3} s", per_query(x, x.client_s[k]))
        });
        row(&format!("{label}: query / response"), &|x| {
            format!(
                "{} KB / {} KB",
                x.up_bytes[k] / 1000,
                x.down_bytes[k] / 1000
            )
        });
        row(&format!("{label}: edited copies found first"), &|x| {
            format!("{} of {}", x.found_first[k], x.queries)
        });
        row(&format!("{label}: cosine of an image with itself"), &|x| {
            format!("{:.9}", x.self_cosine[k])
        });
    }
    rows
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!("BFV and CKKS side by side:");
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = width[c].saturating_sub(cell.chars().count());
                if c == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        println!("   {}", line.join("  │  "));
    }
}
