//! Parameter sets: named presets, validation against the HomomorphicEncryption.org 128-bit
//! security table, and the fingerprint that binds serialized objects to their set.

use crate::errors::{HeError, Result};
use crate::math::modulus::MAX_MODULUS_BITS;
use crate::math::primes::{is_prime, ntt_primes, primes_congruent_to_one};
use crate::math::sample::CBD_ETA;
use sha2::{Digest, Sha256};

/// The homomorphic encryption scheme of a parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Exact arithmetic on integers modulo a plaintext modulus `t`.
    Bfv,
    /// Approximate arithmetic on real / complex numbers.
    Ckks,
}

impl Scheme {
    /// Lower-case name (`"bfv"` or `"ckks"`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Bfv => "bfv",
            Scheme::Ckks => "ckks",
        }
    }
}

/// Largest `log2(Q*P)` for 128-bit security with a uniform ternary secret
/// (HomomorphicEncryption.org standard, Table 1), by polynomial degree.
pub const SECURITY_TABLE_128: [(usize, u32); 6] = [
    (1024, 27),
    (2048, 54),
    (4096, 109),
    (8192, 218),
    (16384, 438),
    (32768, 881),
];

/// The largest `log2 Q` the 128-bit table allows at degree `n` (0 for a degree it lacks).
pub fn max_secure_log_q(n: usize) -> u32 {
    SECURITY_TABLE_128
        .iter()
        .find(|(d, _)| *d == n)
        .map_or(0, |(_, b)| *b)
}

/// BFV plaintext modulus of the 8192 and 16384 presets: the smallest prime `t ≡ 1 mod 32768`
/// above `2 * 4096 * 255^2 = 532_684_800`, so that a 4096-term dot product of 8-bit values,
/// read as a centered residue, never wraps.
pub const BFV_DOT_PRODUCT_T: u64 = 532_709_377;

/// Names of the built-in presets.
pub const PRESETS: [&str; 6] = [
    "bfv-4096",
    "pir-4096",
    "bfv-8192",
    "bfv-16384",
    "ckks-8192",
    "ckks-16384",
];

/// A validated parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameters {
    name: String,
    scheme: Scheme,
    degree: usize,
    moduli: Vec<u64>,
    special_moduli: Vec<u64>,
    plain_modulus: u64,
    scale_bits: u32,
    fingerprint: [u8; 32],
}

impl Parameters {
    /// The preset called `name` (see [`PRESETS`]).
    ///
    /// The 8192 and 16384 presets are shaped for blindsight's depth-1 search: two ciphertext
    /// primes that every gallery and query ciphertext lives at (one product) and one special
    /// prime for key switching. The response then drops the second prime (BFV modulus
    /// switch, CKKS rescale: the CKKS second prime is small, 20 bits, so that the product's
    /// scale survives the rescale at q_0's precision) and is ring-switched at q_0 alone,
    /// where a subring of degree 2048 is 128-bit secure (q_0 ≤ 2^54, see
    /// [`crate::ring_switch`]). All primes are below 2^50 at N = 8192 so that the NTTs
    /// and products run on AVX-512 IFMA where the CPU has it (`bfv-16384` needs 52-bit
    /// primes: no prime ≡ 1 mod 2N·t lies below 2^50 there). The BFV primes are also `≡ 1 (mod t)`, so
    /// that `Q ≡ 1 (mod t)` at every level and ciphertext products need no extension basis
    /// (see [`crate::ProductAccumulator::native`]).
    pub fn preset(name: &str) -> Result<Self> {
        let (scheme, degree, q_bits, p_bits, t, scale): (Scheme, usize, &[u32], &[u32], u64, u32) =
            match name {
                "bfv-4096" => (Scheme::Bfv, 4096, &[36, 36], &[37], 65537, 0),
                // private retrieval: q_0 answers, q_0·q_1 holds the first dimension and the
                // RGSW folds, q_2 is the folds' special prime, P the expansion's
                "pir-4096" => (Scheme::Bfv, 4096, &[27, 27, 27], &[28], 65537, 0),
                "bfv-8192" => (Scheme::Bfv, 8192, &[50, 50], &[50], BFV_DOT_PRODUCT_T, 0),
                "bfv-16384" => (Scheme::Bfv, 16384, &[52, 52], &[52], BFV_DOT_PRODUCT_T, 0),
                "ckks-8192" => (Scheme::Ckks, 8192, &[46, 20], &[50], 0, 31),
                "ckks-16384" => (Scheme::Ckks, 16384, &[46, 20], &[50], 0, 31),
                _ => {
                    return Err(HeError::UnknownPreset {
                        name: name.to_string(),
                        known: PRESETS.join(", "),
                    });
                }
            };
        // Special primes first so that they are the largest of their size. The ciphertext
        // primes of the large BFV presets are ≡ 1 mod 2N·t (native products).
        let mut used = Vec::new();
        let special =
            ntt_primes(p_bits, degree, &mut used).ok_or_else(|| invalid("preset primes"))?;
        let q_step = if scheme == Scheme::Bfv && degree >= 8192 {
            2 * degree as u64 * t
        } else {
            2 * degree as u64
        };
        let moduli = primes_congruent_to_one(q_bits, q_step, &mut used)
            .ok_or_else(|| invalid("preset primes"))?;
        let mut params = Self::build(scheme, degree, moduli, special, t, scale)?;
        params.name = name.to_string();
        Ok(params)
    }

