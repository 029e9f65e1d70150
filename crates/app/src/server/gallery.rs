//! Collections loaded for search, always at one version.
//!
//! A search reads its collection in one read transaction ([`crate::store::Store::snapshot`]):
//! the version, every segment with exactly its live images, and whatever keys and
//! ciphertexts it must load. Segments never change once written (a compaction writes a new
//! one), so their prepared operands are cached by segment id and shared by every version
//! that holds them; evaluators are cached by (collection, keys version). A search therefore
//! always sees every write acknowledged before it started, and never a deleted image.
//!
//! Memory: the cache holds at most `budget` bytes of prepared operands and evaluation keys
//! (least recently used first out). A segment that does not fit without evicting what the
//! current search itself uses is not cached: the search streams it from its serialized
//! ciphertexts. Loads are single-flight: one load per collection at a time, so concurrent
//! first searches do not prepare the same segments twice.

use super::errors::ApiError;
use super::state::{AppState, CollectionLocks};
use crate::store::CollectionRecord;
use blindsight_he::{Ciphertext, Context, GaloisKeys, RelinKey, RingSwitchKey, Serializable};
use blindsight_search::Layout;
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
            let oldest = self
                .segments
                .iter()
                .filter(|(_, c)| c.evictable(since))
                .map(|(k, c)| (c.used_at, Slot::Segment(*k)))
                .chain(
                    self.evaluators
                        .iter()
                        .filter(|(_, c)| c.evictable(since))
                        .map(|(k, c)| (c.used_at, Slot::Evaluator(*k))),
                )
                .min_by_key(|(at, _)| *at);
            let freed = match oldest {
                Some((_, Slot::Segment(k))) => self.segments.remove(&k).map(|c| c.bytes),
                Some((_, Slot::Evaluator(k))) => self.evaluators.remove(&k).map(|c| c.bytes),
                None => None,
            };
            match freed {
                Some(b) => self.used = self.used.saturating_sub(b),
                None => return false,
            }
        }
        true
    }
}

/// The loaded collections of a server, under one memory budget.
pub struct GalleryCache {
    budget: usize,
    inner: Mutex<Inner>,
    /// One load per collection at a time (single flight).
    loads: CollectionLocks,
}

impl GalleryCache {
    /// An empty cache that may hold `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
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
        self.loads.run(record.id, || self.load_now(state, record))
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
            for view in &snap.segments {
                let layout = Layout::from_bytes(&view.layout)?;
                let origin = (record.id, view.layout.clone());
                let cached = {
                    let mut inner = self.lock().map_err(to_app)?;
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
                        let channels = record.vectors.channels();
                        let blobs = r.segment_ciphertexts(view.id, channels)?;
                        let bytes = channels
                            * layout.ciphertexts_per_channel()
                            * ctx.product_operand_bytes(ctx.max_level());
                        let room =
                            self.lock()
                                .map_err(to_app)?
                                .make_room(bytes, self.budget, since);
                        if room {
                            let p =
                                Arc::new(PreparedSegment::load(&*ev, layout, channels, |c, k| {
                                    stored_ciphertext(&ctx, &layout, &blobs, c, k)
                                })?);
                            let mut inner = self.lock().map_err(to_app)?;
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
                            p
                        } else {
                            let ctx = ctx.clone();
                            Arc::new(PreparedSegment::streamed(
                                layout,
                                channels,
                                Box::new(move |c, k| {
                                    stored_ciphertext(&ctx, &layout, &blobs, c, k)
                                }),
                            )?)
                        }
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
        if let Some(c) = self.lock().map_err(to_app)?.evaluators.get_mut(&key) {
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
        let mut inner = self.lock().map_err(to_app)?;
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

fn to_app(e: ApiError) -> crate::errors::AppError {
    crate::errors::AppError::Internal(format!("{e:?}"))
}

/// Ciphertext `k` of channel `c` of a stored segment.
fn stored_ciphertext(
    ctx: &Context,
    layout: &Layout,
    blobs: &[Vec<Vec<u8>>],
    c: usize,
    k: usize,
) -> blindsight_search::Result<Ciphertext> {
    let b = blobs.get(c).and_then(|ch| ch.get(k)).ok_or(
        blindsight_search::SearchError::CiphertextCount {
            what: "stored ciphertexts",
            expected: layout.ciphertexts_per_channel(),
            actual: blobs.get(c).map_or(0, Vec::len),
        },
    )?;
    Ok(Ciphertext::from_bytes(ctx, b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(inner: &mut Inner, id: i64, bytes: usize, used_at: u64) {
        inner.used += bytes;
        inner.segments.insert(
            id,
            Cached {
                value: Arc::new(
                    PreparedSegment::streamed(
                        Layout::new(
                            1,
                            4,
                            4,
                            blindsight_search::slots::SlotShape {
                                rows: 1,
                                row_len: 8,
                            },
                        )
                        .unwrap_or_else(|e| panic!("{e}")),
                        1,
                        Box::new(|_, _| {
                            Err(blindsight_search::SearchError::Layout {
                                reason: "test".into(),
                            })
                        }),
                    )
                    .unwrap_or_else(|e| panic!("{e}")),
                ),
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
}
