//! Private retrieval end to end in one process: keys, queries, expansion, answers, decoding.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight_he::{Context, Evaluator, SecretKey};
use blindsight_pir::batch::BatchLayout;
use blindsight_pir::params::PRESET;
use blindsight_pir::{
    PirParams, Query, QueryKeys, Records, Response, Retrieved, answer, build_query, decode_response,
};

struct Table {
    records: Vec<Option<Vec<u8>>>,
}

impl Records for Table {
    fn capacity(&self) -> u64 {
        self.records.len() as u64
    }
    fn record(&self, slot: u64) -> Option<&[u8]> {
        self.records.get(slot as usize)?.as_deref()
    }
}

fn record(slot: u64, bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| (slot as usize * 131 + i * 7 + (i >> 8)) as u8)
        .collect()
}

struct Fixture {
    ctx: Context,
    sk: SecretKey,
    keys: QueryKeys,
    ev: Evaluator,
}

fn fixture() -> Fixture {
    let ctx = Context::preset(PRESET).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let keys = QueryKeys::generate(&ctx, &sk).unwrap();
    let ev = Evaluator::new(&ctx);
    Fixture { ctx, sk, keys, ev }
}

fn retrieve(
    f: &Fixture,
    params: &PirParams,
    layout: &BatchLayout,
    table: &Table,
    slots: &[u64],
) -> Vec<Retrieved> {
    let (query, pending) = build_query(&f.ctx, &f.sk, layout, table.capacity(), slots).unwrap();
    let query = Query::from_bytes(&f.ctx, &query.to_bytes(&f.ctx).unwrap()).unwrap();
    let response = answer(&f.ev, &f.keys, params, layout, table, &query).unwrap();
    let response = Response::from_bytes(&f.ctx, &response.to_bytes(&f.ctx).unwrap()).unwrap();
    decode_response(&f.ctx, &f.sk, params, &pending, &response, slots).unwrap()
}

/// Retrieves `slots` and checks each placed one against the table; returns how many were
/// placed.
fn check(
    f: &Fixture,
    params: &PirParams,
    layout: &BatchLayout,
    table: &Table,
    slots: &[u64],
) -> usize {
    let got = retrieve(f, params, layout, table, slots);
    assert_eq!(got.len(), slots.len());
    let mut placed = 0;
    for (slot, r) in slots.iter().zip(got) {
        match r {
            Retrieved::Record(bytes) => {
                let want = table
                    .record(*slot)
                    .map_or_else(|| vec![0; params.record_bytes], <[u8]>::to_vec);
                assert_eq!(bytes, want, "slot {slot}");
                placed += 1;
            }
            Retrieved::Unplaced => {}
        }
    }
    placed
}

#[test]
fn every_record_of_a_small_database_comes_back() {
    let f = fixture();
    let params = PirParams::new(16384);
    let layout = BatchLayout::new(42, params.buckets, params.hashes).unwrap();
    let table = Table {
        records: (0..40)
            .map(|s| Some(record(s, params.record_bytes)))
            .collect(),
    };
    let mut start = 0u64;
    while start < 40 {
        let slots: Vec<u64> = (start..(start + 10).min(40)).collect();
        let got = retrieve(&f, &params, &layout, &table, &slots);
        for (slot, r) in slots.iter().zip(got) {
            match r {
                Retrieved::Record(bytes) => {
                    assert_eq!(bytes, record(*slot, params.record_bytes), "slot {slot}")
                }
                Retrieved::Unplaced => {}
            }
        }
        start += 10;
    }
}

/// Grids of one, two, three and seven columns per bucket: the first fold (a pair of columns,
/// inside the first dimension) and a lone last column fold alike; the last slot of each
/// database (in its last column) and the first come back.
#[test]
fn odd_and_even_column_counts_come_back() {
    let f = fixture_shared();
    let params = PirParams {
        record_bytes: 3000,
        ..PirParams::new(3000)
    };
    let layout = BatchLayout::new(9, params.buckets, params.hashes).unwrap();
    let mut columns = Vec::new();
    for size in [1u64, 5, 33, 160] {
        let shape = blindsight_pir::params::Shape::new(&layout, size).unwrap();
        columns.push(shape.cols);
        let table = Table {
            records: (0..size)
                .map(|s| Some(record(s, params.record_bytes)))
                .collect(),
        };
        let slots = [size - 1, 0, size / 2];
        assert!(
            check(f, &params, &layout, &table, &slots) >= 1,
            "{size} records, {} columns",
            shape.cols
        );
    }
    // the sizes give one column, an even number and an odd number above one
    assert!(columns.contains(&1), "{columns:?}");
    assert!(columns.iter().any(|&c| c >= 2 && c % 2 == 0), "{columns:?}");
    assert!(columns.iter().any(|&c| c >= 3 && c % 2 == 1), "{columns:?}");
}

