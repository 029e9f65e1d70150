//! The context: a parameter set with every table the scheme needs (NTT plans, base
//! converters, per-level constants), shared behind an `Arc`.

use crate::errors::{HeError, Result};
use crate::math::basis::Basis;
use crate::math::convert::{BaseConverter, CrtToFloat, frac128};
use crate::math::modulus::Modulus;
use crate::math::ntt::{NttOrder, Prime};
use crate::math::primes::ntt_primes;
use crate::params::{Parameters, Scheme, short_hex};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A parameter set made ready for computation. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("params", &self.inner.params.name())
            .finish()
    }
}

pub(crate) struct Inner {
    pub params: Parameters,
    pub n: usize,
    /// `q_0..q_L`, then the special primes `P`, then (BFV) the extension primes `R`.
    pub primes: Vec<Prime>,
    pub num_q: usize,
    pub num_p: usize,
    pub order: NttOrder,
    pub levels: Vec<Level>,
    pub bfv: Option<BfvTables>,
    galois: RwLock<HashMap<u64, Arc<[u32]>>>,
}

/// Constants for ciphertexts at one level `ℓ` (modulus `Q_ℓ = q_0 ⋯ q_ℓ`).
pub(crate) struct Level {
    /// Indices of `Q_ℓ ∪ P`.
    pub qp: Vec<usize>,
    /// Indices of `Q_ℓ ∪ R` (BFV products; empty for CKKS).
    pub ext: Vec<usize>,
    /// Exact conversion `P → Q_ℓ` (mod-down after key switching).
    pub p_to_q: BaseConverter,
    /// `[P^-1]_{q_j}`.
    pub p_inv: Vec<u64>,
    /// `[P]_{q_j}` (key generation).
    pub p_mod_q: Vec<u64>,
    /// `[q_ℓ^-1]_{q_j}` for `j < ℓ` (rescale / modulus switch).
    pub q_last_inv: Vec<u64>,
    /// Centered reconstruction over `Q_ℓ`.
    pub crt: CrtToFloat,
    /// BFV constants of this level.
    pub bfv: Option<BfvLevel>,
}

pub(crate) struct BfvTables {
    /// NTT over the plaintext modulus (batch encoding).
    pub t: Prime,
    /// `slot_index[s]`: NTT index mod t of slot `s` (row-major, 2 rows of N/2).
    pub slot_index: Vec<usize>,
    /// Indices of the extension primes `R`.
    pub r: Vec<usize>,
}

pub(crate) struct BfvLevel {
    /// `[⌊Q_ℓ/t⌋]_{q_j}`.
    pub delta: Vec<u64>,
    /// `Q_ℓ mod t`: with it, `round(Q_ℓ·m/t) = ⌊Q_ℓ/t⌋·m + round((Q_ℓ mod t)·m/t)`.
    pub q_mod_t: u64,
    /// `t^-1 mod 2^64` (exact division by `t` of a multiple of `t` below `2^64·t`).
    pub t_inv_word: u64,
    /// Most products a [`crate::ProductAccumulator`] may sum at this level (see
    /// [`BfvLevel::product_capacity`]).
    pub product_capacity: usize,
    /// `[-t]_{q_j}` when `Q_ℓ ≡ 1 (mod t)`: then `t·Δ ≡ -1 (mod Q_ℓ)`, so `-t` times the
    /// tensor of two BFV ciphertexts, taken in `Q_ℓ` itself, is a BFV ciphertext of their
    /// product (see [`crate::ProductAccumulator::native`]). `None` otherwise.
    pub native_product_factor: Option<Vec<u64>>,
    /// Decryption: `[(Q_ℓ/q_i)^-1]_{q_i}` (Shoup pairs) and 128-bit fractions of `t/q_i`.
    pub dec_inv: Vec<(u64, u64)>,
    pub dec_frac: Vec<u128>,
    /// Multiplication: lift `Q_ℓ → R`, scale `t/Q_ℓ` into `R`, lift back `R → Q_ℓ`.
    pub lift_q_to_r: BaseConverter,
    pub lift_r_to_q: BaseConverter,
    /// `[(Q_ℓ R / q_i)^-1]_{q_i}` (Shoup pairs).
    pub hps_inv: Vec<(u64, u64)>,
    /// 128-bit fractions of `{t R / q_i}`.
    pub hps_frac: Vec<u128>,
    /// `[⌊t R / q_i⌋]_{r_k}`, row per `k`.
    pub hps_int: Vec<Vec<u64>>,
    /// `[t / Q_ℓ]_{r_k}`.
    pub hps_r: Vec<u64>,
}

