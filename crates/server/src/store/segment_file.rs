//! The segment file format: a segment's gallery operands laid out as the product kernels
//! read them, so that opening a segment maps a file and reads nothing else.
//!
//! ```text
//! 0     magic "BLSGSEG\0"
//! 8     format version (u32, 1)
//! 12    parameter fingerprint (32 bytes)
//! 44    layout length (u32), then the serialized layout
//! …     channels (u32), operands per channel (u64), bytes per operand (u64),
//!       level (u32), form (u8: 0 native, 1 extended), scale (f64 bits, u64)
//! …     CRC-32 of everything above
//! 4096  the operands, channel after channel, each in the kernel layout
//!       (`ProductOperand::append_kernel_bytes`: prime by prime, both polynomials,
//!       little-endian), each at a multiple of 64 bytes from the start
//! ```
//!
//! Integers are little-endian. The file's length is exactly the header plus its operands;
//! a file whose header, length, parameters, layout or channel count do not match its
//! segment's rows is refused ([`ServerError::SegmentFile`]). The residues themselves are not
//! checked on open: the server wrote them from ciphertexts it had validated, synced the
//! file and committed it atomically with its rows (`super::files`).

use super::files::{SegmentFiles, StagedFile};
use crate::errors::{Result, ServerError};
use blindsight_he::{Ciphertext, Evaluator, OperandSpec, ProductForm, ProductOperand, SharedBytes};
use blindsight_search::Layout;
use blindsight_search::he_backend::gallery_operand;
use rayon::prelude::*;
use std::path::Path;
use std::sync::Arc;

const MAGIC: [u8; 8] = *b"BLSGSEG\0";
const FORMAT_VERSION: u32 = 1;
/// Bytes before the first operand (a page: the operands stay page- and cache-line-aligned).
pub const HEADER_BYTES: usize = 4096;
/// Ciphertexts converted at once while writing (in parallel; a few MB).
const WRITE_CHUNK: usize = 32;

/// What a segment file's header records.
#[derive(Clone, Debug, PartialEq)]
struct Header {
    fingerprint: [u8; 32],
    layout: Vec<u8>,
    channels: u32,
    per_channel: u64,
    operand_bytes: u64,
    spec: OperandSpec,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&(self.layout.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.layout);
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&self.per_channel.to_le_bytes());
        out.extend_from_slice(&self.operand_bytes.to_le_bytes());
        out.extend_from_slice(&(self.spec.level as u32).to_le_bytes());
        out.push(match self.spec.form {
            ProductForm::Native => 0,
            ProductForm::Extended => 1,
        });
        out.extend_from_slice(&self.spec.scale.to_bits().to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(HEADER_BYTES, 0);
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err("not a blindsight segment file".into());
        }
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            ));
        }
        let fingerprint: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| "short fingerprint".to_string())?;
        let layout_len = r.u32()? as usize;
        if layout_len > 1024 {
            return Err(format!("a layout of {layout_len} bytes"));
        }
        let layout = r.take(layout_len)?.to_vec();
        let channels = r.u32()?;
        let per_channel = r.u64()?;
        let operand_bytes = r.u64()?;
        let level = r.u32()? as usize;
        let form = match r.take(1)?[0] {
            0 => ProductForm::Native,
            1 => ProductForm::Extended,
            f => return Err(format!("unknown operand form {f}")),
        };
        let scale = f64::from_bits(r.u64()?);
        let covered = r.at;
        if r.u32()? != crc32fast::hash(&bytes[..covered]) {
            return Err("header checksum mismatch".into());
        }
        Ok(Self {
            fingerprint,
            layout,
            channels,
            per_channel,
            operand_bytes,
            spec: OperandSpec { level, scale, form },
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let out = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| "truncated header".to_string())?;
        self.at += n;
        Ok(out)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }
}

