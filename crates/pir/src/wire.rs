//! Queries and answers as bytes: a small versioned frame around `blindsight-he`'s
//! ciphertext envelopes (each checked against the parameter set on reading). Every length
//! is bounded before anything is allocated: the server reads queries from clients, the
//! client reads answers from a server it does not trust.
//!
//! ```text
//! "BSPR" | version u8 | kind u8 (1 query, 2 answer) | capacity u64 LE (0 in answers)
//!        | count u32 LE | count × (length u32 LE | ciphertext envelope)
//! "BSPR" | version u8 | kind 3 (keys) | key id 16 bytes | layout seed u64 LE
//!        | Galois keys length u32 LE | envelope | relinearization key length u32 LE | envelope
//! ```
//!
//! A retrieval request is the key id (16 bytes) followed by a query frame.

use crate::errors::{PirError, Result};
use blindsight_he::{Ciphertext, Context, Serializable};

const MAGIC: &[u8; 4] = b"BSPR";
/// The frame's version.
pub const VERSION: u8 = 1;
const KIND_QUERY: u8 = 1;
const KIND_ANSWER: u8 = 2;
const KIND_KEYS: u8 = 3;

/// Most bytes of a keys frame (the keys of `pir-4096` take about 2.2 MB).
pub const MAX_KEYS_BYTES: usize = 8 << 20;

/// Bytes of a key id.
pub const KEY_ID_BYTES: usize = 16;
const HEADER: usize = 4 + 1 + 1 + 8 + 4;

/// Most ciphertexts a query or an answer holds.
pub const MAX_CIPHERTEXTS: usize = 256;
/// Most bytes one ciphertext envelope may take (a full ciphertext at the largest preset is
/// far below).
pub const MAX_CIPHERTEXT_BYTES: usize = 1 << 22;

/// A query: the client's view of the database size and the selector ciphertexts.
#[derive(Clone, Debug)]
pub struct Query {
    /// Slots the client believes the database has (the server answers over these).
    pub capacity: u64,
    /// Seeded, coefficient-encoded selector ciphertexts.
    pub ciphertexts: Vec<Ciphertext>,
}

/// An answer: `parts` ciphertexts per bucket, rounded for transfer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The buckets' ciphertexts in bucket order.
    pub ciphertexts: Vec<Ciphertext>,
}

fn write(ctx: &Context, kind: u8, capacity: u64, cts: &[Ciphertext]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + cts.len() * 40_000);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&capacity.to_le_bytes());
    out.extend_from_slice(&(cts.len() as u32).to_le_bytes());
    for ct in cts {
        push_part(&mut out, &ct.to_bytes(ctx)?);
    }
    Ok(out)
}

fn malformed(what: &str, actual: impl ToString) -> PirError {
    PirError::Malformed {
        what: what.to_string(),
        actual: actual.to_string(),
    }
}

fn read(ctx: &Context, kind: u8, bytes: &[u8]) -> Result<(u64, Vec<Ciphertext>)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(malformed("a private-retrieval frame", "other bytes"));
    }
    if bytes[4] != VERSION {
        return Err(malformed("frame version 1", bytes[4]));
    }
    if bytes[5] != kind {
        return Err(malformed(
            if kind == KIND_QUERY {
                "a query"
            } else {
                "an answer"
            },
            format!("frame kind {}", bytes[5]),
        ));
    }
    let capacity = u64::from_le_bytes(
        bytes[6..14]
            .try_into()
            .map_err(|_| malformed("capacity", "short"))?,
    );
    let count = u32::from_le_bytes(
        bytes[14..18]
            .try_into()
            .map_err(|_| malformed("count", "short"))?,
    ) as usize;
    if count > MAX_CIPHERTEXTS {
        return Err(malformed("at most 256 ciphertexts", count));
    }
    let mut rest = &bytes[HEADER..];
    let mut cts = Vec::with_capacity(count);
    for _ in 0..count {
        let part = take_part(&mut rest, MAX_CIPHERTEXT_BYTES, "a ciphertext")?;
        cts.push(Ciphertext::from_bytes(ctx, part)?);
    }
    end_of_frame(rest)?;
    Ok((capacity, cts))
}

/// Appends a part: its length (`u32` LE), then its bytes.
fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// Takes the next part (length, then at most `max` bytes, all within the frame) off `rest`.
fn take_part<'a>(rest: &mut &'a [u8], max: usize, what: &str) -> Result<&'a [u8]> {
    if rest.len() < 4 {
        return Err(malformed(
            &format!("the length of {what}"),
            "the end of the frame",
        ));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len > max || len > rest.len() - 4 {
        return Err(malformed(
            &format!("{what} within the frame"),
            format!("{len} bytes"),
        ));
    }
    let part = &rest[4..4 + len];
    *rest = &rest[4 + len..];
    Ok(part)
}