impl Context {
    /// Builds the context of a validated parameter set.
    pub fn new(params: &Parameters) -> Result<Self> {
        let n = params.degree();
        let mut values: Vec<u64> = params
            .moduli()
            .iter()
            .chain(params.special_moduli())
            .copied()
            .collect();
        let num_q = params.moduli().len();
        let num_p = params.special_moduli().len();
        let mut r_idx = Vec::new();
        if params.scheme() == Scheme::Bfv {
            // R must hold y = round(t·x/Q) for the tensor x: |x| ≤ N·Q²/2, so |y| ≤ t·N·Q/2,
            // and the exact R → Q lift needs |y| < R/2 with room for its floating-point
            // estimate: log2 R ≥ log2 Q + log2 t + log2 N + 2.
            let log_q: f64 = params.moduli().iter().map(|&q| (q as f64).log2()).sum();
            let need = log_q + (params.plain_modulus() as f64).log2() + (n as f64).log2() + 2.0;
            let mut used = values.clone();
            used.push(params.plain_modulus());
            let mut r = Vec::new();
            let mut have = 0.0;
            // tfhe-ntt orders its outputs differently for primes in [2^50, 2^51) than for
            // the others: extension primes of 50 bits, or of 52+ bits beside wider primes,
            // so that every prime of the context shares one NTT order.
            let widest = params
                .moduli()
                .iter()
                .map(|&q| 64 - q.leading_zeros())
                .max();
            let r_bits = match widest.unwrap_or(50) {
                w if w <= 50 => 50,
                w => w.clamp(52, 61),
            };
            while have < need {
                let p = ntt_primes(&[r_bits], n, &mut used)
                    .ok_or_else(|| internal("no extension primes"))?;
                have += (p[0] as f64).log2();
                r.extend(p);
            }
            r_idx = (values.len()..values.len() + r.len()).collect();
            values.extend(r);
        }
        let primes = values
            .iter()
            .map(|&v| Prime::new(v, n).ok_or_else(|| internal("NTT plan")))
            .collect::<Result<Vec<_>>>()?;
        let order = NttOrder::of(&primes[0], n).ok_or_else(|| internal("NTT order"))?;
        for p in &primes[1..] {
            if NttOrder::of(p, n).as_ref() != Some(&order) {
                return Err(internal("NTT orders differ between primes"));
            }
        }
        let moduli: Vec<Modulus> = primes.iter().map(|p| p.m).collect();
        let p_moduli = &moduli[num_q..num_q + num_p];
        let r_moduli: Vec<Modulus> = r_idx.iter().map(|&i| moduli[i]).collect();
        let t = params.plain_modulus();

        let mut levels = Vec::with_capacity(num_q);
        for l in 0..num_q {
            let qp: Vec<usize> = (0..=l).chain(num_q..num_q + num_p).collect();
            let q_moduli = &moduli[..=l];
            let p_prod = |m: &Modulus| {
                p_moduli
                    .iter()
                    .fold(1u64, |a, p| m.mul(a, m.reduce(p.value())))
            };
            let p_mod_q: Vec<u64> = q_moduli.iter().map(p_prod).collect();
            let p_inv = q_moduli
                .iter()
                .zip(&p_mod_q)
                .map(|(m, &v)| m.inv(v).ok_or_else(|| internal("P not invertible")))
                .collect::<Result<Vec<_>>>()?;
            let q_last_inv = q_moduli[..l]
                .iter()
                .map(|m| {
                    m.inv(moduli[l].value())
                        .ok_or_else(|| internal("q not invertible"))
                })
                .collect::<Result<Vec<_>>>()?;
            let bfv = if params.scheme() == Scheme::Bfv {
                Some(BfvLevel::new(q_moduli, &r_moduli, t, n)?)
            } else {
                None
            };
            let ext = if params.scheme() == Scheme::Bfv {
                (0..=l).chain(r_idx.iter().copied()).collect()
            } else {
                Vec::new()
            };
            levels.push(Level {
                qp,
                ext,
                p_to_q: BaseConverter::new(p_moduli, q_moduli),
                p_inv,
                p_mod_q,
                q_last_inv,
                crt: CrtToFloat::new(q_moduli),
                bfv,
            });
        }

        let bfv = if params.scheme() == Scheme::Bfv {
            let tp = Prime::new(t, n).ok_or_else(|| internal("NTT plan mod t"))?;
            let t_order = NttOrder::of(&tp, n).ok_or_else(|| internal("NTT order mod t"))?;
            // Slot (row, col): evaluation at ψ^(±3^col); rotating columns is X -> X^3.
            let two_n = 2 * n as u64;
            let half = n / 2;
            let mut slot_index = vec![0usize; n];
            let mut e = 1u64;
            for col in 0..half {
                slot_index[col] = t_order.index_of(e as usize);
                slot_index[half + col] = t_order.index_of((two_n - e) as usize);
                e = e * 3 % two_n;
            }
            Some(BfvTables {
                t: tp,
                slot_index,
                r: r_idx,
            })
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                params: params.clone(),
                n,
                primes,
                num_q,
                num_p,
                order,
                levels,
                bfv,
                galois: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Builds the context of a named preset.
    pub fn preset(name: &str) -> Result<Self> {
        Self::new(&Parameters::preset(name)?)
    }

    /// The parameter set.
    pub fn params(&self) -> &Parameters {
        &self.inner.params
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.inner.params.scheme()
    }

    /// Polynomial degree N.
    pub fn degree(&self) -> usize {
        self.inner.n
    }

    /// Highest ciphertext level.
    pub fn max_level(&self) -> usize {
        self.inner.num_q - 1
    }

    /// Number of slots (see [`Parameters::slots`]).
    pub fn slots(&self) -> usize {
        self.inner.params.slots()
    }

    /// Whether ciphertext products at `level` can be taken in `Q_ℓ` itself, without an
    /// extension basis: always for CKKS; for BFV when `Q_ℓ ≡ 1 (mod t)` (the 8192 and 16384
    /// presets). See [`crate::ProductAccumulator::native`].
    pub fn native_products(&self, level: usize) -> Result<()> {
        self.native_product_factor(level).map(|_| ())
    }

    /// The per-prime factor `[−t]_{q_j}` native BFV products are finished with (`None` for
    /// CKKS, which needs none); an error where native products are not possible.
    pub(crate) fn native_product_factor(&self, level: usize) -> Result<Option<&[u64]>> {
        match &self.level(level)?.bfv {
            None => Ok(None),
            Some(b) => match &b.native_product_factor {
                Some(factor) => Ok(Some(factor)),
                None => Err(HeError::NativeProductsUnsupported {
                    level,
                    q_mod_t: b.q_mod_t,
                }),
            },
        }
    }

    /// Prime indices of the extension basis `Q_ℓ ∪ R` of BFV products at `level` (an
    /// error for CKKS, which has none).
    pub(crate) fn extended_indices(&self, level: usize) -> Result<&[usize]> {
        if self.inner.bfv.is_none() {
            return Err(HeError::WrongScheme {
                operation: "BFV multiply",
                scheme: "CKKS",
            });
        }
        Ok(&self.level(level)?.ext)
    }

    /// Galois element of a rotation by `step` slots to the left (negative: to the right).
    /// BFV rotates each of its two rows of N/2 slots; CKKS its N/2 complex slots.
    pub fn galois_element(&self, step: i64) -> u64 {
        let n = self.inner.n as u64;
        let half = (n / 2) as i64;
        let generator = match self.scheme() {
            Scheme::Bfv => 3u64,
            Scheme::Ckks => 5u64,
        };
        let k = step.rem_euclid(half) as u64;
        pow_mod(generator, k, 2 * n)
    }

    /// Galois element of the BFV row swap / CKKS complex conjugation (`X -> X^(2N-1)`).
    pub fn conjugation_element(&self) -> u64 {
        2 * self.inner.n as u64 - 1
    }

    pub(crate) fn check_fingerprint(&self, fp: &[u8; 32]) -> Result<()> {
        let mine = self.inner.params.fingerprint();
        if &mine != fp {
            return Err(HeError::ParameterMismatch {
                expected: short_hex(&mine),
                actual: short_hex(fp),
            });
        }
        Ok(())
    }

    /// The basis of the context's primes at `idx` (`Q_ℓ ∪ P`, `Q_ℓ ∪ R`, …).
    pub(crate) fn primes_at<'a>(&'a self, idx: &'a [usize]) -> Basis<'a> {
        Basis::at(&self.inner.primes, idx)
    }

    /// The basis `Q_ℓ = q_0 ⋯ q_ℓ` (a prefix of the context's primes).
    pub(crate) fn q_primes(&self, level: usize) -> Basis<'_> {
        Basis::all(&self.inner.primes[..=level])
    }

    /// Every ciphertext and special prime: the key-switching basis at the top level.
    pub(crate) fn qp_primes(&self) -> Basis<'_> {
        Basis::all(&self.inner.primes[..self.inner.num_q + self.inner.num_p])
    }