#[test]
fn expansion_puts_each_value_in_its_own_ciphertext() {
    use blindsight_he::BfvEncoder;
    let f = fixture();
    let encoder = BfvEncoder::new(&f.ctx).unwrap();
    for m in [1usize, 2, 3, 7, 64, 100, 300] {
        let values: Vec<u64> = (0..m as u64).map(|i| (i * 977 + 5) % 65537).collect();
        let ct =
            f.sk.encrypt(&f.ctx, &encoder.encode_coefficients(&values).unwrap())
                .unwrap();
        let leaves = blindsight_pir::expand::expand(&f.ev, &f.keys.galois, &ct, m).unwrap();
        assert_eq!(leaves.len(), m);
        let scale = 1u64 << blindsight_pir::expand::levels(m);
        for (i, leaf) in leaves.iter().enumerate() {
            let got = encoder
                .decode_coefficients(&f.sk.decrypt(&f.ctx, leaf).unwrap())
                .unwrap();
            assert_eq!(got[0], values[i] * scale % 65537, "m {m}, leaf {i}");
            assert!(got[1..].iter().all(|&v| v == 0), "m {m}, leaf {i}");
        }
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Databases of several sizes (with empty slots), any k up to 10 slots drawn with
    /// repeats, any layout seed: every placed slot decodes to its record (an empty slot to
    /// zeros), duplicates included.
    #[test]
    fn any_slots_of_any_database_come_back(
        size in prop::sample::select(vec![1u64, 5, 33, 160, 700]),
        picks in prop::collection::vec(any::<u64>(), 1..=10),
        seed in any::<u64>(),
        holes in any::<u64>(),
    ) {
        let f = fixture_shared();
        let params = PirParams { record_bytes: 3000, ..PirParams::new(3000) };
        let layout = BatchLayout::new(seed, params.buckets, params.hashes).unwrap();
        let table = Table {
            records: (0..size)
                .map(|s| (holes.rotate_left(s as u32) & 7 != 0).then(|| record(s, params.record_bytes)))
                .collect(),
        };
        let slots: Vec<u64> = picks.iter().map(|p| p % size).collect();
        // every placed slot is checked inside; the first slot always finds a free bucket
        prop_assert!(check(f, &params, &layout, &table, &slots) >= 1);
    }
}

/// One key set for the property cases (keys take a fraction of a second to make).
fn fixture_shared() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(fixture)
}

#[test]
fn queries_have_one_size_whatever_they_ask_for() {
    let f = fixture_shared();
    let layout = BatchLayout::new(5, 16, 4).unwrap();
    let sizes: Vec<usize> = [
        vec![0u64],
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        vec![999, 999],
        vec![],
    ]
    .iter()
    .map(|slots| {
        let (q, pending) = build_query(&f.ctx, &f.sk, &layout, 1000, slots).unwrap();
        assert_eq!(pending.assignment().by_bucket.len(), 16);
        q.to_bytes(&f.ctx).unwrap().len()
    })
    .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn the_parameters_are_within_the_128_bit_table() {
    use blindsight_he::params::{Parameters, max_secure_log_q};
    let p = Parameters::preset(PRESET).unwrap();
    let bits: u32 = p
        .moduli()
        .iter()
        .chain(p.special_moduli())
        .map(|q| 64 - q.leading_zeros())
        .sum();
    assert_eq!(p.degree(), 4096);
    assert!(bits <= max_secure_log_q(4096), "{bits} bits");
    assert_eq!(max_secure_log_q(4096), 109);
    // one bit more is refused
    let mut moduli = p.moduli().to_vec();
    let bigger = (1u64..)
        .map(|k| (1u64 << 30) - k * 8192 + 1)
        .find(|&q| (2..).take_while(|d: &u64| d * d <= q).all(|d| q % d != 0))
        .unwrap();
    moduli[0] = bigger;
    assert!(Parameters::bfv(4096, moduli, p.special_moduli().to_vec(), 65537).is_err());
}

#[test]
fn a_wrong_key_or_a_damaged_answer_is_an_error_or_noise() {
    let f = fixture_shared();
    let params = PirParams::new(2000);
    let layout = BatchLayout::new(9, params.buckets, params.hashes).unwrap();
    let table = Table {
        records: (0..20)
            .map(|s| Some(record(s, params.record_bytes)))
            .collect(),
    };
    let slots = [3u64, 11];
    let (query, pending) = build_query(&f.ctx, &f.sk, &layout, 20, &slots).unwrap();
    let response = answer(&f.ev, &f.keys, &params, &layout, &table, &query).unwrap();
    let bytes = response.to_bytes(&f.ctx).unwrap();
    // truncated or extended frames are refused
    for cut in [0, 5, 17, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Response::from_bytes(&f.ctx, &bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Response::from_bytes(&f.ctx, &longer).is_err());
    // an answer with buckets missing is refused
    let short = Response {
        ciphertexts: response.ciphertexts[..4].to_vec(),
    };
    assert!(decode_response(&f.ctx, &f.sk, &params, &pending, &short, &slots).is_err());
    // another secret decrypts noise, never the records
    let other = SecretKey::generate(&f.ctx).unwrap();
    match decode_response(&f.ctx, &other, &params, &pending, &response, &slots) {
        Err(_) => {}
        Ok(got) => {
            for (slot, r) in slots.iter().zip(got) {
                assert_ne!(r, Retrieved::Record(record(*slot, params.record_bytes)));
            }
        }
    }
    // a query against more slots than the server lays out is refused
    let (big, _) = build_query(&f.ctx, &f.sk, &layout, 21, &[20]).unwrap();
    assert!(answer(&f.ev, &f.keys, &params, &layout, &table, &big).is_err());
}
