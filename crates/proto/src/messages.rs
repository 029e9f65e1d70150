//! The messages of the HTTP API: every binary request and response body is one frame.
//!
//! ```text
//! "BLSW" | version u16 | kind u8 | payload: u64 integers and length-prefixed byte
//! strings, in the order the message defines | CRC-32 of everything before
//! ```
//!
//! Per-channel ciphertexts are a channel count (1 to 3: an embedding has one channel,
//! pixels three) followed by one list per channel.
//!
//! Ciphertexts, keys and parameters inside a frame are `blindsight-he` envelopes, checked
//! again when they are used. Readers bound every count and length by the bytes actually
//! present, so a malformed body is an error, never a panic or a huge allocation.

use crate::errors::{ProtoError, Result};
use crate::types::{ImageEntry, ImageRecord, PayloadBatch};

/// Most channels a message carries per image (pixels: three; an embedding or vectors: one).
pub const MAX_CHANNELS: usize = 3;

const MAGIC: [u8; 4] = *b"BLSW";

/// Version 8: images carry a sealed thumbnail of [`THUMBNAIL_SEALED_BYTES`] (or none), image
/// lists say which have one, and thumbnails are fetched and backfilled by id. Version 7:
/// image lists come in pages (a cursor to the next). Version 6: a search response is one list of ciphertexts per channel, shared by the
/// segments, and every group of a segment says where its scores are (ciphertext, lane
/// shift). Version 5: images carry their sealed source vector, and a compaction replaces
/// one or more segments by a rebuilt one whose images move (merging). Version 4: `CreateCollection`
/// carries the vector kind; per-channel ciphertexts are counted (version 3: the
/// ring-switching key of responses).
const VERSION: u16 = 9;
/// The `code` of an error answer refusing an ingest because the collection holds the most
/// segments its server keeps (409, with `limit` and `actual`): the client merges its
/// segments and sends the batch again.
pub const TOO_MANY_SEGMENTS: &str = "too_many_segments";

/// Most segments a client accepts in a search answer (a server keeps at most this many
/// per collection: `serve --quota-segments` is at most this).
pub const MAX_ANSWER_SEGMENTS: usize = 1024;

/// Most images in one page of an image list (`GET …/images?after=ID&limit=N`).
pub const MAX_PAGE_IMAGES: usize = 4096;

/// Bytes a client's sealing adds to a payload (a version byte, a 24-byte nonce, a 16-byte
/// tag): the server bounds an image's sealed source vector by its plain length plus this.
pub const SEALED_OVERHEAD: usize = 1 + 24 + 16;

/// Most thumbnail slots a collection has (2^40, as many as private retrieval lays out).
pub const MAX_THUMBNAIL_SLOTS: u64 = 1 << 40;

/// Length of every sealed thumbnail: one size class, so that a thumbnail's length says
/// nothing about its image (the client pads the JPEG before sealing it).
pub const THUMBNAIL_SEALED_BYTES: usize = 16 * 1024;

/// Message kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// Create a collection: name, parameters, vector kind, evaluation keys.
    CreateCollection = 1,
    /// Append a segment: layout, ciphertexts, images.
    AppendSegment = 2,
    /// Search: one query ciphertext per channel.
    Search = 3,
    /// Search response: per channel, ciphertexts; per segment, where its scores are.
    SearchResponse = 4,
    /// Image ids (payload fetch, deletion).
    ImageIds = 5,
    /// Sealed payloads (or thumbnails) by id.
    Payloads = 6,
    /// Image list (ids, places, sealed metadata, deletion marks).
    ImageList = 7,
    /// Compaction or merge: segments replaced by one rebuilt from their live images.
    Compact = 8,
}

/// Builds a frame (or, made by [`FrameWriter::counter`], only counts its bytes).
pub struct FrameWriter {
    buf: Vec<u8>,
    /// Bytes appended by a counter (which keeps no bytes).
    counted: Option<usize>,
}