    pub(crate) fn level(&self, level: usize) -> Result<&Level> {
        self.inner.levels.get(level).ok_or(HeError::LevelMismatch {
            expected: self.max_level(),
            actual: level,
        })
    }

    /// Computes and caches the NTT-domain permutations of the automorphisms `X → X^g` for
    /// `elements` (otherwise computed at their first use), so that a server's first query
    /// pays none of them. Invalid elements are skipped.
    pub fn precompute_galois(&self, elements: impl IntoIterator<Item = u64>) {
        let two_n = 2 * self.degree() as u64;
        for g in elements {
            if g % 2 == 1 && g < two_n {
                self.galois_permutation(g);
            }
        }
    }

    /// The NTT-domain permutation of `X -> X^g`, cached.
    pub(crate) fn galois_permutation(&self, g: u64) -> Arc<[u32]> {
        if let Some(p) = self
            .inner
            .galois
            .read()
            .ok()
            .and_then(|c| c.get(&g).cloned())
        {
            return p;
        }
        let perm: Arc<[u32]> = self.inner.order.galois_permutation(g).into();
        if let Ok(mut cache) = self.inner.galois.write() {
            cache.insert(g, perm.clone());
        }
        perm
    }
}

impl BfvLevel {
    /// The number of ciphertext products whose sum the extension basis `Q_ℓ ∪ R` still holds
    /// exactly, for the worst case of the inputs.
    ///
    /// Operands are lifted centered, so their coefficients are at most `Q/2`; one product of
    /// two such polynomials has coefficients of at most `N·Q²/4`, and the middle tensor
    /// term `a_0 b_1 + a_1 b_0` at most `N·Q²/2`. After `K` products the scaled tensor
    /// `y = round(t·x/Q)` is at most `K·t·N·Q/2 + 1` in magnitude, and the exact lift
    /// `R → Q` needs `|y| < R/2 − R·|R|·2^-50` (see `BaseConverter`). Hence
    /// `K ≤ (R·(1 − |R|·2^-49) − 2) / (t·N·Q)`; the other condition, `|x| < Q·R/2`, allows
    /// `t` times more. Computed in `log2` with a small safety margin for rounding.
    fn product_capacity(q: &[Modulus], r: &[Modulus], t: u64, n: usize) -> usize {
        let log = |ms: &[Modulus]| ms.iter().map(|m| (m.value() as f64).log2()).sum::<f64>();
        let margin = (1.0 - r.len() as f64 * (-49f64).exp2()).log2();
        let log_k = log(r) + margin - (t as f64).log2() - (n as f64).log2() - log(q) - 1e-6;
        if log_k < 0.0 {
            0
        } else {
            // `as` saturates for very large bounds
            log_k.exp2().floor() as usize
        }
    }

