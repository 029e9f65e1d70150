//! The whole search path, client and server in one process, with every message serialized
//! as it would cross the network: key generation, gallery encryption, server load, query
//! encryption, scoring, decryption and ranking, each timed.

use crate::errors::{AppError, Result};
use crate::synthetic::SyntheticVectors;
use blindsight_client::channel_ciphertexts;
use blindsight_client::client::{fresh_ciphertext_bytes, merged_segment_cap};
use blindsight_he::{Ciphertext, Context, ResponseSecretKey, Scheme, SecretKey, Serializable};
use blindsight_proto::AppendSegment;
use blindsight_search::Layout;
use blindsight_search::VectorKind;
use blindsight_search::backend::SlotCipher;
use blindsight_search::client::{decrypt_response, encrypt_query, encrypt_segment_with};
use blindsight_search::encoding::VectorEncoding;
use blindsight_search::he_backend::{
    BfvCipher, CkksCipher, evaluation_keys, response_secret, segment_layout,
};
use blindsight_search::rank::{
    ChannelDots, EncodedImage, ImageNorms, Similarity, channel_values, reference_dots,
    similarities_from_norms,
};
use blindsight_search::response::Response;
use blindsight_search::vectors::ImageVector;
use blindsight_server::ServerOptions;
use blindsight_server::engine;
use blindsight_server::gallery::Gallery;
use blindsight_server::state::AppState;
use blindsight_server::store::{ImageRecord, NewCollection, Quota};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// The vectors of a gallery (or of one query), of either kind. The session keeps the
/// gallery's to compute the f64 reference of every query, image by image.
#[derive(Clone, Debug)]
pub enum Vectors {
    /// 8-bit R, G, B channels of `side × side` images (an eighth of the encoded size).
    Pixels(Vec<[Vec<u8>; 3]>),
    /// Unit-norm feature vectors, one channel (the embedding kind).
    Features(Vec<Vec<f64>>),
    /// Random unit vectors generated on demand, one channel (the embedding kind).
    Synthetic(SyntheticVectors),
}

impl Vectors {
    /// The pixel vectors of images.
    pub fn of_images(images: &[ImageVector]) -> Self {
        Self::Pixels(images.iter().map(|g| g.channels.clone()).collect())
    }

