//! Private retrieval of search results' thumbnails: the server answers a PIR query over
//! all of the collection's sealed thumbnails and never learns which ones came back.
//!
//! Each client session makes its own retrieval secret (a `pir-4096` key independent of the
//! collection's search secret), uploads the public keys once (about 2.2 MB; the server
//! holds them in memory, and a server that dropped them answers 409: they are sent
//! again), and picks the layout's seed. The secret is dropped after any failed retrieval
//! (an answer that does not decode or a record whose seal does not open), so that a server
//! cannot probe it through the client's reactions. Every retrieval sends one query for
//! [`RECORDS_PER_QUERY`] records, whatever matched: searches for `k` results send
//! `⌈k / 10⌉` queries of the same size, the results without a thumbnail (or beyond a
//! placement) padded by dummies.

use super::Client;
use crate::errors::{ClientError, Result};
use crate::thumbnail;
use blindsight_he::{Context, SecretKey};
use blindsight_pir::batch::BatchLayout;
use blindsight_pir::params::{DEFAULT_MAX_K, PRESET};
use blindsight_pir::wire::{KEY_ID_BYTES, encode_request};
use blindsight_pir::{KeysUpload, QueryKeys, Response, Retrieved, build_query, decode_response};

/// Records one retrieval query asks for.
pub const RECORDS_PER_QUERY: usize = DEFAULT_MAX_K;

/// Largest answer read (an answer of 16 buckets is about 772 KB).
const MAX_ANSWER: usize = 4 << 20;

/// A session's retrieval secret and what the server knows of it.
pub(crate) struct Session {
    ctx: Context,
    secret: SecretKey,
    key_id: [u8; KEY_ID_BYTES],
    layout: BatchLayout,
    uploaded: bool,
}

impl Session {
    fn new() -> Result<Self> {
        let ctx = Context::preset(PRESET)?;
        let secret = SecretKey::generate(&ctx)?;
        let key_id = blindsight_os::random::bytes::<KEY_ID_BYTES>()?;
        let seed = u64::from_le_bytes(blindsight_os::random::bytes::<8>()?);
        let layout = params().layout(seed)?;
        Ok(Self {
            ctx,
            secret,
            key_id,
            layout,
            uploaded: false,
        })
    }
}

fn params() -> blindsight_pir::PirParams {
    blindsight_pir::PirParams::new(blindsight_proto::THUMBNAIL_SEALED_BYTES)
}

/// One retrieved thumbnail: the JPEG, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetrievedThumbnail {
    /// The opened JPEG.
    Jpeg(Vec<u8>),
    /// The image has no thumbnail yet (ingested before thumbnails; the next merge or
    /// `compact` gives it one).
    Missing,
    /// The batch could not place it (rare); it is not shown.
    Unplaced,
}

impl Client {
    /// The thumbnails of `matches` (id and thumbnail slot, from a search), by private
    /// retrieval: exactly `⌈len / 10⌉` queries whatever the slots, each record's seal
    /// checked against its image id (a wrong or swapped record is an error).
    pub fn private_thumbnails(
        &self,
        matches: &[(i64, Option<u64>)],
    ) -> Result<Vec<(i64, RetrievedThumbnail)>> {
        let mut out = Vec::with_capacity(matches.len());
        // the database size, as the server states it (the same whatever matched)
        let capacity = self.thumbnail_capacity()?;
        for chunk in matches.chunks(RECORDS_PER_QUERY) {
            let result = self.retrieve_chunk(chunk, capacity);
            if result.is_err() {
                // a failed retrieval ends the session's secret (see the module docs)
                if let Ok(mut s) = self.retrieval.lock() {
                    *s = None;
                }
            }
            out.extend(result?);
        }
        Ok(out)
    }

