use super::*;

const PIXELS: VectorKind = VectorKind::Pixels { side: 64 };

/// The content of a segment file (opaque to the store) and the images of a batch.
fn batch(first_id: i64, n: usize) -> (Vec<u8>, Vec<ImageRecord>) {
    let cts = vec![first_id as u8, n as u8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];
    let images = (0..n)
        .map(|i| ImageRecord {
            id: first_id + i as i64,
            position: i,
            tag: vec![i as u8, first_id as u8],
            meta: vec![1, 2, 3],
            payload: vec![i as u8; 10],
            source: if i % 2 == 0 { vec![7; 4] } else { Vec::new() },
            thumbnail: if i % 3 == 0 { vec![6; 8] } else { Vec::new() },
        })
        .collect();
    (cts, images)
}

/// One segment replaced at a time: [`Store::replace_segments`] of one (the tests' shorthand).
trait ReplaceOne {
    fn replace_segment(
        &mut self,
        collection: i64,
        old: i64,
        expected_live: &[i64],
        batch: Option<RebuiltBatch<'_>>,
        keys: Option<&KeyUpdate<'_>>,
        quota: &Quota,
    ) -> Result<Option<i64>>;
}

impl ReplaceOne for Store {
    fn replace_segment(
        &mut self,
        collection: i64,
        old: i64,
        expected_live: &[i64],
        batch: Option<RebuiltBatch<'_>>,
        keys: Option<&KeyUpdate<'_>>,
        quota: &Quota,
    ) -> Result<Option<i64>> {
        self.replace_segments(
            collection,
            &[(old, expected_live.to_vec())],
            batch,
            keys,
            quota,
        )
    }
}

/// A segment file holding `content`, staged in `s`'s segment directory.
fn staged(s: &Store, content: &[u8]) -> StagedFile {
    let mut w = s.files().stage().unwrap();
    w.write(content).unwrap();
    w.finish().unwrap()
}

/// A rebuilt segment with `placements`, its file holding `content`.
fn rebuilt<'a>(
    s: &Store,
    layout: &'a [u8],
    content: &[u8],
    placements: &'a [(i64, usize)],
) -> RebuiltBatch<'a> {
    RebuiltBatch {
        layout,
        file: staged(s, content),
        placements,
    }
}

fn placed(ids: &[i64]) -> Vec<(i64, usize)> {
    ids.iter().enumerate().map(|(p, &id)| (id, p)).collect()
}

/// A batch whose segment file, holding `content`, is staged in `s`'s segment directory.
fn seg<'a>(
    s: &Store,
    layout: &'a [u8],
    content: &[u8],
    images: &'a [ImageRecord],
) -> SegmentBatch<'a> {
    SegmentBatch {
        layout,
        file: staged(s, content),
        images,
    }
}

fn new_collection(name: &str) -> NewCollection<'_> {
    NewCollection {
        name,
        params: b"params",
        fingerprint: b"fp",
        vectors: &PIXELS,
        relin_key: b"rk",
        galois_keys: b"gk",
        galois_elements: &[3, 5],
        response_key: b"rsk",
        token_hash: b"hash",
        key_id: "k1",
    }
}

const Q: Quota = Quota::UNLIMITED;

fn collection(store: &mut Store, name: &str) -> i64 {
    store.create_collection(&new_collection(name), &Q).unwrap()
}

fn append(s: &mut Store, c: i64, first_id: i64, n: usize) -> Result<i64> {
    let (cts, images) = batch(first_id, n);
    s.append_segment(c, seg(s, b"layout", &cts, &images), None, &Q)
}