impl FrameWriter {
    /// Starts a frame of `kind`.
    pub fn new(kind: MessageKind) -> Self {
        Self::with_capacity(kind, 0)
    }
    /// Starts a frame of `kind` with room for `bytes` of fields.
    fn with_capacity(kind: MessageKind, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.saturating_add(FRAME_OVERHEAD));
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.push(kind as u8);
        Self { buf, counted: None }
    }
    /// A writer that counts the bytes of the fields written to it.
    fn counter() -> Self {
        Self {
            buf: Vec::new(),
            counted: Some(0),
        }
    }
    fn put(&mut self, b: &[u8]) {
        match &mut self.counted {
            Some(n) => *n += b.len(),
            None => self.buf.extend_from_slice(b),
        }
    }
    /// Appends an integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    /// Appends a byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.put(b);
        self
    }
    /// Appends a list of byte strings.
    pub fn list(&mut self, items: &[Vec<u8>]) -> &mut Self {
        self.u64(items.len() as u64);
        for i in items {
            self.bytes(i);
        }
        self
    }
    /// Appends per-channel lists of byte strings (a count, then one list per channel).
    pub fn channels(&mut self, channels: &[Vec<Vec<u8>>]) -> &mut Self {
        self.u64(channels.len() as u64);
        for ch in channels {
            self.list(ch);
        }
        self
    }
    /// Finishes the frame (appends the checksum).
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert!(self.counted.is_none(), "a counter has no frame to finish");
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Reads a frame.
pub struct FrameReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(reason: impl Into<String>) -> ProtoError {
    ProtoError::Malformed(reason.into())
}

impl<'a> FrameReader<'a> {
    /// Checks magic, version, kind and checksum.
    pub fn open(bytes: &'a [u8], kind: MessageKind) -> Result<Self> {
        if bytes.len() < 4 + 2 + 1 + 4 || bytes[..4] != MAGIC {
            return Err(malformed("not a blindsight message"));
        }
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(content).to_le_bytes() != crc {
            return Err(malformed("checksum mismatch: the message was corrupted"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(ProtoError::Version {
                expected: VERSION,
                actual: version,
            });
        }
        if bytes[6] != kind as u8 {
            return Err(malformed(format!(
                "expected message kind {}, got {}",
                kind as u8, bytes[6]
            )));
        }
        Ok(Self {
            buf: content,
            pos: 7,
        })
    }
    /// Reads an integer.
    pub fn u64(&mut self) -> Result<u64> {
        let end = self.pos + 8;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| malformed("truncated message"))?;
        self.pos = end;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }
    /// Reads a non-negative 63-bit integer (ids, versions).
    pub fn i64(&mut self, what: &str) -> Result<i64> {
        i64::try_from(self.u64()?).map_err(|_| malformed(format!("{what} out of range")))
    }
    /// Reads an index or position that fits this machine's `usize`.
    pub fn usize(&mut self, what: &str) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| malformed(format!("{what} out of range")))
    }
    /// Reads a count of items that each take at least `min_item` bytes.
    pub fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u64()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item.max(1) as u64) > remaining {
            return Err(malformed("count exceeds the message size"));
        }
        Ok(n as usize)
    }
    /// Reads a byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.count(1)?;
        let b = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(b)
    }
    /// Reads a list of byte strings.
    pub fn list(&mut self) -> Result<Vec<Vec<u8>>> {
        let n = self.count(8)?;
        (0..n).map(|_| Ok(self.bytes()?.to_vec())).collect()
    }
    /// Reads a channel count (1 to [`MAX_CHANNELS`]).
    pub fn channel_count(&mut self) -> Result<usize> {
        let n = self.u64()?;
        if (1..=MAX_CHANNELS as u64).contains(&n) {
            Ok(n as usize)
        } else {
            Err(malformed(format!(
                "{n} channels: an image has 1 to {MAX_CHANNELS}"
            )))
        }
    }
    /// Reads per-channel lists of byte strings.
    pub fn channels(&mut self) -> Result<Vec<Vec<Vec<u8>>>> {
        let n = self.channel_count()?;
        (0..n).map(|_| self.list()).collect()
    }
    /// Checks that the whole frame was read.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(malformed("unexpected bytes at the end of the message"));
        }
        Ok(())
    }
}

