//! Noise flooding for CKKS decryption.
//!
//! A CKKS decryption is the message plus the ciphertext's noise, `m + e`, and `e` is a
//! linear function of the secret: `c_0 + c_1·s = m + e`. Whoever sees a decrypted value
//! and its ciphertext can solve for `s` (Li and Micciancio, "On the Security of
//! Homomorphic Encryption on Approximate Numbers", EUROCRYPT 2021: IND-CPA-D). Flooding
//! adds fresh noise `f`, much wider than `e`, to every coefficient before decoding, so that
//! `m + e + f` is statistically close to `m + f` and says next to nothing about `e`.
//!
//! # Parameters
//!
//! The flooding noise is a rounded Gaussian of standard deviation `σ` per coefficient, drawn
//! from the OS-seeded CSPRNG. OpenFHE's `NOISE_FLOODING_DECRYPT` mode sizes it as
//!
//! ```text
//! σ = 2^(s/2) · sqrt(12·q) · B
//! ```
//!
//! where `B` bounds the coefficients of the ciphertext noise `e` (OpenFHE measures it in
//! a noise-estimation run of the same computation), `q` is the number of decryptions of
//! related ciphertexts an adversary may see, and `s` is the statistical security in bits
//! (OpenFHE's default is 30). [`NoiseFlooding::for_security`] builds exactly that, and
//! [`NoiseFlooding::security_bits`] inverts it: the statistical security a given `σ` buys
//! for a given `B` and `q`.
//!
//! # Precision cost
//!
//! Decoding a slot sums the `N` coefficients against unit roots, so each slot's real (and
//! imaginary) part gains an independent error of standard deviation
//! `σ·sqrt(N/2)/Δ` for scale `Δ` ([`NoiseFlooding::slot_sigma`]). The security is bought
//! with precision: every doubling of `σ` costs one bit of each decrypted value and buys two
//! bits of statistical security. [`NoiseFlooding::for_slot_sigma`] picks `σ` from the
//! precision a caller can afford.
//!
//! # At blindsight's operating point
//!
//! Search responses (`ckks-8192` since issue 9: a gallery vector at `Δ_g ≈ 2^30.7` times a
//! rotated query at `Δ_q ≈ 2^33.5`, summed and rotated at `Δ_gΔ_q ≈ 2^64.2` in two 33-bit
//! primes, never rescaled) carry noise of about `2^36` per coefficient, the largest
//! measured at `2^42.6` (test `security_at_the_search_operating_point`): a score error of
//! about `2·10^-7`. The accuracy contract is now `10^-6` per score, so the client floods with
//! a slot error of only `σ_slot = 10^-7`, of the order of the noise itself: that hides the
//! lowest bits of each slot but buys **no meaningful statistical security** (`s ≈ 0` bits
//! by the formula above). OpenFHE's 30 bits would need a slot error of about 2, i.e. no
//! precision at all. Before issue 9 (scale `2^40`, accuracy `10^-4`) the same flooding
//! bought about 14 bits. The protection that holds is the threat model's: decrypted scores
//! never leave the client except as the ids of the best matches (a ranking), and the
//! server never sees a decryption.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::math::sample::MAX_GAUSSIAN_SIGMA;

/// The statistical security OpenFHE's `NOISE_FLOODING_DECRYPT` mode targets by default
/// (bits).
pub const OPENFHE_STATISTICAL_SECURITY: f64 = 30.0;

/// How much noise a flooded CKKS decryption adds: a rounded Gaussian of standard deviation
/// [`NoiseFlooding::sigma`] per coefficient (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseFlooding {
    sigma: f64,
}

impl NoiseFlooding {
    /// Flooding with standard deviation `sigma` per coefficient, in `(0, 2^48]`.
    pub fn with_sigma(sigma: f64) -> Result<Self> {
        if !(sigma > 0.0 && sigma <= MAX_GAUSSIAN_SIGMA) {
            return Err(HeError::ValueOutOfRange {
                what: "flooding standard deviation",
                value: sigma.to_string(),
                hint: "the flooding standard deviation must be a finite number in (0, 2^48]",
            });
        }
        Ok(Self { sigma })
    }

    /// OpenFHE's sizing: `σ = 2^(s/2) · sqrt(12·queries) · noise_bound` for statistical
    /// security `s` bits against an adversary who sees `queries` decryptions, when the
    /// coefficients of the ciphertext noise are at most `noise_bound` in magnitude.
    pub fn for_security(statistical_security: f64, queries: f64, noise_bound: f64) -> Result<Self> {
        let valid = statistical_security.is_finite()
            && statistical_security >= 0.0
            && queries.is_finite()
            && queries >= 1.0
            && noise_bound.is_finite()
            && noise_bound >= 1.0;
        if !valid {
            return Err(HeError::ValueOutOfRange {
                what: "flooding security parameters",
                value: format!(
                    "s = {statistical_security}, queries = {queries}, bound = {noise_bound}"
                ),
                hint: "use a security level >= 0, at least one query and a noise bound >= 1",
            });
        }
        Self::with_sigma(
            (statistical_security / 2.0).exp2() * (12.0 * queries).sqrt() * noise_bound,
        )
    }

