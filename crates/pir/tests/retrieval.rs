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

#[test]
fn expansion_puts_each_value_in_its_own_ciphertext() {
    use blindsight_he::BfvEncoder;
    let f = fixture();
    let encoder = BfvEncoder::new(&f.ctx).unwrap();
    for m in [1usize, 2, 3, 7, 64, 100] {
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
