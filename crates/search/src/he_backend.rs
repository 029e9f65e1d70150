//! BFV and CKKS behind the [`SlotCipher`] / [`SlotEvaluator`] traits.

use crate::backend::{GiantStep, Role, SlotCipher, SlotEvaluator};
use crate::errors::Result;
use crate::layout::Layout;
use crate::slots::{Slot, SlotShape};
use blindsight_he::math::modulus::Modulus;
use blindsight_he::ring_switch::max_response_log_d;
use blindsight_he::{
    BfvEncoder, Ciphertext, CkksEncoder, Complex, Context, Evaluator, GaloisKeys, NoiseFlooding,
    ProductAccumulator, ProductForm, ProductOperand, RelinKey, ResponseSecretKey, RingSwitchKey,
    RotationSum, Scheme, SecretKey,
};
use rayon::prelude::*;

/// Standard deviation of the noise every decrypted CKKS score is flooded with (on the real
/// and imaginary part of each slot).
///
/// A raw CKKS decryption `m + e`, seen together with its ciphertext, reveals the secret key,
/// and decrypted scores do leave the client: they are shown, written to benchmark output,
/// and the ids of the best matches are sent to the server to fetch their payloads. So
/// [`CkksCipher`] decrypts with noise flooding ([`NoiseFlooding`], OpenFHE's
/// `NOISE_FLOODING_DECRYPT`). The size is bounded by the accuracy contract: scores within
/// `10^-6` of the `f64` reference (issue 9), where the unflooded error of a score already
/// has a standard deviation of about `2·10^-7` (see [`ckks_scales`]). `10^-7` keeps the
/// maximum over a W1 response (3003 scores, ~3.7σ) below `10^-6`; it hides the low bits of
/// every slot but is of the order of the response noise itself, so it buys little
/// statistical security (measured in `blindsight_he::flooding`): the protection that
/// matters is that decrypted values never leave the client except as a ranking.
pub const SCORE_FLOODING_SLOT_SIGMA: f64 = 1e-7;

/// Low bits of `c_0` a CKKS gallery ciphertext drops (rounded in the coefficient domain,
/// `c_1` stays a seed): `log2 Q − 3` bits per coefficient, 63 at `ckks-8192`, which keeps a
/// W1 gallery under 100 MB. The rounding adds `(Q/2^k)²/12 ≈ 5.3` to the fresh noise's
/// variance of 10.5 per coefficient (+23 % in σ).
pub const GALLERY_C0_DROPPED_BITS: u32 = 3;

/// Low bits of `c_0` a CKKS query ciphertext drops: the query's error is dominated by its
/// rotations' key switching (variance `N/18 ≈ 455` per coefficient), so 3 bits (variance
/// +5.3) cost nothing visible and keep a three-channel query under 200 KB.
pub const QUERY_C0_DROPPED_BITS: u32 = 3;

/// Bits of `c_0` a CKKS ciphertext of `role` keeps at the top level.
fn c0_bits(ctx: &Context, role: Role) -> u32 {
    let log_q = log_q_top(ctx).ceil() as u32;
    match role {
        Role::Gallery => log_q - GALLERY_C0_DROPPED_BITS,
        Role::Query => log_q - QUERY_C0_DROPPED_BITS,
    }
}

/// `log2 Q_ℓ` of the ciphertext modulus at `level`.
fn log_q(ctx: &Context, level: usize) -> f64 {
    ctx.params()
        .moduli()
        .iter()
        .take(level + 1)
        .map(|&q| (q as f64).log2())
        .sum()
}

fn log_q_top(ctx: &Context) -> f64 {
    log_q(ctx, ctx.max_level())
}

/// Variance per coefficient of rounding `c_0` to `bits` at the top level.
fn c0_rounding_variance(ctx: &Context, role: Role) -> f64 {
    (log_q_top(ctx) - c0_bits(ctx, role) as f64).exp2().powi(2) / 12.0
}