/// Nothing may follow the last part.
fn end_of_frame(rest: &[u8]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(malformed(
            "the end of the frame",
            format!("{} more bytes", rest.len()),
        ))
    }
}

impl Query {
    /// The query as bytes.
    pub fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        write(ctx, KIND_QUERY, self.capacity, &self.ciphertexts)
    }

    /// Reads a query, checking every length and ciphertext.
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let (capacity, ciphertexts) = read(ctx, KIND_QUERY, bytes)?;
        Ok(Self {
            capacity,
            ciphertexts,
        })
    }
}

impl Response {
    /// The answer as bytes.
    pub fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        write(ctx, KIND_ANSWER, 0, &self.ciphertexts)
    }

    /// Reads an answer, checking every length and ciphertext.
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let (_, ciphertexts) = read(ctx, KIND_ANSWER, bytes)?;
        Ok(Self { ciphertexts })
    }
}

/// The one-time keys of a retrieval secret, as uploaded: an id the client picks at random,
/// the seed of the batch layout (the client's, so that a server cannot pick a layout that
/// fails for some result sets) and the keys.
#[derive(Clone, Debug)]
pub struct KeysUpload {
    /// Random id naming these keys in retrieval requests.
    pub key_id: [u8; KEY_ID_BYTES],
    /// Seed of the batch layout.
    pub layout_seed: u64,
    /// The substitution and relinearization keys.
    pub keys: crate::QueryKeys,
}

impl KeysUpload {
    /// The frame's bytes.
    pub fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        let galois = self.keys.galois.to_bytes(ctx)?;
        let relin = self.keys.relin.to_bytes(ctx)?;
        let mut out = Vec::with_capacity(64 + galois.len() + relin.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(KIND_KEYS);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.layout_seed.to_le_bytes());
        push_part(&mut out, &galois);
        push_part(&mut out, &relin);
        Ok(out)
    }

    /// Reads a keys frame, checking every length and both key envelopes.
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let head = 4 + 1 + 1 + KEY_ID_BYTES + 8;
        if bytes.len() > MAX_KEYS_BYTES {
            return Err(malformed(
                "a keys frame of at most 8 MiB",
                format!("{} bytes", bytes.len()),
            ));
        }
        if bytes.len() < head || &bytes[..4] != MAGIC {
            return Err(malformed("a private-retrieval keys frame", "other bytes"));
        }
        if bytes[4] != VERSION || bytes[5] != KIND_KEYS {
            return Err(malformed(
                "keys frame version 1",
                format!("version {} kind {}", bytes[4], bytes[5]),
            ));
        }
        let mut key_id = [0u8; KEY_ID_BYTES];
        key_id.copy_from_slice(&bytes[6..6 + KEY_ID_BYTES]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[6 + KEY_ID_BYTES..head]);
        let mut rest = &bytes[head..];
        let galois = take_part(&mut rest, MAX_KEYS_BYTES, "the Galois keys")?;
        let relin = take_part(&mut rest, MAX_KEYS_BYTES, "the relinearization key")?;
        end_of_frame(rest)?;
        let galois = blindsight_he::GaloisKeys::from_bytes(ctx, galois)?;
        let relin = blindsight_he::RelinKey::from_bytes(ctx, relin)?;
        let wanted = crate::keys::expansion_elements(ctx.degree());
        if !wanted.iter().all(|g| galois.elements().any(|e| e == *g)) {
            return Err(malformed(
                "a substitution key per expansion level",
                "fewer keys",
            ));
        }
        Ok(Self {
            key_id,
            layout_seed: u64::from_le_bytes(seed),
            keys: crate::QueryKeys { galois, relin },
        })
    }
}

/// A retrieval request: the id of the keys it uses, then the query.
pub fn encode_request(
    ctx: &Context,
    key_id: &[u8; KEY_ID_BYTES],
    query: &Query,
) -> Result<Vec<u8>> {
    let mut out = key_id.to_vec();
    out.extend_from_slice(&query.to_bytes(ctx)?);
    Ok(out)
}

/// Reads a retrieval request: (key id, query).
pub fn decode_request(ctx: &Context, bytes: &[u8]) -> Result<([u8; KEY_ID_BYTES], Query)> {
    if bytes.len() < KEY_ID_BYTES {
        return Err(malformed("a key id", "the end of the request"));
    }
    let mut key_id = [0u8; KEY_ID_BYTES];
    key_id.copy_from_slice(&bytes[..KEY_ID_BYTES]);
    Ok((key_id, Query::from_bytes(ctx, &bytes[KEY_ID_BYTES..])?))
}
