//! BFV and CKKS behind the [`SlotCipher`] / [`SlotEvaluator`] traits.

use crate::backend::{Role, SlotCipher, SlotEvaluator};
use crate::errors::Result;
use crate::layout::Layout;
use crate::slots::{Slot, SlotShape};
use blindsight_he::{
    BfvEncoder, Ciphertext, CkksEncoder, Complex, Context, Evaluator, GaloisKeys, NoiseFlooding,
    ProductAccumulator, ProductForm, ProductOperand, RelinKey, Scheme, SecretKey,
};

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

/// Standard deviation of a fresh encryption's noise in one real slot part, per unit scale
/// (`σ·√(N/2)` with the CBD's `σ = √10.5`; measured 207 at N = 8192).
fn fresh_slot_noise(ctx: &Context) -> f64 {
    10.5f64.sqrt() * (ctx.degree() as f64 / 2.0).sqrt()
}

/// Standard deviation of a key-switched (rotated) ciphertext's noise in one real slot part:
/// the mod-down's rounding `r_0 + r_1·s` (`√(N/18)` per coefficient, `s` ternary) dominates
/// once the special prime exceeds the ciphertext primes by ~17 bits (measured 1370 at
/// N = 8192, against 207 fresh).
fn rotated_slot_noise(ctx: &Context) -> f64 {
    let n = ctx.degree() as f64;
    ((n / 18.0) + 10.5).sqrt() * (n / 2.0).sqrt()
}

/// The CKKS scales `(Δ_g, Δ_q)` of gallery and query at the top level.
///
/// Noise analysis. The gallery is multiplied once and never rotated: its error is a fresh
/// encryption's, `σ_g ≈ 3.2·√(N/2)` per real slot part. The query is rotated by the baby
/// steps before its products: its copies carry the key switch's rounding, `σ_q ≈ 6.6·σ_g`.
/// A score `Re Σ_j g_j·conj(q_j)` of unit vectors then errs by
/// `ε² ≈ (σ_g/Δ_g)² + (σ_q/Δ_q)²` (each error slot weighted by the other factor's unit-norm
/// values), and the product of the scales is bounded by the modulus: every slot of every
/// partial sum is at most `√2` in magnitude (real and imaginary parts are inner products of
/// unit vectors, Cauchy–Schwarz), so a coefficient is at most `√2·Δ_gΔ_q` and must stay
/// below `Q/2` (with 25 % headroom for the noise). For a fixed `C = Δ_gΔ_q`, `ε` is
/// smallest at `Δ_q/Δ_g = σ_q/σ_g`, where `ε = √(2σ_gσ_q/C)`. With the `ckks-8192` preset's
/// `Q ≈ 2^66` this is `C ≈ 2^64.2`, `Δ_g ≈ 2^30.7`, `Δ_q ≈ 2^33.5` and `ε ≈ 2·10^-7` per
/// score (measured: `tests/similarity.rs`).
pub fn ckks_scales(ctx: &Context) -> (f64, f64) {
    let log_q: f64 = ctx
        .params()
        .moduli()
        .iter()
        .map(|&q| (q as f64).log2())
        .sum();
    let log_c = log_q - 1.0 - 0.5 - 1.25f64.log2();
    let ratio = rotated_slot_noise(ctx) / fresh_slot_noise(ctx);
    let log_g = (log_c - ratio.log2()) / 2.0;
    (log_g.exp2(), (log_c - log_g).exp2())
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

/// The evaluation keys a set of rotation steps needs (relinearization + Galois).
pub fn evaluation_keys(
    ctx: &Context,
    sk: &SecretKey,
    steps: &[i64],
) -> Result<(RelinKey, GaloisKeys)> {
    Ok((
        RelinKey::generate(ctx, sk)?,
        GaloisKeys::generate(ctx, sk, steps, false)?,
    ))
}

/// BFV client: integer slots, secret-key (seeded) encryption.
pub struct BfvCipher {
    ctx: Context,
    sk: SecretKey,
    encoder: BfvEncoder,
}

impl BfvCipher {
    /// A client for a BFV context and its secret key.
    pub fn new(ctx: &Context, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            encoder: BfvEncoder::new(ctx)?,
            sk,
        })
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
        Ok(self
            .encoder
            .decode_signed(&self.sk.decrypt(&self.ctx, ct)?)?)
    }
}

