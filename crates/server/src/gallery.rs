//! Collections loaded for search, always at one version.
//!
//! A search reads its collection in one read transaction ([`crate::store::Store::snapshot`]):
//! the version, every segment with exactly its live images, and whatever keys and
//! ciphertexts it must load. Segments never change once written (a compaction writes a new
//! one), so their prepared operands are cached by segment id and shared by every version
//! that holds them; evaluators are cached by (collection, keys version). A search therefore
//! always sees every write acknowledged before it started, and never a deleted image.
//!
//! Memory: a segment's operands are read in place from its mapped segment file
//! (`crate::store::segment_file`): the page cache holds them, not the heap, so a gallery
//! larger than memory costs disk or page-cache bandwidth and the server's anonymous memory
//! stays bounded. The cache holds at most `budget` bytes of evaluation keys and of the
//! operands' handles (least recently used first out); what does not fit is used by the
//! search that loaded it and dropped. Loads are single-flight: one load per collection at a
//! time, so concurrent first searches do not map the same segments twice. A segment
//! compacted away between the snapshot and the opening of its file (removed once its
//! transaction committed) makes the load start again from a new snapshot.

use crate::api_error::ApiError;
use crate::errors::ServerError;
use crate::state::{AppState, CollectionLocks};
use crate::store::CollectionRecord;
use crate::store::mapped::map_segment_file;
use crate::store::segment_file::open_segment;
use blindsight_he::{
    Context, Evaluator, GaloisKeys, ProductOperand, RelinKey, RingSwitchKey, Serializable,
};
use blindsight_search::engine::PreparedSegment;
use blindsight_search::he_backend::HeEvaluator;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One segment of a loaded collection.
pub struct LoadedSegment {
    /// Segment row id.
    pub id: i64,
    /// Its live images at the gallery's version: (position, image id).
    pub live: Vec<(usize, i64)>,
    /// Its operands.
    pub prepared: Arc<PreparedSegment<HeEvaluator>>,
}

/// A collection at one version, ready to score queries.
pub struct Gallery {
    /// The version it was read at.
    pub version: i64,
    /// The parameter context.
    pub ctx: Context,
    /// The evaluator with the collection's keys.
    pub ev: Arc<HeEvaluator>,
    /// Every segment of that version.
    pub segments: Vec<LoadedSegment>,
}

struct Cached<T> {
    value: Arc<T>,
    bytes: usize,
    used_at: u64,
    /// What the entry was loaded for (collection and serialized layout): a hit must match.
    origin: (i64, Vec<u8>),
}

impl<T> Cached<T> {
    /// Whether the entry may go: not used since `since`, and held by no running search
    /// (evicting an entry a search still holds would not free its memory).
    fn evictable(&self, since: u64) -> bool {
        self.used_at < since && Arc::strong_count(&self.value) == 1
    }
}

#[derive(Default)]
struct Inner {
    tick: u64,
    used: usize,
    segments: HashMap<i64, Cached<PreparedSegment<HeEvaluator>>>,
    evaluators: HashMap<(i64, i64), Cached<HeEvaluator>>,
}

/// Which cache an entry is in.
#[derive(Clone, Copy)]
enum Slot {
    Segment(i64),
    Evaluator((i64, i64)),
}

impl Inner {
    /// Room for one more mapped segment when the cache holds `max_mappings`: evicts the
    /// least recently used segment not used since `since`. False (nothing evicted) if none
    /// may go.
    fn make_mapping_room(&mut self, max_mappings: usize, since: u64) -> bool {
        self.segments.len() < max_mappings
            || (self.evict_oldest(since, false) && self.segments.len() < max_mappings)
    }

