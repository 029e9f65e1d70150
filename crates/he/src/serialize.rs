//! The versioned binary envelope shared by every serialized object.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "BLSH"
//! 4       2     format version (little endian), currently 1
//! 6       1     object kind (see [`Kind`])
//! 7       1     reserved, 0
//! 8       32    parameter fingerprint (SHA-256, see `Parameters::fingerprint`)
//! 40      8     payload length L (little endian)
//! 48      L     payload
//! 48+L    4     CRC-32 of bytes 0..48+L
//! ```
//!
//! Residues are bit-packed with the width of their prime; a seeded polynomial is its
//! 32-byte seed. Reading checks every field, every length and every residue against its
//! modulus and returns an error, never panics.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::keys::{GaloisKeys, KeySwitchingKey, PublicKey, RelinKey, SecretKey, SeededPair};
use crate::math::basis::Basis;
use crate::math::poly::RnsPoly;
use crate::math::sample::uniform_from_seed;
use crate::meta::Meta;
use crate::params::{Parameters, Scheme};
use crate::plaintext::{Ciphertext, PlainData, Plaintext, Rounding};
use crate::ring_switch::{MIN_SUBRING_DEGREE, RingSwitchKey, digit_count, level_bits};
use crate::transfer::{BigModulus, check_bits, lifted_poly, rounded_coefficients, rounded_values};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Magic bytes opening every envelope.
pub const MAGIC: [u8; 4] = *b"BLSH";
/// Format version written by this build.
pub const FORMAT_VERSION: u16 = 1;
const HEADER: usize = 48;
const TRAILER: usize = 4;

/// What an envelope holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    /// [`Parameters`].
    Parameters = 1,
    /// [`SecretKey`].
    SecretKey = 2,
    /// [`PublicKey`].
    PublicKey = 3,
    /// [`RelinKey`].
    RelinKey = 4,
    /// [`GaloisKeys`].
    GaloisKeys = 5,
    /// [`Ciphertext`].
    Ciphertext = 6,
    /// [`Plaintext`].
    Plaintext = 7,
    /// [`RingSwitchKey`].
    RingSwitchKey = 8,
}

impl Kind {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Parameters => "parameters",
            Kind::SecretKey => "secret key",
            Kind::PublicKey => "public key",
            Kind::RelinKey => "relinearization key",
            Kind::GaloisKeys => "Galois keys",
            Kind::Ciphertext => "ciphertext",
            Kind::Plaintext => "plaintext",
            Kind::RingSwitchKey => "ring-switching key",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::Parameters,
            2 => Kind::SecretKey,
            3 => Kind::PublicKey,
            4 => Kind::RelinKey,
            5 => Kind::GaloisKeys,
            6 => Kind::Ciphertext,
            7 => Kind::Plaintext,
            8 => Kind::RingSwitchKey,
            _ => return None,
        })
    }
}

/// The header of an envelope, readable without a context (to learn what a blob is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Object kind.
    pub kind: Kind,
    /// Format version.
    pub version: u16,
    /// Parameter fingerprint.
    pub fingerprint: [u8; 32],
    /// Payload length.
    pub payload_len: usize,
}

/// Wraps a payload in the envelope.
fn seal(kind: Kind, fingerprint: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and checks the header, length and checksum of an envelope (not the fingerprint).
pub fn read_header(bytes: &[u8]) -> Result<EnvelopeHeader> {
    let what = "envelope";
    if bytes.len() < HEADER + TRAILER {
        return Err(HeError::Truncated {
            kind: what,
            expected: HEADER + TRAILER,
            actual: bytes.len(),
        });
    }
    if bytes[..4] != MAGIC {
        return Err(HeError::Malformed {
            kind: what,
            reason: "not a blindsight object (bad magic bytes)".into(),
        });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(HeError::UnsupportedVersion {
            expected: FORMAT_VERSION,
            actual: version,
        });
    }
    let kind = Kind::from_u8(bytes[6]).ok_or_else(|| HeError::Malformed {
        kind: what,
        reason: format!("unknown object kind {}", bytes[6]),
    })?;
    if bytes[7] != 0 {
        return Err(HeError::Malformed {
            kind: what,
            reason: "reserved byte is not zero".into(),
        });
    }
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&bytes[8..40]);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[40..48]);
    let declared = u64::from_le_bytes(len_bytes);
    let available = (bytes.len() - HEADER - TRAILER) as u64;
    if declared > available {
        return Err(HeError::Truncated {
            kind: kind.name(),
            expected: usize::try_from(declared)
                .unwrap_or(usize::MAX)
                .saturating_add(HEADER + TRAILER),
            actual: bytes.len(),
        });
    }
    if declared < available {
        return Err(HeError::Malformed {
            kind: kind.name(),
            reason: "trailing bytes after the object".into(),
        });
    }
    let payload_len = declared as usize;
    let body = &bytes[..HEADER + payload_len];
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&bytes[HEADER + payload_len..]);
    if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
        return Err(HeError::Checksum { kind: kind.name() });
    }
    Ok(EnvelopeHeader {
        kind,
        version,
        fingerprint,
        payload_len,
    })
}

