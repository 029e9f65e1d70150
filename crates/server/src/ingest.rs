//! Uploaded segments (ingest batches and compactions), checked against their collection
//! (never against what the message says of itself) and written to their segment file
//! before their transaction.
//!
//! [`stage`] needs nothing of the store but the segment directory, so it runs outside the
//! collection's write gate: the shape checks (layout, counts, positions, sizes), then every
//! ciphertext deserialized, checked to be a fresh encryption of the collection's parameters
//! and converted to its gallery operand in the file. [`check_keys`] reads the collection's
//! Galois keys and runs under the gate, just before the transaction.

use crate::api_error::ApiError;
use crate::errors::ServerError;
use crate::state::AppState;
use crate::store::files::StagedFile;
use crate::store::segment_file::write_segment;
use crate::store::{CollectionRecord, ImageRecord, KeyUpdate, RebuiltBatch, SegmentBatch};
use blindsight_he::{Ciphertext, Context, Evaluator, GaloisKeys, Serializable};
use blindsight_proto::{AppendSegment, RebuiltSegment};
use blindsight_search::Layout;
use blindsight_search::he_backend::segment_layout;
use blindsight_search::source_vector;
use std::collections::HashSet;

/// Largest keyed content tag of an image.
pub const MAX_TAG_BYTES: usize = 64;
/// Largest sealed metadata of an image.
pub const MAX_META_BYTES: usize = 4 << 10;

/// An uploaded segment: an ingest batch (new images) or a rebuilt segment (images that
/// move from the segments it replaces).
pub trait Upload {
    /// What every uploaded segment carries.
    fn parts(&self) -> Parts<'_>;
    /// The images' positions in the segment, in message order.
    fn positions(&self) -> Vec<usize>;
    /// What the segment adds to its collection beside its file: (new images, their
    /// stored bytes); nothing for a rebuilt segment, whose images are already stored.
    fn added(&self) -> (u64, u64);
    /// Checks what the segment carries of each image beside its position.
    fn check_images(
        &self,
        record: &CollectionRecord,
        max_image_bytes: usize,
    ) -> Result<(), ApiError>;
}

/// The parts of an uploaded segment that do not depend on its kind.
pub struct Parts<'a> {
    /// Serialized layout.
    pub layout: &'a [u8],
    /// Ciphertext envelopes per channel.
    pub ciphertexts: &'a [Vec<Vec<u8>>],
    /// Galois keys sent with the segment (envelope; empty if none).
    pub galois_keys: &'a [u8],
}

impl<'a> Parts<'a> {
    fn new(layout: &'a [u8], ciphertexts: &'a [Vec<Vec<u8>>], galois_keys: &'a [u8]) -> Self {
        Self {
            layout,
            ciphertexts,
            galois_keys,
        }
    }
}

impl Upload for AppendSegment {
    fn parts(&self) -> Parts<'_> {
        Parts::new(&self.layout, &self.ciphertexts, &self.galois_keys)
    }
    fn positions(&self) -> Vec<usize> {
        self.images.iter().map(|i| i.position).collect()
    }
    fn added(&self) -> (u64, u64) {
        let bytes: usize = self.images.iter().map(ImageRecord::stored_bytes).sum();
        (self.images.len() as u64, (bytes + self.layout.len()) as u64)
    }
    fn check_images(
        &self,
        record: &CollectionRecord,
        max_image_bytes: usize,
    ) -> Result<(), ApiError> {
        // a sealed source of the collection's kind, or none
        let max_source =
            source_vector::serialized_len(&record.vectors) + blindsight_proto::SEALED_OVERHEAD;
        let too_large = |img: &ImageRecord| {
            img.tag.len() > MAX_TAG_BYTES
                || img.meta.len() > MAX_META_BYTES
                || img.payload.len() > max_image_bytes
                || img.source.len() > max_source
                || !matches!(
                    img.thumbnail.len(),
                    0 | blindsight_proto::THUMBNAIL_SEALED_BYTES
                )
        };
        if self.images.iter().any(too_large) {
            return Err(ServerError::Malformed(format!(
                "an image's tag, metadata, payload, source or thumbnail is too large (limits: \
                 {MAX_TAG_BYTES} B, {MAX_META_BYTES} B, {max_image_bytes} B, {max_source} B; \
                 a thumbnail is {} B or none)",
                blindsight_proto::THUMBNAIL_SEALED_BYTES
            ))
            .into());
        }
        Ok(())
    }
}

