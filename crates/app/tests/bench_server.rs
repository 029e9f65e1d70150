//! `blindsight bench-server` with tiny settings: a `serve` process, 2 clients for 3 seconds
//! over a gallery of 8 images. Every well-formed request succeeds (a 503 is not a failure),
//! every hostile request gets its expected refusal, the server survives and stops on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight::bench_server::{self, BenchServerOptions, Hostile, Op};
use std::path::Path;

#[test]
fn a_short_load_has_no_errors_and_every_hostile_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BenchServerOptions {
        preset: "ckks-8192".into(),
        gallery: 8,
        clients: 2,
        seconds: 3.0,
        max_concurrent: 4,
        seed: 7,
        dir: Some(dir.path().to_path_buf()),
        hostile_tenant: true,
    };
    let report = bench_server::run(Path::new(env!("CARGO_BIN_EXE_blindsight")), &opts).unwrap();
    let table = report.table();
    eprintln!("{table}");
    assert_eq!(report.well_formed_errors(), 0, "{table}");
    assert_eq!(report.hostile_unexpected(), 0, "{table}");
    assert!(!report.server.crashed, "{table}");
    assert_eq!(report.gallery, 8);
    // the hostile tenant reached its segment cap and was refused, and held slow uploads
    let tenant = report.tenant.as_ref().unwrap();
    assert!(tenant.tiny_refused > 0, "{table}");
    assert_eq!(tenant.segments, 256, "{table}");
    assert!(
        tenant.slow_opened >= bench_server::tenant::SLOW_UPLOADS,
        "{table}"
    );
    // every kind of hostile request ran (each client sends each kind once first)
    for kind in Hostile::ALL {
        let t = &report.hostile[&kind];
        assert!(t.count >= opts.clients, "{kind:?}: {table}");
        assert_eq!(
            t.as_expected + t.closed_early + t.busy,
            t.count,
            "{kind:?}: {table}"
        );
    }
    let done: usize = Op::ALL.iter().map(|op| report.ops[op].count).sum();
    assert!(done > 0, "{table}");
    // the server's memory was read, the bound computed, the shutdown timed
    assert!(
        report.server.peak_rss > 0 && report.server.samples > 0,
        "{table}"
    );
    assert!(report.bound.stated > report.bound.cache, "{table}");
    assert!(report.server.stop_s < 15.0, "{table}");
    let json = report.to_json();
    assert_eq!(json["well_formed_errors"], 0);
    assert!(json["ops"]["search"]["count"].is_u64());
}