#[test]
fn a_new_store_has_large_pages_and_an_existing_one_keeps_its_own() {
    let page_size = |path: &Path| -> i64 {
        let s = Store::open(path).unwrap();
        s.conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.db");
    assert_eq!(page_size(&new), PAGE_SIZE);
    assert_eq!(page_size(&new), PAGE_SIZE, "reopened");
    // a store made before (4 KiB pages, in WAL mode) opens, migrates and keeps them
    let old = dir.path().join("old.db");
    {
        let conn = Connection::open(&old).unwrap();
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE before (x INTEGER)")
            .unwrap();
    }
    assert_eq!(page_size(&old), 4096);
}

#[test]
fn batches_round_trip_and_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store_id;
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        store_id = s.store_id().unwrap();
        assert_eq!(store_id.len(), 32);
        let c = collection(&mut s, "photos");
        let (cts, images) = batch(100, 3);
        let id = s
            .append_segment(c, seg(&s, b"layout", &cts, &images), None, &Q)
            .unwrap();
        // the segment's file is in place, nothing left in the staging directory
        assert_eq!(std::fs::read(s.segment_path(id)).unwrap(), cts);
        assert_eq!(
            std::fs::read_dir(s.files().dir().join("tmp"))
                .unwrap()
                .count(),
            0
        );
        assert!(matches!(
            s.create_collection(&new_collection("photos"), &Q),
            Err(ServerError::AlreadyExists { .. })
        ));
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.store_id().unwrap(), store_id, "the identity is stable");
    let c = s.collection("photos").unwrap();
    assert_eq!(c.vectors, PIXELS);
    assert_eq!(c.vectors.dim(), 4096);
    assert_eq!(s.segments(c.id).unwrap().len(), 1);
    assert_eq!(s.images(c.id).unwrap().len(), 3);
    assert_eq!(
        s.payloads(c.id, &[101], usize::MAX).unwrap().found,
        vec![(101, vec![1u8; 10])]
    );
    assert_eq!(
        s.evaluation_keys(c.id).unwrap(),
        EvaluationKeyBlobs {
            relin_key: b"rk".to_vec(),
            galois_keys: b"gk".to_vec(),
            response_key: Some(b"rsk".to_vec()),
        }
    );
    assert_eq!(s.galois_elements(c.id).unwrap(), vec![3, 5]);
    assert!(matches!(
        s.collection("nope"),
        Err(ServerError::NotFound { .. })
    ));
    let reader = Store::open_reader(&path).unwrap();
    assert_eq!(reader.collections().unwrap(), vec![c]);
}

#[test]
fn a_failing_batch_leaves_nothing_behind() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "photos");
    let (cts, images) = batch(1, 3);
    s.append_segment(c, seg(&s, b"layout", &cts, &images), None, &Q)
        .unwrap();
    let version = s.usage(c).unwrap().version;
    // same tags again: the whole batch is refused, keys included
    let (cts2, mut images2) = batch(50, 3);
    images2[2].tag = images[0].tag.clone();
    let keys = KeyUpdate {
        galois_keys: b"new keys",
        galois_elements: &[7],
    };
    assert!(matches!(
        s.append_segment(c, seg(&s, b"layout2", &cts2, &images2), Some(&keys), &Q),
        Err(ServerError::Conflict(_))
    ));
    // an id already used in the collection, or twice in the batch
    let (cts3, mut images3) = batch(60, 3);
    images3[1].id = 2;
    assert!(matches!(
        s.append_segment(c, seg(&s, b"l", &cts3, &images3), None, &Q),
        Err(ServerError::Conflict(_))
    ));
    images3[1].id = 60;
    assert!(matches!(
        s.append_segment(c, seg(&s, b"l", &cts3, &images3), None, &Q),
        Err(ServerError::Conflict(_))
    ));
    assert_eq!(s.segments(c).unwrap().len(), 1);
    assert_eq!(s.images(c).unwrap().len(), 3);
    assert_eq!(s.evaluation_keys(c).unwrap().galois_keys, b"gk".to_vec());
    assert_eq!(
        s.usage(c).unwrap().version,
        version,
        "a refused write changes nothing"
    );
    assert_eq!(
        s.existing_tags(c, &[images[0].tag.clone(), vec![99]])
            .unwrap(),
        vec![true, false]
    );
}

#[test]
fn image_ids_are_unique_per_collection_only() {
    let mut s = Store::in_memory().unwrap();
    let a = collection(&mut s, "a");
    let b = collection(&mut s, "b");
    append(&mut s, a, 1, 2).unwrap();
    // the same ids in another collection are no conflict (and reveal nothing)
    append(&mut s, b, 1, 2).unwrap();
    assert_eq!(s.images(b).unwrap().len(), 2);
    assert_eq!(s.delete_images(b, &[1]).unwrap(), 1);
    assert_eq!(s.payloads(a, &[1], usize::MAX).unwrap().found.len(), 1);
}

