//! Writes are linearizable with searches: appends, deletions and compactions run from
//! several threads against one server while other threads search, and after every
//! acknowledged operation every search that starts later sees exactly its effect: no
//! acknowledged append missing, no acknowledged deletion revived, no image that was never
//! added, and at the end exactly the live set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use blindsight_client::client::Client;
use blindsight_client::keystore::Keystore;
use blindsight_client::remote::Remote;
use blindsight_search::rank::RankRule;
use blindsight_server::{LocalServer, ServerOptions};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the writers know has happened.
#[derive(Clone, Default)]
struct Model {
    /// Images whose append was acknowledged and whose deletion was not requested.
    live: HashSet<i64>,
    /// Images whose deletion was acknowledged.
    deleted: HashSet<i64>,
    /// Images whose deletion was requested (acknowledged or not).
    delete_requested: HashSet<i64>,
}

struct Shared {
    model: Mutex<Model>,
    stop: AtomicBool,
    searches: AtomicUsize,
    compactions: AtomicUsize,
    conflicts: AtomicUsize,
}

fn files(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    // distinct files: byte-identical copies would be skipped as duplicates
    let mut seen = HashSet::new();
    blindsight_testdata::first(range.end)
        .iter()
        .skip(range.start)
        .filter(|e| seen.insert(e.png))
        .map(|e| (e.name.to_string(), e.png.to_vec()))
        .collect()
}

fn client(url: &str, token: &str, ks: &[u8]) -> Client {
    let ks = Keystore::from_bytes(ks, None, "ks").unwrap();
    Client::new(ks, Remote::new(url).unwrap().with_token(token), "c").unwrap()
}

fn live_ids(c: &Client, query: &[u8]) -> HashSet<i64> {
    let (matches, _) = c
        .search(query, "q.png", usize::MAX, RankRule::WholeCosine)
        .unwrap();
    let ids: HashSet<i64> = matches.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), matches.len(), "an image listed twice");
    ids
}

#[test]
fn searches_see_exactly_the_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(ServerOptions::new(dir.path().join("g.db"))).unwrap();
    let ks = Keystore::generate("ckks-8192").unwrap();
    let ks_bytes = ks.to_bytes(None).unwrap();
    let admin = Remote::new(server.url())
        .unwrap()
        .with_token(server.admin_token());
    let token =
        Client::create(&ks, &admin, "c", &blindsight_client::encoder::pixels_kind()).unwrap();
    let url = server.url().to_string();
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::default()),
        stop: AtomicBool::new(false),
        searches: AtomicUsize::new(0),
        compactions: AtomicUsize::new(0),
        conflicts: AtomicUsize::new(0),
    });
    let query = blindsight_testdata::first(1)[0].png.to_vec();
    let mut threads = Vec::new();

    // two writers: appends of small batches, deletions of acknowledged images
    for w in 0..2usize {
        let (url, token, ks, shared) =
            (url.clone(), token.clone(), ks_bytes.clone(), shared.clone());
        threads.push(std::thread::spawn(move || {
            let c = client(&url, &token, &ks);
            let pool = files(200 * w..200 * w + 60);
            let mut next = 0;
            for round in 0..12usize {
                let batch = &pool[next..next + 3];
                next += 3;
                let report = c.ingest(batch, |_| {}).unwrap();
                assert_eq!(report.added, 3);
                {
                    let mut m = shared.model.lock().unwrap();
                    m.live.extend(report.ids.iter().map(|(_, id)| *id));
                }
                {
                    // delete one acknowledged live image (of this writer's, or any)
                    let victim = {
                        let mut m = shared.model.lock().unwrap();
                        let mut live: Vec<i64> = m.live.iter().copied().collect();
                        live.sort_unstable();
                        let v = live[(round * 7 + w) % live.len()];
                        m.delete_requested.insert(v);
                        m.live.remove(&v);
                        v
                    };
                    assert_eq!(c.delete(&[victim]).unwrap(), 1);
                    shared.model.lock().unwrap().deleted.insert(victim);
                }
            }
        }));
    }

    // a compactor racing the deletions: a stale live set must get 409, never a revival
    {
        let (url, token, ks, shared) =
            (url.clone(), token.clone(), ks_bytes.clone(), shared.clone());
        threads.push(std::thread::spawn(move || {
            let c = client(&url, &token, &ks);
            while !shared.stop.load(Ordering::Relaxed) {
                match c.compact() {
                    Ok(r) => {
                        shared.compactions.fetch_add(r.replaced, Ordering::Relaxed);
                        shared.conflicts.fetch_add(r.skipped, Ordering::Relaxed);
                    }
                    Err(e) => panic!("compaction failed: {e}"),
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }));
    }

    // searchers: everything acknowledged before the search started, minus deletions
    // requested before it ended, is there; nothing deleted before it started is
    let seen_ids = Arc::new(Mutex::new(HashSet::new()));
    for _ in 0..2 {
        let (url, token, ks, shared, query, seen_ids) = (
            url.clone(),
            token.clone(),
            ks_bytes.clone(),
            shared.clone(),
            query.clone(),
            seen_ids.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let c = client(&url, &token, &ks);
            while !shared.stop.load(Ordering::Relaxed) {
                let before = shared.model.lock().unwrap().clone();
                let got = live_ids(&c, &query);
                let after = shared.model.lock().unwrap().clone();
                let missing: Vec<&i64> = before
                    .live
                    .iter()
                    .filter(|id| !after.delete_requested.contains(id) && !got.contains(id))
                    .collect();
                assert!(
                    missing.is_empty(),
                    "acknowledged appends missing: {missing:?}"
                );
                let revived: Vec<&i64> = before.deleted.intersection(&got).collect();
                assert!(
                    revived.is_empty(),
                    "acknowledged deletions revived: {revived:?}"
                );
                seen_ids.lock().unwrap().extend(got);
                shared.searches.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // writers first; then let the others run a little longer
    let writers: Vec<_> = threads.drain(..2).collect();
    for t in writers {
        t.join().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    let model = shared.model.lock().unwrap().clone();
    let c = client(&url, &token, &ks_bytes);
    // one more compaction with no one racing it, then the end state is exactly the model
    assert_eq!(c.compact().unwrap().skipped, 0);
    let end = live_ids(&c, &query);
    assert_eq!(end, model.live, "the final live set");
    assert_eq!(model.live.len(), 2 * 12 * 3 - 2 * 12);
    let known: HashSet<i64> = model.live.union(&model.deleted).copied().collect();
    let phantoms: Vec<i64> = seen_ids
        .lock()
        .unwrap()
        .iter()
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    assert!(
        phantoms.is_empty(),
        "ids that were never added: {phantoms:?}"
    );
    // the deleted images' payloads are gone for good
    let deleted: Vec<i64> = model.deleted.iter().copied().collect();
    assert!(c.fetch(&deleted).unwrap().is_empty());
    let searches = shared.searches.load(Ordering::Relaxed);
    assert!(searches >= 4, "only {searches} searches ran");
    let stats: HashMap<&str, usize> = [
        ("searches", searches),
        ("compactions", shared.compactions.load(Ordering::Relaxed)),
        ("conflicts", shared.conflicts.load(Ordering::Relaxed)),
    ]
    .into_iter()
    .collect();
    eprintln!("{stats:?}");
}