/// Standard deviation of a gallery ciphertext's noise in one real slot part, per unit scale:
/// the CBD's variance 10.5 plus the rounding of `c_0`, times `√(N/2)` (measured 207 at
/// N = 8192 without the rounding).
fn fresh_slot_noise(ctx: &Context) -> f64 {
    (10.5 + c0_rounding_variance(ctx, Role::Gallery)).sqrt() * (ctx.degree() as f64 / 2.0).sqrt()
}

/// Standard deviation of a key-switched (rotated) query's noise in one real slot part:
/// the mod-down's rounding `r_0 + r_1·s` (`√(N/18)` per coefficient, `s` ternary), plus the
/// digits' term `Σ_i [d]_{q_i}·e_i/P` (variance `N·q_i²/12·10.5/P²` per prime, 6 % of the
/// rounding's for `q_0 ≈ 2^46` under a 50-bit `P`). Measured 1370 at N = 8192 with two
/// 33-bit primes, against 207 fresh.
fn rotated_slot_noise(ctx: &Context) -> f64 {
    let n = ctx.degree() as f64;
    let p: f64 = ctx
        .params()
        .special_moduli()
        .iter()
        .map(|&p| p as f64)
        .product();
    let digits: f64 = ctx
        .params()
        .moduli()
        .iter()
        .map(|&q| n * (q as f64 / p).powi(2) / 12.0 * 10.5)
        .sum();
    ((n / 18.0) + digits + 10.5 + c0_rounding_variance(ctx, Role::Query)).sqrt() * (n / 2.0).sqrt()
}

/// The CKKS scales `(Δ_g, Δ_q)` of gallery and query at the top level (with the rounding of
/// their `c_0`, see [`GALLERY_C0_DROPPED_BITS`] and [`QUERY_C0_DROPPED_BITS`]).
///
/// Noise analysis. The gallery is multiplied once and never rotated: its error is a fresh
/// encryption's plus the rounding of its `c_0`, `σ_g ≈ 4.0·√(N/2)` per real slot part. The
/// query is rotated by the baby steps before its products: its copies carry the key
/// switch's rounding, `σ_q ≈ 5.4·σ_g`. A score `Re Σ_j g_j·conj(q_j)` of unit vectors then
/// errs by `ε² ≈ (σ_g/Δ_g)² + (σ_q/Δ_q)²` (each error slot weighted by the other factor's
/// unit-norm values), and the product of the scales is bounded by the modulus: every slot
/// of every partial sum is a partial complex inner product of unit vectors, at most 1 in
/// magnitude (Cauchy–Schwarz), so every coefficient is at most `Δ_gΔ_q` and must stay
/// below `Q/2` (with 10 % headroom for noise and rounding). For a fixed `C = Δ_gΔ_q`, `ε`
/// is smallest at `Δ_q/Δ_g = σ_q/σ_g`, where `ε = √(2σ_gσ_q/C)`. With the `ckks-8192`
/// preset's `Q ≈ 2^66` this is `C ≈ 2^64.9`, `Δ_g ≈ 2^31.2`, `Δ_q ≈ 2^33.6` and
/// `ε ≈ 1.9·10^-7` per score (measured: `tests/similarity.rs`). The response is then
/// rescaled by the small `q_1` (its rounding adds `√(N/18)·√(N/2)/(Δ_gΔ_q/q_1) ≈ 2^-34`)
/// and ring-switched ([`RESPONSE_DIGIT_BITS`]).
pub fn ckks_scales(ctx: &Context) -> (f64, f64) {
    let log_c = log_q_top(ctx) - 1.0 - 1.1f64.log2();
    let ratio = rotated_slot_noise(ctx) / fresh_slot_noise(ctx);
    let log_g = (log_c - ratio.log2()) / 2.0;
    (log_g.exp2(), (log_c - log_g).exp2())
}