#[test]
fn every_write_bumps_the_version_in_its_transaction() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    let v0 = s.usage(c).unwrap();
    append(&mut s, c, 1, 3).unwrap();
    let v1 = s.usage(c).unwrap();
    assert_eq!(v1.version, v0.version + 1);
    assert_eq!(v1.keys_version, v0.keys_version, "no key change");
    assert_eq!(s.delete_images(c, &[2]).unwrap(), 1);
    let v2 = s.usage(c).unwrap();
    assert_eq!(v2.version, v1.version + 1);
    assert_eq!(s.delete_images(c, &[2, 99]).unwrap(), 0);
    assert_eq!(s.usage(c).unwrap().version, v2.version, "nothing changed");
    let (cts, images) = batch(10, 1);
    let keys = KeyUpdate {
        galois_keys: b"gk",
        galois_elements: &[3],
    };
    s.append_segment(c, seg(&s, b"l", &cts, &images), Some(&keys), &Q)
        .unwrap();
    let v3 = s.usage(c).unwrap();
    assert_eq!(v3.version, v2.version + 1);
    assert_eq!(
        v3.keys_version,
        v2.keys_version + 1,
        "same length, new keys"
    );
    assert_eq!((v3.images, v3.live, v3.segments), (4, 3, 2));
}

#[test]
fn snapshots_hold_exactly_the_live_set() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    let s1 = append(&mut s, c, 1, 3).unwrap();
    let s2 = append(&mut s, c, 10, 2).unwrap();
    s.delete_images(c, &[2, 11]).unwrap();
    let (snap, keys, file) = s
        .snapshot(c, |snap, r| {
            Ok((
                snap.clone(),
                r.evaluation_keys(c)?,
                std::fs::read(r.segment_path(s1)).unwrap(),
            ))
        })
        .unwrap();
    assert_eq!(snap.version, s.usage(c).unwrap().version);
    assert_eq!(keys.relin_key, b"rk".to_vec());
    assert_eq!(file, batch(1, 3).0);
    let live: Vec<(i64, Vec<(usize, i64)>)> = snap
        .segments
        .iter()
        .map(|v| (v.id, v.live.clone()))
        .collect();
    assert_eq!(live, vec![(s1, vec![(0, 1), (2, 3)]), (s2, vec![(0, 10)])]);
}

#[test]
fn compaction_needs_the_live_set_it_was_computed_from() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "photos");
    let (cts, images) = batch(1, 3);
    let old = s
        .append_segment(c, seg(&s, b"l", &cts, &images), None, &Q)
        .unwrap();
    append(&mut s, c, 10, 1).unwrap();
    s.delete_images(c, &[2]).unwrap();
    // a drop (no batch) of a segment with live images is refused
    assert!(matches!(
        s.replace_segment(c, old, &[], None, None, &Q),
        Err(ServerError::Conflict(_))
    ));
    assert!(matches!(
        s.replace_segment(c, old, &[1, 3], None, None, &Q),
        Err(ServerError::Conflict(_))
    ));
    // a rebuild that takes another segment's image fails as a whole
    let stolen = placed(&[1, 10]);
    assert!(
        s.replace_segment(
            c,
            old,
            &[1, 3],
            Some(rebuilt(&s, b"l2", &cts, &stolen)),
            None,
            &Q
        )
        .is_err()
    );
    assert_eq!(s.images(c).unwrap().len(), 4);
    // two images at one position
    let twice = [(1, 0), (3, 0)];
    assert!(
        s.replace_segment(
            c,
            old,
            &[1, 3],
            Some(rebuilt(&s, b"l2", &cts, &twice)),
            None,
            &Q
        )
        .is_err()
    );
    // a delete acknowledged after the client listed the segment makes its rebuild stale
    let good = placed(&[1, 3]);
    s.delete_images(c, &[3]).unwrap();
    assert!(matches!(
        s.replace_segment(
            c,
            old,
            &[1, 3],
            Some(rebuilt(&s, b"l3", &cts, &good)),
            None,
            &Q
        ),
        Err(ServerError::Conflict(_))
    ));
    assert!(
        s.payloads(c, &[3], usize::MAX).unwrap().found.is_empty(),
        "still deleted"
    );
    // recomputed from the current live set, it replaces the segment
    let only = placed(&[1]);
    let before = s.usage(c).unwrap().version;
    let new = s
        .replace_segment(
            c,
            old,
            &[1],
            Some(rebuilt(&s, b"l4", b"c4", &only)),
            None,
            &Q,
        )
        .unwrap()
        .unwrap();
    assert_eq!(s.usage(c).unwrap().version, before + 1);
    let listed = s.images(c).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|i| !i.deleted));
    assert_eq!(listed.iter().filter(|i| i.segment_id == new).count(), 1);
    // a segment with nothing live can be dropped
    s.delete_images(c, &[1]).unwrap();
    assert_eq!(
        s.replace_segment(c, new, &[], None, None, &Q).unwrap(),
        None
    );
    // another collection cannot replace a segment it does not own
    let b = collection(&mut s, "b");
    let other = s.segments(c).unwrap()[0].0;
    assert!(matches!(
        s.replace_segment(b, other, &[10], None, None, &Q),
        Err(ServerError::Conflict(_))
    ));
}

