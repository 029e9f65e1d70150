//! Plaintexts and ciphertexts.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::poly::RnsPoly;
use crate::meta::Meta;
use std::sync::Arc;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// An encoded message. It carries the fingerprint of its parameter set: every operation
/// checks it against the context (and ciphertext) it is used with. The encoded message is
/// zeroized on drop, and `Debug` does not print it.
#[derive(Clone, PartialEq, Zeroize, ZeroizeOnDrop)]
pub struct Plaintext {
    pub(crate) data: PlainData,
    /// Parameter set, level and scale the plaintext was encoded for.
    #[zeroize(skip)]
    pub(crate) meta: Meta,
}

#[derive(Clone, Debug, PartialEq, Zeroize)]
pub(crate) enum PlainData {
    /// BFV: coefficients modulo `t`.
    Bfv(Vec<u64>),
    /// CKKS: the scaled polynomial over `Q_level`, NTT form.
    Ckks(RnsPoly),
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field("level", &self.meta.level)
            .field("scale", &self.meta.scale)
            .finish_non_exhaustive()
    }
}

impl Plaintext {
    /// Level (CKKS: number of moduli minus one it is encoded over; BFV: always the top).
    pub fn level(&self) -> usize {
        self.meta.level
    }
    /// CKKS scale (1 for BFV).
    pub fn scale(&self) -> f64 {
        self.meta.scale
    }
    /// Fingerprint of the parameter set the plaintext belongs to.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.meta.fingerprint
    }
    /// Parameter set, level and scale.
    pub fn meta(&self) -> Meta {
        self.meta
    }
}

/// An RLWE ciphertext in NTT form: `c_0 + c_1 s (+ c_2 s^2) ≈ message`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ciphertext {
    pub(crate) polys: Vec<RnsPoly>,
    /// Parameter set, level and scale.
    pub(crate) meta: Meta,
    /// Seed of `c_1` for a fresh secret-key encryption (serialized instead of `c_1`).
    pub(crate) seed: Option<[u8; 32]>,
    /// How the ciphertext was rounded for transfer
    /// ([`crate::Evaluator::round_for_transfer`]): it then serializes as coefficients modulo
    /// `2^bits`.
    pub(crate) rounded: Option<Rounding>,
    /// `None` under the main secret key; `Some(k)` after a ring switch
    /// ([`crate::Evaluator::ring_switch`]): under a response secret, every coefficient not a
    /// multiple of `2^k` zero. Such a ciphertext is only serialized and decrypted.
    pub(crate) subring: Option<u32>,
}

/// How a ciphertext rounded for transfer serializes: the bits of `c_0` and `c_1`, and,
/// when the rounding computed them, the rounded values themselves (per polynomial; empty
/// for a width of 0), so that serializing does not compute them again. The values are a
/// function of the polynomials and the bits: two roundings with the same bits are equal.
#[derive(Clone, Debug)]
pub(crate) struct Rounding {
    /// Bits of `c_0` and `c_1` per coefficient.
    pub(crate) bits: [u32; 2],
    /// `round(c_i·2^{bits_i}/Q) mod 2^{bits_i}` per coefficient, if kept.
    pub(crate) values: Option<Arc<[Vec<u64>; 2]>>,
}

impl Rounding {
    /// A rounding to `bits` whose values are not kept.
    pub(crate) fn bits(bits: [u32; 2]) -> Self {
        Self { bits, values: None }
    }
}

impl PartialEq for Rounding {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl Ciphertext {
    /// Level: the ciphertext lives modulo `q_0 ⋯ q_level`.
    pub fn level(&self) -> usize {
        self.meta.level
    }
    /// Number of polynomials (2, or 3 after a multiplication before relinearization).
    pub fn size(&self) -> usize {
        self.polys.len()
    }
    /// CKKS scale (1 for BFV).
    pub fn scale(&self) -> f64 {
        self.meta.scale
    }
    /// Whether `c_1` can be serialized as a 32-byte seed.
    pub fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }
    /// Forgets the seed (the ciphertext then serializes in full).
    pub fn drop_seed(&mut self) {
        self.seed = None;
    }
    /// `Some(k)` if the ciphertext was ring-switched to a response key and projected to the
    /// subring `Z[X^(2^k)]` (it then serializes `N/2^k` coefficients per polynomial).
    pub fn subring(&self) -> Option<u32> {
        self.subring
    }
    /// The bits of `c_0` and `c_1` if the ciphertext was rounded for transfer.
    pub fn transfer_bits(&self) -> Option<[u32; 2]> {
        self.rounded.as_ref().map(|r| r.bits)
    }
    /// Forgets every compact serialized form (seed, rounding): after an operation changed
    /// the polynomials, they serialize in full.
    pub(crate) fn clear_forms(&mut self) {
        self.seed = None;
        self.rounded = None;
    }
    /// Fingerprint of the parameter set the ciphertext belongs to.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.meta.fingerprint
    }
    /// Parameter set, level and scale.
    pub fn meta(&self) -> Meta {
        self.meta
    }
}

/// A ciphertext's checks against a context are written with the ciphertext: the context
/// itself knows nothing of ciphertexts.
impl Context {
    /// Checks that a ciphertext has the shape of this context (level, degree, residues).
    pub(crate) fn check_ciphertext(&self, ct: &Ciphertext) -> Result<()> {
        if let Some(log_d) = ct.subring {
            return Err(HeError::RingSwitched { log_d });
        }
        self.check_ciphertext_shape(ct)
    }

    /// The checks of [`Self::check_ciphertext`] except the key: also accepts ring-switched
    /// ciphertexts (for serialization and decryption with a response key).
    pub(crate) fn check_ciphertext_shape(&self, ct: &Ciphertext) -> Result<()> {
        ct.meta.check_context(self)?;
        if !(2..=3).contains(&ct.polys.len()) {
            return Err(HeError::CiphertextSize {
                expected: 2,
                actual: ct.polys.len(),
            });
        }
        for p in &ct.polys {
            if p.degree() != self.degree() || p.count() != ct.meta.level + 1 {
                return Err(HeError::LengthMismatch {
                    what: "ciphertext residues (degree × moduli)",
                    expected: self.degree() * (ct.meta.level + 1),
                    actual: p.data().len(),
                });
            }
        }
        Ok(())
    }
}