/// Checks an envelope of kind `kind` against the context and returns its payload.
fn open<'a>(ctx: &Context, kind: Kind, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let h = read_header(bytes)?;
    if h.kind != kind {
        return Err(HeError::WrongKind {
            expected: kind.name(),
            actual: h.kind.name().to_string(),
        });
    }
    ctx.check_fingerprint(&h.fingerprint)?;
    Ok(&bytes[HEADER..HEADER + h.payload_len])
}

/// Objects that serialize into the envelope and read back against a context.
pub trait Serializable: Sized {
    /// The envelope kind.
    const KIND: Kind;
    /// Serializes into a self-describing, checksummed envelope. `ctx` must be the context
    /// of the object's parameter set: otherwise [`HeError::ParameterMismatch`] (the
    /// residues would be packed with the wrong widths and stamped with the wrong
    /// fingerprint).
    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>>;
    /// Reads an envelope, checking kind, version, fingerprint, lengths, checksum and every
    /// residue.
    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self>;
}

// ----- payload primitives ---------------------------------------------------------------

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn new() -> Self {
        Self { out: Vec::new() }
    }
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    /// Residues of `poly` over `primes`, each packed with the width of its prime.
    fn poly(&mut self, poly: &RnsPoly, primes: &Basis<'_>) {
        for (c, p) in poly.comps().zip(primes) {
            pack(&mut self.out, c, p.m.bits());
        }
    }
}

fn pack(out: &mut Vec<u8>, values: &[u64], width: u32) {
    let mut acc: u128 = 0;
    let mut nbits = 0u32;
    out.reserve(values.len() * width as usize / 8 + 1);
    for &v in values {
        acc |= (v as u128) << nbits;
        nbits += width;
        while nbits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            nbits -= 64;
        }
    }
    let tail = nbits.div_ceil(8) as usize;
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..tail]);
}