#[test]
fn quotas_refuse_the_write_that_passes_them() {
    let mut s = Store::in_memory().unwrap();
    let tight = Quota {
        key_bytes: 10,
        images: 4,
        stored_bytes: 1000,
        segments: 100,
    };
    assert!(matches!(
        s.create_collection(
            &NewCollection {
                relin_key: &[0; 11],
                ..new_collection("big")
            },
            &tight
        ),
        Err(ServerError::QuotaExceeded { .. })
    ));
    let c = s.create_collection(&new_collection("a"), &tight).unwrap();
    let (cts, images) = batch(1, 3);
    s.append_segment(c, seg(&s, b"l", &cts, &images), None, &tight)
        .unwrap();
    let (cts, images) = batch(10, 2);
    assert!(matches!(
        s.append_segment(c, seg(&s, b"l", &cts, &images), None, &tight),
        Err(ServerError::QuotaExceeded {
            what: "stored images",
            ..
        })
    ));
    let (mut cts, images) = batch(10, 1);
    cts.resize(2000, 0);
    assert!(matches!(
        s.append_segment(c, seg(&s, b"l", &cts, &images), None, &tight),
        Err(ServerError::QuotaExceeded {
            what: "stored bytes",
            ..
        })
    ));
    let keys = KeyUpdate {
        galois_keys: &[0; 20],
        galois_elements: &[3],
    };
    let (cts, images) = batch(20, 1);
    assert!(matches!(
        s.append_segment(c, seg(&s, b"l", &cts, &images), Some(&keys), &tight),
        Err(ServerError::QuotaExceeded { .. })
    ));
    assert_eq!(s.usage(c).unwrap().images, 3, "refused writes left nothing");
}

#[test]
fn payloads_are_capped_and_report_missing_ids() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    append(&mut s, c, 1, 5).unwrap();
    s.delete_images(c, &[3]).unwrap();
    let got = s.payloads(c, &[1, 3, 77, 2, 4, 5], 25).unwrap();
    assert_eq!(
        got.found.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(got.missing, vec![3, 77]);
    // one payload larger than the cap still comes alone
    let got = s.payloads(c, &[4, 5], 1).unwrap();
    assert_eq!(got.found.len(), 1);
}

#[test]
fn a_version_1_database_migrates_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO collections VALUES (1, 'old', x'01', x'02', 4096, x'0a0b', x'0c0d0e', x'ff', 'k', 0);
             INSERT INTO segments VALUES (5, 1, x'aa');
             INSERT INTO ciphertexts VALUES (5, 0, 0, x'0102');
             INSERT INTO images VALUES (42, 1, 5, 0, x'01', x'02', x'0304');
             INSERT INTO images VALUES (43, 1, 5, 1, x'02', x'02', x'0304');
             INSERT INTO tombstones VALUES (43, 7);",
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let c = s.collection("old").unwrap();
    // collections older than vector kinds hold the original demo's pixels
    assert_eq!(c.vectors, PIXELS);
    assert_eq!(
        s.evaluation_keys(c.id).unwrap(),
        EvaluationKeyBlobs {
            relin_key: vec![10, 11],
            galois_keys: vec![12, 13, 14],
            // collections older than the response key have none
            response_key: None,
        }
    );
    let u = s.usage(c.id).unwrap();
    assert_eq!((u.images, u.live, u.key_bytes), (2, 1, 5));
    assert_eq!(u.stored_bytes, 2 + 2 * 4);
    let listed = s.images(c.id).unwrap();
    assert_eq!(
        listed.iter().map(|i| (i.id, i.deleted)).collect::<Vec<_>>(),
        vec![(42, false), (43, true)]
    );
}

#[test]
fn a_collection_records_its_vector_kind_and_a_damaged_record_is_an_error() {
    let mut s = Store::in_memory().unwrap();
    let kind =
        VectorKind::parse("embedding:1280:efficientnet-lite0@0011223344556677:sqrt-l2").unwrap();
    let mut c = new_collection("emb");
    c.vectors = &kind;
    s.create_collection(&c, &Q).unwrap();
    assert_eq!(s.collection("emb").unwrap().vectors, kind);
    // a spec damaged on disk is refused on reading, never guessed
    s.conn
        .execute(
            "UPDATE collections SET vectors = 'embedding:0:x:y' WHERE name = 'emb'",
            [],
        )
        .unwrap();
    assert!(s.collection("emb").is_err());
}

