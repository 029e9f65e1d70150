//! BFV and CKKS behind the [`SlotCipher`] / [`SlotEvaluator`] traits.

use crate::backend::{SlotCipher, SlotEvaluator};
use crate::errors::Result;
use crate::layout::Layout;
use crate::slots::{Slot, SlotShape};
use blindsight_he::{
    BfvEncoder, Ciphertext, CkksEncoder, Complex, Context, Evaluator, GaloisKeys, NoiseFlooding,
    ProductAccumulator, ProductOperand, RelinKey, Scheme, SecretKey,
};

/// Standard deviation of the noise every decrypted CKKS score is flooded with (on the real
/// and imaginary part of each slot).
///
/// A raw CKKS decryption `m + e`, seen together with its ciphertext, reveals the secret key,
/// and decrypted scores do leave the client: they are shown, written to benchmark output,
/// and the ids of the best matches are sent to the server to fetch their payloads. So
/// [`CkksCipher`] decrypts with noise flooding ([`NoiseFlooding`], OpenFHE's
/// `NOISE_FLOODING_DECRYPT`). The size is the largest that keeps the accuracy contract:
/// scores must match the `f64` reference within `10^-4`, which with `σ = 1.5·10^-5` is a
/// 6.7σ event (`3·10^-11` per score; the unflooded error is about `2·10^-8`). At `ckks-8192`
/// and scale `2^40` this is `σ = 2^17.98` per coefficient, about 14 bits of statistical
/// security for one decryption against the measured response noise (OpenFHE's default of 30
/// bits would need a score error of about `4·10^-3`; see `blindsight_he::flooding`).
pub const SCORE_FLOODING_SLOT_SIGMA: f64 = 1.5e-5;

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
    fn encrypt(&self, slots: &[i64]) -> Result<Ciphertext> {
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

/// CKKS client: complex slots at the default scale, secret-key (seeded) encryption;
/// decryption floods every slot with noise of standard deviation
/// [`SCORE_FLOODING_SLOT_SIGMA`].
pub struct CkksCipher {
    ctx: Context,
    sk: SecretKey,
    encoder: CkksEncoder,
}

impl CkksCipher {
    /// A client for a CKKS context and its secret key.
    pub fn new(ctx: &Context, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            encoder: CkksEncoder::new(ctx)?,
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
    fn encrypt(&self, slots: &[Complex]) -> Result<Ciphertext> {
        let pt = self.encoder.encode_complex(
            slots,
            self.encoder.default_scale(),
            self.ctx.max_level(),
        )?;
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
        Ok(self.ev.prepare_product(ct)?)
    }
    fn sum_of_products(&self, pairs: &[(&ProductOperand, &ProductOperand)]) -> Result<Ciphertext> {
        let level = pairs
            .first()
            .map_or(self.ctx.max_level(), |(a, _)| a.level());
        let mut acc = ProductAccumulator::new(&self.ctx, level)?;
        for (a, b) in pairs {
            acc.add_product(a, b)?;
        }
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
        let ct = match self.ctx.scheme() {
            Scheme::Ckks => self.ev.rescale(&ct)?,
            _ => ct,
        };
        Ok(self.ev.mod_switch_to(&ct, 0)?)
    }
}
