//! Private retrieval on the server: each collection's sealed thumbnails laid out as a PIR
//! database, the clients' one-time retrieval keys, and the answers.
//!
//! - **The database** of a collection is its thumbnails by slot (`images.thumbnail_slot`,
//!   given in arrival order, never moved or reused), held in memory in chunks of
//!   [`CHUNK_RECORDS`] records (no copy of the whole table when it grows: at most one chunk
//!   more than its bytes). It is brought up to date before each answer from the collection's
//!   version: thumbnails of new slots are read (an ingest of 1 000 images reads 16 MB),
//!   purged images' slots are emptied (a deleted image's stays until a compaction purges
//!   it); nothing is rebuilt or transformed.
//! - **Keys** are cached in memory, at most [`MAX_KEY_SETS`] sets (the least recently used
//!   leaves first: its client uploads them again on a 409). They are public material; the
//!   secret stays with the client.
//! - **Answers** are computed by `blindsight-pir` over the records as stored.

use crate::errors::ServerError;
use crate::store::Store;
use blindsight_he::{Context, Evaluator};
use blindsight_pir::batch::BatchLayout;
use blindsight_pir::params::PRESET;
use blindsight_pir::wire::KEY_ID_BYTES;
use blindsight_pir::{KeysUpload, PirParams, QueryKeys, Records};
use blindsight_proto::THUMBNAIL_SEALED_BYTES;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Records per chunk of a collection's table (4 MiB of thumbnails).
pub const CHUNK_RECORDS: usize = 256;

/// Most key sets held at once (about 10 MB each in memory).
pub const MAX_KEY_SETS: usize = 16;

/// Thumbnails read from the store per statement while a table catches up.
const LOAD_BATCH: u64 = 4096;

/// The parameters every collection's retrieval uses.
pub fn params() -> PirParams {
    PirParams::new(THUMBNAIL_SEALED_BYTES)
}

/// One collection's thumbnails by slot.
#[derive(Debug, Default)]
pub struct PirTable {
    /// The collection version the table reflects (`None`: never loaded).
    version: Option<i64>,
    capacity: u64,
    chunks: Vec<Box<[u8]>>,
    present: Vec<bool>,
}

impl PirTable {
    /// Brings the table up to the store's state of `collection`.
    pub fn refresh(&mut self, store: &Store, collection: i64) -> Result<(), ServerError> {
        let (capacity, version) = store.thumbnail_capacity(collection)?;
        if self.version == Some(version) {
            return Ok(());
        }
        let mut from = self.capacity.min(capacity);
        while from < capacity {
            let to = (from + LOAD_BATCH).min(capacity);
            for (slot, bytes) in store.thumbnails_by_slot(collection, from, to)? {
                self.store_record(slot, &bytes)?;
            }
            from = to;
        }
        let mut present = vec![false; usize::try_from(capacity).unwrap_or(0)];
        for slot in store.held_thumbnail_slots(collection)? {
            if let Some(p) = usize::try_from(slot).ok().and_then(|s| present.get_mut(s)) {
                *p = true;
            }
        }
        self.present = present;
        self.capacity = capacity;
        self.version = Some(version);
        Ok(())
    }

    fn store_record(&mut self, slot: u64, bytes: &[u8]) -> Result<(), ServerError> {
        if bytes.len() != THUMBNAIL_SEALED_BYTES {
            return Err(ServerError::Internal(format!(
                "a stored thumbnail is {} bytes, not {THUMBNAIL_SEALED_BYTES}",
                bytes.len()
            )));
        }
        let slot = usize::try_from(slot)
            .map_err(|_| ServerError::Internal("a thumbnail slot beyond memory".into()))?;
        let (chunk, at) = (slot / CHUNK_RECORDS, slot % CHUNK_RECORDS);
        while self.chunks.len() <= chunk {
            self.chunks
                .push(vec![0u8; CHUNK_RECORDS * THUMBNAIL_SEALED_BYTES].into_boxed_slice());
        }
        let start = at * THUMBNAIL_SEALED_BYTES;
        self.chunks[chunk][start..start + THUMBNAIL_SEALED_BYTES].copy_from_slice(bytes);
        Ok(())
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_RECORDS * THUMBNAIL_SEALED_BYTES + self.present.len()
    }
}

impl Records for PirTable {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn record(&self, slot: u64) -> Option<&[u8]> {
        let slot = usize::try_from(slot).ok()?;
        if !*self.present.get(slot)? {
            return None;
        }
        let start = (slot % CHUNK_RECORDS) * THUMBNAIL_SEALED_BYTES;
        self.chunks
            .get(slot / CHUNK_RECORDS)?
            .get(start..start + THUMBNAIL_SEALED_BYTES)
    }
}

