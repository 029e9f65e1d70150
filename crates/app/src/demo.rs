//! `blindsight demo`: zero-setup end to end on images shipped inside the binary's crates.
//! For each scheme it encrypts a gallery of about a thousand Twemoji images, searches for
//! perturbed copies of three of them, and prints the ranked matches and the timings.

use crate::errors::Result;
use crate::images::load_embedded;
use crate::pipeline::{AnySession, default_memory_budget};
use blindsight_search::rank::{RankRule, top_k};

/// Options of `blindsight demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Gallery size.
    pub count: usize,
    /// Presets to run.
    pub presets: Vec<String>,
    /// Matches to print per query.
    pub top: usize,
}

/// Runs the demo, printing to stdout.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let gallery = load_embedded(opts.count, 64)?;
    let vectors: Vec<_> = gallery.iter().map(|g| g.vector.clone()).collect();
    println!(
        "blindsight demo: {} Twemoji images, 64×64 RGB, searched under encryption\n",
        gallery.len()
    );
    let picks = [gallery.len() / 7, gallery.len() / 2, gallery.len() * 9 / 10];
    for preset in &opts.presets {
        let session = AnySession::build(preset, &vectors, 4096, default_memory_budget())?;
        let s = session.setup();
        println!("== {preset}: gallery of {} images encrypted", s.n);
        println!(
            "   keygen {:.2} s · encrypt {:.2} s · server load {:.2} s · {:.1} MB of ciphertexts · {:.1} MB of evaluation keys",
            s.keygen_s,
            s.encrypt_s,
            s.load_s,
            s.gallery_bytes as f64 / 1e6,
            s.eval_key_bytes as f64 / 1e6
        );
        for &pick in &picks {
            let q = session.query(&gallery[pick].vector.perturbed())?;
            println!("\n   query: perturbed copy of {}", gallery[pick].name);
            println!(
                "   encrypt {:.3} s · server {:.3} s · decrypt {:.3} s · up {:.0} KB · down {:.0} KB · max error vs plaintext {:.1e}",
                q.query_encrypt_s,
                q.score_s,
                q.decrypt_s,
                q.query_bytes as f64 / 1e3,
                q.response_bytes as f64 / 1e3,
                q.max_abs_err()
            );
            println!("   rank  image                      cos R    cos G    cos B    whole");
            for (rank, &i) in top_k(&q.similarities, RankRule::ChannelTriple, opts.top)
                .iter()
                .enumerate()
            {
                let sim = &q.similarities[i];
                let mark = if gallery[i].vector == gallery[pick].vector {
                    "  <- the original"
                } else {
                    ""
                };
                println!(
                    "   {:>4}  {:<24} {:>7.4}  {:>7.4}  {:>7.4}  {:>7.4}{mark}",
                    rank + 1,
                    gallery[i].name,
                    sim.channel_cosines[0],
                    sim.channel_cosines[1],
                    sim.channel_cosines[2],
                    sim.whole_cosine
                );
            }
        }
        println!();
    }
    Ok(())
}