    /// How many vectors.
    pub fn len(&self) -> usize {
        match self {
            Self::Pixels(v) => v.len(),
            Self::Features(v) => v.len(),
            Self::Synthetic(s) => s.count,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of one channel (0 when empty).
    pub fn dim(&self) -> usize {
        match self {
            Self::Pixels(v) => v.first().map_or(0, |p| p[0].len()),
            Self::Features(v) => v.first().map_or(0, Vec::len),
            Self::Synthetic(s) => s.dim,
        }
    }

    /// Channels per vector.
    pub fn channels(&self) -> usize {
        match self {
            Self::Pixels(_) => 3,
            Self::Features(_) | Self::Synthetic(_) => 1,
        }
    }

    /// The kind of collection that holds these vectors (pixels of square images, or an
    /// embedding of their dimension).
    fn kind(&self) -> VectorKind {
        match self {
            Self::Pixels(_) => VectorKind::Pixels {
                side: self.dim().isqrt() as u32,
            },
            Self::Features(_) | Self::Synthetic(_) => VectorKind::Embedding {
                dim: self.dim(),
                model: "synthetic".into(),
                normalization: "l2".into(),
            },
        }
    }

    /// The encoding of these vectors under `ctx`'s scheme (as a collection of their kind
    /// would encode them).
    fn encoding(&self, ctx: &Context) -> VectorEncoding {
        blindsight_client::encoder::encoding_of(ctx, !matches!(self, Self::Pixels(_)), self.dim())
    }

    /// Vector `i`, encoded (`None` past the end).
    fn encode(&self, encoding: &VectorEncoding, i: usize) -> Option<EncodedImage> {
        match self {
            Self::Pixels(v) => v.get(i).map(|p| EncodedImage::new(encoding, p)),
            Self::Features(v) => v.get(i).map(|f| EncodedImage::from_features(encoding, f)),
            Self::Synthetic(s) => {
                (i < s.count).then(|| EncodedImage::from_features(encoding, &s.vector(i)))
            }
        }
    }

    /// Checks that every vector has the same dimension (and 3 equal channels for pixels).
    fn check_uniform(&self) -> Result<()> {
        let d = self.dim();
        let uniform = match self {
            Self::Pixels(v) => v.iter().all(|p| p.iter().all(|c| c.len() == d)),
            Self::Features(v) => v.iter().all(|f| f.len() == d),
            Self::Synthetic(_) => true,
        };
        let square = !matches!(self, Self::Pixels(_)) || d.isqrt() * d.isqrt() == d;
        if d == 0 || !uniform || !square {
            return Err(AppError::Usage(
                "gallery vectors must all have the same, non-zero dimension (pixels: that of \
                 a square image)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What building a gallery measured.
#[derive(Clone, Debug)]
pub struct SetupReport {
    /// Parameter preset.
    pub preset: String,
    /// Gallery size.
    pub n: usize,
    /// Values per channel.
    pub d: usize,
    /// Layouts of the segments.
    pub layouts: Vec<Layout>,
    /// Secret, relinearization and Galois key generation (s).
    pub keygen_s: f64,
    /// Client: gallery encoding, encryption and serialization (s).
    pub encrypt_s: f64,
    /// Server: every uploaded segment checked, converted to its segment file and committed
    /// with its rows (s).
    pub store_s: f64,
    /// Server: opening the store afresh and loading the collection (keys deserialized,
    /// segment files mapped and their headers checked) (s).
    pub load_s: f64,
    /// Whether the page cache was dropped before the load (a cold open reads the disk).
    pub cold: bool,
    /// Serialized gallery ciphertexts, as uploaded (bytes).
    pub gallery_bytes: usize,
    /// The segment files on disk (bytes).
    pub disk_bytes: u64,
    /// Serialized evaluation keys (bytes).
    pub eval_key_bytes: usize,
}

impl SetupReport {
    /// Vectors ingested per second, client and server (encryption, upload form, segment
    /// files and transactions).
    pub fn ingest_per_s(&self) -> f64 {
        self.n as f64 / (self.encrypt_s + self.store_s).max(f64::MIN_POSITIVE)
    }
}

/// What one query measured and found.
#[derive(Clone, Debug)]
pub struct QueryReport {
    /// Client: query encryption and serialization (s).
    pub query_encrypt_s: f64,
    /// Server: scoring, from query bytes to response bytes (s).
    pub score_s: f64,
    /// Client: response decryption and ranking (s).
    pub decrypt_s: f64,
    /// Serialized query (bytes).
    pub query_bytes: usize,
    /// Serialized response (bytes).
    pub response_bytes: usize,
    /// Similarities from the decrypted scores.
    pub similarities: Vec<Similarity>,
    /// Similarities from the f64 reference engine (empty if not asked for).
    pub reference: Vec<Similarity>,
}

impl QueryReport {
    /// End-to-end query time: encryption, scoring, decryption.
    pub fn query_s(&self) -> f64 {
        self.query_encrypt_s + self.score_s + self.decrypt_s
    }

    /// Largest difference between a decrypted and a reference cosine (channels and whole).
    pub fn max_abs_err(&self) -> f64 {
        self.similarities
            .iter()
            .zip(&self.reference)
            .flat_map(|(a, b)| {
                a.channel_cosines
                    .iter()
                    .zip(&b.channel_cosines)
                    .map(|(x, y)| (x - y).abs())
                    .chain([(a.whole_cosine - b.whole_cosine).abs()])
            })
            .fold(0.0, f64::max)
    }
}

/// Where a session keeps its store: a directory it made and removes when dropped, or one
/// the caller named and keeps.
pub struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    /// `dir` (created; it must not exist or be empty), or a fresh temporary directory.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        match dir {
            Some(d) => {
                let empty = std::fs::read_dir(d).map_or(true, |mut e| e.next().is_none());
                if !empty {
                    return Err(AppError::Usage(format!(
                        "{} is not empty; give a new directory for the store",
                        d.display()
                    )));
                }
                std::fs::create_dir_all(d).map_err(|e| AppError::io(d, e))?;
                Ok(Self {
                    path: d.to_path_buf(),
                    remove: false,
                })
            }
            None => {
                let name = blindsight_os::random::hex(&blindsight_os::random::bytes::<8>()?);
                let path = std::env::temp_dir().join(format!("blindsight-bench-{name}"));
                std::fs::create_dir_all(&path).map_err(|e| AppError::io(&path, e))?;
                Ok(Self { path, remove: true })
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How a session builds its gallery.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Images per ingest batch (one segment each); None: the size merging and compaction
    /// build a collection's segments up to ([`blindsight_client::client::merged_segment_cap`]).
    pub segment_size: Option<usize>,
    /// Where the store goes (None: a temporary directory).
    pub store_dir: Option<PathBuf>,
    /// Drop the page cache before loading (needs root; a clear error otherwise).
    pub cold: bool,
}

/// A gallery encrypted by a client, ingested in batches by a server into its store
/// (SQLite and segment files, through the same checks and writes as an upload), then
/// loaded by a server that opens the store afresh: ready for queries.
pub struct Session<C: SlotCipher<Ct = Ciphertext>> {
    ctx: Context,
    cipher: C,
    encoding: VectorEncoding,
    /// The gallery's vectors: the f64 reference is computed from them image by image.
    gallery: Vectors,
    norms: Vec<ImageNorms>,
    loaded: Arc<Gallery>,
    setup: SetupReport,
    /// Anonymous memory from the server's open of the store on.
    serving: std::sync::Mutex<Option<RssAnonSampler>>,
    // dropped last: the store's files
    _state: Arc<AppState>,
    _dir: WorkDir,
}

/// A session of either scheme.
pub enum AnySession {
    /// BFV.
    Bfv(Session<BfvCipher>),
    /// CKKS.
    Ckks(Session<CkksCipher>),
}

impl AnySession {
    /// Generates keys for `preset`, encrypts `gallery` in batches of
    /// `options.segment_size` images, ingests them into a store and loads it back.
    pub fn build(preset: &str, gallery: Vectors, options: &BuildOptions) -> Result<Self> {
        let ctx = Context::preset(preset)?;
        let t = Instant::now();
        let sk = SecretKey::generate(&ctx)?;
        // one response secret for the cipher (decryption) and the keys (the switch to it)
        let seed = Zeroizing::new(blindsight_os::random::bytes::<32>()?);
        let response = response_secret(&ctx, &seed)?;
        let encoding = gallery.encoding(&ctx);
        Ok(match ctx.scheme() {
            Scheme::Bfv => {
                let cipher = BfvCipher::new(&ctx, sk.clone(), response_secret(&ctx, &seed)?)?;
                Self::Bfv(Session::build(
                    &ctx,
                    cipher,
                    (&sk, &response),
                    encoding,
                    gallery,
                    options,
                    t,
                )?)
            }
            _ => {
                let cipher = CkksCipher::new(&ctx, sk.clone(), response_secret(&ctx, &seed)?)?;
                Self::Ckks(Session::build(
                    &ctx,
                    cipher,
                    (&sk, &response),
                    encoding,
                    gallery,
                    options,
                    t,
                )?)
            }
        })
    }

    /// What building measured.
    pub fn setup(&self) -> &SetupReport {
        match self {
            Self::Bfv(s) => &s.setup,
            Self::Ckks(s) => &s.setup,
        }
    }

    /// The largest anonymous memory (`RssAnon`, bytes) of the process from the server's
    /// open of the store until now (the first call stops sampling; later calls give `None`).
    pub fn serving_peak_rss_anon(&self) -> Option<u64> {
        let sampler = match self {
            Self::Bfv(s) => &s.serving,
            Self::Ckks(s) => &s.serving,
        };
        sampler.lock().ok()?.take()?.stop()
    }

    /// Runs one query (the first vector of `query`, of the gallery's kind), with the f64
    /// reference of every image if `reference`.
    pub fn query(&self, query: &Vectors, reference: bool) -> Result<QueryReport> {
        match self {
            Self::Bfv(s) => s.query(query, reference),
            Self::Ckks(s) => s.query(query, reference),
        }
    }
}

/// Name of the collection a session makes.
const COLLECTION: &str = "bench";

impl<C: SlotCipher<Ct = Ciphertext>> Session<C> {
    fn build(
        ctx: &Context,
        cipher: C,
        (sk, response): (&SecretKey, &ResponseSecretKey),
        encoding: VectorEncoding,
        gallery: Vectors,
        options: &BuildOptions,
        keygen_start: Instant,
    ) -> Result<Self> {
        if gallery.is_empty() || options.segment_size == Some(0) {
            return Err(AppError::Usage("the gallery is empty".into()));
        }
        gallery.check_uniform()?;
        let (n, d, channels) = (gallery.len(), gallery.dim(), gallery.channels());
        let segment_size = match options.segment_size {
            Some(size) => size,
            None => merged_segment_cap(ctx, d, channels, fresh_ciphertext_bytes(&cipher, ctx)?)?,
        };
        let chunks: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(segment_size)
            .map(|start| start..(start + segment_size).min(n))
            .collect();
        let layouts = chunks
            .iter()
            .map(|c| segment_layout(ctx, c.len(), d))
            .collect::<blindsight_search::Result<Vec<_>>>()?;
        let mut steps: Vec<i64> = layouts.iter().flat_map(Layout::galois_steps).collect();
        steps.sort_unstable();
        steps.dedup();
        let (rk, gk, rsk) = evaluation_keys(ctx, sk, response, &steps)?;
        let keygen_s = keygen_start.elapsed().as_secs_f64();

        // The server's store, and the collection with the client's keys.
        let dir = WorkDir::new(options.store_dir.as_deref())?;
        let mut server_options = ServerOptions::new(dir.path().join("bench.db"));
        server_options.quota = Quota::UNLIMITED;
        let state = AppState::open(server_options.clone())?;
        let key_blobs = (rk.to_bytes(ctx)?, gk.to_bytes(ctx)?, rsk.to_bytes(ctx)?);
        let eval_key_bytes = key_blobs.0.len() + key_blobs.1.len() + key_blobs.2.len();
        let kind = gallery.kind();
        let elements: Vec<u64> = gk.elements().collect();
        state.writer()?.create_collection(
            &NewCollection {
                name: COLLECTION,
                params: &ctx.params().to_envelope(),
                fingerprint: &ctx.params().fingerprint(),
                vectors: &kind,
                relin_key: &key_blobs.0,
                galois_keys: &key_blobs.1,
                galois_elements: &elements,
                response_key: &key_blobs.2,
                token_hash: &[0; 32],
                key_id: "bench",
            },
            &Quota::UNLIMITED,
        )?;
        drop((rk, gk, rsk, key_blobs));
        let record = state.writer()?.collection(COLLECTION)?;

        // Batch by batch: the client encodes and encrypts (serialized, as uploaded), the
        // server checks, writes the segment file and commits.
        let (mut encrypt_s, mut store_s, mut gallery_bytes) = (0.0, 0.0, 0usize);
        let mut norms = Vec::with_capacity(n);
        for chunk in &chunks {
            let t = Instant::now();
            let encoded: Vec<EncodedImage> = chunk
                .clone()
                .into_par_iter()
                .filter_map(|i| gallery.encode(&encoding, i))
                .collect();
            norms.extend(encoded.iter().map(EncodedImage::norms));
            let vectors = channel_values(&encoded, channels);
            drop(encoded);
            let seg = encrypt_segment_with(&cipher, &vectors, |ct| Ok(ct.to_bytes(ctx)?))?;
            drop(vectors);
            let msg = AppendSegment {
                layout: seg.layout.to_bytes(),
                ciphertexts: seg.channels,
                images: chunk
                    .clone()
                    .enumerate()
                    .map(|(position, i)| ImageRecord {
                        id: i as i64 + 1,
                        position,
                        tag: (i as u64).to_le_bytes().to_vec(),
                        meta: Vec::new(),
                        payload: Vec::new(),
                        source: Vec::new(),
                        thumbnail: Vec::new(),
                    })
                    .collect(),
                galois_keys: Vec::new(),
            };
            gallery_bytes += msg
                .ciphertexts
                .iter()
                .flatten()
                .map(Vec::len)
                .sum::<usize>();
            encrypt_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            engine::append(&state, &record, ctx, &msg)?;
            store_s += t.elapsed().as_secs_f64();
        }
        let disk_bytes = state.writer()?.files().disk_bytes()?;
        drop(state);

        // A server opening the store afresh.
        if options.cold {
            drop_page_cache()?;
        }
        let serving = RssAnonSampler::start();
        let t = Instant::now();
        let state = AppState::open(server_options)?;
        let record = state.writer()?.collection(COLLECTION)?;
        let loaded = state.gallery.load(&state, &record)?;
        let load_s = t.elapsed().as_secs_f64();
        let setup = SetupReport {
            preset: ctx.params().name().to_string(),
            n,
            d,
            layouts: loaded.segments.iter().map(|s| s.prepared.layout).collect(),
            keygen_s,
            encrypt_s,
            store_s,
            load_s,
            cold: options.cold,
            gallery_bytes,
            disk_bytes,
            eval_key_bytes,
        };
        Ok(Self {
            ctx: ctx.clone(),
            cipher,
            encoding,
            gallery,
            norms,
            loaded,
            setup,
            serving: std::sync::Mutex::new(Some(serving)),
            _state: state,
            _dir: dir,
        })
    }

    fn query(&self, query: &Vectors, with_reference: bool) -> Result<QueryReport> {
        let ctx = &self.ctx;
        let channels = self.gallery.channels();
        if query.channels() != channels || query.dim() != self.gallery.dim() {
            return Err(AppError::Usage(
                "the query is not of the gallery's kind and dimension".into(),
            ));
        }
        // Client: encrypt the query.
        let t = Instant::now();
        let query_encoded = query
            .encode(&self.encoding, 0)
            .ok_or_else(|| AppError::Usage("no query vector".into()))?;
        let query_blobs = encrypt_query(&self.cipher, &query_encoded.values())?
            .iter()
            .map(|ct| ct.to_bytes(ctx))
            .collect::<blindsight_he::Result<Vec<_>>>()?;
        let query_encrypt_s = t.elapsed().as_secs_f64();
        let query_bytes = query_blobs.iter().map(Vec::len).sum();

        // Server: score (the engine call the HTTP handler makes).
        let t = Instant::now();
        let answer = engine::respond(&self.loaded, &self.gallery.kind(), &query_blobs)?;
        let score_s = t.elapsed().as_secs_f64();
        let response_bytes = answer.ciphertexts.iter().flatten().map(Vec::len).sum();

        // Client: decrypt and rank (segments in ingest order, images by position).
        let t = Instant::now();
        let received = Response {
            ciphertexts: channel_ciphertexts::from_envelopes(ctx, &answer.ciphertexts)?,
            placements: channel_ciphertexts::placements(&answer.segments),
        };
        let layouts: Vec<Layout> = self
            .loaded
            .segments
            .iter()
            .map(|s| s.prepared.layout)
            .collect();
        let mut dots = ChannelDots::zeros(channels, 0)?;
        for d in decrypt_response(&self.cipher, &layouts, channels, &received)? {
            dots.extend(&d)?;
        }
        let query_norms = query_encoded.norms();
        let sims = similarities_from_norms(&self.encoding, &self.norms, &query_norms, &dots);
        let decrypt_s = t.elapsed().as_secs_f64();

        // the f64 reference, one image encoded at a time
        let reference = if with_reference {
            let per_image: Vec<Vec<f64>> = (0..self.gallery.len())
                .into_par_iter()
                .filter_map(|i| self.gallery.encode(&self.encoding, i))
                .map(|g| {
                    reference_dots(std::slice::from_ref(&g), &query_encoded)
                        .image(0)
                        .to_vec()
                })
                .collect();
            let reference_dots = ChannelDots::from_images(channels, per_image)?;
            similarities_from_norms(&self.encoding, &self.norms, &query_norms, &reference_dots)
        } else {
            Vec::new()
        };
        Ok(QueryReport {
            query_encrypt_s,
            score_s,
            decrypt_s,
            query_bytes,
            response_bytes,
            similarities: sims,
            reference,
        })
    }
}

/// Writes dirty pages back and drops the page cache (Linux, root only).
fn drop_page_cache() -> Result<()> {
    let path = Path::new("/proc/sys/vm/drop_caches");
    std::process::Command::new("sync")
        .status()
        .map_err(|e| AppError::io("sync", e))?;
    std::fs::write(path, "1\n").map_err(|e| {
        AppError::Usage(format!(
            "--cold drops the page cache through {}, which needs root: {e}",
            path.display()
        ))
    })
}

/// Samples this process's anonymous resident memory (`RssAnon` of `/proc/self/status`:
/// the heap and stacks, not the page cache a mapped file occupies) every few milliseconds
/// until stopped, keeping the largest value.
pub struct RssAnonSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssAnonSampler {
    /// Starts sampling.
    pub fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-anon".into())
            .spawn(move || {
                let mut peak = 0;
                loop {
                    peak = peak.max(status_bytes("RssAnon:").unwrap_or(0));
                    if flag.load(std::sync::atomic::Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            })
            .ok();
        Self { stop, thread }
    }

    /// Stops sampling; the largest `RssAnon` seen (bytes; `None` where `/proc` has none).
    pub fn stop(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .filter(|&b| b > 0)
    }
}

/// A size field of `/proc/self/status`, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    blindsight_os::procfs::read_field_bytes("/proc/self/status", key)
}

/// Peak resident set size of this process (bytes), from `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}