    /// The flooding whose error on each decoded slot (real and imaginary part alike) has
    /// standard deviation `slot_sigma`, for ciphertexts of `ctx` at scale `scale`:
    /// `σ = slot_sigma · scale / sqrt(N/2)`.
    pub fn for_slot_sigma(ctx: &Context, scale: f64, slot_sigma: f64) -> Result<Self> {
        if !(scale.is_finite() && scale >= 1.0 && slot_sigma.is_finite() && slot_sigma > 0.0) {
            return Err(HeError::ValueOutOfRange {
                what: "flooding slot error",
                value: format!("scale = {scale}, slot sigma = {slot_sigma}"),
                hint: "the scale must be >= 1 and the slot error positive and finite",
            });
        }
        Self::with_sigma(slot_sigma * scale / (ctx.degree() as f64 / 2.0).sqrt())
    }

    /// Standard deviation of the noise added to each coefficient.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// Standard deviation of the error flooding adds to the real (or imaginary) part of each
    /// decoded slot of a ciphertext of `ctx` at scale `scale`: `σ·sqrt(N/2)/scale`.
    pub fn slot_sigma(&self, ctx: &Context, scale: f64) -> f64 {
        self.sigma * (ctx.degree() as f64 / 2.0).sqrt() / scale
    }

    /// The statistical security (bits) this flooding gives, in OpenFHE's sizing, against an
    /// adversary who sees `queries` decryptions of ciphertexts whose noise coefficients are at
    /// most `noise_bound`: `s = 2·log2(σ / (sqrt(12·queries)·noise_bound))` (0 if negative).
    pub fn security_bits(&self, queries: f64, noise_bound: f64) -> f64 {
        let ratio = self.sigma / ((12.0 * queries.max(1.0)).sqrt() * noise_bound.max(1.0));
        (2.0 * ratio.log2()).max(0.0)
    }

