//! Collections of the user's own vectors (kind `vectors`): through the real client and a
//! loopback server, at d = 64, 384, 512 and 768 under both schemes — CKKS scores within
//! 2·10⁻⁶ of the true cosines, BFV scores exactly the cosines of the quantized vectors
//! (within the quantization bound of the true ones), the identity check (another model or
//! dimension refused, naming both), payloads sealed and thumbnails made of image payloads;
//! and the CLI's `.npy` path (`ingest-vectors`, `search --vector`), damaged files refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use blindsight::commands::vectors::{Vectors, read_npy, write_npy};
use blindsight::sandbox::Sandbox;
use blindsight_client::client::{RetrievedThumbnail, VectorItem};
use blindsight_client::encoder::{encoding_for, vectors_kind};
use blindsight_client::keystore::Keystore;
use blindsight_search::encoding::VectorEncoding;

/// Deterministic Gaussian-ish values (xorshift, sum of uniforms).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        let mut s = 0.0f32;
        for _ in 0..4 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        s
    }
    fn vector(&mut self, d: usize) -> Vec<f32> {
        (0..d).map(|_| self.next()).collect()
    }
}

/// The vector normalized as the client does it (f64 norm, f32 values).
fn normalized(v: &[f32]) -> Vec<f64> {
    let n = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    v.iter()
        .map(|&x| f64::from((f64::from(x) / n) as f32))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_collections_score_like_the_plaintext_at_several_dimensions() {
    let png = blindsight_testdata::distinct_files(1).remove(0).1;
    for preset in ["ckks-8192", "bfv-8192"] {
        let ctx = Keystore::generate(preset).unwrap().context;
        for d in [64, 384, 512, 768] {
            let work = tempfile::tempdir().unwrap();
            let kind = vectors_kind(d, "test-model").unwrap();
            let sb = Sandbox::create(work.path(), preset, "mine", &kind).unwrap();
            let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ d as u64);
            let items: Vec<VectorItem> = (0..40)
                .map(|i| VectorItem {
                    name: format!("v{i}"),
                    vector: noise.vector(d),
                    payload: if i == 3 {
                        png.clone()
                    } else {
                        format!("doc {i}").into_bytes()
                    },
                })
                .collect();
            let report = sb.client.ingest_items(&items, |_| {}).unwrap();
            assert_eq!(report.added, 40, "{preset} d={d}: {:?}", report.failed);
            let query = &items[7].vector;
            let (matches, _) = sb
                .client
                .search_vector(query, Some("test-model"), 40)
                .unwrap();
            assert_eq!(matches.len(), 40);
            assert_eq!(matches[0].name, "v7", "{preset} d={d}");
            let q = normalized(query);
            let encoding = encoding_for(&kind, &ctx);
            for m in &matches {
                let i: usize = m.name[1..].parse().unwrap();
                let x = normalized(&items[i].vector);
                let real = dot(&q, &x);
                match encoding {
                    VectorEncoding::Unit => assert!(
                        (m.whole_cosine - real).abs() <= 2e-6,
                        "CKKS d={d}: {} vs {real}",
                        m.whole_cosine
                    ),
                    VectorEncoding::Integer { levels } => {
                        let (a, b) = (encoding.encode_real(&q), encoding.encode_real(&x));
                        let quantized = dot(&a.values, &b.values) / (a.norm * b.norm);
                        assert!(
                            (m.whole_cosine - quantized).abs() <= 1e-12,
                            "BFV d={d}: {} is not the quantized cosine {quantized}",
                            m.whole_cosine
                        );
                        let bound = 2.0 * (d as f64).sqrt() / f64::from(levels);
                        assert!((m.whole_cosine - real).abs() <= bound, "BFV d={d}");
                    }
                }
            }
            if matches!(encoding, VectorEncoding::Integer { .. }) {
                // the integer dot product is exact: only the division rounds
                assert!(
                    (matches[0].whole_cosine - 1.0).abs() <= 1e-15,
                    "BFV: a vector against itself"
                );
            }
            // the identity: another model or dimension is refused, naming both
            let e = sb
                .client
                .search_vector(query, Some("other-model"), 5)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&kind.spec()) && e.contains("other-model"), "{e}");
            let e = sb
                .client
                .search_vector(&query[1..], None, 5)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&kind.spec()) && e.contains(&format!("vectors:{}:", d - 1)),
                "{e}"
            );
            let e = sb.client.search(
                &png,
                "an image",
                5,
                blindsight_search::rank::RankRule::WholeCosine,
            );
            assert!(e.unwrap_err().to_string().contains("your own vectors"));
            if d == 64 {
                // zeros and non-finite values are refused; payloads come back; an image
                // payload has a thumbnail, retrieved privately
                assert!(sb.client.search_vector(&vec![0.0; d], None, 5).is_err());
                let mut nan = query.clone();
                nan[5] = f32::NAN;
                assert!(sb.client.search_vector(&nan, None, 5).is_err());
                let id_of = |name: &str| matches.iter().find(|m| m.name == name).unwrap();
                let files = sb.client.fetch(&[id_of("v5").id]).unwrap();
                assert_eq!(files[0].1, b"doc 5");
                let wanted: Vec<_> = ["v3", "v5"]
                    .iter()
                    .map(|n| (id_of(n).id, id_of(n).thumbnail_slot))
                    .collect();
                let thumbs = sb.client.private_thumbnails(&wanted).unwrap();
                assert!(matches!(&thumbs[0].1, RetrievedThumbnail::Jpeg(j) if !j.is_empty()));
                assert_eq!(
                    thumbs[1].1,
                    RetrievedThumbnail::Missing,
                    "a text payload has no thumbnail"
                );
                // the same vector and payload again is a duplicate
                let again = sb.client.ingest_items(&items[..2], |_| {}).unwrap();
                assert_eq!((again.added, again.duplicates), (0, 2));
                // compaction leaves text payloads alone
                let c = sb.client.compact().unwrap();
                assert_eq!(c.thumbnails_failed, 0);
            }
        }
    }
}

