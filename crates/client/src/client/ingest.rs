//! Streaming ingest: files are read, tagged, checked against the collection, decoded,
//! encoded and sealed a window at a time, and uploaded a batch at a time as batches fill.
//!
//! ```text
//! window of files ─► read ∥ keyed tag ∥ ─► skip known tags ─► decode ∥ encode ∥ thumbnail ∥ seal ∥ ─► batch ─► encrypt ∥ ─► upload (its own thread)
//! ```
//!
//! A full batch is encrypted, then uploaded on a thread of its own. For user vectors (in
//! memory already, in batches of a whole merged segment) the next batch is encrypted
//! meanwhile, and the upload before it must have landed before it is sent (batches land in
//! order, at most one in flight); an image batch lands before the next one fills. Memory
//! does not grow with the library: at most one window of file bytes ([`WINDOW_BYTES`], or
//! one larger file) is held while it is decoded, and at most one batch of sealed images
//! ([`BATCH`] images, [`BATCH_FILE_BYTES`] of files) waits for its upload (of vectors: one
//! more, encrypted, while it lands), with one decoded image per core: under 1 GiB for
//! photographs up to 12 MP on 2 cores, whatever the number of files (BENCHMARKS.md: 584 MB
//! at 1 000 files, 734 MB at 10 000).
//! A file the collection already holds is recognized from its bytes (a keyed tag) before
//! anything decodes it, so an unchanged re-ingest costs reading and hashing. A batch is one
//! transaction on the server: an ingest killed midway keeps every batch uploaded before,
//! and the next run skips those files by their tags.

use super::{Client, CompactReport, IngestReport, meta_bytes, meta_context, source_context};
use crate::errors::{ClientError, Result};
use crate::wire::{AppendSegment, ImageRecord};
use crate::{seal, thumbnail};
use blindsight_search::rank::EncodedImage;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// Images per ingest batch (one segment each).
pub const BATCH: usize = 1024;

/// Largest total of original file bytes in one ingest batch (so that a batch of large
/// photos stays well under the server's body limit, 512 MiB by default).
pub const BATCH_FILE_BYTES: usize = 128 << 20;

/// File bytes read at once before they are tagged and decoded (one file larger than this
/// is a window of its own).
pub const WINDOW_BYTES: u64 = 32 << 20;

/// Files read at once.
pub const WINDOW_FILES: usize = 64;

/// Something to ingest: a name (kept sealed beside the image) and its bytes, read when its
/// window comes.
pub trait IngestItem: Sync {
    /// The name the image is listed under.
    fn name(&self) -> &str;
    /// Its size in bytes, as far as is known before reading (for windows and progress).
    fn size_hint(&self) -> u64;
    /// Its bytes (for a user vector: its payload, possibly empty).
    fn read(&self) -> std::io::Result<Cow<'_, [u8]>>;
    /// The user's vector, for a `vectors` collection (an image file has none).
    fn vector(&self) -> Option<&[f32]> {
        None
    }
}

/// One of the user's vectors to ingest into a `vectors` collection, with its name and an
/// optional payload (the image file, a thumbnail, a document: sealed as an image file is;
/// a payload that is an image also gets a thumbnail).
#[derive(Clone, Debug, PartialEq)]
pub struct VectorItem {
    /// The name it is listed under.
    pub name: String,
    /// The vector (normalized by the ingest).
    pub vector: Vec<f32>,
    /// Its payload (empty: none).
    pub payload: Vec<u8>,
}

impl IngestItem for VectorItem {
    fn name(&self) -> &str {
        &self.name
    }
    fn size_hint(&self) -> u64 {
        (self.payload.len() + 4 * self.vector.len()) as u64
    }
    fn read(&self) -> std::io::Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.payload))
    }
    fn vector(&self) -> Option<&[f32]> {
        Some(&self.vector)
    }
}

impl IngestItem for (String, Vec<u8>) {
    fn name(&self) -> &str {
        &self.0
    }
    fn size_hint(&self) -> u64 {
        self.1.len() as u64
    }
    fn read(&self) -> std::io::Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.1))
    }
}

/// A file on disk to ingest, read only when its window comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestFile {
    /// The name the image is listed under (its path relative to the folder given).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size when it was listed.
    pub size: u64,
}

impl IngestItem for IngestFile {
    fn name(&self) -> &str {
        &self.name
    }
    fn size_hint(&self) -> u64 {
        self.size
    }
    fn read(&self) -> std::io::Result<Cow<'_, [u8]>> {
        std::fs::read(&self.path).map(Cow::Owned)
    }
}