/// Body of `CreateCollection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateCollection {
    /// Collection name.
    pub name: String,
    /// Parameter set envelope.
    pub params: Vec<u8>,
    /// What the collection encrypts ([`blindsight_search::VectorKind`] spec).
    pub vectors: String,
    /// Relinearization key envelope.
    pub relin_key: Vec<u8>,
    /// Galois keys envelope.
    pub galois_keys: Vec<u8>,
    /// Ring-switching key envelope of responses.
    pub response_key: Vec<u8>,
    /// Identifier of the client key (a hash, not a secret).
    pub key_id: String,
}

impl CreateCollection {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = FrameWriter::new(MessageKind::CreateCollection);
        w.bytes(self.name.as_bytes())
            .bytes(&self.params)
            .bytes(self.vectors.as_bytes())
            .bytes(&self.relin_key)
            .bytes(&self.galois_keys)
            .bytes(&self.response_key)
            .bytes(self.key_id.as_bytes());
        w.finish()
    }
    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = FrameReader::open(bytes, MessageKind::CreateCollection)?;
        let name =
            String::from_utf8(r.bytes()?.to_vec()).map_err(|_| malformed("name is not UTF-8"))?;
        let msg = Self {
            name,
            params: r.bytes()?.to_vec(),
            vectors: String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| malformed("vector kind is not UTF-8"))?,
            relin_key: r.bytes()?.to_vec(),
            galois_keys: r.bytes()?.to_vec(),
            response_key: r.bytes()?.to_vec(),
            key_id: String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| malformed("key id is not UTF-8"))?,
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Body of `AppendSegment`: one ingest batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendSegment {
    /// Serialized layout.
    pub layout: Vec<u8>,
    /// Ciphertext envelopes per channel.
    pub ciphertexts: Vec<Vec<Vec<u8>>>,
    /// The images of the segment.
    pub images: Vec<ImageRecord>,
    /// Galois keys the layout needs and the collection lacks (envelope; empty if none).
    pub galois_keys: Vec<u8>,
}

/// Bytes of a frame beside its fields: magic, version, kind and checksum.
const FRAME_OVERHEAD: usize = MAGIC.len() + size_of::<u16>() + 1 + size_of::<u32>();

/// The frame of `kind` whose fields `write` appends, in a buffer of its exact size: `write`
/// runs twice, first on a counter. For messages of hundreds of megabytes (ingest batches,
/// rebuilt segments), which would otherwise grow their buffer by copies, touching fresh
/// pages each time.
fn encode_sized(kind: MessageKind, write: impl Fn(&mut FrameWriter)) -> Vec<u8> {
    let mut counter = FrameWriter::counter();
    write(&mut counter);
    let mut w = FrameWriter::with_capacity(kind, counter.counted.unwrap_or(0));
    write(&mut w);
    w.finish()
}

impl AppendSegment {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        encode_sized(MessageKind::AppendSegment, |w| self.write(w))
    }

    fn write(&self, w: &mut FrameWriter) {
        w.bytes(&self.layout).channels(&self.ciphertexts);
        w.u64(self.images.len() as u64);
        for img in &self.images {
            w.u64(img.id as u64)
                .u64(img.position as u64)
                .bytes(&img.tag)
                .bytes(&img.meta)
                .bytes(&img.payload)
                .bytes(&img.source)
                .bytes(&img.thumbnail);
        }
        w.bytes(&self.galois_keys);
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = FrameReader::open(bytes, MessageKind::AppendSegment)?;
        let msg = Self::read(&mut r)?;
        r.finish()?;
        Ok(msg)
    }

    fn read(r: &mut FrameReader<'_>) -> Result<Self> {
        let layout = r.bytes()?.to_vec();
        let ciphertexts = r.channels()?;
        // id, position and five length prefixes
        let n = r.count(56)?;
        let mut images = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.i64("image id")?;
            let position = r.usize("position")?;
            images.push(ImageRecord {
                id,
                position,
                tag: r.bytes()?.to_vec(),
                meta: r.bytes()?.to_vec(),
                payload: r.bytes()?.to_vec(),
                source: r.bytes()?.to_vec(),
                thumbnail: r.bytes()?.to_vec(),
            });
        }
        let galois_keys = r.bytes()?.to_vec();
        Ok(Self {
            layout,
            ciphertexts,
            images,
            galois_keys,
        })
    }
}