/// Bits per coefficient of `c_0` and `c_1` a response is rounded to for transfer
/// (`blindsight_he::transfer`). The rounding adds `(Q/2^k_0)·r_0 + (Q/2^k_1)·r_1·s` to the
/// phase, `r_i` uniform in `[−½, ½]`; `r_1·s` has `σ = √(N/18)` per coefficient (21 at
/// N = 8192), so `c_1` needs about 6 bits more than `c_0`.
///
/// - BFV: decryption is exact while the phase error stays below `Δ/2 = Q/(2t)`. With
///   `k_0 = bits(t) + 3` the `c_0` part is at most `Δ/16`; with `k_1 = bits(t) + 10` the
///   `c_1` part reaches `Δ/2` only at `|r_1·s| = 512`, 24σ (32 + 39 bits for `bfv-8192`).
/// - CKKS: the added slot error is `(Q/2^k)·σ_coefficient·√(N/2)·trace/Δ` (a projected
///   response is multiplied by its trace's size `d` after decryption); both parts are held
///   to `2.5·10^-8` per slot, a tenth of a score's own error (33 + 39 bits for
///   `ckks-8192` after the rescale to `q_0`, `d = 4`).
pub fn response_bits(ctx: &Context, ct: &Ciphertext, trace: usize) -> [u32; 2] {
    match ctx.scheme() {
        Scheme::Bfv => {
            let t_bits = 64 - ctx.params().plain_modulus().leading_zeros();
            [t_bits + 3, t_bits + 10]
        }
        _ => {
            let n = ctx.degree() as f64;
            let headroom = log_q(ctx, ct.level()) - ct.scale().log2();
            // the client multiplies a projected response by the trace's size
            let per_slot = (n / 2.0).sqrt() * trace.max(1) as f64 / 2.5e-8;
            let bits = |coefficient_sigma: f64| {
                (headroom + (coefficient_sigma * per_slot).log2()).ceil() as u32
            };
            [bits(12f64.sqrt().recip()), bits((n / 18.0).sqrt())]
        }
    }
}

/// Bits per gadget digit of the response's ring switch: its noise, `√(ℓN)·2^w/√12·σ_e`
/// per coefficient (`ℓ = ⌈log2 q_0/w⌉`), is `2^10.7` for CKKS (`w = 2`, 23 digits: `3·10^-8`
/// per slot after the trace's factor 4 at scale `2^44.9`, a seventh of a score's error)
/// and `2^12.2` for BFV (`w = 4`, 13 digits: 5.5 bits of budget left before rounding,
/// `tests/ring_switch.rs` in `blindsight-he`).
pub fn response_digit_bits(ctx: &Context) -> u32 {
    match ctx.scheme() {
        Scheme::Bfv => 4,
        _ => 2,
    }
}

/// `log2 d` of the response subring of a context: the smallest subring degree that is
/// 128-bit secure at `q_0` alone (`Z[X^4]`, degree 2048, at N = 8192).
pub fn response_log_d(ctx: &Context) -> u32 {
    max_response_log_d(ctx, 0)
}

/// The response secret of a client, expanded from a 32-byte secret seed.
pub fn response_secret(ctx: &Context, seed: &[u8; 32]) -> Result<ResponseSecretKey> {
    Ok(ResponseSecretKey::from_seed(
        ctx,
        response_log_d(ctx),
        seed,
    )?)
}

/// The slot shape of a context: BFV 2 rows of N/2 integers, CKKS 1 row of N/2 complex.
pub fn shape_of(ctx: &Context) -> SlotShape {
    match ctx.scheme() {
        Scheme::Bfv => SlotShape {
            rows: 2,
            row_len: ctx.degree() / 2,
        },
        _ => SlotShape {
            rows: 1,
            row_len: ctx.degree() / 2,
        },
    }
}

/// The only layout a segment of `count` vectors of `dim` values may have under `ctx`: what
/// the client encrypts with, and what a server checks every uploaded segment against (never
/// trusting the layout a message declares).
pub fn segment_layout(ctx: &Context, count: usize, dim: usize) -> Result<Layout> {
    let slots = match ctx.scheme() {
        Scheme::Bfv => <i64 as Slot>::vector_slots(dim),
        _ => <Complex as Slot>::vector_slots(dim),
    };
    Layout::new(count, dim, slots, shape_of(ctx))
}

