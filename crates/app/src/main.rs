//! The `blindsight` command line.

use blindsight::bench::{self, BenchOptions};
use blindsight::demo::{self, DemoOptions};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Encrypted image similarity search.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemeArg {
    Bfv,
    Ckks,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypted search end to end on ~1000 embedded images, both schemes.
    Demo {
        /// Gallery size.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Only this scheme.
        #[arg(long)]
        scheme: Option<SchemeArg>,
        /// Matches printed per query.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// The benchmark contract: one JSON object with timings, sizes, accuracy, memory.
    Bench {
        /// Folder of images (default: the embedded Twemoji images).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Gallery size: the first N images by name.
        #[arg(long, default_value_t = 1001)]
        count: usize,
        /// Scheme.
        #[arg(long, value_enum)]
        scheme: SchemeArg,
        /// Parameter preset (default: bfv-8192 / ckks-8192).
        #[arg(long)]
        preset: Option<String>,
        /// Side of the square images are resized to.
        #[arg(long, default_value_t = 64)]
        side: u32,
        /// Gallery index whose perturbed copy is the query (default: 2/3 of the way).
        #[arg(long)]
        query_index: Option<usize>,
        /// Largest segment (images).
        #[arg(long, default_value_t = 1 << 20)]
        segment_size: usize,
        /// Write the perturbed query as PNG (to feed the TenSEAL reference the same query).
        #[arg(long)]
        write_query: Option<PathBuf>,
        /// Memory for resident gallery operands, MiB (default: half the RAM); larger
        /// galleries are streamed from their serialized form by every query.
        #[arg(long)]
        memory_budget_mb: Option<usize>,
        /// Print one JSON object (otherwise, one field per line).
        #[arg(long)]
        json: bool,
    },
}

fn preset_of(scheme: SchemeArg) -> String {
    match scheme {
        SchemeArg::Bfv => "bfv-8192".into(),
        SchemeArg::Ckks => "ckks-8192".into(),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Demo { count, scheme, top } => {
            let presets = match scheme {
                Some(s) => vec![preset_of(s)],
                None => vec![preset_of(SchemeArg::Bfv), preset_of(SchemeArg::Ckks)],
            };
            demo::run(&DemoOptions {
                count,
                presets,
                top,
            })
        }
        Command::Bench {
            images,
            count,
            scheme,
            preset,
            side,
            query_index,
            segment_size,
            write_query,
            memory_budget_mb,
            json,
        } => {
            let opts = BenchOptions {
                images,
                count,
                preset: preset.unwrap_or_else(|| preset_of(scheme)),
                side,
                query_index,
                segment_size,
                write_query,
                memory_budget: memory_budget_mb
                    .map_or_else(blindsight::pipeline::default_memory_budget, |mb| mb << 20),
            };
            bench::run(&opts).map(|report| {
                if json {
                    println!("{report}");
                } else if let Some(map) = report.as_object() {
                    for (k, v) in map {
                        println!("{k}: {v}");
                    }
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