/// Where an ingest is, after each window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestProgress {
    /// Files handled (added, skipped as present, or failed).
    pub files_done: usize,
    /// Files in the ingest.
    pub files_total: usize,
    /// Bytes of the files handled.
    pub bytes_done: u64,
    /// Bytes of all the files (as listed).
    pub bytes_total: u64,
    /// Images uploaded so far.
    pub added: usize,
    /// Files skipped because the collection holds them (or an earlier file of this ingest).
    pub duplicates: usize,
    /// Files that could not be read or decoded.
    pub failed: usize,
    /// Seconds since the ingest started.
    pub elapsed_s: f64,
}

impl IngestProgress {
    /// Seconds left at the rate so far, by bytes (`None` before anything is done).
    pub fn eta_s(&self) -> Option<f64> {
        (self.bytes_done > 0 && self.elapsed_s > 0.0).then(|| {
            self.elapsed_s * (self.bytes_total.saturating_sub(self.bytes_done)) as f64
                / self.bytes_done as f64
        })
    }
}

/// A file's bytes and its keyed content tag.
type Tagged<'a> = (Cow<'a, [u8]>, Vec<u8>);

/// An image ready for its batch: sealed, encoded, named.
struct Ready {
    name: String,
    record: ImageRecord,
    encoded: EncodedImage,
    file_bytes: usize,
}

/// The images waiting for their upload.
#[derive(Default)]
struct Pending {
    images: Vec<Ready>,
    file_bytes: usize,
}

impl Pending {
    /// Whether `next_bytes` more would overflow a batch of at most `max_images`.
    fn full_for(&self, next_bytes: usize, max_images: usize) -> bool {
        full(
            (self.images.len(), self.file_bytes as u64),
            next_bytes as u64,
            (max_images, BATCH_FILE_BYTES as u64),
        )
    }
}

/// Whether a group holding `(count, bytes)` is full for one more item of `next` bytes under
/// `(max_count, max_bytes)`: an empty group takes any item, however large. The one rule of
/// ingest windows and batches.
fn full((count, bytes): (usize, u64), next: u64, (max_count, max_bytes): (usize, u64)) -> bool {
    count > 0 && (count >= max_count || bytes.saturating_add(next) > max_bytes)
}