    /// Evicts the least recently used entry not used since `since` (a segment, or also an
    /// evaluator with `evaluators`); false if none may go.
    fn evict_oldest(&mut self, since: u64, evaluators: bool) -> bool {
        let oldest = self
            .segments
            .iter()
            .filter(|(_, c)| c.evictable(since))
            .map(|(k, c)| (c.used_at, Slot::Segment(*k)))
            .chain(
                self.evaluators
                    .iter()
                    .filter(|(_, c)| evaluators && c.evictable(since))
                    .map(|(k, c)| (c.used_at, Slot::Evaluator(*k))),
            )
            .min_by_key(|(at, _)| *at);
        let freed = match oldest {
            Some((_, Slot::Segment(k))) => self.segments.remove(&k).map(|c| c.bytes),
            Some((_, Slot::Evaluator(k))) => self.evaluators.remove(&k).map(|c| c.bytes),
            None => None,
        };
        match freed {
            Some(b) => {
                self.used = self.used.saturating_sub(b);
                true
            }
            None => false,
        }
    }

    /// Evicts entries not used since `since`, least recently used first, until `bytes` more
    /// fit in `budget`. False (nothing evicted) if they cannot.
    fn make_room(&mut self, bytes: usize, budget: usize, since: u64) -> bool {
        if bytes > budget {
            return false;
        }
        let evictable: usize = self
            .segments
            .values()
            .filter(|c| c.evictable(since))
            .map(|c| c.bytes)
            .chain(
                self.evaluators
                    .values()
                    .filter(|c| c.evictable(since))
                    .map(|c| c.bytes),
            )
            .sum();
        if self.used.saturating_sub(evictable).saturating_add(bytes) > budget {
            return false;
        }
        while self.used.saturating_add(bytes) > budget {
            if !self.evict_oldest(since, true) {
                return false;
            }
        }
        true
    }
}

/// What one cached segment costs beside its operand handles: its mapping (a kernel memory
/// area, its page tables) and the prepared segment around it. Measured: a server holding
/// 901 one-image segments grew by about 130 KiB per segment.
pub const MAPPING_BYTES: usize = 128 << 10;

/// Most mapped segments the cache keeps at once. A process may hold 65 530 mappings
/// (`vm.max_map_count`), which its allocator and threads also need; segments a search maps
/// beyond the cache are unmapped when it ends (at most `max_concurrent` searches ×
/// the segment quota).
pub const MAX_CACHED_MAPPINGS: usize = 8192;

/// The loaded collections of a server, under one memory budget.
pub struct GalleryCache {
    budget: usize,
    max_mappings: usize,
    inner: Mutex<Inner>,
    /// One load per collection at a time (single flight).
    loads: CollectionLocks,
}

