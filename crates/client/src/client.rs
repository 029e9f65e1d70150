//! The client: everything that needs the secret key happens here. Creating a collection
//! (uploading evaluation keys), ingesting images (encrypting segments, sealing payloads and
//! metadata, skipping duplicates by keyed content tag), searching (encrypting the query,
//! decrypting the scores, ranking with the norms only the client knows), fetching and
//! opening images, deleting.

use crate::channel_ciphertexts;
use crate::encoder::ImageEncoder;
use crate::errors::{ClientError, Result};
use crate::keystore::Keystore;
use crate::remote::{Json, Remote};
use crate::wire::{AppendSegment, CreateCollection};
use crate::wire::{ImageEntry, ImageRecord};
use crate::{seal, thumbnail};
use blindsight_he::{Ciphertext, Context, GaloisKeys, RelinKey, Scheme, Serializable};
use blindsight_search::backend::SlotCipher;
use blindsight_search::client::{
    check_response, decrypt_response_with, encrypt_query, encrypt_segment_with,
};
use blindsight_search::he_backend::{BfvCipher, CkksCipher, response_key, segment_layout};
use blindsight_search::rank::{
    ChannelDots, EncodedImage, ImageNorms, RankRule, channel_values, similarities_from_norms, top_k,
};
use blindsight_search::{Layout, VectorKind};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

mod ingest;
mod merge;
mod retrieval;

pub use ingest::{
    BATCH, BATCH_FILE_BYTES, IngestFile, IngestItem, IngestProgress, VectorItem, WINDOW_BYTES,
    WINDOW_FILES,
};
pub use merge::{
    CompactReport, MAX_MERGED_IMAGES, MERGE_BYTES, MergeMode, MergePolicy, SegmentState,
    fresh_ciphertext_bytes, merged_segment_cap, plan_rebuilds,
};
pub use retrieval::{RECORDS_PER_QUERY, RetrievedThumbnail};

/// A client of one collection.
pub struct Client {
    keystore: Keystore,
    remote: Remote,
    collection: String,
    encoder: ImageEncoder,
    cipher: AnyCipher,
    merge_after_ingest: bool,
    batch_images: usize,
    /// The private-retrieval secret of this client's session (made at the first
    /// retrieval, dropped after any failure; see [`retrieval`]).
    retrieval: std::sync::Mutex<Option<retrieval::Session>>,
}

enum AnyCipher {
    Bfv(BfvCipher),
    Ckks(CkksCipher),
}

/// The outcome of an ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    /// Images added.
    pub added: usize,
    /// Images skipped because the collection already holds them.
    pub duplicates: usize,
    /// Files that could not be read, with the reason.
    pub failed: Vec<(String, String)>,
    /// The ids given to the added images: (file name, id).
    pub ids: Vec<(String, i64)>,
    /// The tiered merging that followed.
    pub merged: CompactReport,
    /// Why that merging failed, if it did (the images are added all the same; the next
    /// ingest or `compact` merges).
    pub merge_failed: Option<String>,
}

/// An image as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    /// Image id.
    pub id: i64,
    /// Its name (opened from its sealed metadata).
    pub name: String,
    /// The segment holding it.
    pub segment: i64,
    /// Deleted (until a compaction purges it).
    pub deleted: bool,
    /// Whether it has a thumbnail.
    pub thumbnail: bool,
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    /// Image id.
    pub id: i64,
    /// Original file name.
    pub name: String,
    /// Per-channel cosines (one for an embedding).
    pub channel_cosines: Vec<f64>,
    /// Whole-vector cosine.
    pub whole_cosine: f64,
    /// The slot of its sealed thumbnail in the collection's private-retrieval database
    /// (`None`: it has none yet).
    pub thumbnail_slot: Option<u64>,
}

impl Match {
    /// The match's similarity to the query (to re-rank under another rule).
    pub fn similarity(&self) -> blindsight_search::rank::Similarity {
        blindsight_search::rank::Similarity {
            channel_cosines: self.channel_cosines.clone(),
            whole_cosine: self.whole_cosine,
        }
    }
}