fn packed_len(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(8)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: Kind) -> Self {
        Self {
            buf,
            pos: 0,
            kind: kind.name(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(HeError::Truncated {
                kind: self.kind,
                expected: self.pos.saturating_add(n),
                actual: self.buf.len(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn seed(&mut self) -> Result<[u8; 32]> {
        let mut s = [0u8; 32];
        s.copy_from_slice(self.take(32)?);
        Ok(s)
    }
    fn level(&mut self, ctx: &Context) -> Result<usize> {
        let level = self.u8()? as usize;
        if level > ctx.max_level() {
            return Err(self.malformed(format!(
                "level {level} above the maximum {}",
                ctx.max_level()
            )));
        }
        Ok(level)
    }
    fn malformed(&self, reason: impl Into<String>) -> HeError {
        HeError::Malformed {
            kind: self.kind,
            reason: reason.into(),
        }
    }
    /// `count` values packed `width` bits each; the padding bits of the last byte must be
    /// zero (one encoding per value, so that what is accepted re-serializes to the same
    /// bytes).
    fn packed(&mut self, out: &mut [u64], width: u32) -> Result<()> {
        let bytes = self.take(packed_len(out.len(), width))?;
        let used = (out.len() * width as usize) % 8;
        if let Some(&last) = bytes.last()
            && used != 0
            && last >> used != 0
        {
            return Err(self.malformed("nonzero padding bits after packed values"));
        }
        unpack(bytes, out, width);
        Ok(())
    }
    fn poly(&mut self, n: usize, primes: &Basis<'_>) -> Result<RnsPoly> {
        let mut poly = RnsPoly::zero(n, primes.len());
        for (i, (c, p)) in poly.comps_mut().zip(primes).enumerate() {
            let width = p.m.bits();
            self.packed(c, width)?;
            if let Some(v) = c.iter().find(|&&v| v >= p.value()) {
                return Err(HeError::Malformed {
                    kind: self.kind,
                    reason: format!(
                        "residue {v} of prime #{i} is not below its modulus {}",
                        p.value()
                    ),
                });
            }
        }
        Ok(poly)
    }
    fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(self.malformed(format!(
                "{} unexpected bytes after the object",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
}

fn unpack(bytes: &[u8], out: &mut [u64], width: u32) {
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut acc: u128 = 0;
    let mut nbits = 0u32;
    let mut words = bytes.chunks(8);
    for o in out.iter_mut() {
        while nbits < width {
            let Some(w) = words.next() else { break };
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            acc |= (u64::from_le_bytes(b) as u128) << nbits;
            nbits += 8 * w.len() as u32;
        }
        *o = (acc as u64) & mask;
        acc >>= width;
        nbits = nbits.saturating_sub(width);
    }
}

// ----- objects -----------------------------------------------------------------------

/// A ciphertext read in a rounded form (plain or ring-switched).
fn rounded_ciphertext(
    ctx: &Context,
    polys: Vec<RnsPoly>,
    (level, scale): (usize, f64),
    seed: Option<[u8; 32]>,
    bits: [u32; 2],
    subring: Option<u32>,
) -> Result<Ciphertext> {
    Ok(Ciphertext {
        polys,
        meta: Meta::new(ctx, level, scale)?,
        seed,
        rounded: Some(Rounding::bits(bits)),
        subring,
    })
}

const CT_FULL: u8 = 0;
const CT_SEEDED: u8 = 1;
/// Rounded for transfer: two bit widths, then `c'_0`, `c'_1` in coefficient form, packed.
const CT_ROUNDED: u8 = 2;
/// Ring-switched to a response key: `log2 d`, two bit widths, then every `d`-th coefficient
/// of `c'_0` and `c'_1`, rounded and packed.
const CT_SUBRING: u8 = 3;

impl Serializable for Ciphertext {
    const KIND: Kind = Kind::Ciphertext;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_ciphertext_shape(self)?;
        let primes = ctx.q_primes(self.meta.level);
        let mut w = Writer::new();
        w.u8(self.meta.level as u8);
        w.u8(self.polys.len() as u8);
        if let Some(log_d) = self.subring {
            // made only by `ring_switch`, always rounded with both widths and two polynomials
            let bits = self.rounded.as_ref().map_or([0, 0], |r| r.bits);
            let big = BigModulus::new(&primes)?;
            check_bits(bits, &big)?;
            w.u8(CT_SUBRING);
            w.f64(self.meta.scale);
            w.u8(log_d as u8);
            for b in bits {
                w.u8(b as u8);
            }
            for (poly, k) in self.polys.iter().zip(bits) {
                let coeff = poly.clone().backward(&primes);
                let values = rounded_coefficients(&big, &coeff, &primes, k, 1 << log_d);
                pack(&mut w.out, &values, k);
            }
            return Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out));
        }
        if let (Some(rounding), 2) = (&self.rounded, self.polys.len()) {
            let bits = rounding.bits;
            w.u8(CT_ROUNDED);
            w.f64(self.meta.scale);
            let big = BigModulus::new(&primes)?;
            check_bits(bits, &big)?;
            for b in bits {
                w.u8(b as u8);
            }
            for (i, (poly, k)) in self.polys.iter().zip(bits).enumerate() {
                match (i, k, &self.seed) {
                    (1, 0, Some(seed)) => {
                        w.u8(CT_SEEDED);
                        w.bytes(seed);
                    }
                    (1, 0, None) => {
                        w.u8(CT_FULL);
                        w.poly(poly, &primes);
                    }
                    // the values the rounding kept, or computed again
                    _ => match &rounding.values {
                        Some(values) => pack(&mut w.out, &values[i], k),
                        None => pack(&mut w.out, &rounded_values(&big, poly, &primes, k), k),
                    },
                }
            }
            return Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out));
        }
        w.u8(if self.seed.is_some() {
            CT_SEEDED
        } else {
            CT_FULL
        });
        w.f64(self.meta.scale);
        for (i, p) in self.polys.iter().enumerate() {
            match (&self.seed, i) {
                (Some(seed), 1) => w.bytes(seed),
                _ => w.poly(p, &primes),
            }
        }
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let level = r.level(ctx)?;
        let size = r.u8()? as usize;
        if !(2..=3).contains(&size) {
            return Err(r.malformed(format!("{size} polynomials (expected 2 or 3)")));
        }
        let form = r.u8()?;
        let seeded = match form {
            CT_FULL | CT_ROUNDED | CT_SUBRING => false,
            CT_SEEDED => true,
            f => return Err(r.malformed(format!("unknown ciphertext form {f}"))),
        };
        let scale = r.f64()?;
        let scale_ok = match ctx.scheme() {
            Scheme::Bfv => scale == 1.0,
            Scheme::Ckks => scale.is_finite() && scale >= 1.0,
        };
        if !scale_ok {
            return Err(r.malformed(format!("invalid scale {scale}")));
        }
        let primes = ctx.q_primes(level);
        let n = ctx.degree();
        if form == CT_SUBRING {
            if size != 2 {
                return Err(r.malformed("a ring-switched ciphertext has two polynomials"));
            }
            let log_d = r.u8()? as u32;
            if log_d > 16 || n >> log_d < MIN_SUBRING_DEGREE {
                return Err(r.malformed(format!("subring index 2^{log_d} too large")));
            }
            let big = BigModulus::new(&primes)?;
            let bits = [r.u8()? as u32, r.u8()? as u32];
            check_bits(bits, &big).map_err(|e| r.malformed(e.to_string()))?;
            if bits[1] == 0 {
                return Err(r.malformed("c_1 of a ring-switched ciphertext has 0 bits"));
            }
            let stride = 1usize << log_d;
            let mut kept = vec![0u64; n / stride];
            let mut polys = Vec::with_capacity(2);
            for k in bits {
                r.packed(&mut kept, k)?;
                let mut spread = vec![0u64; n];
                for (s, &v) in spread.iter_mut().step_by(stride).zip(&kept) {
                    *s = v;
                }
                polys.push(lifted_poly(&big, &spread, &primes, k));
            }
            r.finish()?;
            return rounded_ciphertext(ctx, polys, (level, scale), None, bits, Some(log_d));
        }
        if form == CT_ROUNDED {
            if size != 2 {
                return Err(r.malformed("a rounded ciphertext has two polynomials"));
            }
            let big = BigModulus::new(&primes)?;
            let bits = [r.u8()? as u32, r.u8()? as u32];
            check_bits(bits, &big).map_err(|e| r.malformed(e.to_string()))?;
            let mut polys = Vec::with_capacity(2);
            let mut seed = None;
            let mut rounded = vec![0u64; n];
            for (i, k) in bits.into_iter().enumerate() {
                if i == 1 && k == 0 {
                    match r.u8()? {
                        CT_SEEDED => {
                            let s = r.seed()?;
                            polys.push(uniform_from_seed(&s, n, &primes));
                            seed = Some(s);
                        }
                        CT_FULL => polys.push(r.poly(n, &primes)?),
                        f => return Err(r.malformed(format!("unknown form {f} of c_1"))),
                    }
                    continue;
                }
                r.packed(&mut rounded, k)?;
                polys.push(lifted_poly(&big, &rounded, &primes, k));
            }
            r.finish()?;
            return rounded_ciphertext(ctx, polys, (level, scale), seed, bits, None);
        }
        let mut polys = Vec::with_capacity(size);
        let mut seed = None;
        for i in 0..size {
            if seeded && i == 1 {
                let s = r.seed()?;
                polys.push(uniform_from_seed(&s, n, &primes));
                seed = Some(s);
            } else {
                polys.push(r.poly(n, &primes)?);
            }
        }
        r.finish()?;
        Ok(Ciphertext {
            polys,
            meta: Meta::new(ctx, level, scale)?,
            seed,
            rounded: None,
            subring: None,
        })
    }
}

impl Serializable for Plaintext {
    const KIND: Kind = Kind::Plaintext;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.meta.fingerprint)?;
        if self.meta.level > ctx.max_level() {
            return Err(HeError::LevelMismatch {
                expected: ctx.max_level(),
                actual: self.meta.level,
            });
        }
        // The plaintext is the (secret) message: its intermediate buffer is cleared, and
        // allocated once at its final size so that no reallocation leaves a copy behind.
        let n = ctx.degree();
        let body: usize = match &self.data {
            PlainData::Bfv(_) => packed_len(n, 64 - ctx.params().plain_modulus().leading_zeros()),
            PlainData::Ckks(_) => ctx
                .q_primes(self.meta.level)
                .iter()
                .map(|p| packed_len(n, p.m.bits()))
                .sum(),
        };
        let mut payload = Zeroizing::new(Vec::with_capacity(9 + body + 8));
        payload.push(self.meta.level as u8);
        payload.extend_from_slice(&self.meta.scale.to_bits().to_le_bytes());
        match &self.data {
            PlainData::Bfv(coeffs) => {
                let t = ctx.params().plain_modulus();
                pack(&mut payload, coeffs, 64 - t.leading_zeros());
            }
            PlainData::Ckks(poly) => {
                for (c, p) in poly.comps().zip(&ctx.q_primes(self.meta.level)) {
                    pack(&mut payload, c, p.m.bits());
                }
            }
        }
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &payload))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let level = r.level(ctx)?;
        let scale = r.f64()?;
        let n = ctx.degree();
        let data = match ctx.scheme() {
            Scheme::Bfv => {
                let t = ctx.params().plain_modulus();
                let width = 64 - t.leading_zeros();
                let mut coeffs = vec![0u64; n];
                r.packed(&mut coeffs, width)?;
                if coeffs.iter().any(|&c| c >= t) || scale != 1.0 || level != ctx.max_level() {
                    return Err(r.malformed("coefficient, scale or level out of range"));
                }
                PlainData::Bfv(coeffs)
            }
            Scheme::Ckks => {
                if !(scale.is_finite() && scale >= 1.0) {
                    return Err(r.malformed(format!("invalid scale {scale}")));
                }
                PlainData::Ckks(r.poly(n, &ctx.q_primes(level))?)
            }
        };
        r.finish()?;
        Ok(Plaintext {
            data,
            meta: Meta::new(ctx, level, scale)?,
        })
    }
}