impl Upload for RebuiltSegment {
    fn parts(&self) -> Parts<'_> {
        Parts::new(&self.layout, &self.ciphertexts, &self.galois_keys)
    }
    fn positions(&self) -> Vec<usize> {
        self.placements.iter().map(|&(_, p)| p).collect()
    }
    fn added(&self) -> (u64, u64) {
        (0, 0)
    }
    fn check_images(&self, _: &CollectionRecord, _: usize) -> Result<(), ApiError> {
        // the images are already stored: only their ids and positions travel
        Ok(())
    }
}

/// An uploaded segment whose file is written and synced, waiting for its transaction.
pub struct Staged {
    file: StagedFile,
}

impl Staged {
    /// The batch to write: `msg`'s layout and images with the staged file.
    pub fn into_batch(self, msg: &AppendSegment) -> SegmentBatch<'_> {
        SegmentBatch {
            layout: &msg.layout,
            file: self.file,
            images: &msg.images,
        }
    }

    /// The rebuilt segment to write: `msg`'s layout and placements with the staged file.
    pub fn into_rebuilt(self, msg: &RebuiltSegment) -> RebuiltBatch<'_> {
        RebuiltBatch {
            layout: &msg.layout,
            file: self.file,
            placements: &msg.placements,
        }
    }
}

/// Galois keys to store with a batch (the collection's, completed by the batch's).
pub struct NewKeys {
    keys: Vec<u8>,
    elements: Vec<u64>,
}

impl NewKeys {
    /// The key update to write with the batch.
    pub fn update(&self) -> KeyUpdate<'_> {
        KeyUpdate {
            galois_keys: &self.keys,
            galois_elements: &self.elements,
        }
    }
}

/// Most bytes a segment file may take per byte of its uploaded ciphertexts. An honest upload expands
/// 2.6× (BFV) to 3.0× (CKKS): its second polynomials travel as 32-byte seeds and its first
/// rounded, and the file holds both expanded in NTT form. A larger ratio is a compact form
/// crafted to make the server store what it was not sent (a few rounded bits per
/// coefficient expand 77×), and is refused before anything is written.
pub const MAX_FILE_EXPANSION: u64 = 4;

/// Checks an uploaded segment's shape, then writes its segment file: the only acceptable
/// layout is the one the collection's parameters give for the batch's image count; every
/// ciphertext is a fresh one (2 polynomials, top level) of the collection's parameters;
/// image positions are `0..count`; sizes are bounded. Before the file's first byte: an
/// ingest batch must find the collection under its segment cap and its quota with room for
/// the file at its expanded size, and no segment may expand more than
/// [`MAX_FILE_EXPANSION`] times the bytes of its uploaded ciphertexts.
pub fn stage(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &impl Upload,
) -> Result<Staged, ApiError> {
    let layout = check_shape(state, record, ctx, msg)?;
    let (images, image_bytes) = msg.added();
    let quota = &state.options.quota;
    // the counters before the upload (the transaction checks again on what it commits on)
    let usage = state.reader()?.usage(record.id)?;
    if images > 0 {
        quota.check_new_segment(usage.segments)?;
        quota.check_headroom(&usage, images, image_bytes)?;
    }
    let uploaded: u64 = msg
        .parts()
        .ciphertexts
        .iter()
        .flatten()
        .map(|ct| ct.len() as u64)
        .sum();
    let admit = |file_bytes: u64| {
        let allowed = uploaded.saturating_mul(MAX_FILE_EXPANSION);
        if file_bytes > allowed {
            return Err(ServerError::Malformed(format!(
                "the segment's ciphertexts expand to {file_bytes} bytes from {uploaded} bytes \
                 uploaded (more than {MAX_FILE_EXPANSION}×): send gallery ciphertexts as fresh \
                 encryptions in their full or seeded form"
            )));
        }
        if images > 0 {
            quota.check_headroom(&usage, images, image_bytes.saturating_add(file_bytes))?;
        }
        Ok(())
    };
    let ev = Evaluator::new(ctx);
    let cts = msg.parts().ciphertexts;
    let file = write_segment(
        &state.files,
        &ev,
        &layout,
        cts.len(),
        |c, k| {
            let bytes = cts
                .get(c)
                .and_then(|ch| ch.get(k))
                .ok_or_else(|| ServerError::Malformed("a ciphertext is missing".into()))?;
            let ct = Ciphertext::from_bytes(ctx, bytes)?;
            if ct.size() != 2 || ct.level() != ctx.max_level() {
                return Err(ServerError::Malformed(
                    "gallery ciphertexts must be fresh encryptions (2 polynomials, top level)"
                        .into(),
                ));
            }
            Ok(ct)
        },
        admit,
    )?;
    Ok(Staged { file })
}