/// Cuts `items` into windows of at most [`WINDOW_FILES`] files and [`WINDOW_BYTES`] (by
/// their size hints; a larger file is a window of its own).
pub(crate) fn windows<T: IngestItem>(items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        let b = item.size_hint();
        if full((i - start, bytes), b, (WINDOW_FILES, WINDOW_BYTES)) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(b);
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

impl Client {
    /// Ingests image files (name, bytes): see [`Client::ingest_items`]; `progress` gets the
    /// number of images added so far.
    pub fn ingest(
        &self,
        files: &[(String, Vec<u8>)],
        mut progress: impl FnMut(usize),
    ) -> Result<IngestReport> {
        self.ingest_items(files, |p| progress(p.added))
    }

    /// Ingests `items` a window at a time (module docs): files the collection already
    /// holds (by their bytes) are skipped before any decoding, undecodable or unreadable
    /// ones are reported in [`IngestReport::failed`] with the reason, the rest are added in
    /// batches of [`BATCH`] images and [`BATCH_FILE_BYTES`], each uploaded as soon as it is
    /// full (one transaction on the server); then full tiers of segments are merged
    /// ([`Client::merge`]). `progress` is called after every window.
    pub fn ingest_items<T: IngestItem>(
        &self,
        items: &[T],
        mut progress: impl FnMut(&IngestProgress),
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let info = self.check_collection()?;
        let mut report = IngestReport::default();
        let mut known: HashSet<Vec<u8>> = HashSet::new();
        self.listed_images(|e, _, _| {
            known.insert(e.tag.clone());
            Ok(())
        })?;
        let mut elements = Self::galois_elements(&info);
        let mut state = IngestProgress {
            files_total: items.len(),
            bytes_total: items.iter().map(IngestItem::size_hint).sum(),
            ..IngestProgress::default()
        };
        let mut pending = Pending::default();
        // user vectors are small and come from memory: a batch is a whole merged segment
        // (nothing for the merge that follows to re-encrypt), not the 1 024 files of an
        // image ingest
        let vectors = items.first().is_some_and(|i| i.vector().is_some());
        let batch_images = if vectors {
            self.merge_policy()?.max_images.max(self.batch_images)
        } else {
            self.batch_images
        };
        // user vectors: one batch uploads (and the server checks and writes it) while the
        // next is encrypted, `in_flight` holding it until then; image files: each batch
        // lands before the next fills (a killed ingest redoes at most one batch, and holds
        // one batch of files)
        std::thread::scope(|scope| -> Result<()> {
            let mut in_flight: Option<InFlight<'_, '_>> = None;
            for window in windows(items) {
                // read and tag in parallel: nothing is decoded yet
                let read: Vec<std::result::Result<Tagged<'_>, String>> = window
                    .par_iter()
                    .map(|item| {
                        let bytes = item.read().map_err(|e| e.to_string())?;
                        let tag = match item.vector() {
                            // a vector and its payload: the same pair twice is a duplicate
                            Some(v) => {
                                let mut tagged = b"vector\0".to_vec();
                                tagged.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                                tagged.extend_from_slice(&bytes);
                                super::hmac_sha256(&self.keystore.payload_key, &tagged)
                            }
                            None => super::hmac_sha256(&self.keystore.payload_key, &bytes),
                        };
                        Ok((bytes, tag))
                    })
                    .collect();
                let mut fresh = Vec::new();
                for (item, r) in window.iter().zip(read) {
                    state.files_done += 1;
                    state.bytes_done += item.size_hint();
                    match r {
                        Err(reason) => report.failed.push((item.name().to_string(), reason)),
                        // known to the collection, or an earlier file of this ingest
                        Ok((_, tag)) if !known.insert(tag.clone()) => report.duplicates += 1,
                        Ok((bytes, tag)) => fresh.push((item, bytes, tag)),
                    }
                }
                // decode, encode and seal in parallel
                let ready: Vec<std::result::Result<Ready, (String, String)>> = fresh
                    .into_par_iter()
                    .map(|(item, bytes, tag)| self.prepare(item.name(), item.vector(), &bytes, tag))
                    .collect();
                for r in ready {
                    match r {
                        Err(failed) => report.failed.push(failed),
                        Ok(image) => {
                            if pending.full_for(image.file_bytes, batch_images) {
                                let batch = self.encrypt_batch(&mut pending, &mut elements)?;
                                self.landed(in_flight.take(), &mut report)?;
                                in_flight = Some(self.send(scope, batch));
                                if !vectors {
                                    self.landed(in_flight.take(), &mut report)?;
                                }
                            }
                            pending.file_bytes += image.file_bytes;
                            pending.images.push(image);
                        }
                    }
                }
                state.added = report.added;
                state.duplicates = report.duplicates;
                state.failed = report.failed.len();
                state.elapsed_s = started.elapsed().as_secs_f64();
                progress(&state);
            }
            if !pending.images.is_empty() {
                let batch = self.encrypt_batch(&mut pending, &mut elements)?;
                self.landed(in_flight.take(), &mut report)?;
                in_flight = Some(self.send(scope, batch));
            }
            if in_flight.is_some() {
                self.landed(in_flight.take(), &mut report)?;
                state.added = report.added;
                state.elapsed_s = started.elapsed().as_secs_f64();
                progress(&state);
            }
            Ok(())
        })?;
        if report.added > 0 && self.merge_after_ingest {
            match self.merge() {
                Ok(merged) => report.merged.add(merged),
                Err(e) => report.merge_failed = Some(e.to_string()),
            }
        }
        Ok(report)
    }

    /// Decodes, encodes and seals one file (or one user vector and its payload): its batch
    /// position is set when it is uploaded.
    fn prepare(
        &self,
        name: &str,
        vector: Option<&[f32]>,
        bytes: &[u8],
        tag: Vec<u8>,
    ) -> std::result::Result<Ready, (String, String)> {
        let failed = |e: ClientError| (name.to_string(), e.to_string());
        let file = match vector {
            Some(v) => self.encoder.encode_vector_for_ingest(v, bytes),
            None => self.encoder.encode_for_ingest(bytes, name),
        }
        .map_err(failed)?;
        let encoded = file.encoded;
        let sealed = || -> Result<ImageRecord> {
            let id = (u64::from_le_bytes(blindsight_os::random::bytes()?) >> 1) as i64;
            let key = &self.keystore.payload_key;
            Ok(ImageRecord {
                id,
                position: 0,
                tag,
                meta: seal::seal(
                    key,
                    &meta_context(&self.collection),
                    id as u64,
                    &meta_bytes(name, &encoded.norms()),
                )?,
                payload: seal::seal(key, &self.collection, id as u64, bytes)?,
                source: seal::seal(
                    key,
                    &source_context(&self.collection),
                    id as u64,
                    &file.source.to_bytes(),
                )?,
                // none for a vector whose payload is not an image
                thumbnail: if file.thumbnail.is_empty() {
                    Vec::new()
                } else {
                    thumbnail::seal(key, &self.collection, id as u64, &file.thumbnail)?
                },
            })
        };
        Ok(Ready {
            name: name.to_string(),
            record: sealed().map_err(failed)?,
            encoded,
            file_bytes: bytes.len(),
        })
    }

    /// Encrypts the pending batch into its segment message (then empties it).
    fn encrypt_batch(
        &self,
        pending: &mut Pending,
        elements: &mut HashSet<u64>,
    ) -> Result<EncryptedBatch> {
        let batch = std::mem::take(pending);
        let mut names = Vec::with_capacity(batch.images.len());
        let mut encoded = Vec::with_capacity(batch.images.len());
        let mut records = Vec::with_capacity(batch.images.len());
        for (position, image) in batch.images.into_iter().enumerate() {
            names.push(image.name);
            encoded.push(image.encoded);
            records.push(ImageRecord {
                position,
                ..image.record
            });
        }
        let refs: Vec<&EncodedImage> = encoded.iter().collect();
        let msg = self.segment_message(&refs, records, elements)?;
        Ok(EncryptedBatch { names, msg })
    }

    /// Uploads `batch` on a thread of `scope` (compacting first if the server holds the
    /// most segments it keeps), while the caller prepares the next one.
    fn send<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        batch: EncryptedBatch,
    ) -> InFlight<'scope, 'env> {
        scope.spawn(move || {
            let merged = match self.remote.append(&self.collection, &batch.msg) {
                // the server keeps a bounded number of segments: merge them, send again
                Err(ClientError::TooManySegments { .. }) if self.merge_after_ingest => {
                    let merged = self.compact()?;
                    self.remote.append(&self.collection, &batch.msg)?;
                    merged
                }
                other => {
                    other?;
                    CompactReport::default()
                }
            };
            let ids = batch
                .names
                .into_iter()
                .zip(batch.msg.images.iter().map(|img| img.id))
                .collect();
            Ok(Landed { ids, merged })
        })
    }

    /// Waits for the batch in flight, if any, and records it in `report`.
    fn landed(&self, in_flight: Option<InFlight<'_, '_>>, report: &mut IngestReport) -> Result<()> {
        let Some(handle) = in_flight else {
            return Ok(());
        };
        let landed = handle.join().map_err(|_| {
            ClientError::Internal("the upload of an ingest batch panicked".into())
        })??;
        report.added += landed.ids.len();
        report.ids.extend(landed.ids);
        report.merged.add(landed.merged);
        Ok(())
    }
}