/// A segment rebuilt by the client from the live images of the segments it replaces: the
/// ciphertexts of its layout, and where each image goes. The images themselves (tags,
/// sealed metadata, payloads and sources) stay on the server and move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuiltSegment {
    /// Serialized layout.
    pub layout: Vec<u8>,
    /// Ciphertext envelopes per channel.
    pub ciphertexts: Vec<Vec<Vec<u8>>>,
    /// (image id, position in the new segment) of every image.
    pub placements: Vec<(i64, usize)>,
    /// Galois keys the layout needs and the collection lacks (envelope; empty if none).
    pub galois_keys: Vec<u8>,
}

impl RebuiltSegment {
    fn write(&self, w: &mut FrameWriter) {
        w.bytes(&self.layout).channels(&self.ciphertexts);
        w.u64(self.placements.len() as u64);
        for &(id, position) in &self.placements {
            w.u64(id as u64).u64(position as u64);
        }
        w.bytes(&self.galois_keys);
    }

    fn read(r: &mut FrameReader<'_>) -> Result<Self> {
        let layout = r.bytes()?.to_vec();
        let ciphertexts = r.channels()?;
        let n = r.count(16)?;
        let placements = (0..n)
            .map(|_| {
                let id = r.i64("image id")?;
                let position = r.usize("position")?;
                Ok((id, position))
            })
            .collect::<Result<Vec<_>>>()?;
        let galois_keys = r.bytes()?.to_vec();
        Ok(Self {
            layout,
            ciphertexts,
            placements,
            galois_keys,
        })
    }
}

/// Body of `Compact`: replace segments `olds` by `batch` (their live images, re-encrypted as
/// one segment: the compaction of one segment, or a merge of several), or drop them when
/// `batch` is `None` (nothing in them is live). Each old segment comes with the live set the
/// client computed the rebuild from: the server refuses the whole request (409) unless
/// every one is still its segment's live set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactSegment {
    /// Row ids of the segments to replace, each with the ids of its live images as the
    /// client saw them.
    pub olds: Vec<(i64, Vec<i64>)>,
    /// The rebuilt segment.
    pub batch: Option<RebuiltSegment>,
}

impl CompactSegment {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        encode_sized(MessageKind::Compact, |w| {
            w.u64(self.olds.len() as u64);
            for (old, live) in &self.olds {
                w.u64(*old as u64);
                write_ids(w, live);
            }
            match &self.batch {
                Some(b) => {
                    w.u64(1);
                    b.write(w);
                }
                None => {
                    w.u64(0);
                }
            }
        })
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = FrameReader::open(bytes, MessageKind::Compact)?;
        // each old segment takes at least its id and its count
        let n = r.count(16)?;
        let olds = (0..n)
            .map(|_| Ok((r.i64("segment id")?, read_ids(&mut r)?)))
            .collect::<Result<Vec<_>>>()?;
        let batch = match r.u64()? {
            0 => None,
            1 => Some(RebuiltSegment::read(&mut r)?),
            _ => return Err(malformed("bad compaction flag")),
        };
        r.finish()?;
        Ok(Self { olds, batch })
    }
}

/// Encodes a search request (one query ciphertext envelope per channel).
pub fn encode_search(query: &[Vec<u8>]) -> Vec<u8> {
    let mut w = FrameWriter::new(MessageKind::Search);
    w.list(query);
    w.finish()
}

/// Decodes a search request.
pub fn decode_search(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = FrameReader::open(bytes, MessageKind::Search)?;
    // a list of byte strings whose count is a channel count
    let n = r.channel_count()?;
    let q = (0..n)
        .map(|_| Ok(r.bytes()?.to_vec()))
        .collect::<Result<Vec<_>>>()?;
    r.finish()?;
    Ok(q)
}