impl GalleryCache {
    /// An empty cache that may hold `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self::with_mappings(budget, MAX_CACHED_MAPPINGS)
    }

    /// An empty cache that may hold `budget` bytes and `max_mappings` mapped segments.
    pub fn with_mappings(budget: usize, max_mappings: usize) -> Self {
        Self {
            budget,
            max_mappings,
            inner: Mutex::new(Inner::default()),
            loads: CollectionLocks::default(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, ApiError> {
        self.inner
            .lock()
            .map_err(|_| ApiError::internal("the gallery cache lock is poisoned"))
    }

    /// Bytes the cache holds now.
    pub fn used(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.used)
    }

    /// Forgets a segment that no longer exists (after a compaction).
    pub fn forget_segment(&self, id: i64) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(c) = inner.segments.remove(&id)
        {
            inner.used = inner.used.saturating_sub(c.bytes);
        }
    }

    /// The collection at its current version.
    pub fn load(
        &self,
        state: &AppState,
        record: &CollectionRecord,
    ) -> Result<Arc<Gallery>, ApiError> {
        self.loads.run(record.id, || {
            // a segment removed by a compaction after the snapshot was read: read again
            for _ in 0..LOAD_ATTEMPTS - 1 {
                match self.load_now(state, record) {
                    Err(e) if e.is_conflict() => continue,
                    other => return other,
                }
            }
            self.load_now(state, record)
        })
    }

    /// [`GalleryCache::load`], under the collection's load lock.
    fn load_now(
        &self,
        state: &AppState,
        record: &CollectionRecord,
    ) -> Result<Arc<Gallery>, ApiError> {
        let ctx = state.context(&record.params)?;
        let started = Instant::now();
        let since = {
            let mut inner = self.lock()?;
            inner.tick += 1;
            inner.tick
        };
        let mut reader = state.reader()?;
        let mut prepared_now = 0usize;
        let gallery = reader.snapshot(record.id, |snap, r| {
            let ev = self.evaluator(&ctx, record.id, snap.keys_version, since, || {
                r.evaluation_keys(record.id)
            })?;
            let mut segments = Vec::with_capacity(snap.segments.len());
            // segment files need no evaluation key to open
            let plain = Evaluator::new(&ctx);
            for view in &snap.segments {
                let origin = (record.id, view.layout.clone());
                let cached = {
                    let mut inner = self.lock()?;
                    inner
                        .segments
                        .get_mut(&view.id)
                        .filter(|c| c.origin == origin)
                        .map(|c| {
                            c.used_at = since;
                            c.value.clone()
                        })
                };
                let prepared = match cached {
                    Some(p) => p,
                    None => {
                        prepared_now += 1;
                        let path = r.segment_path(view.id);
                        let map = map_segment_file(&path).map_err(|e| match e {
                            ServerError::Io { source, .. }
                                if source.kind() == std::io::ErrorKind::NotFound =>
                            {
                                ServerError::Conflict(format!(
                                    "segment {} was compacted away while the collection \
                                     loaded; search again",
                                    view.id
                                ))
                            }
                            e => e,
                        })?;
                        let channels = record.vectors.channels();
                        let (layout, operands) =
                            open_segment(&path, Arc::new(map), &plain, &view.layout, channels)?;
                        let handles = layout.ciphertexts_per_channel() * channels;
                        let bytes = handles * size_of::<ProductOperand>() + MAPPING_BYTES;
                        let p = Arc::new(PreparedSegment::from_operands(layout, operands)?);
                        let mut inner = self.lock()?;
                        if inner.make_mapping_room(self.max_mappings, since)
                            && inner.make_room(bytes, self.budget, since)
                        {
                            inner.used = inner.used.saturating_add(bytes);
                            let old = inner.segments.insert(
                                view.id,
                                Cached {
                                    value: p.clone(),
                                    bytes,
                                    used_at: since,
                                    origin,
                                },
                            );
                            if let Some(old) = old {
                                inner.used = inner.used.saturating_sub(old.bytes);
                            }
                        }
                        p
                    }
                };
                segments.push(LoadedSegment {
                    id: view.id,
                    live: view.live.clone(),
                    prepared,
                });
            }
            Ok(Arc::new(Gallery {
                version: snap.version,
                ctx: ctx.clone(),
                ev,
                segments,
            }))
        })?;
        if prepared_now > 0 {
            tracing::info!(collection = %record.name, version = gallery.version, segments = gallery.segments.len(), prepared = prepared_now, cache_bytes = self.used(), ms = started.elapsed().as_millis() as u64, "collection loaded");
        }
        Ok(gallery)
    }

    fn evaluator(
        &self,
        ctx: &Context,
        collection: i64,
        keys_version: i64,
        since: u64,
        read: impl FnOnce() -> crate::Result<crate::store::EvaluationKeyBlobs>,
    ) -> crate::Result<Arc<HeEvaluator>> {
        let key = (collection, keys_version);
        if let Some(c) = self.lock()?.evaluators.get_mut(&key) {
            c.used_at = since;
            return Ok(c.value.clone());
        }
        let keys = read()?;
        // deserialized keys take about twice their bit-packed size
        let response_len = keys.response_key.as_ref().map_or(0, Vec::len);
        let bytes = 2 * (keys.relin_key.len() + keys.galois_keys.len() + response_len);
        let response = keys
            .response_key
            .as_deref()
            .map(|b| RingSwitchKey::from_bytes(ctx, b))
            .transpose()?;
        let ev = Arc::new(HeEvaluator::new(
            ctx,
            RelinKey::from_bytes(ctx, &keys.relin_key)?,
            GaloisKeys::from_bytes(ctx, &keys.galois_keys)?,
            response,
        ));
        let mut inner = self.lock()?;
        if inner.make_room(bytes, self.budget, since) {
            inner.used = inner.used.saturating_add(bytes);
            inner.evaluators.insert(
                key,
                Cached {
                    value: ev.clone(),
                    bytes,
                    used_at: since,
                    origin: (collection, Vec::new()),
                },
            );
        }
        Ok(ev)
    }
}