/// A batch encrypted for its upload: its names (in position order) and its message.
struct EncryptedBatch {
    names: Vec<String>,
    msg: AppendSegment,
}

/// What an uploaded batch brought: (name, id) of its images and any compaction it needed.
struct Landed {
    ids: Vec<(String, i64)>,
    merged: CompactReport,
}

/// The upload of a batch, on its own thread.
type InFlight<'scope, 'env> = std::thread::ScopedJoinHandle<'scope, Result<Landed>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(sizes: &[u64]) -> Vec<IngestFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| IngestFile {
                name: format!("{i}"),
                path: PathBuf::from(format!("/nonexistent/{i}")),
                size,
            })
            .collect()
    }

    #[test]
    fn windows_respect_the_file_and_byte_caps() {
        let lens = |w: Vec<&[IngestFile]>| w.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lens(windows(&sized(&[1; 150]))), vec![64, 64, 22]);
        assert_eq!(lens(windows(&sized(&[12 << 20; 5]))), vec![2, 2, 1]);
        assert_eq!(lens(windows(&sized(&[300 << 20, 1]))), vec![1, 1]);
        assert!(windows(&sized(&[])).is_empty());
    }

    #[test]
    fn a_batch_is_full_at_its_image_or_byte_cap() {
        let mut p = Pending::default();
        assert!(
            !p.full_for(usize::MAX, BATCH),
            "an empty batch takes any file"
        );
        p.file_bytes = BATCH_FILE_BYTES - 10;
        p.images.reserve(1);
        // a batch with images: full when the next file would pass the byte cap
        let ready = || Ready {
            name: String::new(),
            record: ImageRecord {
                id: 0,
                position: 0,
                tag: Vec::new(),
                meta: Vec::new(),
                payload: Vec::new(),
                source: Vec::new(),
                thumbnail: Vec::new(),
            },
            encoded: EncodedImage::from_features(
                &blindsight_search::encoding::VectorEncoding::Unit,
                &[1.0],
            ),
            file_bytes: 0,
        };
        p.images.push(ready());
        assert!(!p.full_for(10, BATCH));
        assert!(p.full_for(11, BATCH));
        p.file_bytes = 0;
        p.images.resize_with(BATCH, ready);
        assert!(p.full_for(0, BATCH));
        assert!(!p.full_for(0, BATCH + 1));
    }

    #[test]
    fn the_eta_follows_the_byte_rate() {
        let p = IngestProgress {
            bytes_done: 100,
            bytes_total: 400,
            elapsed_s: 2.0,
            ..IngestProgress::default()
        };
        assert_eq!(p.eta_s(), Some(6.0));
        assert_eq!(IngestProgress::default().eta_s(), None);
    }
}