/// The evaluation keys a set of rotation steps needs: relinearization, Galois, and the
/// ring switch of responses to `response`.
pub fn evaluation_keys(
    ctx: &Context,
    sk: &SecretKey,
    response: &ResponseSecretKey,
    steps: &[i64],
) -> Result<(RelinKey, GaloisKeys, RingSwitchKey)> {
    Ok((
        RelinKey::generate(ctx, sk)?,
        GaloisKeys::generate(ctx, sk, steps, false)?,
        response_key(ctx, sk, response)?,
    ))
}

/// The key that switches responses (at level 0) to `response`.
pub fn response_key(
    ctx: &Context,
    sk: &SecretKey,
    response: &ResponseSecretKey,
) -> Result<RingSwitchKey> {
    Ok(RingSwitchKey::generate(
        ctx,
        sk,
        response,
        0,
        response_digit_bits(ctx),
    )?)
}

/// BFV client: integer slots, secret-key (seeded) encryption; responses decrypted with the
/// response secret when they were ring-switched to it.
pub struct BfvCipher {
    ctx: Context,
    sk: SecretKey,
    response: ResponseSecretKey,
    encoder: BfvEncoder,
}

impl BfvCipher {
    /// A client for a BFV context, its secret key and its response secret.
    pub fn new(ctx: &Context, sk: SecretKey, response: ResponseSecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            encoder: BfvEncoder::new(ctx)?,
            sk,
            response,
        })
    }
    /// The response secret.
    pub fn response_secret(&self) -> &ResponseSecretKey {
        &self.response
    }
    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.sk
    }
}

impl SlotCipher for BfvCipher {
    type Slot = i64;
    type Ct = Ciphertext;
    fn shape(&self) -> SlotShape {
        shape_of(&self.ctx)
    }
    fn encrypt(&self, slots: &[i64], _role: Role) -> Result<Ciphertext> {
        Ok(self
            .sk
            .encrypt(&self.ctx, &self.encoder.encode_signed(slots)?)?)
    }
    fn decrypt(&self, ct: &Ciphertext) -> Result<Vec<i64>> {
        let Some(log_d) = ct.subring() else {
            return Ok(self
                .encoder
                .decode_signed(&self.sk.decrypt(&self.ctx, ct)?)?);
        };
        // the projection decrypts to the trace divided by d (mod t): multiply back, then
        // centre (branch-free, as `decode_signed` does)
        let t = Modulus::new(self.ctx.params().plain_modulus());
        let d = t.reduce(1u64 << log_d);
        let values = self
            .encoder
            .decode(&self.response.decrypt(&self.ctx, ct)?)?;
        Ok(values.into_iter().map(|v| t.center(t.mul(v, d))).collect())
    }
}

/// CKKS client: complex slots, secret-key (seeded) encryption at the top level with the
/// scale of their role ([`ckks_scales`]); decryption floods every slot with noise of
/// standard deviation [`SCORE_FLOODING_SLOT_SIGMA`].
pub struct CkksCipher {
    ctx: Context,
    sk: SecretKey,
    response: ResponseSecretKey,
    encoder: CkksEncoder,
    ev: Evaluator,
    scales: (f64, f64),
}

impl CkksCipher {
    /// A client for a CKKS context, its secret key and its response secret.
    pub fn new(ctx: &Context, sk: SecretKey, response: ResponseSecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            encoder: CkksEncoder::new(ctx)?,
            ev: Evaluator::new(ctx),
            scales: ckks_scales(ctx),
            sk,
            response,
        })
    }
    /// The response secret.
    pub fn response_secret(&self) -> &ResponseSecretKey {
        &self.response
    }
    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.sk
    }
}