/// Where a search spent its time (seconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchTiming {
    /// Query encryption.
    pub encrypt_s: f64,
    /// Upload of the query.
    pub upload_s: f64,
    /// Server.
    pub server_s: f64,
    /// Download of the response.
    pub download_s: f64,
    /// Decryption and ranking.
    pub decrypt_s: f64,
    /// Query bytes sent.
    pub up_bytes: usize,
    /// Response bytes received.
    pub down_bytes: usize,
}

/// A segment encrypted for upload: serialized layout, ciphertexts per channel, and the
/// Galois keys it brings.
struct EncryptedSegment {
    layout: Vec<u8>,
    ciphertexts: Vec<Vec<Vec<u8>>>,
    galois_keys: Vec<u8>,
}

/// Images by id: name, norms (from their sealed metadata).
type Catalog = HashMap<i64, (String, ImageNorms, Option<u64>)>;

impl std::fmt::Display for SearchTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "encrypt {:.3} s · upload {:.3} s ({:.0} KB) · server {:.3} s · download {:.3} s ({:.0} KB) · decrypt {:.3} s",
            self.encrypt_s,
            self.upload_s,
            self.up_bytes as f64 / 1e3,
            self.server_s,
            self.download_s,
            self.down_bytes as f64 / 1e3,
            self.decrypt_s
        )
    }
}

/// The keyed content tag of a file: HMAC-SHA-256 under the payload key (the server sees
/// equality of files, never a way to test a guess).
fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    use hmac::digest::KeyInit;
    // a key shorter than SHA-256's 64-byte block is zero-padded by HMAC itself: the same tag
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new(&(*block).into());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Longest file name kept in an image's sealed metadata (bytes, cut on a character
/// boundary): the server bounds sealed metadata at 4 KiB.
const MAX_NAME_BYTES: usize = 1024;

fn meta_bytes(name: &str, norms: &ImageNorms) -> Vec<u8> {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = norms.to_bytes();
    out.extend_from_slice(&name.as_bytes()[..end]);
    out
}

fn parse_meta(bytes: &[u8], channels: usize) -> Option<(String, ImageNorms)> {
    let len = 16 * channels;
    let norms = ImageNorms::from_bytes(bytes.get(..len)?, channels)?;
    Some((String::from_utf8_lossy(&bytes[len..]).into_owned(), norms))
}

fn meta_context(collection: &str) -> String {
    format!("{collection}/meta")
}

fn source_context(collection: &str) -> String {
    format!("{collection}/source")
}

impl Client {
    /// Creates `collection` of `vectors` on the server with the keystore's public evaluation
    /// keys; returns the collection's bearer token.
    pub fn create(
        keystore: &Keystore,
        remote: &Remote,
        collection: &str,
        vectors: &VectorKind,
    ) -> Result<String> {
        let ctx = &keystore.context;
        // the layout of one image must fit these parameters
        segment_layout(ctx, 1, vectors.dim())?;
        let rk = RelinKey::generate(ctx, &keystore.secret_key)?;
        let gk = GaloisKeys::generate(ctx, &keystore.secret_key, &[], false)?;
        let rsk = response_key(ctx, &keystore.secret_key, &keystore.response_secret()?)?;
        remote.create(&CreateCollection {
            name: collection.to_string(),
            params: ctx.params().to_envelope(),
            vectors: vectors.spec(),
            relin_key: rk.to_bytes(ctx)?,
            galois_keys: gk.to_bytes(ctx)?,
            response_key: rsk.to_bytes(ctx)?,
            key_id: keystore.key_id(),
        })
    }