    fn retrieve_chunk(
        &self,
        chunk: &[(i64, Option<u64>)],
        capacity: u64,
    ) -> Result<Vec<(i64, RetrievedThumbnail)>> {
        let mut guard = self
            .retrieval
            .lock()
            .map_err(|_| ClientError::Malformed("the retrieval session lock is poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(Session::new()?);
        }
        let session = guard
            .as_mut()
            .ok_or_else(|| ClientError::Malformed("no retrieval session".into()))?;
        let slots: Vec<u64> = chunk.iter().filter_map(|(_, s)| *s).collect();
        if let Some(&s) = slots.iter().find(|&&s| s >= capacity) {
            return Err(ClientError::Malformed(format!(
                "the server listed thumbnail slot {s} in a database of {capacity} slots"
            )));
        }
        let (query, pending) = build_query(
            &session.ctx,
            &session.secret,
            &session.layout,
            capacity.max(1),
            &slots,
        )?;
        let request = encode_request(&session.ctx, &session.key_id, &query)?;
        let mut answer = None;
        for _ in 0..2 {
            if !session.uploaded {
                let keys = QueryKeys::generate(&session.ctx, &session.secret)?;
                let upload = KeysUpload {
                    key_id: session.key_id,
                    layout_seed: session.layout.seed(),
                    keys,
                };
                self.remote
                    .pir_keys(&self.collection, upload.to_bytes(&session.ctx)?)?;
                session.uploaded = true;
            }
            match self
                .remote
                .pir_retrieve(&self.collection, request.clone(), MAX_ANSWER)
            {
                Ok((bytes, _)) => {
                    answer = Some(bytes);
                    break;
                }
                // the server dropped the keys: upload them again, once
                Err(ClientError::Remote { status: 409, .. }) => session.uploaded = false,
                Err(e) => return Err(e),
            }
        }
        let bytes = answer.ok_or_else(|| {
            ClientError::Malformed("the server keeps refusing the retrieval keys".into())
        })?;
        let response = Response::from_bytes(&session.ctx, &bytes)?;
        let records = decode_response(
            &session.ctx,
            &session.secret,
            &params(),
            &pending,
            &response,
            &slots,
        )?;
        let mut by_slot = slots.iter().zip(records);
        let mut out = Vec::with_capacity(chunk.len());
        for &(id, slot) in chunk {
            let shown = match slot {
                None => RetrievedThumbnail::Missing,
                Some(s) => match by_slot.next() {
                    Some((&got, record)) if got == s => self.open_record(id, record)?,
                    _ => {
                        return Err(ClientError::Malformed(
                            "retrieval results out of order".into(),
                        ));
                    }
                },
            };
            out.push((id, shown));
        }
        Ok(out)
    }

    /// A retrieved record as image `id`'s thumbnail: its seal must open under `id` (a
    /// swapped or damaged record is an error); an empty slot (all zeros) is an image purged
    /// since the search.
    fn open_record(&self, id: i64, record: Retrieved) -> Result<RetrievedThumbnail> {
        let sealed = match record {
            Retrieved::Unplaced => return Ok(RetrievedThumbnail::Unplaced),
            Retrieved::Record(sealed) if sealed.iter().all(|&b| b == 0) => {
                return Ok(RetrievedThumbnail::Missing);
            }
            Retrieved::Record(sealed) => sealed,
        };
        let key = &self.keystore.payload_key;
        thumbnail::open(key, &self.collection, id as u64, &sealed)
            .map(RetrievedThumbnail::Jpeg)
            .map_err(|e| {
                ClientError::Malformed(format!(
                    "the server answered the private retrieval of image {id}'s thumbnail with \
                     a record that is not it ({e})"
                ))
            })
    }

    /// The number of thumbnail slots the server states for the collection.
    fn thumbnail_capacity(&self) -> Result<u64> {
        let info = self.remote.info(&self.collection)?;
        info.get("thumbnail_slots")
            .and_then(serde_json::Value::as_u64)
            .filter(|&n| n <= blindsight_proto::MAX_THUMBNAIL_SLOTS)
            .ok_or_else(|| {
                ClientError::Malformed(
                    "the server's collection info lacks its thumbnail slots (an older server?)"
                        .into(),
                )
            })
    }
}