impl SlotCipher for CkksCipher {
    type Slot = Complex;
    type Ct = Ciphertext;
    fn shape(&self) -> SlotShape {
        shape_of(&self.ctx)
    }
    fn encrypt(&self, slots: &[Complex], role: Role) -> Result<Ciphertext> {
        let scale = match role {
            Role::Gallery => self.scales.0,
            Role::Query => self.scales.1,
        };
        let pt = self
            .encoder
            .encode_complex(slots, scale, self.ctx.max_level())?;
        let ct = self.sk.encrypt(&self.ctx, &pt)?;
        // c_0 rounded in the coefficient domain (c_1 stays a seed): smaller uploads, and
        // the error it adds is in the noise analysis of `ckks_scales`
        Ok(self
            .ev
            .round_for_transfer(&ct, [c0_bits(&self.ctx, role), 0])?)
    }
    fn decrypt(&self, ct: &Ciphertext) -> Result<Vec<Complex>> {
        let Some(log_d) = ct.subring() else {
            let flooding =
                NoiseFlooding::for_slot_sigma(&self.ctx, ct.scale(), SCORE_FLOODING_SLOT_SIGMA)?;
            return Ok(self
                .sk
                .decrypt_complex_flooded(&self.ctx, &self.encoder, ct, &flooding)?);
        };
        // the projection decrypts to the trace divided by d: multiply back (the flooding
        // noise is drawn d times smaller so that it ends at the same size)
        let d = (1u64 << log_d) as f64;
        let flooding =
            NoiseFlooding::for_slot_sigma(&self.ctx, ct.scale(), SCORE_FLOODING_SLOT_SIGMA / d)?;
        let slots =
            self.response
                .decrypt_complex_flooded(&self.ctx, &self.encoder, ct, &flooding)?;
        Ok(slots
            .into_iter()
            .map(|z| Complex::new(z.re * d, z.im * d))
            .collect())
    }
}

/// A ciphertext as a factor of products: native (no extension basis) wherever the level
/// allows (CKKS always, BFV on the presets whose primes are ≡ 1 mod t), else lifted to the
/// extension basis.
pub fn product_operand(ev: &Evaluator, ct: Ciphertext) -> Result<ProductOperand> {
    Ok(match ev.context().native_products(ct.level()) {
        Ok(()) => ev.into_native_product(ct)?,
        Err(_) => ev.prepare_product(&ct)?,
    })
}

/// A gallery ciphertext as the products read it, in its most compact form: what a segment
/// keeps in memory or writes to its file (needs no evaluation key).
pub fn gallery_operand(ev: &Evaluator, ct: Ciphertext) -> Result<ProductOperand> {
    Ok(ev.compact_product(product_operand(ev, ct)?)?)
}

/// Server side for both schemes: evaluation keys only.
pub struct HeEvaluator {
    ctx: Context,
    ev: Evaluator,
    rk: RelinKey,
    gk: GaloisKeys,
    response: Option<RingSwitchKey>,
}

impl HeEvaluator {
    /// An evaluator with the client's public evaluation keys. Without a response key
    /// (collections made before issue 9) responses stay in the full ring under the main
    /// secret.
    pub fn new(
        ctx: &Context,
        rk: RelinKey,
        gk: GaloisKeys,
        response: Option<RingSwitchKey>,
    ) -> Self {
        ctx.precompute_galois(gk.elements());
        Self {
            ctx: ctx.clone(),
            ev: Evaluator::new(ctx),
            rk,
            gk,
            response,
        }
    }
    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }
}

impl HeEvaluator {
    /// The products of `pairs` summed lazily (native wherever the level allows).
    fn accumulate(
        &self,
        pairs: &[(&ProductOperand, &ProductOperand)],
    ) -> Result<ProductAccumulator> {
        let mut acc = self.accumulator_for(pairs)?;
        acc.add_products(pairs)?;
        Ok(acc)
    }

    /// An empty accumulator for the products of `pairs` (their level and form).
    fn accumulator_for(
        &self,
        pairs: &[(&ProductOperand, &ProductOperand)],
    ) -> Result<ProductAccumulator> {
        let (level, form) = pairs
            .first()
            .map_or((self.ctx.max_level(), ProductForm::Native), |(a, _)| {
                (a.level(), a.form())
            });
        Ok(match form {
            ProductForm::Native => ProductAccumulator::native(&self.ctx, level)?,
            _ => ProductAccumulator::new(&self.ctx, level)?,
        })
    }
}

/// Giant steps whose products one pass of the tensor kernel sums together (see
/// [`ProductAccumulator::add_products_many`]).
const GIANT_STEPS_PER_PASS: usize = 8;

/// The error of a group without giant steps.
fn empty_group() -> crate::errors::SearchError {
    crate::errors::SearchError::Layout {
        reason: "a group without giant steps".into(),
    }
}