impl Serializable for PublicKey {
    const KIND: Kind = Kind::PublicKey;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let mut w = Writer::new();
        write_pair(&mut w, &self.pair, &ctx.q_primes(ctx.max_level()));
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let pair = read_pair(&mut r, ctx.degree(), &ctx.q_primes(ctx.max_level()))?;
        r.finish()?;
        Ok(PublicKey {
            pair,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

fn write_pair(w: &mut Writer, pair: &SeededPair, primes: &Basis<'_>) {
    w.poly(&pair.b, primes);
    w.bytes(&pair.seed);
}

fn read_pair(r: &mut Reader<'_>, n: usize, primes: &Basis<'_>) -> Result<SeededPair> {
    let b = r.poly(n, primes)?;
    let seed = r.seed()?;
    Ok(SeededPair {
        b,
        a: uniform_from_seed(&seed, n, primes),
        seed,
    })
}

fn write_ksk(w: &mut Writer, key: &KeySwitchingKey, primes: &Basis<'_>) {
    w.u8(key.digits.len() as u8);
    for d in &key.digits {
        write_pair(w, d, primes);
    }
}

fn read_ksk(r: &mut Reader<'_>, ctx: &Context) -> Result<KeySwitchingKey> {
    let count = r.u8()? as usize;
    if count != ctx.max_level() + 1 {
        return Err(r.malformed(format!(
            "{count} key digits, expected {}",
            ctx.max_level() + 1
        )));
    }
    let primes = ctx.qp_primes();
    let digits = (0..count)
        .map(|_| read_pair(r, ctx.degree(), &primes))
        .collect::<Result<Vec<_>>>()?;
    Ok(KeySwitchingKey { digits })
}

impl Serializable for RelinKey {
    const KIND: Kind = Kind::RelinKey;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let mut w = Writer::new();
        write_ksk(&mut w, &self.key, &ctx.qp_primes());
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let key = read_ksk(&mut r, ctx)?;
        r.finish()?;
        Ok(RelinKey {
            key,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

impl Serializable for GaloisKeys {
    const KIND: Kind = Kind::GaloisKeys;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let primes = ctx.qp_primes();
        let mut w = Writer::new();
        w.u64(self.keys.len() as u64);
        for (&g, key) in &self.keys {
            w.u64(g);
            write_ksk(&mut w, key, &primes);
        }
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let count = r.u64()?;
        let two_n = 2 * ctx.degree() as u64;
        if count > two_n {
            return Err(r.malformed(format!("{count} Galois keys is more than exist")));
        }
        let mut keys = BTreeMap::new();
        let mut last = 0u64;
        for _ in 0..count {
            let g = r.u64()?;
            if g % 2 == 0 || g >= two_n || g <= last {
                return Err(r.malformed(format!("Galois element {g} is invalid or out of order")));
            }
            last = g;
            keys.insert(g, read_ksk(&mut r, ctx)?);
        }
        r.finish()?;
        Ok(GaloisKeys {
            keys,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

impl Serializable for RingSwitchKey {
    const KIND: Kind = Kind::RingSwitchKey;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let primes = ctx.q_primes(self.level);
        let mut w = Writer::new();
        w.u8(self.log_d as u8);
        w.u8(self.level as u8);
        w.u8(self.base_bits as u8);
        w.u8(self.digits.len() as u8);
        for d in &self.digits {
            write_pair(&mut w, d, &primes);
        }
        Ok(seal(Self::KIND, &ctx.params().fingerprint(), &w.out))
    }

    fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Self::KIND, bytes)?, Self::KIND);
        let log_d = r.u8()? as u32;
        if log_d == 0 || log_d > 16 || ctx.degree() >> log_d < MIN_SUBRING_DEGREE {
            return Err(r.malformed(format!("subring index 2^{log_d} out of range")));
        }
        let level = r.level(ctx)?;
        let base_bits = r.u8()? as u32;
        if !(1..=crate::ring_switch::MAX_BASE_BITS).contains(&base_bits) {
            return Err(r.malformed(format!("{base_bits} bits per digit")));
        }
        let primes = ctx.q_primes(level);
        let log_q = level_bits(ctx, level);
        let count = r.u8()? as usize;
        if count != digit_count(log_q, base_bits) {
            return Err(r.malformed(format!(
                "{count} digits, expected {}",
                digit_count(log_q, base_bits)
            )));
        }
        let digits = (0..count)
            .map(|_| read_pair(&mut r, ctx.degree(), &primes))
            .collect::<Result<Vec<_>>>()?;
        r.finish()?;
        Ok(RingSwitchKey {
            log_d,
            level,
            base_bits,
            digits,
            fingerprint: ctx.params().fingerprint(),
        })
    }
}

impl SecretKey {
    /// Serializes the secret key (2 bits per coefficient). Keep these bytes secret. `ctx`
    /// must be the key's context ([`HeError::ParameterMismatch`] otherwise).
    pub fn to_bytes(&self, ctx: &Context) -> Result<Zeroizing<Vec<u8>>> {
        ctx.check_fingerprint(&self.fingerprint)?;
        let codes: Zeroizing<Vec<u64>> =
            Zeroizing::new(self.coeffs.iter().map(|&c| (c + 1) as u64).collect());
        let mut payload = Zeroizing::new(Vec::new());
        pack(&mut payload, &codes, 2);
        Ok(Zeroizing::new(seal(
            Kind::SecretKey,
            &ctx.params().fingerprint(),
            &payload,
        )))
    }

    /// Reads a secret key.
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(open(ctx, Kind::SecretKey, bytes)?, Kind::SecretKey);
        let n = ctx.degree();
        let mut codes = Zeroizing::new(vec![0u64; n]);
        r.packed(&mut codes, 2)?;
        r.finish()?;
        if codes.iter().any(|&c| c > 2) {
            return Err(r.malformed("secret coefficient outside {-1, 0, 1}"));
        }
        Ok(SecretKey::from_coeffs(
            ctx,
            codes.iter().map(|&c| c as i64 - 1).collect(),
        ))
    }
}

impl Serializable for Parameters {
    const KIND: Kind = Kind::Parameters;

    fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.check_fingerprint(&self.fingerprint())?;
        Ok(self.to_envelope())
    }

    fn from_bytes(_ctx: &Context, bytes: &[u8]) -> Result<Self> {
        Parameters::from_envelope(bytes)
    }
}

impl Parameters {
    /// Serializes the parameter set (needs no context).
    pub fn to_envelope(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(match self.scheme() {
            Scheme::Bfv => 1,
            Scheme::Ckks => 2,
        });
        w.u64(self.degree() as u64);
        for list in [self.moduli(), self.special_moduli()] {
            w.u8(list.len() as u8);
            for &q in list {
                w.u64(q);
            }
        }
        w.u64(self.plain_modulus());
        w.u8(self.scale_bits() as u8);
        let name = self.name().as_bytes();
        w.u8(name.len().min(255) as u8);
        w.bytes(&name[..name.len().min(255)]);
        seal(Kind::Parameters, &self.fingerprint(), &w.out)
    }

    /// Reads and re-validates a parameter set; its fingerprint must match the envelope's.
    pub fn from_envelope(bytes: &[u8]) -> Result<Self> {
        let h = read_header(bytes)?;
        if h.kind != Kind::Parameters {
            return Err(HeError::WrongKind {
                expected: Kind::Parameters.name(),
                actual: h.kind.name().to_string(),
            });
        }
        let mut r = Reader::new(&bytes[HEADER..HEADER + h.payload_len], Kind::Parameters);
        let scheme = match r.u8()? {
            1 => Scheme::Bfv,
            2 => Scheme::Ckks,
            s => return Err(r.malformed(format!("unknown scheme {s}"))),
        };
        let degree = usize::try_from(r.u64()?).map_err(|_| r.malformed("degree"))?;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = r.u8()? as usize;
            for _ in 0..count {
                list.push(r.u64()?);
            }
        }
        let t = r.u64()?;
        let scale_bits = r.u8()? as u32;
        let name_len = r.u8()? as usize;
        let name = String::from_utf8(r.take(name_len)?.to_vec())
            .map_err(|_| r.malformed("name is not UTF-8"))?;
        r.finish()?;
        let [moduli, special] = lists;
        let built = match scheme {
            Scheme::Bfv => Parameters::bfv(degree, moduli, special, t)?,
            Scheme::Ckks => Parameters::ckks(degree, moduli, special, scale_bits)?,
        };
        // A preset keeps its name; anything else is the custom set of its fields.
        let params = match Parameters::preset(&name) {
            Ok(p) if p.fingerprint() == built.fingerprint() => p,
            _ => built,
        };
        if params.fingerprint() != h.fingerprint {
            return Err(HeError::Malformed {
                kind: Kind::Parameters.name(),
                reason: "fingerprint does not match the parameters".into(),
            });
        }
        // One encoding per parameter set: fields the set ignores (the scale of BFV, `t` of
        // CKKS) must be zero and the name must be the set's own, so that what is accepted
        // re-serializes to the same bytes.
        if params.to_envelope() != bytes {
            return Err(HeError::Malformed {
                kind: Kind::Parameters.name(),
                reason: "non-canonical encoding (unused field set, or a name that is not the \
                         parameter set's)"
                    .into(),
            });
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packing_round_trips(values in proptest::collection::vec(any::<u64>(), 0..100), width in 1u32..62) {
            let mask = (1u64 << width) - 1;
            let values: Vec<u64> = values.into_iter().map(|v| v & mask).collect();
            let mut out = Vec::new();
            pack(&mut out, &values, width);
            prop_assert_eq!(out.len(), packed_len(values.len(), width));
            let mut back = vec![0u64; values.len()];
            unpack(&out, &mut back, width);
            prop_assert_eq!(back, values);
        }
    }
}