/// A client's uploaded keys and the layout they come with.
pub struct KeySet {
    /// The substitution and relinearization keys.
    pub keys: QueryKeys,
    /// The batch layout of the client's seed.
    pub layout: BatchLayout,
}

struct CachedKeys {
    collection: i64,
    key_id: [u8; KEY_ID_BYTES],
    set: Arc<KeySet>,
}

/// The server's private-retrieval state: the context, each collection's table, the keys.
#[derive(Default)]
pub struct PirState {
    ctx: OnceLock<Context>,
    tables: Mutex<HashMap<i64, Arc<RwLock<PirTable>>>>,
    keys: Mutex<VecDeque<CachedKeys>>,
}

fn poisoned() -> ServerError {
    ServerError::Internal("a private-retrieval lock is poisoned".into())
}

impl PirState {
    /// The `pir-4096` context (built once).
    pub fn context(&self) -> Result<&Context, ServerError> {
        if let Some(ctx) = self.ctx.get() {
            return Ok(ctx);
        }
        let ctx = Context::preset(PRESET)?;
        Ok(self.ctx.get_or_init(|| ctx))
    }

    /// Reads and keeps a keys upload for `collection`.
    pub fn store_keys(&self, collection: i64, bytes: &[u8]) -> Result<(), ServerError> {
        let ctx = self.context()?;
        let upload = KeysUpload::from_bytes(ctx, bytes).map_err(malformed)?;
        let layout = params().layout(upload.layout_seed).map_err(malformed)?;
        let mut keys = self.keys.lock().map_err(|_| poisoned())?;
        keys.retain(|k| !(k.collection == collection && k.key_id == upload.key_id));
        if keys.len() >= MAX_KEY_SETS {
            keys.pop_front();
        }
        keys.push_back(CachedKeys {
            collection,
            key_id: upload.key_id,
            set: Arc::new(KeySet {
                keys: upload.keys,
                layout,
            }),
        });
        Ok(())
    }

    /// The keys `key_id` of `collection` (marked recently used), if held.
    fn keys(
        &self,
        collection: i64,
        key_id: &[u8; KEY_ID_BYTES],
    ) -> Result<Arc<KeySet>, ServerError> {
        let mut keys = self.keys.lock().map_err(|_| poisoned())?;
        let at = keys
            .iter()
            .position(|k| k.collection == collection && &k.key_id == key_id)
            .ok_or_else(|| {
                ServerError::Conflict(
                    "the server does not hold these retrieval keys (it restarted or dropped \
                     them); upload them again"
                        .into(),
                )
            })?;
        let entry = keys.remove(at).ok_or_else(poisoned)?;
        let set = entry.set.clone();
        keys.push_back(entry);
        Ok(set)
    }

    fn table(&self, collection: i64) -> Result<Arc<RwLock<PirTable>>, ServerError> {
        let mut tables = self.tables.lock().map_err(|_| poisoned())?;
        Ok(tables.entry(collection).or_default().clone())
    }

    /// Answers a retrieval request (key id and query) over `collection`'s thumbnails as
    /// `store` holds them now.
    pub fn answer(
        &self,
        store: &Store,
        collection: i64,
        request: &[u8],
    ) -> Result<Vec<u8>, ServerError> {
        let ctx = self.context()?;
        let (key_id, query) =
            blindsight_pir::wire::decode_request(ctx, request).map_err(malformed)?;
        let set = self.keys(collection, &key_id)?;
        let table = self.table(collection)?;
        let started = std::time::Instant::now();
        let (before, after) = {
            let mut t = table.write().map_err(|_| poisoned())?;
            let before = t.capacity;
            t.refresh(store, collection)?;
            (before, t.capacity)
        };
        tracing::info!(
            collection,
            slots = after,
            new_slots = after.saturating_sub(before),
            ms = started.elapsed().as_millis() as u64,
            "retrieval table brought up to date"
        );
        let table = table.read().map_err(|_| poisoned())?;
        let ev = Evaluator::new(ctx);
        let response =
            blindsight_pir::answer(&ev, &set.keys, &params(), &set.layout, &*table, &query)
                .map_err(malformed)?;
        response.to_bytes(ctx).map_err(malformed)
    }
}

/// A retrieval input the protocol refused: the client's fault (400).
fn malformed(e: blindsight_pir::PirError) -> ServerError {
    ServerError::Malformed(format!("private retrieval: {e}"))
}