#[test]
fn newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Store::open(&path),
        Err(ServerError::SchemaTooNew { actual: 99, .. })
    ));
}

#[test]
fn segment_ids_are_never_reused() {
    let mut s = Store::in_memory().unwrap();
    let a = collection(&mut s, "a");
    let b = collection(&mut s, "b");
    let first = append(&mut s, a, 1, 2).unwrap();
    let last = append(&mut s, a, 10, 2).unwrap();
    s.delete_images(a, &[10, 11]).unwrap();
    // dropping the highest segment, then appending anywhere: a new id
    assert_eq!(
        s.replace_segment(a, last, &[], None, None, &Q).unwrap(),
        None
    );
    let next = append(&mut s, b, 1, 1).unwrap();
    assert!(next > last, "{next} reuses {last}");
    // a rebuild of the highest segment gets a new id too
    s.delete_images(b, &[1]).unwrap();
    let partial = placed(&[2]);
    let r = s.replace_segment(
        a,
        first,
        &[1, 2],
        Some(rebuilt(&s, b"l", b"x", &partial)),
        None,
        &Q,
    );
    assert!(matches!(r, Err(ServerError::Conflict(_))), "{r:?}");
    assert_eq!(
        s.replace_segment(b, next, &[], None, None, &Q).unwrap(),
        None
    );
    let again = append(&mut s, b, 5, 1).unwrap();
    assert!(again > next);
}