    fn new(q: &[Modulus], r: &[Modulus], t: u64, n: usize) -> Result<Self> {
        let prod_mod = |vals: &mut dyn Iterator<Item = u64>, m: &Modulus| {
            vals.fold(1 % m.value(), |a, v| m.mul(a, m.reduce(v)))
        };
        let q_vals: Vec<u64> = q.iter().map(|m| m.value()).collect();
        let r_vals: Vec<u64> = r.iter().map(|m| m.value()).collect();
        let tm = Modulus::new(t);
        let q_mod_t = prod_mod(&mut q_vals.iter().copied(), &tm);
        // ⌊Q/t⌋ ≡ -(Q mod t) * t^-1 (mod q_j).
        let delta = q
            .iter()
            .map(|m| {
                let tinv = m.inv(t).ok_or_else(|| internal("t not invertible"))?;
                Ok(m.mul(m.neg(m.reduce(q_mod_t)), tinv))
            })
            .collect::<Result<Vec<_>>>()?;
        let punct = |vals: &[u64], skip: usize, m: &Modulus| {
            let mut it = vals
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != skip)
                .map(|(_, &v)| v);
            prod_mod(&mut it, m)
        };
        let dec_inv = q
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let w = m.inv(punct(&q_vals, i, m)).ok_or_else(|| internal("CRT"))?;
                Ok((w, m.shoup(w)))
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_frac = q
            .iter()
            .map(|m| frac128(t % m.value(), m.value()))
            .collect();