    /// A client of `collection` (the remote must carry the collection's token): asks the
    /// server what the collection holds, and refuses a collection of vectors this build
    /// cannot make (another image model or normalization).
    pub fn new(keystore: Keystore, remote: Remote, collection: &str) -> Result<Self> {
        let ctx = keystore.context.clone();
        let info = remote.info(collection)?;
        let spec = info
            .get("vectors")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                ClientError::Malformed("the collection's information has no vector kind".into())
            })?;
        let encoder = ImageEncoder::new(&VectorKind::parse(spec)?, &ctx)?;
        let cipher = match ctx.scheme() {
            Scheme::Bfv => AnyCipher::Bfv(BfvCipher::new(
                &ctx,
                keystore.secret_key.clone(),
                keystore.response_secret()?,
            )?),
            _ => AnyCipher::Ckks(CkksCipher::new(
                &ctx,
                keystore.secret_key.clone(),
                keystore.response_secret()?,
            )?),
        };
        Ok(Self {
            keystore,
            remote,
            collection: collection.to_string(),
            encoder,
            cipher,
            merge_after_ingest: true,
            batch_images: BATCH,
            retrieval: std::sync::Mutex::new(None),
        })
    }

    /// The same client, leaving merging to explicit [`Client::merge`] and
    /// [`Client::compact`] calls (tests and measurements of unmerged galleries).
    pub fn without_merging(mut self) -> Self {
        self.merge_after_ingest = false;
        self
    }

    /// The same client uploading ingest batches of at most `n` images (1 to [`BATCH`]):
    /// smaller batches are committed sooner, so an interrupted ingest redoes less (each
    /// batch is a segment until merging gathers them).
    pub fn with_batch_images(mut self, n: usize) -> Self {
        self.batch_images = n.clamp(1, BATCH);
        self
    }

    /// What the collection holds.
    pub fn vectors(&self) -> &VectorKind {
        self.encoder.kind()
    }

    /// The name of the keystore's parameter preset (e.g. `ckks-8192`).
    pub fn preset(&self) -> &str {
        self.ctx().params().name()
    }

    fn channels(&self) -> usize {
        self.vectors().channels()
    }

    fn ctx(&self) -> &Context {
        &self.keystore.context
    }

    /// Checks that the collection was made with this keystore; returns its information.
    pub fn check_collection(&self) -> Result<Json> {
        let info = self.remote.info(&self.collection)?;
        let key_id = info
            .get("key_id")
            .and_then(|p| p.as_str())
            .unwrap_or_default();
        if key_id != self.keystore.key_id() {
            let preset = info
                .get("preset")
                .and_then(|p| p.as_str())
                .unwrap_or_default();
            return Err(ClientError::KeyMismatch {
                collection: self.collection.clone(),
                expected: key_id.to_string(),
                actual: self.keystore.key_id(),
                preset: preset.to_string(),
            });
        }
        Ok(info)
    }

    /// An ingest batch: `encoded[k]` is the image of `images[k]` (position `k`).
    fn segment_message(
        &self,
        encoded: &[&EncodedImage],
        images: Vec<ImageRecord>,
        elements: &mut HashSet<u64>,
    ) -> Result<AppendSegment> {
        let seg = self.encrypt_segment(encoded, elements)?;
        Ok(AppendSegment {
            layout: seg.layout,
            ciphertexts: seg.ciphertexts,
            images,
            galois_keys: seg.galois_keys,
        })
    }

    /// Encrypts a segment of `encoded` (position `k` is `encoded[k]`): its serialized
    /// layout, ciphertexts per channel, and the Galois keys its layout needs that `elements`
    /// (the collection's, updated) lacks.
    fn encrypt_segment(
        &self,
        encoded: &[&EncodedImage],
        elements: &mut HashSet<u64>,
    ) -> Result<EncryptedSegment> {
        let ctx = self.ctx();
        let vectors = channel_values(encoded, self.channels());
        let (layout, ciphertexts) = match &self.cipher {
            AnyCipher::Bfv(c) => encrypt_bytes(c, ctx, &vectors)?,
            AnyCipher::Ckks(c) => encrypt_bytes(c, ctx, &vectors)?,
        };
        let needed: Vec<i64> = layout
            .galois_steps()
            .into_iter()
            .filter(|&s| !elements.contains(&ctx.galois_element(s)))
            .collect();
        let galois_keys = if needed.is_empty() {
            Vec::new()
        } else {
            let gk = GaloisKeys::generate(ctx, &self.keystore.secret_key, &needed, false)?;
            elements.extend(gk.elements());
            gk.to_bytes(ctx)?
        };
        Ok(EncryptedSegment {
            layout: layout.to_bytes(),
            ciphertexts,
            galois_keys,
        })
    }

    /// The Galois elements the collection already holds keys for (from its information).
    fn galois_elements(info: &Json) -> HashSet<u64> {
        info.get("galois_elements")
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|g| g.as_u64()).collect())
            .unwrap_or_default()
    }

    /// Reads the collection's image list page by page, opening each image's sealed
    /// metadata as its page arrives (so a hostile server cannot make the client hold
    /// entries this keystore did not seal) and handing it to `each` with its entry.
    fn listed_images(
        &self,
        mut each: impl FnMut(&ImageEntry, String, ImageNorms) -> Result<()>,
    ) -> Result<i64> {
        self.remote.image_pages(&self.collection, |page| {
            for e in page {
                let (name, norms) = self.open_meta(e)?;
                each(e, name, norms)?;
            }
            Ok(())
        })
    }

    /// An image entry's name and norms, opened from its sealed metadata (an entry this
    /// keystore did not seal is an error).
    fn open_meta(&self, e: &ImageEntry) -> Result<(String, ImageNorms)> {
        let context = meta_context(&self.collection);
        let meta = seal::open(&self.keystore.payload_key, &context, e.id as u64, &e.meta)?;
        parse_meta(&meta, self.channels())
            .ok_or_else(|| ClientError::Malformed("image metadata".into()))
    }

    /// One page of the collection's images (live and deleted), at most `limit` with ids
    /// above `after`, their names opened (an entry this keystore did not seal is an error);
    /// and the id to read the next page after, if there are more.
    pub fn image_page(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ListedImage>, Option<i64>)> {
        let page = self.remote.image_page(&self.collection, after, limit)?;
        let images = page
            .images
            .iter()
            .map(|e| {
                let (name, _) = self.open_meta(e)?;
                Ok(ListedImage {
                    id: e.id,
                    name,
                    segment: e.segment_id,
                    deleted: e.deleted,
                    thumbnail: e.has_thumbnail(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((images, page.next))
    }

    /// The collection's image entries, each checked to be sealed by this keystore, and the
    /// version listed.
    pub(crate) fn verified_images(&self) -> Result<(i64, Vec<ImageEntry>)> {
        let mut entries = Vec::new();
        let version = self.listed_images(|e, _, _| {
            entries.push(e.clone());
            Ok(())
        })?;
        Ok((version, entries))
    }

    /// The images of the collection: id → (name, norms), and the version listed.
    fn catalog(&self) -> Result<(i64, Catalog)> {
        let mut map = HashMap::new();
        // deleted images too: one may be live at the version a concurrent search reads
        let version = self.listed_images(|e, name, norms| {
            map.insert(e.id, (name, norms, e.thumbnail_slot));
            Ok(())
        })?;
        Ok((version, map))
    }

    /// Searches for `image` (file bytes); returns the `k` best live images under `rule`.
    ///
    /// The response names the collection version it was computed at and, per segment,
    /// exactly the live images at that version: the ranking covers every image added before
    /// the search and none deleted before it. Everything in the response is checked against
    /// what this client can bound (layouts derived from its own parameters, counts against
    /// the ciphertexts received, positions and ids unique) before anything is allocated for
    /// it.
    pub fn search(
        &self,
        image: &[u8],
        name: &str,
        k: usize,
        rule: RankRule,
    ) -> Result<(Vec<Match>, SearchTiming)> {
        self.search_with(|| self.encoder.encode(image, name), k, rule)
    }

    /// Searches a `vectors` collection for the user vector `vector` (of the collection's
    /// dimension; normalized here), as [`Client::search`] does for an image; with `model`,
    /// the vector must come from the model the collection was created with.
    pub fn search_vector(
        &self,
        vector: &[f32],
        model: Option<&str>,
        k: usize,
    ) -> Result<(Vec<Match>, SearchTiming)> {
        if let (Some(given), VectorKind::Vectors { dim, model: ours }) = (model, self.vectors())
            && given != ours
        {
            return Err(blindsight_search::SearchError::KindMismatch {
                expected: self.vectors().spec(),
                actual: VectorKind::Vectors {
                    dim: *dim,
                    model: given.to_string(),
                }
                .spec(),
            }
            .into());
        }
        self.search_with(
            || self.encoder.encode_vector(vector),
            k,
            RankRule::WholeCosine,
        )
    }

    fn search_with(
        &self,
        encode: impl FnOnce() -> Result<EncodedImage>,
        k: usize,
        rule: RankRule,
    ) -> Result<(Vec<Match>, SearchTiming)> {
        let ctx = self.ctx();
        let mut timing = SearchTiming::default();
        self.check_collection()?;
        let (mut listed_version, mut catalog) = self.catalog()?;
        let t = Instant::now();
        let query = encode()?;
        let channels = query.values();
        let cts = match &self.cipher {
            AnyCipher::Bfv(c) => encrypt_query(c, &channels)?,
            AnyCipher::Ckks(c) => encrypt_query(c, &channels)?,
        };
        let q = cts
            .iter()
            .map(|ct| ct.to_bytes(ctx))
            .collect::<blindsight_he::Result<Vec<_>>>()?;
        timing.up_bytes = q.iter().map(Vec::len).sum();
        timing.encrypt_s = t.elapsed().as_secs_f64();
        let max_answer = crate::remote::search_answer_cap(catalog.len(), self.channels());
        let (resp, request) = self.remote.search(&self.collection, &q, max_answer)?;
        timing.upload_s = request.upload_s;
        timing.server_s = request.server_s;
        timing.download_s = request.download_s;
        let t = Instant::now();
        let all_known = |c: &Catalog| {
            resp.segments
                .iter()
                .flat_map(|s| &s.live)
                .all(|(_, id)| c.contains_key(id))
        };
        if resp.segments.len() > crate::wire::MAX_ANSWER_SEGMENTS {
            return Err(ClientError::Malformed(format!(
                "the server's answer has {} segments; a server keeps at most {}",
                resp.segments.len(),
                crate::wire::MAX_ANSWER_SEGMENTS
            )));
        }
        // the images of the collection the answer may cover (each listed entry is sealed to
        // its id: the server cannot make up more than the client ingested)
        let mut listed = catalog.len();
        let layouts = resp
            .segments
            .iter()
            .map(|seg| self.checked_layout(&seg.layout))
            .collect::<Result<Vec<_>>>()?;
        let positions = layouts
            .iter()
            .fold(0usize, |n, l| n.saturating_add(l.count));
        // images added (and maybe deleted again) after the listing: list again (once)
        if (!all_known(&catalog) || positions > listed) && resp.version > listed_version {
            (listed_version, catalog) = self.catalog()?;
            listed = listed.max(catalog.len());
        }
        // the live images scored: (id, name), their norms and their dot products
        let mut found: Vec<(i64, String, Option<u64>)> = Vec::new();
        let mut found_norms: Vec<ImageNorms> = Vec::new();
        let mut found_dots = ChannelDots::zeros(self.channels(), 0)?;
        let mut ids = HashSet::new();
        timing.down_bytes = resp.ciphertexts.iter().flatten().map(Vec::len).sum();
        if resp.ciphertexts.len() != self.channels() {
            return Err(ClientError::Malformed(format!(
                "the server sent {} channels for a collection of {}",
                resp.ciphertexts.len(),
                self.vectors()
            )));
        }
        // Its segments' positions are the rows at the answer's version, deleted ones
        // included: a race can leave the listings short of them (a batch added, deleted and
        // compacted away between the two listings), so the bound allows for that, and stays
        // a small multiple of the collection the client knows.
        let most = listed.saturating_mul(2).saturating_add(MAX_MERGED_IMAGES);
        if positions > most {
            return Err(ClientError::Malformed(format!(
                "the server's answer has segments of {positions} images; the collection lists \
                 {listed}"
            )));
        }
        let placements = channel_ciphertexts::placements(&resp.segments);
        // everything checked from counts before a ciphertext is read; then read and
        // decrypted a few at a time
        let counts: Vec<usize> = resp.ciphertexts.iter().map(Vec::len).collect();
        let read = |c: usize, k: usize| -> blindsight_search::Result<Ciphertext> {
            let bytes = resp.ciphertexts.get(c).and_then(|cts| cts.get(k)).ok_or(
                blindsight_search::SearchError::CiphertextCount {
                    what: "response ciphertexts per channel",
                    expected: k + 1,
                    actual: counts.get(c).copied().unwrap_or(0),
                },
            )?;
            Ok(Ciphertext::from_bytes(ctx, bytes)?)
        };
        let channels = self.channels();
        let all_dots = match &self.cipher {
            AnyCipher::Bfv(c) => {
                let shape =
                    check_response(&layouts, channels, c.shape().len(), &counts, &placements)?;
                decrypt_response_with(c, &layouts, channels, &shape, read)?
            }
            AnyCipher::Ckks(c) => {
                let shape =
                    check_response(&layouts, channels, c.shape().len(), &counts, &placements)?;
                decrypt_response_with(c, &layouts, channels, &shape, read)?
            }
        };
        for ((seg, layout), dots) in resp.segments.iter().zip(&layouts).zip(&all_dots) {
            for &(position, id) in &seg.live {
                if position >= dots.len() {
                    return Err(ClientError::Malformed(format!(
                        "the server placed image {id} at position {position} of a segment of {}",
                        layout.count
                    )));
                }
                if !ids.insert(id) {
                    return Err(ClientError::Malformed(format!(
                        "the server listed image {id} twice"
                    )));
                }
                match catalog.get(&id) {
                    Some((name, norms, slot)) => {
                        found.push((id, name.clone(), *slot));
                        found_norms.push(norms.clone());
                        found_dots.push(dots.image(position))?;
                    }
                    // deleted and compacted away since the response's version
                    None if listed_version > resp.version => {}
                    None => {
                        return Err(ClientError::Malformed(format!(
                            "the server scored image {id}, which its image list does not hold"
                        )));
                    }
                }
            }
        }
        let sims = similarities_from_norms(
            self.encoder.encoding(),
            &found_norms,
            &query.norms(),
            &found_dots,
        );
        let matches = top_k(&sims, rule, k)
            .into_iter()
            .map(|i| Match {
                id: found[i].0,
                name: found[i].1.clone(),
                thumbnail_slot: found[i].2,
                channel_cosines: sims[i].channel_cosines.clone(),
                whole_cosine: sims[i].whole_cosine,
            })
            .collect();
        timing.decrypt_s = t.elapsed().as_secs_f64();
        Ok((matches, timing))
    }

    /// A segment layout from the server, accepted only if it is the one this client's
    /// parameters give for its image count (so every size derived from it is bounded by
    /// what the client itself would encrypt).
    fn checked_layout(&self, bytes: &[u8]) -> Result<Layout> {
        let layout = Layout::from_bytes(bytes)?;
        let expected = segment_layout(self.ctx(), layout.count, self.vectors().dim())?;
        // the baby steps are the server's business (segments written before the rule
        // `baby_steps_for` took the number of groups into account keep theirs): they change
        // no size the client derives
        if (Layout {
            baby: expected.baby,
            ..layout
        }) != expected
        {
            return Err(ClientError::Malformed(
                "the server sent a segment layout this collection's parameters do not give".into(),
            ));
        }
        Ok(layout)
    }

    /// Fetches and opens the original files of `ids`: (id, bytes).
    pub fn fetch(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        self.remote
            .payloads(&self.collection, ids)?
            .into_iter()
            .map(|(id, sealed)| {
                Ok((
                    id,
                    seal::open(
                        &self.keystore.payload_key,
                        &self.collection,
                        id as u64,
                        &sealed,
                    )?,
                ))
            })
            .collect()
    }

    /// Fetches and opens the thumbnails of `ids`: (id, JPEG) for those that have one (images
    /// ingested before thumbnails get one at their next merge or compaction). A thumbnail
    /// that does not open for its image is an error, never another image.
    pub fn thumbnails(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        self.remote
            .thumbnails(&self.collection, ids)?
            .into_iter()
            .map(|(id, sealed)| {
                let jpeg = thumbnail::open(
                    &self.keystore.payload_key,
                    &self.collection,
                    id as u64,
                    &sealed,
                )?;
                Ok((id, jpeg))
            })
            .collect()
    }

    /// Deletes images; returns how many were live.
    pub fn delete(&self, ids: &[i64]) -> Result<u64> {
        self.remote.delete(&self.collection, ids)
    }
}

/// Encrypts a segment, serializing each ciphertext as soon as it exists.
fn encrypt_bytes<C: SlotCipher<Ct = Ciphertext>>(
    cipher: &C,
    ctx: &Context,
    vectors: &[Vec<Vec<f64>>],
) -> Result<(Layout, Vec<Vec<Vec<u8>>>)> {
    let seg = encrypt_segment_with(cipher, vectors, |ct| Ok(ct.to_bytes(ctx)?))?;
    Ok((seg.layout, seg.channels))
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_tags_are_standard_hmac_sha256() {
        // RFC 4231, test case 1: a 20-byte key (zero-padded to the payload key's 32 bytes
        // it is the same key to HMAC), "Hi There"
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        let hex: String = super::hmac_sha256(&key, b"Hi There")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
