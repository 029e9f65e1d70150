//! What every request shares: the store (one writer; readers opened per request), the token table,
//! the loaded collections, the admission semaphore and the parameter contexts.

use crate::ServerOptions;
use crate::api_error::ApiError;
use crate::auth::AuthTable;
use crate::errors::Result;
use crate::gallery::GalleryCache;
use crate::store::Store;
use crate::store::files::SegmentFiles;
use blindsight_he::{Context, Parameters};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared state of a server.
pub struct AppState {
    /// Settings.
    pub options: ServerOptions,
    /// Bearer tokens of every collection, in memory.
    pub auth: AuthTable,
    /// Loaded collections.
    pub gallery: GalleryCache,
    /// Private retrieval: thumbnail tables and retrieval keys.
    pub pir: crate::pir::PirState,
    /// Admission of heavy work (search, ingest, compaction, payloads), taken once a
    /// request's body has arrived.
    pub heavy: Arc<Semaphore>,
    /// Bodies in flight, in KiB reserved by their declared length.
    pub bodies: Arc<Semaphore>,
    /// Requests of each collection in flight (body and work): one collection's slow or
    /// large requests wait on its own permits, never on another's.
    pub per_collection: CollectionPermits,
    /// The database's identity.
    pub store_id: String,
    /// The segment directory (uploaded segments are staged here before their transaction).
    pub files: SegmentFiles,
    db: PathBuf,
    writer: Mutex<Store>,
    contexts: Mutex<HashMap<Vec<u8>, Context>>,
    write_gates: CollectionLocks,
}

/// One value per collection, made on first use and kept (a collection's lock, its
/// semaphore).
struct ByCollection<T> {
    values: Mutex<HashMap<i64, Arc<T>>>,
}

impl<T> Default for ByCollection<T> {
    fn default() -> Self {
        Self {
            values: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> ByCollection<T> {
    /// The value of `collection`, made by `make` the first time.
    fn get(
        &self,
        collection: i64,
        make: impl FnOnce() -> T,
    ) -> std::result::Result<Arc<T>, ApiError> {
        Ok(self
            .values
            .lock()
            .map_err(|_| ApiError::internal("a per-collection table is poisoned"))?
            .entry(collection)
            .or_insert_with(|| Arc::new(make()))
            .clone())
    }
}

/// One lock per collection, made on first use: work under it runs one at a time per
/// collection and concurrently across collections.
#[derive(Default)]
pub struct CollectionLocks {
    locks: ByCollection<Mutex<()>>,
}

impl CollectionLocks {
    /// Runs `f` holding the lock of `collection`.
    pub fn run<T>(
        &self,
        collection: i64,
        f: impl FnOnce() -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, ApiError> {
        let lock = self.locks.get(collection, || Mutex::new(()))?;
        let _held = lock
            .lock()
            .map_err(|_| ApiError::internal("a collection lock is poisoned"))?;
        f()
    }
}

/// A semaphore per collection, made on first use, each with the same number of permits.
pub struct CollectionPermits {
    permits: usize,
    semaphores: ByCollection<Semaphore>,
}

impl CollectionPermits {
    /// Permits of `permits` each.
    pub fn new(permits: usize) -> Self {
        Self {
            permits: permits.max(1),
            semaphores: ByCollection::default(),
        }
    }

    /// A permit of `collection`, waiting up to `wait` for one; `None` if none came.
    pub async fn acquire(
        &self,
        collection: i64,
        wait: std::time::Duration,
    ) -> std::result::Result<Option<OwnedSemaphorePermit>, ApiError> {
        let semaphore = self
            .semaphores
            .get(collection, || Semaphore::new(self.permits))?;
        Ok(tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()
            .and_then(std::result::Result::ok))
    }
}

impl AppState {
    /// Opens the store (migrating it, and writing the segment files of segments stored
    /// before them) and loads the token table.
    pub fn open(options: ServerOptions) -> Result<Arc<Self>> {
        let writer = Store::open(&options.db)?;
        let auth = AuthTable::load(&writer)?;
        let store_id = writer.store_id()?;
        let state = Arc::new(Self {
            files: SegmentFiles::beside(&options.db)?,
            gallery: GalleryCache::new(options.memory_budget),
            pir: crate::pir::PirState::default(),
            heavy: Arc::new(Semaphore::new(options.limits.max_concurrent.max(1))),
            bodies: Arc::new(Semaphore::new(options.limits.body_budget_kib())),
            per_collection: CollectionPermits::new(options.limits.max_per_collection()),
            auth,
            store_id,
            db: options.db.clone(),
            options,
            writer: Mutex::new(writer),
            contexts: Mutex::new(HashMap::new()),
            write_gates: CollectionLocks::default(),
        });
        super::upgrade::give_segments_files(&state)?;
        Ok(state)
    }

    /// The writer connection (one at a time).
    pub fn writer(&self) -> std::result::Result<MutexGuard<'_, Store>, ApiError> {
        self.writer
            .lock()
            .map_err(|_| ApiError::internal("the store lock is poisoned"))
    }

    /// A read connection of its own (WAL: readers never wait for the writer, and see the
    /// last committed state). Opening one costs tens of microseconds.
    pub fn reader(&self) -> std::result::Result<Store, ApiError> {
        Ok(Store::open_reader(&self.db)?)
    }

    /// The context of a stored collection's parameter set, built once per parameter set
    /// (only parameters that passed collection creation reach this cache).
    pub fn context(&self, params: &[u8]) -> std::result::Result<Context, ApiError> {
        let mut map = self
            .contexts
            .lock()
            .map_err(|_| ApiError::internal("the context cache lock is poisoned"))?;
        if let Some(c) = map.get(params) {
            return Ok(c.clone());
        }
        let ctx = Context::new(&Parameters::from_envelope(params)?)?;
        map.insert(params.to_vec(), ctx.clone());
        Ok(ctx)
    }

    /// Runs `f` holding the collection's write gate: its ingests and compactions run one at
    /// a time (their checks read the collection's keys and must see the previous write).
    pub fn write_gated<T>(
        &self,
        collection: i64,
        f: impl FnOnce() -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, ApiError> {
        self.write_gates.run(collection, f)
    }
}