    /// A custom BFV set: ciphertext moduli `moduli` (q_0 first), special primes for key
    /// switching, plaintext modulus `t` (prime, `t ≡ 1 mod 2N`, for batching).
    pub fn bfv(degree: usize, moduli: Vec<u64>, special: Vec<u64>, t: u64) -> Result<Self> {
        Self::build(Scheme::Bfv, degree, moduli, special, t, 0)
    }

    /// A custom CKKS set with default scale `2^scale_bits`.
    pub fn ckks(
        degree: usize,
        moduli: Vec<u64>,
        special: Vec<u64>,
        scale_bits: u32,
    ) -> Result<Self> {
        Self::build(Scheme::Ckks, degree, moduli, special, 0, scale_bits)
    }

    fn build(
        scheme: Scheme,
        degree: usize,
        moduli: Vec<u64>,
        special: Vec<u64>,
        t: u64,
        scale_bits: u32,
    ) -> Result<Self> {
        // Degrees below 4096 are in the table for ring-switched responses only.
        let limit = Some(max_secure_log_q(degree))
            .filter(|_| degree >= 4096)
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                invalid(&format!(
                    "degree {degree} is not supported; use 4096, 8192, 16384 or 32768"
                ))
            })?;
        if moduli.is_empty() || special.is_empty() {
            return Err(invalid(
                "need at least one ciphertext modulus and one special prime",
            ));
        }
        let total: u32 = moduli.iter().chain(&special).map(|&q| bits(q)).sum();
        if total > limit {
            return Err(HeError::InsecureParameters {
                degree,
                expected: limit,
                actual: total,
            });
        }
        let mut all: Vec<u64> = moduli.iter().chain(&special).copied().collect();
        for &q in &all {
            if bits(q) > MAX_MODULUS_BITS || !is_prime(q) || q % (2 * degree as u64) != 1 {
                return Err(invalid(&format!(
                    "modulus {q} must be a prime of at most {MAX_MODULUS_BITS} bits with q ≡ 1 mod 2N"
                )));
            }
        }
        all.sort_unstable();
        all.dedup();
        if all.len() != moduli.len() + special.len() {
            return Err(invalid("moduli must be distinct"));
        }
        let max_q = moduli.iter().map(|&q| bits(q)).max().unwrap_or(0);
        let min_p = special.iter().map(|&p| bits(p)).min().unwrap_or(0);
        if special.iter().map(|&p| bits(p)).sum::<u32>() < max_q || min_p == 0 {
            return Err(invalid(
                "the special primes together must be at least as large as every ciphertext modulus",
            ));
        }
        match scheme {
            Scheme::Bfv => {
                if t < 3 || bits(t) > 40 || !is_prime(t) || t % (2 * degree as u64) != 1 {
                    return Err(invalid(&format!(
                        "plaintext modulus {t} must be a prime below 2^40 with t ≡ 1 mod 2N (for batching)"
                    )));
                }
                if moduli.contains(&t) {
                    return Err(invalid(
                        "plaintext modulus must differ from the ciphertext moduli",
                    ));
                }
                if moduli.iter().any(|&q| q <= t) {
                    return Err(invalid(
                        "every ciphertext modulus must exceed the plaintext modulus",
                    ));
                }
            }
            Scheme::Ckks => {
                if scale_bits == 0 || scale_bits >= bits(moduli[0]) {
                    return Err(invalid(
                        "the CKKS scale must be smaller than the first modulus",
                    ));
                }
            }
        }
        let mut params = Self {
            name: format!("{}-{}-custom", scheme.name(), degree),
            scheme,
            degree,
            moduli,
            special_moduli: special,
            plain_modulus: t,
            scale_bits,
            fingerprint: [0; 32],
        };
        params.fingerprint = params.compute_fingerprint();
        Ok(params)
    }

    fn compute_fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"blindsight-he/parameters/v1");
        h.update([match self.scheme {
            Scheme::Bfv => 1u8,
            Scheme::Ckks => 2u8,
        }]);
        h.update((self.degree as u64).to_le_bytes());
        for list in [&self.moduli, &self.special_moduli] {
            h.update((list.len() as u64).to_le_bytes());
            for q in list {
                h.update(q.to_le_bytes());
            }
        }
        h.update(self.plain_modulus.to_le_bytes());
        h.update(self.scale_bits.to_le_bytes());
        h.update(b"secret=uniform-ternary;error=cbd");
        h.update(CBD_ETA.to_le_bytes());
        h.finalize().into()
    }

    /// Preset name, or `<scheme>-<N>-custom`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// Polynomial degree N.
    pub fn degree(&self) -> usize {
        self.degree
    }
    /// Ciphertext modulus chain `q_0, ..., q_L`.
    pub fn moduli(&self) -> &[u64] {
        &self.moduli
    }
    /// Special primes `P` used by key switching.
    pub fn special_moduli(&self) -> &[u64] {
        &self.special_moduli
    }
    /// BFV plaintext modulus `t` (0 for CKKS).
    pub fn plain_modulus(&self) -> u64 {
        self.plain_modulus
    }
    /// CKKS default scale `2^scale_bits` (0 for BFV).
    pub fn scale_bits(&self) -> u32 {
        self.scale_bits
    }
    /// Highest level (`moduli().len() - 1`).
    pub fn max_level(&self) -> usize {
        self.moduli.len() - 1
    }
    /// Total bits of `Q * P`, the figure checked against the security table.
    pub fn total_modulus_bits(&self) -> u32 {
        self.moduli
            .iter()
            .chain(&self.special_moduli)
            .map(|&q| bits(q))
            .sum()
    }
    /// SHA-256 of everything that defines the set.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
    /// Number of plaintext slots: N for BFV (2 rows of N/2), N/2 complex slots for CKKS.
    pub fn slots(&self) -> usize {
        match self.scheme {
            Scheme::Bfv => self.degree,
            Scheme::Ckks => self.degree / 2,
        }
    }
}