/// A store written before segment files (schema 4: ciphertexts as rows) opens, and a
/// server opening it gives its segment a file holding exactly the gallery operands of its
/// ciphertexts, drops the rows, accounts the file's bytes, and does nothing the second time.
#[test]
fn segments_stored_before_segment_files_get_theirs() {
    use crate::ServerOptions;
    use crate::state::AppState;
    use crate::upgrade::give_segments_files;
    use blindsight_he::{CkksEncoder, Context, Evaluator, SecretKey, Serializable};
    use blindsight_search::he_backend::{gallery_operand, segment_layout};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let ctx = Context::preset("ckks-8192").unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let encoder = CkksEncoder::new(&ctx).unwrap();
    let layout = segment_layout(&ctx, 2, 4).unwrap();
    let cts: Vec<_> = (0..layout.ciphertexts_per_channel())
        .map(|k| {
            let pt = encoder
                .encode(&[0.25 * k as f64, -0.5], 1e9, ctx.max_level())
                .unwrap();
            sk.encrypt(&ctx, &pt).unwrap()
        })
        .collect();
    {
        let conn = Connection::open(&path).unwrap();
        for (i, m) in MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(m).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO collections (id, name, params, fingerprint, dim, token_hash, key_id, created_at, vectors, stored_bytes)
             VALUES (1, 'old', ?1, ?2, 4, x'00', 'k', 0, 'embedding:4:m@1:l2', 10000000)",
            params![ctx.params().to_envelope(), ctx.params().fingerprint().to_vec()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO segments (id, collection_id, layout) VALUES (5, 1, ?1)",
            [layout.to_bytes()],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO collection_keys (collection_id, relin_key, galois_keys) VALUES (1, x'', x'');
             INSERT INTO images (collection_id, id, segment_id, position, tag, meta, payload)
                 VALUES (1, 42, 5, 0, x'01', x'', x''), (1, 43, 5, 1, x'02', x'', x'');",
        )
        .unwrap();
        for (k, ct) in cts.iter().enumerate() {
            conn.execute(
                "INSERT INTO ciphertexts VALUES (5, 0, ?1, ?2)",
                params![k as i64, ct.to_bytes(&ctx).unwrap()],
            )
            .unwrap();
        }
    }
    assert_eq!(
        Store::open(&path)
            .unwrap()
            .segments_without_files()
            .unwrap(),
        vec![(5, 1)]
    );
    // a server opening the store gives the segment its file
    let state = AppState::open(ServerOptions::new(path.clone())).unwrap();
    let s = Store::open(&path).unwrap();
    assert!(s.segments_without_files().unwrap().is_empty());
    assert!(s.segment_ciphertexts(5, 1).unwrap()[0].is_empty());
    let file_bytes = std::fs::metadata(s.segment_path(5)).unwrap().len();
    let blob_bytes: u64 = cts
        .iter()
        .map(|c| c.to_bytes(&ctx).unwrap().len() as u64)
        .sum();
    assert_eq!(
        s.usage(1).unwrap().stored_bytes,
        10_000_000 - blob_bytes + file_bytes
    );
    let ev = Evaluator::new(&ctx);
    let map = std::sync::Arc::new(mapped::map_segment_file(&s.segment_path(5)).unwrap());
    let (_, operands) =
        segment_file::open_segment(&s.segment_path(5), map, &ev, &layout.to_bytes(), 1).unwrap();
    for (op, ct) in operands[0].iter().zip(cts) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        op.append_kernel_bytes(&ctx, &mut a).unwrap();
        gallery_operand(&ev, ct)
            .unwrap()
            .append_kernel_bytes(&ctx, &mut b)
            .unwrap();
        assert!(a == b);
    }
    // a file of the wrong collection's channel count, or another layout, is refused
    let map = std::sync::Arc::new(mapped::map_segment_file(&s.segment_path(5)).unwrap());
    assert!(matches!(
        segment_file::open_segment(&s.segment_path(5), map.clone(), &ev, &layout.to_bytes(), 3),
        Err(ServerError::SegmentFile { .. })
    ));
    let other = segment_layout(&ctx, 3, 4).unwrap().to_bytes();
    assert!(segment_file::open_segment(&s.segment_path(5), map, &ev, &other, 1).is_err());
    // a truncated copy, a damaged header, another parameter set: each a clear error
    let bytes = std::fs::read(s.segment_path(5)).unwrap();
    let open_bytes = |b: Vec<u8>, ev: &Evaluator| {
        let shared: blindsight_he::SharedBytes = std::sync::Arc::new(b);
        segment_file::open_segment(Path::new("copy.seg"), shared, ev, &layout.to_bytes(), 1)
    };
    assert!(open_bytes(bytes.clone(), &ev).is_ok());
    for bad in [
        bytes[..bytes.len() - 1].to_vec(),
        bytes[..100].to_vec(),
        Vec::new(),
        [bytes.clone(), vec![0; 64]].concat(),
    ] {
        let e = open_bytes(bad, &ev).err().unwrap();
        assert!(matches!(e, ServerError::SegmentFile { .. }), "{e}");
        assert!(e.to_string().contains("restore it from a backup"), "{e}");
    }
    let mut damaged = bytes.clone();
    damaged[60] ^= 1;
    assert!(open_bytes(damaged, &ev).is_err());
    let other_ctx = Context::preset("ckks-16384").unwrap();
    assert!(matches!(
        open_bytes(bytes, &Evaluator::new(&other_ctx)),
        Err(ServerError::SegmentFile { .. })
    ));
    assert_eq!(give_segments_files(&state).unwrap(), 0);
    drop((s, state));
    // reopened: the file is the segment's, not an orphan
    let s = Store::open(&path).unwrap();
    assert!(s.segment_path(5).exists());
}

/// Files no row names (a crash between a file's rename and its transaction's commit, or
/// after a compaction's commit and before its file was removed) and stale temporary files
/// go when the store is opened; committed segments' files, fresh temporary files (a write
/// in progress) and files of other names stay.
#[test]
fn orphaned_segment_files_are_collected_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (kept, orphan, stale, fresh, other);
    {
        let mut s = Store::open(&path).unwrap();
        let c = collection(&mut s, "a");
        let id = append(&mut s, c, 1, 2).unwrap();
        kept = s.segment_path(id);
        orphan = s.segment_path(id + 7);
        std::fs::write(&orphan, b"left by a crash").unwrap();
        stale = s.files().dir().join("tmp").join("old.part");
        std::fs::write(&stale, b"x").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        fresh = s.files().dir().join("tmp").join("new.part");
        std::fs::write(&fresh, b"y").unwrap();
        other = s.files().dir().join("README");
        std::fs::write(&other, b"z").unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert!(kept.exists() && fresh.exists() && other.exists());
    assert!(!orphan.exists() && !stale.exists());
    assert_eq!(s.collect_orphans().unwrap(), 0);
}