    /// Checks that the noise stays far below the modulus of `level` (`64·σ < Q_level`, so
    /// that even the largest sample, `8.6σ`, cannot wrap a value of `ctx`).
    pub(crate) fn check_level(&self, ctx: &Context, level: usize) -> Result<()> {
        let log_q: f64 = ctx
            .q_primes(level)
            .iter()
            .map(|p| (p.value() as f64).log2())
            .sum();
        if self.sigma.log2() + 6.0 >= log_q {
            return Err(HeError::ValueOutOfRange {
                what: "flooding standard deviation",
                value: self.sigma.to_string(),
                hint: "the flooding noise is too large for the modulus of this level; lower it \
                       or decrypt at a higher level",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::CkksEncoder;
    use crate::evaluator::Evaluator;
    use crate::keys::{GaloisKeys, RelinKey, SecretKey};

    /// The noise of a ciphertext shaped like a search response (a gallery vector at scale
    /// `Δ_g = 2^30.7` times a rotated query at `Δ_q = 2^33.5`, 12 rotate-and-adds at scale
    /// `Δ_gΔ_q`, no rescale: blindsight's `ckks-8192` operating point), measured coefficient
    /// by coefficient, and the statistical security the score flooding of blindsight's
    /// client (slot σ = 10^-7) buys against it.
    #[test]
    fn security_at_the_search_operating_point() {
        let ctx = Context::preset("ckks-8192").unwrap();
        let sk = SecretKey::generate(&ctx).unwrap();
        let rk = RelinKey::generate(&ctx, &sk).unwrap();
        let mut steps: Vec<i64> = (0..12).map(|k| 1 << k).collect();
        steps.push(3);
        let gk = GaloisKeys::generate(&ctx, &sk, &steps, false).unwrap();
        let ev = Evaluator::new(&ctx);
        let enc = CkksEncoder::new(&ctx).unwrap();
        let slots = ctx.slots();
        let unit = |seed: u64| {
            let mut x = seed | 1;
            let v: Vec<f64> = (0..slots)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.into_iter().map(|a| a / norm).collect::<Vec<_>>()
        };
        let (a, b) = (unit(3), unit(5));
        // the query is rotated (by 3) before its product, as the baby steps are
        let b_shifted: Vec<f64> = (0..slots).map(|j| b[(j + slots - 3) % slots]).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let encrypt = |v: &[f64], scale: f64| {
            let pt = enc.encode(v, scale, ctx.max_level()).unwrap();
            sk.encrypt(&ctx, &pt).unwrap()
        };
        let query = ev
            .rotate(&encrypt(&b_shifted, 33.5f64.exp2()), 3, &gk)
            .unwrap();
        let mut acc = ev
            .multiply_relin(&encrypt(&a, 30.7f64.exp2()), &query, &rk)
            .unwrap();
        for &k in &steps[..12] {
            let r = ev.rotate(&acc, k, &gk).unwrap();
            acc = ev.add(&acc, &r).unwrap();
        }
        let ct = acc;
        // Every slot holds the inner product: the message is the constant want·Δ_gΔ_q, so
        // every coefficient but the first is pure noise.
        let x = sk.phase(&ctx, &ct).unwrap();
        let mut digits = Vec::new();
        let lv = ctx.level(ct.level()).unwrap();
        let noise: Vec<f64> = (1..ctx.degree())
            .map(|c| {
                let residues: Vec<u64> = (0..=ct.level()).map(|i| x.comp(i)[c]).collect();
                lv.crt.to_f64(&residues, &mut digits)
            })
            .collect();
        let bound = noise.iter().fold(0f64, |acc, e| acc.max(e.abs()));
        let sd = (noise.iter().map(|e| e * e).sum::<f64>() / noise.len() as f64).sqrt();
        let decoded = sk.decrypt_complex(&ctx, &enc, &ct).unwrap();
        let worst = decoded
            .iter()
            .fold(0f64, |acc, z| acc.max((z.re - want).abs()));
        let flooding = NoiseFlooding::for_slot_sigma(&ctx, ct.scale(), 1e-7).unwrap();
        let bits = flooding.security_bits(1.0, bound);
        // σ for OpenFHE's 30 bits (may exceed what the sampler accepts: computed directly)
        let needed_sigma = (OPENFHE_STATISTICAL_SECURITY / 2.0).exp2() * 12f64.sqrt() * bound;
        let needed_slot = needed_sigma * (ctx.degree() as f64 / 2.0).sqrt() / ct.scale();
        eprintln!(
            "response noise: σ_e = 2^{:.2}, B = max|e| = 2^{:.2} at scale 2^{:.2}; largest \
             slot error {worst:.2e}; flooding σ = 2^{:.2} (slot σ 1e-7) gives s = {bits:.1} \
             bits; s = 30 would need a slot σ of {needed_slot:.2e}",
            sd.log2(),
            bound.log2(),
            ct.scale().log2(),
            flooding.sigma().log2(),
        );
        // the noise analysis of blindsight_search::he_backend::ckks_scales: about 2e-7 per
        // score, asserted with margin
        assert!(worst < 1e-6, "{worst}");
        // at 1e-6 precision the flooding is of the order of the noise itself: it buys a few
        // bits at most, and OpenFHE's 30 bits are four orders of magnitude out of reach
        assert!(bits < 12.0, "{bits}");
        assert!(needed_slot > 1e-4, "{needed_slot}");
    }

    #[test]
    fn sizing_follows_openfhe_and_inverts() {
        let f = NoiseFlooding::for_security(30.0, 1.0, 256.0).unwrap();
        let want = 2f64.powi(15) * 12f64.sqrt() * 256.0;
        assert!((f.sigma() / want - 1.0).abs() < 1e-12);
        assert!((f.security_bits(1.0, 256.0) - 30.0).abs() < 1e-9);
        assert!((f.security_bits(4.0, 256.0) - 28.0).abs() < 1e-9);
        assert!(NoiseFlooding::with_sigma(0.0).is_err());
        assert!(NoiseFlooding::with_sigma(f64::INFINITY).is_err());
        assert!(NoiseFlooding::for_security(f64::NAN, 1.0, 1.0).is_err());
        assert!(NoiseFlooding::for_security(30.0, 0.0, 1.0).is_err());
    }

    #[test]
    fn slot_sigma_round_trips() {
        let ctx = Context::preset("ckks-8192").unwrap();
        let scale = 2f64.powi(40);
        let f = NoiseFlooding::for_slot_sigma(&ctx, scale, 1e-5).unwrap();
        assert!((f.slot_sigma(&ctx, scale) / 1e-5 - 1.0).abs() < 1e-12);
        assert!((f.sigma() - 1e-5 * scale / 64.0).abs() < 1e-3);
        assert!(f.check_level(&ctx, 1).is_ok());
        let huge = NoiseFlooding::with_sigma(2f64.powi(48)).unwrap();
        assert!(
            huge.check_level(&ctx, 1).is_ok(),
            "two 33-bit primes hold 2^54"
        );
        assert!(huge.check_level(&ctx, 0).is_err(), "one does not");
        // 36-bit primes: one holds 2^30 at most, two hold it
        let small = Context::preset("bfv-4096").unwrap();
        assert!(huge.check_level(&small, 0).is_err());
        assert!(huge.check_level(&small, 1).is_ok());
    }
}
