//! `blindsight demo`: zero-setup end to end, on images shipped inside a crate (no network).
//! For each scheme, in a temporary directory: a keystore, an SQLite store, the server on a
//! loopback port, a collection of about a thousand Twemoji images ingested over HTTP, then
//! searches for perturbed copies of three of them, with ranked results and timings, and the
//! decrypted best matches written as PNG files.

use crate::client::Client;
use crate::errors::{AppError, Result};
use crate::keystore::Keystore;
use crate::remote::Remote;
use crate::server::{LocalServer, ServerOptions};
use blindsight_search::rank::RankRule;
use blindsight_search::vectors::{DEFAULT_SIDE, image_vector};
use std::io::Cursor;
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
    /// Keep each scheme's store (hundreds of MB) and keystore after the run.
    pub keep: bool,
}

/// Removes a finished scheme's store (the database and its journal files) and keystore,
/// leaving the decrypted matches.
fn remove_store(work: &std::path::Path) -> Result<()> {
    let entries = std::fs::read_dir(work).map_err(|e| AppError::io(work, e))?;
    for entry in entries {
        let path = entry.map_err(|e| AppError::io(work, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("gallery.db") || name == "keystore" {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| AppError::io(&path, e))?;
        }
    }
    Ok(())
}

fn png_of_perturbed_copy(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let v = image_vector(bytes, name, DEFAULT_SIDE)?.perturbed();
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(v.to_rgb())
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| AppError::Usage(format!("encoding the query: {e}")))?;
    Ok(out)
}

/// Runs the demo, printing to stdout.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let files: Vec<(String, Vec<u8>)> = blindsight_testdata::first(opts.count)
        .iter()
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect();
    let dir = std::env::temp_dir().join(format!("blindsight-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| AppError::io(&dir, e))?;
    println!(
        "blindsight demo: {} Twemoji images (64×64 RGB), encrypted, stored in SQLite, searched over HTTP\nworking directory: {}\n",
        files.len(),
        dir.display()
    );
    let picks = [files.len() / 7, files.len() / 2, files.len() * 9 / 10];
    for preset in &opts.presets {
        let work = dir.join(preset);
        std::fs::create_dir_all(&work).map_err(|e| AppError::io(&work, e))?;
        let t = Instant::now();
        let ks = Keystore::generate(preset)?;
        ks.save(&work.join("keystore"), None)?;
        let server = LocalServer::start(ServerOptions::new(work.join("gallery.db")))?;
        let remote = Remote::new(server.url())?;
        let token = Client::create(
            &ks,
            &remote.with_token(server.admin_token()),
            "demo",
            &crate::encoder::pixels_kind(),
        )?;
        let keygen_s = t.elapsed().as_secs_f64();
        let client = Client::new(ks, remote.with_token(&token), "demo")?;
        let t = Instant::now();
        let report = client.ingest(&files, |_| {})?;
        println!(
            "== {preset}: server at {}, store {}",
            server.url(),
            work.join("gallery.db").display()
        );
        println!(
            "   keys and collection {:.2} s · encrypted and ingested {} images in {:.2} s ({} skipped as duplicates)",
            keygen_s,
            report.added,
            t.elapsed().as_secs_f64(),
            report.duplicates
        );
        for &pick in &picks {
            let (name, bytes) = &files[pick];
            let query = png_of_perturbed_copy(bytes, name)?;
            let (matches, timing) =
                client.search(&query, "query.png", opts.top, RankRule::ChannelTriple)?;
            println!("\n   query: perturbed copy of {name}");
            println!("   {timing}");
            println!("   rank  image                      cos R    cos G    cos B    whole");
            for (rank, m) in matches.iter().enumerate() {
                let mark = if &m.name == name {
                    "  <- the original"
                } else {
                    ""
                };
                println!(
                    "   {:>4}  {:<24} {:>7.4}  {:>7.4}  {:>7.4}  {:>7.4}{mark}",
                    rank + 1,
                    m.name,
                    m.channel_cosines[0],
                    m.channel_cosines[1],
                    m.channel_cosines[2],
                    m.whole_cosine
                );
            }
            if let Some(best) = matches.first() {
                for (_, data) in client.fetch(&[best.id])? {
                    let path = work.join(format!("best-match-for-{}", name));
                    std::fs::write(&path, &data).map_err(|e| AppError::io(&path, e))?;
                    let same = &data == bytes;
                    println!(
                        "   decrypted best match written to {} ({} bytes{})",
                        path.display(),
                        data.len(),
                        if same {
                            ", identical to the original file"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        drop(client);
        drop(server);
        if !opts.keep {
            remove_store(&work)?;
            println!("   store and keystore removed (run with --keep to keep them)");
        }
        println!();
    }
    Ok(())
}