/// The response for one segment: its row id, its layout, its live images (position, id),
/// and per group where its scores are in the response's ciphertexts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScores {
    /// Segment row id.
    pub segment: i64,
    /// Serialized layout.
    pub layout: Vec<u8>,
    /// The segment's live images at the response's version: (position, image id).
    pub live: Vec<(usize, i64)>,
    /// Per group: the response ciphertext its scores are in and the lanes they were
    /// shifted by (`blindsight_search::response::Placement`).
    pub groups: Vec<(usize, usize)>,
}

/// A search response: the collection's version it was computed at, the response
/// ciphertexts (per channel; the small segments' scores share them) and every segment of
/// that version, with exactly its live images (deleted ones are absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchResponse {
    /// The collection version the scores belong to.
    pub version: i64,
    /// Response ciphertext envelopes per channel.
    pub ciphertexts: Vec<Vec<Vec<u8>>>,
    /// Every segment of that version.
    pub segments: Vec<SegmentScores>,
}

/// Encodes a search response.
pub fn encode_search_response(resp: &SearchResponse) -> Vec<u8> {
    let mut w = FrameWriter::new(MessageKind::SearchResponse);
    w.u64(resp.version as u64);
    w.channels(&resp.ciphertexts);
    w.u64(resp.segments.len() as u64);
    for s in &resp.segments {
        w.u64(s.segment as u64).bytes(&s.layout);
        w.u64(s.live.len() as u64);
        for &(position, id) in &s.live {
            w.u64(position as u64).u64(id as u64);
        }
        w.u64(s.groups.len() as u64);
        for &(ciphertext, shift) in &s.groups {
            w.u64(ciphertext as u64).u64(shift as u64);
        }
    }
    w.finish()
}

/// Decodes a search response.
pub fn decode_search_response(bytes: &[u8]) -> Result<SearchResponse> {
    let mut r = FrameReader::open(bytes, MessageKind::SearchResponse)?;
    let version = r.i64("version")?;
    let ciphertexts = r.channels()?;
    let n = r.count(32)?;
    let mut segments = Vec::with_capacity(n);
    for _ in 0..n {
        let segment = r.i64("segment id")?;
        let layout = r.bytes()?.to_vec();
        let live_n = r.count(16)?;
        let live = (0..live_n)
            .map(|_| Ok((r.usize("position")?, r.i64("image id")?)))
            .collect::<Result<Vec<_>>>()?;
        let groups_n = r.count(16)?;
        let groups = (0..groups_n)
            .map(|_| Ok((r.usize("response ciphertext")?, r.usize("lane shift")?)))
            .collect::<Result<Vec<_>>>()?;
        segments.push(SegmentScores {
            segment,
            layout,
            live,
            groups,
        });
    }
    r.finish()?;
    Ok(SearchResponse {
        version,
        ciphertexts,
        segments,
    })
}

fn write_ids(w: &mut FrameWriter, ids: &[i64]) {
    w.u64(ids.len() as u64);
    for &id in ids {
        w.u64(id as u64);
    }
}

fn read_ids(r: &mut FrameReader<'_>) -> Result<Vec<i64>> {
    let n = r.count(8)?;
    (0..n).map(|_| r.i64("image id")).collect()
}

/// Encodes a list of image ids.
pub fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut w = FrameWriter::new(MessageKind::ImageIds);
    write_ids(&mut w, ids);
    w.finish()
}

/// Decodes a list of image ids.
pub fn decode_ids(bytes: &[u8]) -> Result<Vec<i64>> {
    let mut r = FrameReader::open(bytes, MessageKind::ImageIds)?;
    let ids = read_ids(&mut r)?;
    r.finish()?;
    Ok(ids)
}

/// Encodes sealed payloads by id, and the ids that are not live images.
pub fn encode_payloads(batch: &PayloadBatch) -> Vec<u8> {
    let mut w = FrameWriter::new(MessageKind::Payloads);
    w.u64(batch.found.len() as u64);
    for (id, p) in &batch.found {
        w.u64(*id as u64).bytes(p);
    }
    write_ids(&mut w, &batch.missing);
    w.finish()
}

