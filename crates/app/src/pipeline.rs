//! The whole search path, client and server in one process, with every message serialized
//! as it would cross the network: key generation, gallery encryption, server load, query
//! encryption, scoring, decryption and ranking, each timed.

use crate::errors::{AppError, Result};
use blindsight_he::{
    Ciphertext, Context, GaloisKeys, RelinKey, ResponseSecretKey, RingSwitchKey, Scheme, SecretKey,
    Serializable,
};
use blindsight_search::backend::SlotCipher;
use blindsight_search::client::{decrypt_scores, encrypt_query, encrypt_segment_with};
use blindsight_search::encoding::VectorEncoding;
use blindsight_search::engine::{PreparedSegment, score};
use blindsight_search::he_backend::{
    BfvCipher, CkksCipher, HeEvaluator, evaluation_keys, response_secret,
};
use blindsight_search::rank::{
    ChannelDots, EncodedImage, ImageNorms, Similarity, channel_values, reference_dots,
    similarities_from_norms,
};
use blindsight_search::slots::Slot;
use blindsight_search::vectors::ImageVector;
use blindsight_search::{Layout, SearchError};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};
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
        }
    }

    /// Channels per vector.
    pub fn channels(&self) -> usize {
        match self {
            Self::Pixels(_) => 3,
            Self::Features(_) => 1,
        }
    }

    /// The encoding of these vectors under `ctx`'s scheme (as a collection of their kind
    /// would encode them).
    fn encoding(&self, ctx: &Context) -> VectorEncoding {
        crate::encoder::encoding_of(ctx, matches!(self, Self::Features(_)), self.dim())
    }

    /// Vector `i`, encoded (`None` past the end).
    fn encode(&self, encoding: &VectorEncoding, i: usize) -> Option<EncodedImage> {
        match self {
            Self::Pixels(v) => v.get(i).map(|p| EncodedImage::new(encoding, p)),
            Self::Features(v) => v.get(i).map(|f| EncodedImage::from_features(encoding, f)),
        }
    }

    /// Checks that every vector has the same dimension (and 3 equal channels for pixels).
    fn check_uniform(&self) -> Result<()> {
        let d = self.dim();
        let uniform = match self {
            Self::Pixels(v) => v.iter().all(|p| p.iter().all(|c| c.len() == d)),
            Self::Features(v) => v.iter().all(|f| f.len() == d),
        };
        if d == 0 || !uniform {
            return Err(AppError::Usage(
                "gallery vectors must all have the same, non-zero dimension".into(),
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
    /// Gallery encoding, encryption and serialization (s).
    pub encrypt_s: f64,
    /// Server: deserializing keys and gallery, preparing operands (s).
    pub load_s: f64,
    /// Serialized gallery ciphertexts (bytes).
    pub gallery_bytes: usize,
    /// Serialized evaluation keys (bytes).
    pub eval_key_bytes: usize,
    /// Whether the gallery operands are kept in memory (otherwise streamed per query).
    pub resident: bool,
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
    /// Similarities from the f64 reference engine.
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

/// A gallery encrypted by a client and loaded by a server, ready for queries.
pub struct Session<C: SlotCipher<Ct = Ciphertext>> {
    ctx: Context,
    cipher: C,
    encoding: VectorEncoding,
    /// The gallery's vectors: the f64 reference is computed from them image by image.
    gallery: Vectors,
    norms: Vec<ImageNorms>,
    ev: HeEvaluator,
    segments: Vec<PreparedSegment<HeEvaluator>>,
    setup: SetupReport,
}

/// A session of either scheme.
pub enum AnySession {
    /// BFV.
    Bfv(Session<BfvCipher>),
    /// CKKS.
    Ckks(Session<CkksCipher>),
}

impl AnySession {
    /// Generates keys for `preset`, encrypts `gallery` (segments of at most `segment_size`
    /// images) and loads it into the in-process server.
    /// Operands are kept resident when they fit in `memory_budget` bytes, and streamed
    /// from their serialized form by every query otherwise.
    pub fn build(
        preset: &str,
        gallery: Vectors,
        segment_size: usize,
        memory_budget: usize,
    ) -> Result<Self> {
        let ctx = Context::preset(preset)?;
        let t = Instant::now();
        let sk = SecretKey::generate(&ctx)?;
        // one response secret for the cipher (decryption) and the keys (the switch to it)
        let seed = Zeroizing::new(crate::random::bytes::<32>()?);
        let response = response_secret(&ctx, &seed)?;
        Ok(match ctx.scheme() {
            Scheme::Bfv => {
                let encoding = gallery.encoding(&ctx);
                let cipher = BfvCipher::new(&ctx, sk.clone(), response_secret(&ctx, &seed)?)?;
                Self::Bfv(Session::build(
                    &ctx,
                    cipher,
                    (&sk, &response),
                    encoding,
                    gallery,
                    (segment_size, memory_budget),
                    t,
                )?)
            }
            _ => {
                let cipher = CkksCipher::new(&ctx, sk.clone(), response_secret(&ctx, &seed)?)?;
                Self::Ckks(Session::build(
                    &ctx,
                    cipher,
                    (&sk, &response),
                    gallery.encoding(&ctx),
                    gallery,
                    (segment_size, memory_budget),
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

    /// Runs one query (the first vector of `query`, of the gallery's kind).
    pub fn query(&self, query: &Vectors) -> Result<QueryReport> {
        match self {
            Self::Bfv(s) => s.query(query),
            Self::Ckks(s) => s.query(query),
        }
    }
}

impl<C: SlotCipher<Ct = Ciphertext>> Session<C> {
    fn build(
        ctx: &Context,
        cipher: C,
        (sk, response): (&SecretKey, &ResponseSecretKey),
        encoding: VectorEncoding,
        gallery: Vectors,
        (segment_size, memory_budget): (usize, usize),
        keygen_start: Instant,
    ) -> Result<Self> {
        if gallery.is_empty() || segment_size == 0 {
            return Err(AppError::Usage("the gallery is empty".into()));
        }
        gallery.check_uniform()?;
        let (n, d, channels) = (gallery.len(), gallery.dim(), gallery.channels());
        let chunks: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(segment_size)
            .map(|start| start..(start + segment_size).min(n))
            .collect();
        let shape = cipher.shape();
        let layouts = chunks
            .iter()
            .map(|c| Layout::new(c.len(), d, C::Slot::vector_slots(d), shape))
            .collect::<blindsight_search::Result<Vec<_>>>()?;
        let mut steps: Vec<i64> = layouts.iter().flat_map(Layout::galois_steps).collect();
        steps.sort_unstable();
        steps.dedup();
        let (rk, gk, rsk) = evaluation_keys(ctx, sk, response, &steps)?;
        let keygen_s = keygen_start.elapsed().as_secs_f64();

        // Client: encode and encrypt the gallery, serialize what goes to the server.
        let t = Instant::now();
        let mut norms = Vec::with_capacity(n);
        // The "wire": serialized ciphertexts, each taken (and freed) by the server as it loads.
        let mut blobs: Vec<(Layout, WireChannels)> = Vec::new();
        for chunk in &chunks {
            // encoded a segment at a time, and dropped once it is encrypted
            let encoded: Vec<EncodedImage> = chunk
                .clone()
                .into_par_iter()
                .filter_map(|i| gallery.encode(&encoding, i))
                .collect();
            norms.extend(encoded.iter().map(EncodedImage::norms));
            let vectors = channel_values(&encoded, channels);
            drop(encoded);
            let seg =
                encrypt_segment_with(&cipher, &vectors, |ct| Ok(Mutex::new(ct.to_bytes(ctx)?)))?;
            blobs.push((seg.layout, seg.channels));
        }
        let key_blobs = (rk.to_bytes(ctx)?, gk.to_bytes(ctx)?, rsk.to_bytes(ctx)?);
        let encrypt_s = t.elapsed().as_secs_f64();
        let gallery_bytes = blobs
            .iter()
            .flat_map(|(_, ch)| ch.iter().flatten())
            .map(|b| b.lock().map_or(0, |b| b.len()))
            .sum();
        let eval_key_bytes = key_blobs.0.len() + key_blobs.1.len() + key_blobs.2.len();

        // Server: load keys and gallery.
        let t = Instant::now();
        let ev = HeEvaluator::new(
            ctx,
            RelinKey::from_bytes(ctx, &key_blobs.0)?,
            GaloisKeys::from_bytes(ctx, &key_blobs.1)?,
            Some(RingSwitchKey::from_bytes(ctx, &key_blobs.2)?),
        );
        let resident = fits_in_memory(ctx, &layouts, channels, memory_budget);
        let segments = blobs
            .into_iter()
            .map(|(layout, ch)| {
                if !resident {
                    let ch = Arc::new(ch);
                    let ctx = ctx.clone();
                    let loader =
                        move |c: usize, k: usize| -> blindsight_search::Result<Ciphertext> {
                            let slot = ch[c].get(k).ok_or(SearchError::CiphertextCount {
                                what: "stored ciphertexts",
                                expected: layout.ciphertexts_per_channel(),
                                actual: ch[c].len(),
                            })?;
                            let bytes = slot.lock().map(|b| b.clone()).unwrap_or_default();
                            Ok(Ciphertext::from_bytes(&ctx, &bytes)?)
                        };
                    return PreparedSegment::streamed(layout, channels, Box::new(loader));
                }
                PreparedSegment::load(&ev, layout, channels, |c, k| {
                    let slot = ch[c].get(k).ok_or(SearchError::CiphertextCount {
                        what: "stored ciphertexts",
                        expected: layout.ciphertexts_per_channel(),
                        actual: ch[c].len(),
                    })?;
                    let bytes = slot
                        .lock()
                        .map(|mut b| std::mem::take(&mut *b))
                        .unwrap_or_default();
                    Ok(Ciphertext::from_bytes(ctx, &bytes)?)
                })
            })
            .collect::<blindsight_search::Result<Vec<_>>>()?;
        let load_s = t.elapsed().as_secs_f64();
        let setup = SetupReport {
            preset: ctx.params().name().to_string(),
            n,
            d,
            layouts,
            keygen_s,
            encrypt_s,
            load_s,
            gallery_bytes,
            eval_key_bytes,
            resident,
        };
        Ok(Self {
            ctx: ctx.clone(),
            cipher,
            encoding,
            gallery,
            norms,
            ev,
            segments,
            setup,
        })
    }

    fn query(&self, query: &Vectors) -> Result<QueryReport> {
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

        // Server: score.
        let t = Instant::now();
        let q = query_blobs
            .iter()
            .map(|b| Ciphertext::from_bytes(ctx, b))
            .collect::<blindsight_he::Result<Vec<_>>>()?;
        let responses = score(&self.ev, &self.segments, &q)?;
        let response_blobs: Vec<Vec<Vec<Vec<u8>>>> = responses
            .iter()
            .map(|resp| {
                resp.iter()
                    .map(|cts| {
                        cts.iter()
                            .map(|ct| ct.to_bytes(ctx))
                            .collect::<blindsight_he::Result<Vec<_>>>()
                    })
                    .collect::<blindsight_he::Result<Vec<_>>>()
            })
            .collect::<blindsight_he::Result<_>>()?;
        let score_s = t.elapsed().as_secs_f64();
        let response_bytes = response_blobs
            .iter()
            .flat_map(|r| r.iter().flatten())
            .map(Vec::len)
            .sum();

        // Client: decrypt and rank.
        let t = Instant::now();
        let mut dots = ChannelDots::zeros(channels, 0)?;
        for (seg, blobs) in self.segments.iter().zip(&response_blobs) {
            dots.extend(&decrypt_scores(
                &self.cipher,
                &seg.layout,
                channels,
                &read_channels(ctx, blobs)?,
            )?)?;
        }
        let query_norms = query_encoded.norms();
        let sims = similarities_from_norms(&self.encoding, &self.norms, &query_norms, &dots);
        let decrypt_s = t.elapsed().as_secs_f64();

        // the f64 reference, one image encoded at a time
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
        let reference =
            similarities_from_norms(&self.encoding, &self.norms, &query_norms, &reference_dots);
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

/// Serialized ciphertexts of the channels of a segment, each taken once by the server.
type WireChannels = Vec<Vec<Mutex<Vec<u8>>>>;

fn read_channels(ctx: &Context, blobs: &[Vec<Vec<u8>>]) -> Result<Vec<Vec<Ciphertext>>> {
    blobs
        .iter()
        .map(|ch| {
            ch.par_iter()
                .map(|b| Ciphertext::from_bytes(ctx, b))
                .collect::<blindsight_he::Result<_>>()
        })
        .collect::<blindsight_he::Result<_>>()
        .map_err(Into::into)
}

/// Whether the prepared operands of segments with these layouts and `channels` channels
/// fit in `budget` bytes (otherwise they are streamed from their serialized form by every
/// query).
pub fn fits_in_memory(ctx: &Context, layouts: &[Layout], channels: usize, budget: usize) -> bool {
    let bytes: usize = layouts
        .iter()
        .map(|l| {
            channels * l.ciphertexts_per_channel() * ctx.product_operand_bytes(ctx.max_level())
        })
        .sum();
    bytes <= budget
}

/// Default memory for resident gallery operands: half of the machine's RAM (4 GiB if it
/// cannot be read).
pub fn default_memory_budget() -> usize {
    let total_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<usize>()
            .ok()
    });
    total_kb.map_or(4 << 30, |kb| kb * 1024 / 2)
}

/// Peak resident set size of this process (bytes), from `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
