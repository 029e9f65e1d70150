//! What the protocol says of images: as an ingest sends them, as a list shows them, as a
//! payload answer returns them. Public or sealed material only: ids are random, tags keyed,
//! everything else sealed by the client.

/// One image of an ingest batch, as the server receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// Opaque id chosen by the client (random 63 bits), unique in its collection.
    pub id: i64,
    /// Position in its segment.
    pub position: usize,
    /// Keyed content tag (for duplicate detection; opaque to the server).
    pub tag: Vec<u8>,
    /// Sealed metadata (name, norms).
    pub meta: Vec<u8>,
    /// Sealed original file.
    pub payload: Vec<u8>,
    /// Sealed source vector (what the image's vectors are encoded from), empty if none.
    pub source: Vec<u8>,
    /// Sealed thumbnail of exactly [`crate::THUMBNAIL_SEALED_BYTES`], empty if none.
    pub thumbnail: Vec<u8>,
}

impl ImageRecord {
    /// Bytes the image's rows add to its collection's stored bytes.
    pub fn stored_bytes(&self) -> usize {
        self.tag.len()
            + self.meta.len()
            + self.payload.len()
            + self.source.len()
            + self.thumbnail.len()
    }
}

/// An image listed without its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// Opaque id.
    pub id: i64,
    /// Segment row id.
    pub segment_id: i64,
    /// Position in the segment.
    pub position: usize,
    /// Keyed content tag.
    pub tag: Vec<u8>,
    /// Sealed metadata.
    pub meta: Vec<u8>,
    /// Whether the image was deleted.
    pub deleted: bool,
    /// The slot of the image's sealed thumbnail in the collection's private-retrieval
    /// database (`None`: the image has no thumbnail yet).
    pub thumbnail_slot: Option<u64>,
}

impl ImageEntry {
    /// Whether the image has a sealed thumbnail.
    pub fn has_thumbnail(&self) -> bool {
        self.thumbnail_slot.is_some()
    }
}

/// What a payload request found: sealed payloads in request order, and the ids that are
/// not live images of the collection. Ids in neither list were left for a later request
/// (the response reached its byte cap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadBatch {
    /// (id, sealed payload).
    pub found: Vec<(i64, Vec<u8>)>,
    /// Ids that are not live images of the collection.
    pub missing: Vec<i64>,
}