/// Decodes sealed payloads by id, and the ids that are not live images.
pub fn decode_payloads(bytes: &[u8]) -> Result<PayloadBatch> {
    let mut r = FrameReader::open(bytes, MessageKind::Payloads)?;
    let n = r.count(16)?;
    let found = (0..n)
        .map(|_| Ok((r.i64("image id")?, r.bytes()?.to_vec())))
        .collect::<Result<Vec<_>>>()?;
    let missing = read_ids(&mut r)?;
    r.finish()?;
    Ok(PayloadBatch { found, missing })
}

/// An image list and the collection version it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageList {
    /// The collection version.
    pub version: i64,
    /// Every image, live and deleted.
    pub images: Vec<ImageEntry>,
}

/// One page of an image list: images by id after a cursor, and the cursor of the next page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePage {
    /// The collection version the page was read at.
    pub version: i64,
    /// Images (live and deleted) in increasing id order.
    pub images: Vec<ImageEntry>,
    /// The id to ask the next page after, if there are more images.
    pub next: Option<i64>,
}

/// Encodes a page of an image list.
pub fn encode_image_page(page: &ImagePage) -> Vec<u8> {
    let mut w = FrameWriter::new(MessageKind::ImageList);
    w.u64(page.version as u64);
    w.u64(page.images.len() as u64);
    for i in &page.images {
        w.u64(i.id as u64)
            .u64(i.segment_id as u64)
            .u64(i.position as u64)
            .bytes(&i.tag)
            .bytes(&i.meta);
        w.u64(i.deleted as u64)
            .u64(i.thumbnail_slot.map_or(0, |s| s.saturating_add(1)));
    }
    match page.next {
        Some(id) => w.u64(1).u64(id as u64),
        None => w.u64(0),
    };
    w.finish()
}