/// Several segments are replaced by one holding exactly the union of their live images (a
/// merge), in one transaction: the old files go, the new one stays; a stale live set of any
/// of them, a batch missing or adding an image, a segment named twice or another
/// collection's segment refuse the whole replacement and change nothing.
#[test]
fn several_segments_merge_into_one() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    let other = collection(&mut s, "b");
    let s1 = append(&mut s, c, 1, 2).unwrap();
    let s2 = append(&mut s, c, 10, 3).unwrap();
    let s3 = append(&mut s, c, 20, 1).unwrap();
    let foreign = append(&mut s, other, 1, 1).unwrap();
    s.delete_images(c, &[11]).unwrap();
    let olds = vec![(s1, vec![1, 2]), (s2, vec![10, 12]), (s3, vec![20])];
    let before = s.usage(c).unwrap();
    let refused = |s: &mut Store, olds: &[(i64, Vec<i64>)], ids: &[i64]| {
        let places = placed(ids);
        let r = s.replace_segments(
            c,
            olds,
            Some(rebuilt(s, b"m", b"merged", &places)),
            None,
            &Q,
        );
        assert!(r.is_err(), "{olds:?} {ids:?}");
    };
    // one old segment's live set is stale (11 was deleted)
    refused(
        &mut s,
        &[(s1, vec![1, 2]), (s2, vec![10, 11, 12])],
        &[1, 2, 10, 11, 12],
    );
    // the batch misses an image, or holds one more
    refused(&mut s, &olds, &[1, 2, 10, 12]);
    refused(&mut s, &olds, &[1, 2, 10, 11, 12, 20]);
    // a segment twice, none, or another collection's
    refused(&mut s, &[(s1, vec![1, 2]), (s1, vec![1, 2])], &[1, 2]);
    assert!(s.replace_segments(c, &[], None, None, &Q).is_err());
    assert!(matches!(
        s.replace_segments(c, &[(s1, vec![1, 2]), (foreign, vec![1])], None, None, &Q),
        Err(ServerError::Conflict(_))
    ));
    assert_eq!(s.usage(c).unwrap(), before, "refused merges change nothing");
    assert!(s.segment_path(s1).exists() && s.segment_path(s2).exists());

    let order = [20, 1, 2, 10, 12];
    let places = placed(&order);
    let new = s
        .replace_segments(
            c,
            &olds,
            Some(rebuilt(&s, b"m", b"merged", &places)),
            None,
            &Q,
        )
        .unwrap()
        .unwrap();
    let after = s.usage(c).unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!((after.segments, after.live, after.images), (1, 5, 5));
    // what went: three files and layouts, and the deleted image's row (tag, meta, payload)
    let (_, old_images) = batch(10, 3);
    let gone = 3 * (12 + 6) + old_images[1].stored_bytes() as u64;
    assert_eq!(after.stored_bytes, before.stored_bytes - gone + 6 + 1);
    // the images moved, in the rebuilt order, with their rows
    let listed = s.images(c).unwrap();
    assert!(listed.iter().all(|i| i.segment_id == new && !i.deleted));
    let positions: Vec<(i64, usize)> = listed.iter().map(|i| (i.id, i.position)).collect();
    assert_eq!(positions, {
        let mut p = places.clone();
        p.sort_by_key(|&(_, pos)| pos);
        p
    });
    // the deleted image is gone for good, payloads and sources kept
    assert_eq!(
        s.payloads(c, &[11, 12], usize::MAX).unwrap().missing,
        vec![11]
    );
    let sources = s
        .sealed(c, SealedData::Source, &[1, 2, 10, 12, 20], usize::MAX)
        .unwrap();
    assert_eq!(
        sources.missing,
        vec![2],
        "odd positions were ingested without a source"
    );
    assert_eq!(std::fs::read(s.segment_path(new)).unwrap(), b"merged");
    for old in [s1, s2, s3] {
        assert!(!s.segment_path(old).exists(), "segment {old}'s file");
    }
    assert!(s.segment_path(foreign).exists());
}

/// The counters as counted from the rows (what `usage` read before counters were stored).
fn counted(s: &Store, c: i64) -> (u64, u64, u64) {
    s.conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM images WHERE collection_id = ?1),
                    (SELECT COUNT(*) FROM images WHERE collection_id = ?1 AND deleted_at IS NULL),
                    (SELECT COUNT(*) FROM segments WHERE collection_id = ?1)",
            [c],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