        let mut hps_inv = Vec::new();
        let mut hps_frac = Vec::new();
        let mut tr_mod_q = Vec::new();
        for (i, m) in q.iter().enumerate() {
            let r_prod = prod_mod(&mut r_vals.iter().copied(), m);
            let qr_punct = m.mul(punct(&q_vals, i, m), r_prod);
            let w = m.inv(qr_punct).ok_or_else(|| internal("CRT"))?;
            hps_inv.push((w, m.shoup(w)));
            let tr = m.mul(m.reduce(t), r_prod);
            tr_mod_q.push(tr);
            hps_frac.push(frac128(tr, m.value()));
        }
        let mut hps_int = Vec::new();
        let mut hps_r = Vec::new();
        for rk in r {
            // ⌊tR/q_i⌋ ≡ -(tR mod q_i) * q_i^-1 (mod r_k), as tR ≡ 0 mod r_k.
            let row = q
                .iter()
                .zip(&tr_mod_q)
                .map(|(qi, &tr)| {
                    let inv = rk.inv(qi.value()).ok_or_else(|| internal("CRT"))?;
                    Ok(rk.mul(rk.neg(rk.reduce(tr)), inv))
                })
                .collect::<Result<Vec<_>>>()?;
            hps_int.push(row);
            let q_prod = prod_mod(&mut q_vals.iter().copied(), rk);
            let qinv = rk.inv(q_prod).ok_or_else(|| internal("CRT"))?;
            hps_r.push(rk.mul(rk.reduce(t), qinv));
        }
        // Newton's iteration for t^-1 mod 2^64 (t odd): each step doubles the correct bits.
        let mut t_inv_word = t;
        for _ in 0..6 {
            t_inv_word = t_inv_word.wrapping_mul(2u64.wrapping_sub(t.wrapping_mul(t_inv_word)));
        }
        if t.wrapping_mul(t_inv_word) != 1 {
            return Err(internal("t not invertible modulo 2^64"));
        }
        let native_product_factor =
            (q_mod_t == 1).then(|| q.iter().map(|m| m.neg(m.reduce(t))).collect::<Vec<u64>>());
        Ok(Self {
            delta,
            q_mod_t,
            native_product_factor,
            t_inv_word,
            product_capacity: Self::product_capacity(q, r, t, n),
            dec_inv,
            dec_frac,
            lift_q_to_r: BaseConverter::new(q, r),
            lift_r_to_q: BaseConverter::new(r, q),
            hps_inv,
            hps_frac,
            hps_int,
            hps_r,
        })
    }
}

fn internal(what: &str) -> HeError {
    HeError::InvalidParameters {
        reason: format!("internal table construction failed: {what}"),
    }
}

/// `base^e mod m` for small `m`.
pub(crate) fn pow_mod(base: u64, mut e: u64, m: u64) -> u64 {
    let (mut r, mut b) = (1 % m, base % m);
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % m;
        }
        b = b * b % m;
        e >>= 1;
    }
    r
}