/// Decodes a page of an image list.
pub fn decode_image_page(bytes: &[u8]) -> Result<ImagePage> {
    let mut r = FrameReader::open(bytes, MessageKind::ImageList)?;
    let version = r.i64("version")?;
    let n = r.count(56)?;
    let flag = |r: &mut FrameReader<'_>, what: &str| match r.u64()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(malformed(format!("bad {what} flag"))),
    };
    let images = (0..n)
        .map(|_| {
            let id = r.i64("image id")?;
            let segment_id = r.i64("segment id")?;
            let position = r.usize("position")?;
            let tag = r.bytes()?.to_vec();
            let meta = r.bytes()?.to_vec();
            let deleted = flag(&mut r, "deletion")?;
            let thumbnail_slot = match r.u64()? {
                0 => None,
                s if s <= MAX_THUMBNAIL_SLOTS => Some(s - 1),
                _ => return Err(malformed("a thumbnail slot beyond any collection")),
            };
            Ok(ImageEntry {
                id,
                segment_id,
                position,
                tag,
                meta,
                deleted,
                thumbnail_slot,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next = match r.u64()? {
        0 => None,
        1 => Some(r.i64("next image id")?),
        _ => return Err(malformed("bad page cursor flag")),
    };
    r.finish()?;
    Ok(ImagePage {
        version,
        images,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AppendSegment {
        AppendSegment {
            layout: vec![1, 2, 3],
            ciphertexts: vec![vec![vec![9; 5]], vec![vec![8; 3], vec![7]], vec![]],
            images: vec![ImageRecord {
                id: 5,
                position: 0,
                tag: vec![1],
                meta: vec![2, 2],
                payload: vec![3; 7],
                source: vec![6; 3],
                thumbnail: vec![5; 2],
            }],
            galois_keys: vec![4, 4],
        }
    }

    #[test]
    fn segment_messages_are_encoded_in_the_buffer_they_reserve() {
        let mut a = sample();
        for extra in 0..3 {
            a.ciphertexts[0].push(vec![extra; 1000 * usize::from(extra)]);
            a.images[0].source.extend([1; 100]);
            let bytes = a.encode();
            assert_eq!(bytes.capacity(), bytes.len(), "never grown");
            assert_eq!(AppendSegment::decode(&bytes).unwrap(), a);
            let c = CompactSegment {
                olds: vec![(7, vec![5, 6])],
                batch: Some(RebuiltSegment {
                    layout: a.layout.clone(),
                    ciphertexts: a.ciphertexts.clone(),
                    placements: vec![(5, 0), (6, 1)],
                    galois_keys: vec![],
                }),
            };
            let bytes = c.encode();
            assert_eq!(bytes.capacity(), bytes.len(), "never grown");
            assert_eq!(CompactSegment::decode(&bytes).unwrap(), c);
        }
    }

    #[test]
    fn messages_round_trip() {
        let a = sample();
        assert_eq!(AppendSegment::decode(&a.encode()).unwrap(), a);
        let rebuilt = RebuiltSegment {
            layout: a.layout.clone(),
            ciphertexts: a.ciphertexts.clone(),
            placements: vec![(5, 1), (6, 0)],
            galois_keys: vec![],
        };
        for batch in [None, Some(rebuilt)] {
            for olds in [
                vec![(7, vec![5, 6])],
                vec![(7, vec![]), (9, vec![5, 6])],
                vec![],
            ] {
                let c = CompactSegment {
                    olds,
                    batch: batch.clone(),
                };
                assert_eq!(CompactSegment::decode(&c.encode()).unwrap(), c);
            }
        }
        let c = CreateCollection {
            name: "x".into(),
            params: vec![1],
            vectors: "embedding:1280:m@1:sqrt-l2".into(),
            relin_key: vec![2],
            galois_keys: vec![3],
            response_key: vec![5],
            key_id: "k".into(),
        };
        assert_eq!(CreateCollection::decode(&c.encode()).unwrap(), c);
        for q in [vec![vec![1u8], vec![2, 2], vec![]], vec![vec![3u8; 9]]] {
            assert_eq!(decode_search(&encode_search(&q)).unwrap(), q);
        }
        for q in [vec![], vec![vec![1u8]; 4]] {
            assert!(decode_search(&encode_search(&q)).is_err());
        }
        let mut one = a.clone();
        one.ciphertexts = vec![vec![vec![6; 4]]];
        assert_eq!(AppendSegment::decode(&one.encode()).unwrap(), one);
        for channels in [0, 4] {
            one.ciphertexts = vec![vec![vec![6; 4]]; channels];
            assert!(
                AppendSegment::decode(&one.encode()).is_err(),
                "{channels} channels"
            );
        }
        let resp = SearchResponse {
            version: 9,
            ciphertexts: vec![vec![vec![1]], vec![], vec![vec![2], vec![3]]],
            segments: vec![SegmentScores {
                segment: 3,
                layout: vec![5],
                live: vec![(0, 11), (2, 12)],
                groups: vec![(0, 0), (1, 3)],
            }],
        };
        assert_eq!(
            decode_search_response(&encode_search_response(&resp)).unwrap(),
            resp
        );
        assert_eq!(decode_ids(&encode_ids(&[1, 2, 3])).unwrap(), vec![1, 2, 3]);
        let p = PayloadBatch {
            found: vec![(1, vec![4u8; 4])],
            missing: vec![8],
        };
        assert_eq!(decode_payloads(&encode_payloads(&p)).unwrap(), p);
        for next in [None, Some(77)] {
            let page = ImagePage {
                version: 4,
                images: vec![ImageEntry {
                    id: 1,
                    segment_id: 2,
                    position: 3,
                    tag: vec![4],
                    meta: vec![],
                    deleted: true,
                    thumbnail_slot: Some(17),
                }],
                next,
            };
            assert_eq!(decode_image_page(&encode_image_page(&page)).unwrap(), page);
        }
    }

    #[test]
    fn damaged_messages_are_errors() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(AppendSegment::decode(&bytes[..cut]).is_err());
        }
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x40;
            assert!(AppendSegment::decode(&bad).is_err(), "flip at {pos}");
        }
        assert!(decode_ids(&bytes).is_err(), "wrong kind");
        // a huge declared count is refused before allocating
        let mut w = FrameWriter::new(MessageKind::ImageIds);
        w.u64(u64::MAX);
        assert!(decode_ids(&w.finish()).is_err());
    }
}