/// Loads of a collection tried before a missing segment file is an error.
const LOAD_ATTEMPTS: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-operand segment (a real operand: the cache never looks inside).
    fn segment() -> Arc<PreparedSegment<HeEvaluator>> {
        let ctx = Context::preset("ckks-8192").unwrap_or_else(|e| panic!("{e}"));
        let sk = blindsight_he::SecretKey::generate(&ctx).unwrap_or_else(|e| panic!("{e}"));
        let pt = blindsight_he::CkksEncoder::new(&ctx)
            .and_then(|e| e.encode(&[0.5], 1e6, ctx.max_level()))
            .unwrap_or_else(|e| panic!("{e}"));
        let ct = sk.encrypt(&ctx, &pt).unwrap_or_else(|e| panic!("{e}"));
        let op = blindsight_search::he_backend::gallery_operand(&Evaluator::new(&ctx), ct)
            .unwrap_or_else(|e| panic!("{e}"));
        let layout = blindsight_search::Layout::new(
            1,
            4,
            4,
            blindsight_search::slots::SlotShape {
                rows: 1,
                row_len: 8,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(
            PreparedSegment::from_operands(layout, vec![vec![op]])
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn entry(inner: &mut Inner, id: i64, bytes: usize, used_at: u64) {
        inner.used += bytes;
        inner.segments.insert(
            id,
            Cached {
                value: segment(),
                bytes,
                used_at,
                origin: (0, Vec::new()),
            },
        );
    }

    #[test]
    #[allow(clippy::panic, reason = "test")]
    fn room_is_made_least_recently_used_first_and_never_from_the_current_load() {
        let mut inner = Inner::default();
        entry(&mut inner, 1, 40, 1);
        entry(&mut inner, 2, 40, 3);
        entry(&mut inner, 3, 40, 2);
        // 30 more in a budget of 130: the oldest (1) goes
        assert!(inner.make_room(30, 130, 5));
        assert!(!inner.segments.contains_key(&1));
        assert_eq!(inner.used, 80);
        // entries used by the current load (at or after `since`) are never evicted
        assert!(!inner.make_room(100, 130, 2));
        assert_eq!(inner.used, 80, "a refusal evicts nothing");
        // an entry a running search still holds is not evicted (it would not free memory)
        let held = inner.segments.get(&3).map(|c| c.value.clone());
        assert!(!inner.make_room(91, 130, 10), "only entry 2 (40) is free");
        drop(held);
        // something larger than the whole budget is never cached
        assert!(!inner.make_room(131, 130, 10));
        assert!(inner.make_room(130, 130, 10));
        assert_eq!(inner.used, 0);
    }

    #[test]
    fn mapped_segments_are_capped_in_number_whatever_their_bytes() {
        let mut inner = Inner::default();
        entry(&mut inner, 1, 1, 1);
        entry(&mut inner, 2, 1, 3);
        entry(&mut inner, 3, 1, 2);
        // a cap of 3 mappings: the least recently used (1) makes room for a fourth
        assert!(inner.make_mapping_room(3, 5));
        assert!(!inner.segments.contains_key(&1));
        assert_eq!((inner.segments.len(), inner.used), (2, 2));
        entry(&mut inner, 4, 1, 5);
        // segments the current load uses are never evicted: no room, nothing evicted
        assert!(!inner.make_mapping_room(3, 2));
        assert_eq!(inner.segments.len(), 3);
        assert!(inner.make_mapping_room(4, 2), "under the cap there is room");
    }
}