/// An ingest of more vectors than one merged segment holds: its batches are encrypted and
/// uploaded overlapping (one uploads while the next is encrypted). Every vector lands once,
/// in order, with its own id, in two segments, and vectors of both batches are found.
#[test]
fn an_ingest_of_two_overlapping_batches_lands_every_vector_once() {
    let work = tempfile::tempdir().unwrap();
    let kind = vectors_kind(16, "small").unwrap();
    let sb = Sandbox::create(work.path(), "ckks-8192", "many", &kind).unwrap();
    let cap = sb.client.merge_policy().unwrap().max_images;
    let n = cap + 300;
    let mut noise = Noise(0x51ed);
    let items: Vec<VectorItem> = (0..n)
        .map(|i| VectorItem {
            name: format!("v{i}"),
            vector: noise.vector(16),
            payload: Vec::new(),
        })
        .collect();
    let mut seen = Vec::new();
    let report = sb
        .client
        .ingest_items(&items, |p| seen.push(p.added))
        .unwrap();
    assert_eq!(report.added, n, "{:?}", report.failed);
    assert_eq!(
        seen.last(),
        Some(&n),
        "the last progress counts every vector"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        report
            .ids
            .iter()
            .enumerate()
            .all(|(i, (name, _))| *name == format!("v{i}")),
        "ids in the order of the vectors"
    );
    let ids: std::collections::HashSet<i64> = report.ids.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), n);
    let info = sb.client.check_collection().unwrap();
    assert_eq!(info["images"].as_u64(), Some(n as u64));
    assert_eq!(info["segments"].as_u64(), Some(2), "{info}");
    for i in [5, cap + 7] {
        let (matches, _) = sb.client.search_vector(&items[i].vector, None, 1).unwrap();
        assert_eq!(matches[0].name, format!("v{i}"));
    }
}

#[test]
fn the_cli_reads_npy_files_and_refuses_damaged_ones() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let mut noise = Noise(7);
    let v = Vectors {
        rows: 30,
        dim: 96,
        values: (0..30 * 96).map(|_| noise.next()).collect(),
    };
    write_npy(&dir.join("v.npy"), &v).unwrap();
    assert_eq!(read_npy(&dir.join("v.npy")).unwrap(), v);
    let q = Vectors {
        rows: 1,
        dim: 96,
        values: v.row(11).to_vec(),
    };
    write_npy(&dir.join("q.npy"), &q).unwrap();
    let names: String = (0..30).map(|i| format!("item {i}\n")).collect();
    std::fs::write(dir.join("names.txt"), names).unwrap();
    std::fs::create_dir(dir.join("payloads")).unwrap();
    std::fs::write(dir.join("payloads/item 4"), b"payload four").unwrap();
    let h = dir.join("h");
    common::ok(
        &h,
        &[
            "create",
            "--vectors",
            "vectors",
            "--dim",
            "96",
            "--model",
            "m1",
            "--collection",
            "c",
        ],
    );
    let v_npy = dir.join("v.npy");
    let names_txt = dir.join("names.txt");
    let payloads = dir.join("payloads");
    let out = common::ok(
        &h,
        &[
            "ingest-vectors",
            v_npy.to_str().unwrap(),
            "--names",
            names_txt.to_str().unwrap(),
            "--payloads",
            payloads.to_str().unwrap(),
            "--collection",
            "c",
            "--json",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["added"], 30);
    assert_eq!(r["without_payload"], 29);
    let q_npy = dir.join("q.npy");
    let out = common::ok(
        &h,
        &[
            "search",
            "--vector",
            q_npy.to_str().unwrap(),
            "--collection",
            "c",
            "--json",
            "--top",
            "3",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["matches"][0]["name"], "item 11");
    assert!(r["matches"][0]["score"].as_f64().unwrap() > 0.9999);
    common::fails_with(
        &h,
        &[
            "search",
            "--vector",
            q_npy.to_str().unwrap(),
            "--model",
            "m2",
            "--collection",
            "c",
        ],
        "vectors:96:m2:cosine",
    );
    // damaged files: a clear error, nothing added
    let bytes = std::fs::read(&v_npy).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("truncated.npy", bytes[..bytes.len() / 2].to_vec()),
        ("header.npy", bytes[..40].to_vec()),
        ("text.npy", b"not numpy at all".to_vec()),
        ("empty.npy", Vec::new()),
    ];
    for (name, data) in cases {
        let at = dir.join(name);
        std::fs::write(&at, data).unwrap();
        assert!(read_npy(&at).is_err(), "{name}");
        common::fails_with(
            &h,
            &[
                "ingest-vectors",
                at.to_str().unwrap(),
                "--names",
                names_txt.to_str().unwrap(),
                "--collection",
                "c",
            ],
            "is not a .npy array",
        );
    }
    std::fs::write(dir.join("short.txt"), "one\ntwo\n").unwrap();
    let short = dir.join("short.txt");
    common::fails_with(
        &h,
        &[
            "ingest-vectors",
            v_npy.to_str().unwrap(),
            "--names",
            short.to_str().unwrap(),
            "--collection",
            "c",
        ],
        "2 names for 30 vectors",
    );
    let info = common::ok(&h, &["info", "--collection", "c", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["images"], 30);
    assert_eq!(info["vectors"], "vectors:96:m1:cosine");
}