#[test]
fn stored_counters_follow_every_write() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    let other = collection(&mut s, "b");
    let check = |s: &Store, c: i64| {
        let u = s.usage(c).unwrap();
        assert_eq!((u.images, u.live, u.segments), counted(s, c));
    };
    let first = append(&mut s, c, 1, 4).unwrap();
    let second = append(&mut s, c, 10, 3).unwrap();
    append(&mut s, other, 100, 2).unwrap();
    check(&s, c);
    assert_eq!(s.delete_images(c, &[1, 2, 11, 999]).unwrap(), 3);
    check(&s, c);
    // a deletion of nothing changes nothing
    assert_eq!(s.delete_images(c, &[1]).unwrap(), 0);
    check(&s, c);
    // two segments merged into one: the deleted images go, the live ones move
    let live = [(first, vec![3, 4]), (second, vec![10, 12])];
    let places = placed(&[3, 4, 10, 12]);
    s.replace_segments(
        c,
        &live,
        Some(rebuilt(&s, b"layout", b"x", &places)),
        None,
        &Q,
    )
    .unwrap();
    check(&s, c);
    let u = s.usage(c).unwrap();
    assert_eq!((u.images, u.live, u.segments), (4, 4, 1));
    check(&s, other);
    // a migration fills the counters of an older database from its rows
    s.conn
        .execute_batch(
            "DROP INDEX images_thumbnail_slot;
             ALTER TABLE images DROP COLUMN thumbnail_slot;
             ALTER TABLE collections DROP COLUMN thumbnail_slots;
             ALTER TABLE collections DROP COLUMN image_count;
             ALTER TABLE collections DROP COLUMN live_count;
             ALTER TABLE collections DROP COLUMN segment_count;
             ALTER TABLE images DROP COLUMN thumbnail;",
        )
        .unwrap();
    s.conn.pragma_update(None, "user_version", 6).unwrap();
    s.migrate().unwrap();
    check(&s, c);
    check(&s, other);
}

#[cfg(unix)]
#[test]
fn the_database_its_segment_folder_and_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let mut s = Store::open(&path).unwrap();
        let c = collection(&mut s, "a");
        append(&mut s, c, 1, 2).unwrap();
        assert_eq!(mode(s.files().dir()), 0o700);
        assert_eq!(mode(&s.files().dir().join("tmp")), 0o700);
        let seg = std::fs::read_dir(s.files().dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        assert_eq!(mode(&seg), 0o600);
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("store.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    // an existing store made readable by others is narrowed again when opened
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let segments = dir.path().join("store.db-segments");
    std::fs::set_permissions(&segments, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&segments), 0o700);
}

#[test]
fn thumbnails_are_given_once_to_live_images_and_counted() {
    let mut s = Store::in_memory().unwrap();
    let c = collection(&mut s, "a");
    let other = collection(&mut s, "b");
    append(&mut s, c, 1, 4).unwrap(); // positions 0 and 3 came with a thumbnail
    append(&mut s, other, 1, 2).unwrap();
    s.delete_images(c, &[3]).unwrap();
    let listed = |s: &Store| -> Vec<(i64, bool)> {
        s.images(c)
            .unwrap()
            .iter()
            .map(|e| (e.id, e.has_thumbnail()))
            .collect()
    };
    assert_eq!(
        listed(&s),
        vec![(1, true), (2, false), (3, false), (4, true)]
    );
    let before = s.usage(c).unwrap();
    // 1 and 4 keep theirs, 3 is deleted, 99 is not an image, only 2 gets one
    let given: Vec<(i64, Vec<u8>)> = [1, 2, 3, 4, 99]
        .iter()
        .map(|&id| (id, vec![5; 8]))
        .collect();
    assert_eq!(s.set_thumbnails(c, &given, &Q).unwrap(), 1);
    let after = s.usage(c).unwrap();
    assert_eq!(after.stored_bytes, before.stored_bytes + 8);
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        listed(&s),
        vec![(1, true), (2, true), (3, false), (4, true)]
    );
    let got = s
        .sealed(c, SealedData::Thumbnail, &[1, 2, 3], usize::MAX)
        .unwrap();
    assert_eq!(got.found, vec![(1, vec![6; 8]), (2, vec![5; 8])]);
    assert_eq!(got.missing, vec![3]);
    // the other collection's image 2 was not touched
    assert!(!s.images(other).unwrap()[1].has_thumbnail());
    // past the quota: refused as a whole (image 11, position 1, has none)
    append(&mut s, c, 10, 2).unwrap();
    let usage = s.usage(c).unwrap();
    let tight = Quota {
        stored_bytes: usage.stored_bytes + 7,
        ..Q
    };
    assert!(matches!(
        s.set_thumbnails(c, &[(11, vec![5; 8])], &tight),
        Err(ServerError::QuotaExceeded { .. })
    ));
    assert_eq!(s.usage(c).unwrap(), usage);
}
