//! `blindsight bench-pir`: private retrieval of `k` records from a database of `n` records
//! of `B` bytes, measured end to end in one process (client and server sides, each
//! message through its wire form), beside `shared/bench/spiral_reference.sh`.
//!
//! The database is `n` random records in one buffer, laid out as the server lays out a
//! collection's sealed thumbnails: no preprocessing (records are served as stored, each
//! transformed when a query reads it), so `setup_s` is only the layout's set-up. The client
//! makes its retrieval secret and one-time keys (`keygen_s`, `key_bytes`), then each of
//! `--queries` searches asks for `k` distinct random slots: `client_s` (query and decoding),
//! `server_s` (reading the query, expanding it, both dimensions, writing the answer), the
//! bytes each way, and whether every placed record came back intact (`correct`). Timings
//! are medians over the queries (every run listed in `*_runs`); `server_rss_bytes` is the
//! process's peak resident memory (the database included) and `database_bytes` its size.

use crate::errors::Result;
use crate::pipeline::peak_rss_bytes;
use blindsight_he::{Context, Evaluator, SecretKey, Serializable};
use blindsight_pir::params::PRESET;
use blindsight_pir::{
    PirParams, Query, QueryKeys, Records, Response, Retrieved, answer_timed, build_query,
    decode_response,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::json;
use std::time::Instant;

/// Options of `blindsight bench-pir`.
#[derive(Clone, Debug)]
pub struct BenchPirOptions {
    /// Records in the database.
    pub records: u64,
    /// Bytes per record.
    pub record_bytes: usize,
    /// Records retrieved per search.
    pub k: usize,
    /// Searches measured.
    pub queries: usize,
    /// Buckets of the layout (`None`: the default, [`blindsight_pir::params::DEFAULT_BUCKETS`]).
    pub buckets: Option<usize>,
    /// Buckets each record is in (`None`: the default,
    /// [`blindsight_pir::params::DEFAULT_HASHES`]).
    pub hashes: Option<usize>,
}

/// `n` records in one buffer.
struct Flat {
    bytes: Vec<u8>,
    record_bytes: usize,
}

impl Records for Flat {
    fn capacity(&self) -> u64 {
        (self.bytes.len() / self.record_bytes.max(1)) as u64
    }
    fn record(&self, slot: u64) -> Option<&[u8]> {
        let start = usize::try_from(slot).ok()?.checked_mul(self.record_bytes)?;
        self.bytes.get(start..start + self.record_bytes)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the benchmark and returns its JSON report.
pub fn run(opts: &BenchPirOptions) -> Result<serde_json::Value> {
    if opts.records == 0 || opts.record_bytes == 0 || opts.k == 0 || opts.queries == 0 {
        return Err(crate::AppError::Usage(
            "bench-pir needs --records, --record-bytes, --k and --queries of at least 1".into(),
        ));
    }
    let mut params = PirParams::new(opts.record_bytes);
    params.buckets = opts.buckets.unwrap_or(params.buckets);
    params.hashes = opts.hashes.unwrap_or(params.hashes);
    // the layout's own checks (at least 2 hashes, buckets a multiple of them)
    params
        .layout(0)
        .map_err(|e| crate::AppError::Usage(format!("--buckets and --hashes: {e}")))?;
    if opts.k as u64 > opts.records || opts.k > params.buckets {
        return Err(crate::AppError::Usage(format!(
            "--k must be at most the records and at most the {} buckets of a query",
            params.buckets
        )));
    }
    // the database (not timed: it stands for the collection's stored thumbnails)
    let mut data = ChaCha8Rng::seed_from_u64(0x5eed);
    let total = usize::try_from(opts.records)
        .ok()
        .and_then(|n| n.checked_mul(opts.record_bytes))
        .ok_or_else(|| crate::AppError::Usage("the database does not fit in memory".into()))?;
    let mut bytes = vec![0u8; total];
    data.fill_bytes(&mut bytes);
    let db = Flat {
        bytes,
        record_bytes: opts.record_bytes,
    };

    let ctx = Context::preset(PRESET)?;
    let ev = Evaluator::new(&ctx);
    let started = Instant::now();
    let seed = u64::from_le_bytes(
        blindsight_os::random::bytes::<8>()
            .map_err(|e| crate::AppError::Internal(format!("the OS random source failed: {e}")))?,
    );
    let layout = params.layout(seed)?;
    let shape = blindsight_pir::Shape::new(&layout, db.capacity())?;
    let setup_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let sk = SecretKey::generate(&ctx)?;
    let keys = QueryKeys::generate(&ctx, &sk)?;
    let key_bytes = keys.galois.to_bytes(&ctx)?.len() + keys.relin.to_bytes(&ctx)?.len();
    let keygen_s = started.elapsed().as_secs_f64();

    let mut pick = ChaCha8Rng::seed_from_u64(seed);
    let (mut client_runs, mut server_runs) = (Vec::new(), Vec::new());
    let mut stages = Vec::new();
    let (mut query_bytes, mut response_bytes) = (0usize, 0usize);
    let (mut correct, mut unplaced) = (true, 0usize);
    for _ in 0..opts.queries {
        let mut slots: Vec<u64> = Vec::with_capacity(opts.k);
        while slots.len() < opts.k {
            let s = pick.next_u64() % opts.records;
            if !slots.contains(&s) {
                slots.push(s);
            }
        }
        let t0 = Instant::now();
        let (query, pending) = build_query(&ctx, &sk, &layout, db.capacity(), &slots)?;
        let query_wire = query.to_bytes(&ctx)?;
        let mut client_s = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        let received = Query::from_bytes(&ctx, &query_wire)?;
        let (response, times) = answer_timed(&ev, &keys, &params, &layout, &db, &received)?;
        stages.push(times);
        let response_wire = response.to_bytes(&ctx)?;
        server_runs.push(t1.elapsed().as_secs_f64());

        let t2 = Instant::now();
        let response = Response::from_bytes(&ctx, &response_wire)?;
        let got = decode_response(&ctx, &sk, &params, &pending, &response, &slots)?;
        client_s += t2.elapsed().as_secs_f64();
        client_runs.push(client_s);
        for (slot, r) in slots.iter().zip(got) {
            match r {
                Retrieved::Record(bytes) => correct &= Some(bytes.as_slice()) == db.record(*slot),
                Retrieved::Unplaced => unplaced += 1,
            }
        }
        query_bytes = query_wire.len();
        response_bytes = response_wire.len();
    }
    Ok(json!({
        "records": opts.records,
        "record_bytes": opts.record_bytes,
        "k": opts.k,
        "setup_s": setup_s,
        "server_s": median(&server_runs),
        "query_bytes": query_bytes,
        "response_bytes": response_bytes,
        "key_bytes": key_bytes,
        "client_s": median(&client_runs),
        "server_rss_bytes": peak_rss_bytes(),
        "correct": correct,
        "unplaced": unplaced,
        "queries": opts.queries,
        "server_s_runs": server_runs,
        "client_s_runs": client_runs,
        "keygen_s": keygen_s,
        "expand_s": median(&stages.iter().map(|t| t.expand_s).collect::<Vec<_>>()),
        "first_dimension_s": median(&stages.iter().map(|t| t.first_s).collect::<Vec<_>>()),
        "fold_s": median(&stages.iter().map(|t| t.fold_s).collect::<Vec<_>>()),
        "database_bytes": total,
        "preset": PRESET,
        "buckets": params.buckets,
        "hashes": params.hashes,
        "rows": shape.rows,
        "cols": shape.cols,
        "threads": rayon::current_num_threads(),
    }))
}