impl SlotEvaluator for HeEvaluator {
    type Ct = Ciphertext;
    type Operand = ProductOperand;

    fn rotations(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>> {
        let h = self.ev.hoist(ct)?;
        // in parallel: a query's three channels alone would leave one of two cores idle
        // for a third of the baby steps
        steps
            .par_iter()
            .map(|&s| {
                if s == 0 {
                    Ok(ct.clone())
                } else {
                    Ok(self.ev.rotate_hoisted(&h, s, &self.gk)?)
                }
            })
            .collect()
    }
    fn operand(&self, ct: Ciphertext) -> Result<ProductOperand> {
        product_operand(&self.ev, ct)
    }
    fn gallery_operand(&self, ct: Ciphertext) -> Result<ProductOperand> {
        gallery_operand(&self.ev, ct)
    }
    fn sum_of_products(&self, pairs: &[(&ProductOperand, &ProductOperand)]) -> Result<Ciphertext> {
        Ok(self.accumulate(pairs)?.finish(&self.ev, &self.rk)?)
    }
    fn sum_of_rotated_products(
        &self,
        giants: &[GiantStep<'_, ProductOperand>],
    ) -> Result<Ciphertext> {
        // Giant steps a few at a time: their products summed in one pass of the kernel (so
        // a baby step's tile is read from the cache by every giant step of the pass), then
        // each relinearized and rotated in Q ∪ P, one mod-down for the group; summed as they
        // come, so that few terms are alive at once.
        let add = |mut a: RotationSum, b: RotationSum| -> Result<RotationSum> {
            a.add(&b, &self.ev)?;
            Ok(a)
        };
        let sum = giants
            .par_chunks(GIANT_STEPS_PER_PASS)
            .map(|pass| {
                let mut accs = pass
                    .iter()
                    .map(|(pairs, _)| self.accumulator_for(pairs))
                    .collect::<Result<Vec<_>>>()?;
                let batches: Vec<&[_]> = pass.iter().map(|(pairs, _)| &pairs[..]).collect();
                ProductAccumulator::add_products_many(
                    &mut accs.iter_mut().collect::<Vec<_>>(),
                    &batches,
                )?;
                accs.into_par_iter()
                    .zip(pass.par_iter())
                    .map(|(acc, (_, step))| {
                        let product = acc.finish_unrelinearized()?;
                        Ok(self.ev.rotated_term(&product, *step, &self.rk, &self.gk)?)
                    })
                    .try_reduce_with(add)
                    .ok_or_else(empty_group)?
            })
            .try_reduce_with(add)
            .ok_or_else(empty_group)??;
        Ok(self.ev.finish_rotation_sum(sum)?)
    }
    fn rotate(&self, ct: &Ciphertext, step: i64) -> Result<Ciphertext> {
        if step == 0 {
            return Ok(ct.clone());
        }
        Ok(self.ev.rotate(ct, step, &self.gk)?)
    }
    fn can_rotate(&self, step: i64) -> bool {
        step == 0 || self.gk.has_step(&self.ctx, step)
    }
    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        Ok(self.ev.add(a, b)?)
    }
    fn max_trace(&self) -> usize {
        self.response.as_ref().map_or(1, |k| 1 << k.log_d())
    }
    fn finish(&self, ct: Ciphertext, trace: usize) -> Result<Ciphertext> {
        let mut ct = ct;
        match self.ctx.scheme() {
            // the products' scale Δ_gΔ_q ≈ Q/2.2 becomes ≈ q_0/2.2 (q_1 is small)
            Scheme::Ckks => {
                while ct.level() > 0 {
                    ct = self.ev.rescale(&ct)?;
                }
            }
            _ => ct = self.ev.mod_switch_to(&ct, 0)?,
        }
        let bits = response_bits(&self.ctx, &ct, trace);
        match &self.response {
            Some(key) => {
                let log_d = trace.max(1).trailing_zeros();
                Ok(self.ev.ring_switch(&ct, key, log_d, bits)?)
            }
            None => Ok(self.ev.round_for_transfer(&ct, bits)?),
        }
    }
}