/// CKKS client: complex slots, secret-key (seeded) encryption at the top level with the
/// scale of their role ([`ckks_scales`]); decryption floods every slot with noise of
/// standard deviation [`SCORE_FLOODING_SLOT_SIGMA`].
pub struct CkksCipher {
    ctx: Context,
    sk: SecretKey,
    encoder: CkksEncoder,
    scales: (f64, f64),
}

impl CkksCipher {
    /// A client for a CKKS context and its secret key.
    pub fn new(ctx: &Context, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            encoder: CkksEncoder::new(ctx)?,
            scales: ckks_scales(ctx),
            sk,
        })
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
        Ok(self.sk.encrypt(&self.ctx, &pt)?)
    }
    fn decrypt(&self, ct: &Ciphertext) -> Result<Vec<Complex>> {
        let flooding =
            NoiseFlooding::for_slot_sigma(&self.ctx, ct.scale(), SCORE_FLOODING_SLOT_SIGMA)?;
        Ok(self
            .sk
            .decrypt_complex_flooded(&self.ctx, &self.encoder, ct, &flooding)?)
    }
}

/// Server side for both schemes: evaluation keys only.
pub struct HeEvaluator {
    ctx: Context,
    ev: Evaluator,
    rk: RelinKey,
    gk: GaloisKeys,
}

impl HeEvaluator {
    /// An evaluator with the client's public evaluation keys.
    pub fn new(ctx: &Context, rk: RelinKey, gk: GaloisKeys) -> Self {
        Self {
            ctx: ctx.clone(),
            ev: Evaluator::new(ctx),
            rk,
            gk,
        }
    }
    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }
}

impl SlotEvaluator for HeEvaluator {
    type Ct = Ciphertext;
    type Operand = ProductOperand;

    fn rotations(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>> {
        let h = self.ev.hoist(ct)?;
        steps
            .iter()
            .map(|&s| {
                if s == 0 {
                    Ok(ct.clone())
                } else {
                    Ok(self.ev.rotate_hoisted(&h, s, &self.gk)?)
                }
            })
            .collect()
    }
    fn operand(&self, ct: &Ciphertext) -> Result<ProductOperand> {
        // Native products (no extension basis) wherever the level allows: CKKS always, BFV
        // on the presets whose primes are ≡ 1 mod t.
        Ok(match self.ctx.native_products(ct.level()) {
            Ok(()) => self.ev.prepare_native_product(ct)?,
            Err(_) => self.ev.prepare_product(ct)?,
        })
    }
    fn sum_of_products(&self, pairs: &[(&ProductOperand, &ProductOperand)]) -> Result<Ciphertext> {
        let (level, form) = pairs
            .first()
            .map_or((self.ctx.max_level(), ProductForm::Native), |(a, _)| {
                (a.level(), a.form())
            });
        let mut acc = match form {
            ProductForm::Native => ProductAccumulator::native(&self.ctx, level)?,
            _ => ProductAccumulator::new(&self.ctx, level)?,
        };
        acc.add_products(pairs)?;
        Ok(acc.finish(&self.ev, &self.rk)?)
    }
    fn rotate(&self, ct: &Ciphertext, step: i64) -> Result<Ciphertext> {
        if step == 0 {
            return Ok(ct.clone());
        }
        Ok(self.ev.rotate(ct, step, &self.gk)?)
    }
    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        Ok(self.ev.add(a, b)?)
    }
    fn finish(&self, ct: Ciphertext) -> Result<Ciphertext> {
        match self.ctx.scheme() {
            // The products' scale Δ_gΔ_q fills the modulus: a rescale would round the scores
            // to q_0's precision, so the response stays at the products' level.
            Scheme::Ckks => Ok(ct),
            _ => Ok(self.ev.mod_switch_to(&ct, 0)?),
        }
    }
}