/// Writes the segment file of `layout` with `channels` channels whose ciphertext `k` of
/// channel `c` is `ciphertext(c, k)` (converted to gallery operands in parallel, a chunk at a
/// time), staged and synced in `files`. `admit` sees the file's size once the first operand
/// gives it, before any byte is written, and may refuse it (quota, expansion).
pub fn write_segment(
    files: &SegmentFiles,
    ev: &Evaluator,
    layout: &Layout,
    channels: usize,
    ciphertext: impl Fn(usize, usize) -> Result<Ciphertext> + Sync,
    admit: impl FnOnce(u64) -> Result<()>,
) -> Result<StagedFile> {
    let ctx = ev.context();
    let per_channel = layout.ciphertexts_per_channel();
    let mut out = files.stage()?;
    let mut header: Option<Header> = None;
    let mut admit = Some(admit);
    for c in 0..channels {
        for start in (0..per_channel).step_by(WRITE_CHUNK) {
            let end = (start + WRITE_CHUNK).min(per_channel);
            let chunk = (start..end)
                .into_par_iter()
                .map(|k| {
                    let op = gallery_operand(ev, ciphertext(c, k)?)?;
                    let mut bytes = Vec::new();
                    op.append_kernel_bytes(ctx, &mut bytes)?;
                    Ok((op.spec(), bytes))
                })
                .collect::<Result<Vec<_>>>()?;
            for (spec, bytes) in chunk {
                let h = match &header {
                    Some(h) => h,
                    None => {
                        let h = Header {
                            fingerprint: ctx.params().fingerprint(),
                            layout: layout.to_bytes(),
                            channels: channels as u32,
                            per_channel: per_channel as u64,
                            operand_bytes: bytes.len() as u64,
                            spec,
                        };
                        // the file's whole size is known from its first operand: admitted
                        // (quota, expansion) before its first byte is written
                        let total = (bytes.len() as u64)
                            .saturating_mul(per_channel as u64)
                            .saturating_mul(channels as u64)
                            .saturating_add(HEADER_BYTES as u64);
                        if let Some(admit) = admit.take() {
                            admit(total)?;
                        }
                        out.write(&h.encode())?;
                        header.insert(h)
                    }
                };
                if spec != h.spec || bytes.len() as u64 != h.operand_bytes {
                    return Err(ServerError::Malformed(
                        "the ciphertexts of a segment must share one level and scale".into(),
                    ));
                }
                out.write(&bytes)?;
            }
        }
    }
    if header.is_none() {
        return Err(ServerError::Malformed(
            "a segment without ciphertexts".into(),
        ));
    }
    out.finish()
}

/// The gallery operands of a segment file, per channel, read in place from its mapping
/// (`map`), after checking its header against what the segment's rows say: the context of
/// `ev`, the serialized `layout` and `channels`.
pub fn open_segment(
    path: &Path,
    map: SharedBytes,
    ev: &Evaluator,
    layout: &[u8],
    channels: usize,
) -> Result<(Layout, Vec<Vec<ProductOperand>>)> {
    let bad = |reason: String| ServerError::SegmentFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes: &[u8] = map.as_ref().as_ref();
    let header = Header::decode(bytes.get(..HEADER_BYTES).unwrap_or(bytes)).map_err(bad)?;
    let ctx = ev.context();
    if header.fingerprint != ctx.params().fingerprint() {
        return Err(bad(
            "written under other parameters than its collection's".into()
        ));
    }
    if header.layout != layout {
        return Err(bad("its layout is not its segment's".into()));
    }
    let parsed = Layout::from_bytes(layout)?;
    let per_channel = parsed.ciphertexts_per_channel();
    if header.channels as usize != channels || header.per_channel != per_channel as u64 {
        return Err(bad(format!(
            "{} channels of {} operands, where the segment has {channels} of {per_channel}",
            header.channels, header.per_channel
        )));
    }
    let operand = ev.kernel_bytes_len(&header.spec)?;
    if header.operand_bytes != operand as u64 || operand % 64 != 0 {
        return Err(bad(format!(
            "{} bytes per operand, where its parameters give {operand}",
            header.operand_bytes
        )));
    }
    let expected = channels
        .checked_mul(per_channel)
        .and_then(|n| n.checked_mul(operand))
        .and_then(|n| n.checked_add(HEADER_BYTES));
    if expected != Some(bytes.len()) {
        return Err(bad(format!(
            "{} bytes long, where its header gives {}",
            bytes.len(),
            expected.map_or("more than this machine can address".into(), |n| n
                .to_string())
        )));
    }
    let operands = (0..channels)
        .map(|c| {
            (0..per_channel)
                .map(|k| {
                    let offset = HEADER_BYTES + (c * per_channel + k) * operand;
                    Ok(ev.shared_product(Arc::clone(&map), offset, &header.spec)?)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((parsed, operands))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            fingerprint: [7; 32],
            layout: vec![1, 2, 3, 4, 5],
            channels: 3,
            per_channel: 512,
            operand_bytes: 196_608,
            spec: OperandSpec {
                level: 1,
                scale: 2f64.powf(31.2),
                form: ProductForm::Native,
            },
        }
    }

    #[test]
    fn headers_round_trip_and_damage_is_refused() {
        let h = header();
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_BYTES);
        assert_eq!(Header::decode(&bytes), Ok(h));
        // every single byte changed before the checksum's end is caught
        let covered = 8 + 4 + 32 + 4 + 5 + 4 + 8 + 8 + 4 + 1 + 8 + 4;
        for i in 0..covered {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(Header::decode(&bad).is_err(), "byte {i}");
        }
        for cut in [0, 7, 20, covered - 1] {
            assert!(Header::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Header::decode(&bytes);
        }
    }
}