/// The checks of [`stage`] that read nothing but the message: the segment's layout.
fn check_shape(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &impl Upload,
) -> Result<Layout, ApiError> {
    let limits = &state.options.limits;
    let positions = msg.positions();
    let n = positions.len();
    if n == 0 || n > limits.max_batch_images {
        return Err(ServerError::Malformed(format!(
            "a batch holds 1 to {} images, not {n}",
            limits.max_batch_images
        ))
        .into());
    }
    let layout = segment_layout(ctx, n, record.vectors.dim())?;
    if msg.parts().layout != layout.to_bytes() {
        return Err(ServerError::Malformed(format!(
            "the batch's layout is not the one this collection's parameters give for {n} \
             images of {} values",
            record.vectors.dim()
        ))
        .into());
    }
    let cts = msg.parts().ciphertexts;
    if cts.len() != record.vectors.channels() {
        return Err(ServerError::Malformed(format!(
            "the collection holds {} ({} channels); the batch has {} channels",
            record.vectors,
            record.vectors.channels(),
            cts.len()
        ))
        .into());
    }
    let expected = layout.ciphertexts_per_channel();
    if let Some(ch) = cts.iter().find(|ch| ch.len() != expected) {
        return Err(ServerError::Malformed(format!(
            "expected {expected} ciphertexts per channel, got {}",
            ch.len()
        ))
        .into());
    }
    let mut seen = vec![false; n];
    for &p in &positions {
        match seen.get_mut(p) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return Err(ServerError::Malformed(
                    "image positions must be 0..count of the batch, each once".into(),
                )
                .into());
            }
        }
    }
    msg.check_images(record, limits.max_image_bytes)?;
    Ok(layout)
}

/// Checks that the collection's Galois keys, completed by the batch's, cover the batch's
/// layout; returns the completed keys when the batch brought new ones.
pub fn check_keys(
    state: &AppState,
    record: &CollectionRecord,
    ctx: &Context,
    msg: &impl Upload,
) -> Result<Option<NewKeys>, ApiError> {
    let layout = Layout::from_bytes(msg.parts().layout)?;
    let needed: Vec<u64> = layout
        .galois_steps()
        .into_iter()
        .map(|s| ctx.galois_element(s))
        .collect();
    let reader = state.reader()?;
    let stored: HashSet<u64> = reader.galois_elements(record.id)?.into_iter().collect();
    let keys = if msg.parts().galois_keys.is_empty() {
        None
    } else {
        let fresh = GaloisKeys::from_bytes(ctx, msg.parts().galois_keys)?;
        if fresh.elements().all(|e| stored.contains(&e)) {
            None
        } else {
            let blobs = reader.evaluation_keys(record.id)?;
            let mut keys = GaloisKeys::from_bytes(ctx, &blobs.galois_keys)?;
            keys.merge(fresh)?;
            let elements: Vec<u64> = keys.elements().collect();
            Some(NewKeys {
                keys: keys.to_bytes(ctx)?,
                elements,
            })
        }
    };
    let have: HashSet<u64> = match &keys {
        Some(k) => k.elements.iter().copied().collect(),
        None => stored,
    };
    let missing: Vec<u64> = needed.into_iter().filter(|e| !have.contains(e)).collect();
    if !missing.is_empty() {
        return Err(ServerError::Malformed(format!(
            "the layout needs Galois keys for elements {missing:?}; send them with the batch"
        ))
        .into());
    }
    Ok(keys)
}