fn bits(q: u64) -> u32 {
    64 - q.leading_zeros()
}

fn invalid(reason: &str) -> HeError {
    HeError::InvalidParameters {
        reason: reason.to_string(),
    }
}

/// Lower-case hex of a fingerprint prefix (for messages).
pub fn short_hex(fp: &[u8]) -> String {
    fp.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_within_bounds() {
        for name in PRESETS {
            let p = Parameters::preset(name).unwrap();
            let limit = SECURITY_TABLE_128
                .iter()
                .find(|(n, _)| *n == p.degree())
                .unwrap()
                .1;
            assert!(p.total_modulus_bits() <= limit, "{name}");
            assert_eq!(p.name(), name);
        }
        assert!(is_prime(BFV_DOT_PRODUCT_T));
        assert_eq!(BFV_DOT_PRODUCT_T % 32768, 1);
        const { assert!(BFV_DOT_PRODUCT_T > 2 * 4096 * 255 * 255) };
    }

    #[test]
    fn fingerprints_differ_between_presets() {
        let fps: Vec<_> = PRESETS
            .iter()
            .map(|n| Parameters::preset(n).unwrap().fingerprint())
            .collect();
        for i in 0..fps.len() {
            for j in i + 1..fps.len() {
                assert_ne!(fps[i], fps[j]);
            }
        }
    }

    #[test]
    fn over_the_bound_is_refused_naming_the_limit() {
        let mut used = Vec::new();
        let q = ntt_primes(&[60, 60, 60], 8192, &mut used).unwrap();
        let p = ntt_primes(&[60], 8192, &mut used).unwrap();
        let err = Parameters::ckks(8192, q, p, 40).unwrap_err();
        assert_eq!(
            err,
            HeError::InsecureParameters {
                degree: 8192,
                expected: 218,
                actual: 240
            }
        );
        assert!(err.to_string().contains("218"));
    }

    #[test]
    fn malformed_sets_are_refused() {
        let mut used = Vec::new();
        let q = ntt_primes(&[50, 50], 4096, &mut used).unwrap();
        let p = ntt_primes(&[50], 4096, &mut used).unwrap();
        assert!(Parameters::ckks(2048, q.clone(), p.clone(), 40).is_err());
        assert!(
            Parameters::ckks(8192, q.clone(), p.clone(), 40).is_err(),
            "q not 1 mod 2N"
        );
        assert!(Parameters::bfv(4096, vec![q[0] + 2], p.clone(), 65537).is_err());
        assert!(Parameters::bfv(4096, vec![q[0]], p.clone(), 65539).is_err());
        assert!(Parameters::bfv(4096, vec![q[0], q[0]], p.clone(), 65537).is_err());
        assert!(Parameters::preset("bfv-1024").is_err());
    }
}
