//! Exact RNS base conversion, HPS scale-and-round, and CRT reconstruction to `f64`.
//!
//! All routines work on coefficient-form residues and keep the centered meaning of values:
//! an input `x` modulo `F` stands for its representative in `(-F/2, F/2]`.

use super::modulus::Modulus;
use super::simd::vectorized;

/// Floor of `a * 2^128 / q` for `a < q` (a 128-bit binary fraction of `a/q`).
pub fn frac128(a: u64, q: u64) -> u128 {
    let q = q as u128;
    let hi_num = (a as u128) << 64;
    let hi = hi_num / q;
    let rem = hi_num % q;
    let lo = (rem << 64) / q;
    (hi << 64) | lo
}

/// `Π_{j ≠ skip} values[j] mod m`.
fn product_mod(values: &[u64], skip: Option<usize>, m: &Modulus) -> u64 {
    values
        .iter()
        .enumerate()
        .filter(|(j, _)| Some(*j) != skip)
        .fold(1 % m.value(), |acc, (_, &v)| m.mul(acc, m.reduce(v)))
}

/// Rounds `Σ y_i * F_i / 2^128` to the nearest integer, where `F_i` are 128-bit fractions.
#[inline(always)]
pub fn round_fraction_sum(ys: &[u64], fracs: &[u128]) -> u64 {
    let mut lo: u128 = 1u128 << 127;
    let mut top: u64 = 0;
    for (&y, &f) in ys.iter().zip(fracs) {
        let a = y as u128 * (f as u64) as u128;
        let b = y as u128 * ((f >> 64) as u64) as u128;
        let (s, c) = lo.overflowing_add(a);
        lo = s;
        top = top.wrapping_add(c as u64);
        let (s, c) = lo.overflowing_add(b << 64);
        lo = s;
        top = top.wrapping_add(c as u64).wrapping_add((b >> 64) as u64);
    }
    top
}

/// Converts residues modulo `F = Π from` into residues modulo each prime of `to`, exactly,
/// for values in `(-F/2, F/2]` not too close to the ends (a floating-point estimate of the
/// overflow count is rounded; it is exact when `|x| < F/2 - F * k * 2^-50`).
#[derive(Clone, Debug)]
pub struct BaseConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// `[(F/f_i)^-1]_{f_i}` and its Shoup companion.
    inv_punctured: Vec<(u64, u64)>,
    /// `1 / f_i` as f64.
    inv_from: Vec<f64>,
    /// `[F/f_i]_{t_j}`, row per target `j`.
    punctured_mod_to: Vec<Vec<u64>>,
    /// `[F]_{t_j}`.
    f_mod_to: Vec<u64>,
}

impl BaseConverter {
    /// Precomputes the conversion from the primes `from` to the primes `to`.
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Self {
        let vals: Vec<u64> = from.iter().map(|m| m.value()).collect();
        let inv_punctured = from
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let w = m.inv(product_mod(&vals, Some(i), m)).unwrap_or(0);
                (w, m.shoup(w))
            })
            .collect();
        let punctured_mod_to = to
            .iter()
            .map(|t| {
                (0..from.len())
                    .map(|i| product_mod(&vals, Some(i), t))
                    .collect()
            })
            .collect();
        let f_mod_to = to.iter().map(|t| product_mod(&vals, None, t)).collect();
        Self {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_punctured,
            inv_from: vals.iter().map(|&v| 1.0 / v as f64).collect(),
            punctured_mod_to,
            f_mod_to,
        }
    }

    /// Converts `n` coefficients: `input[i]` are the residues mod `from[i]`,
    /// `output[j]` receives the residues mod `to[j]`.
    pub fn convert(&self, input: &[&[u64]], output: &mut [&mut [u64]]) {
        let k = self.from.len();
        let n = input.first().map_or(0, |c| c.len());
        if k == 1 {
            // One source prime: the centered residue reduced into each target.
            let p = self.from[0].value();
            for (out, t) in output.iter_mut().zip(&self.to) {
                lift_centered(out, input[0], p, t);
            }
            return;
        }
        // y_i = x_i (F/f_i)^-1 mod f_i, and the overflow count v = round(Σ y_i / f_i).
        let mut y = vec![0u64; k * n];
        let mut v = vec![0.5f64; n];
        for i in 0..k {
            let (w, ws) = self.inv_punctured[i];
            let m = &self.from[i];
            let inv = self.inv_from[i];
            for ((yc, &x), vc) in y[i * n..(i + 1) * n]
                .iter_mut()
                .zip(input[i])
                .zip(v.iter_mut())
            {
                *yc = m.mul_shoup(x, w, ws);
                *vc += *yc as f64 * inv;
            }
        }
        let v: Vec<u8> = v.iter().map(|&x| x as u8).collect();
        for (j, out) in output.iter_mut().enumerate() {
            let t = &self.to[j];
            let row = &self.punctured_mod_to[j];
            // multiples of F mod t_j, by overflow count (v <= k)
            let f_multiples: Vec<u64> = (0..=k as u64)
                .map(|c| t.mul(t.reduce(c), self.f_mod_to[j]))
                .collect();
            // Lazy u128 sum: k products of two residues of at most MAX_MODULUS_BITS = 61 bits
            // (each < 2^122) stay below 2^128 while k <= 64.
            debug_assert!(k <= 64);
            for c in 0..n {
                let mut acc: u128 = 0;
                for i in 0..k {
                    acc += y[i * n + c] as u128 * row[i] as u128;
                }
                out[c] = t.sub(t.reduce_u128(acc), f_multiples[v[c] as usize]);
            }
        }
    }
}

/// Reconstructs centered values from residues as `f64` (Garner's mixed radix with centered
/// digits, which yields the balanced representative exactly before rounding to `f64`).
#[derive(Clone, Debug)]
pub struct CrtToFloat {
    primes: Vec<Modulus>,
    /// `prefix[i][j] = Π_{l<j} q_l mod q_i` for `j < i`.
    prefix: Vec<Vec<u64>>,
    /// `(Π_{l<i} q_l)^-1 mod q_i`.
    inv_prefix: Vec<u64>,
}

impl CrtToFloat {
    /// Precomputes reconstruction for the primes `primes`.
    pub fn new(primes: &[Modulus]) -> Self {
        let k = primes.len();
        let mut prefix = vec![Vec::new(); k];
        let mut inv_prefix = vec![1u64; k];
        for i in 0..k {
            let m = &primes[i];
            let mut acc = 1 % m.value();
            for l in 0..i {
                prefix[i].push(acc);
                acc = m.mul(acc, m.reduce(primes[l].value()));
            }
            inv_prefix[i] = m.inv(acc).unwrap_or(0);
        }
        Self {
            primes: primes.to_vec(),
            prefix,
            inv_prefix,
        }
    }

    /// The centered value of the residues `x` (one per prime) as `f64`.
    pub fn to_f64(&self, x: &[u64], digits: &mut Vec<i64>) -> f64 {
        digits.clear();
        for (i, m) in self.primes.iter().enumerate() {
            let mut partial = 0u64;
            for (j, &d) in digits.iter().enumerate() {
                partial = m.add(partial, m.mul(m.from_i64(d), self.prefix[i][j]));
            }
            let a = m.mul(m.sub(x[i], partial), self.inv_prefix[i]);
            digits.push(m.center(a));
        }
        let mut v = 0.0f64;
        for (i, &d) in digits.iter().enumerate().rev() {
            v = v * self.primes[i].value() as f64 + d as f64;
        }
        v
    }
}

/// `out = [x]_{to}` for every residue `x` of `src` modulo `from`, keeping its centered
/// meaning (`x > from/2` stands for `x - from`). Vectorized, branch-free.
pub(crate) fn lift_centered(out: &mut [u64], src: &[u64], from: u64, to: &Modulus) {
    let t = to.value();
    vectorized(
        #[inline(always)]
        || {
            if from / 2 < t {
                // |centered x| < t: no reduction, only the sign to apply
                for (o, &x) in out.iter_mut().zip(src) {
                    let neg = ((x > from / 2) as u64).wrapping_neg();
                    *o = x.wrapping_add((t.wrapping_sub(from)) & neg);
                }
            } else if from / 2 < 2 * t {
                // |centered x| < 2t (a special prime a bit above the ciphertext primes): no
                // quotient to estimate
                for (o, &x) in out.iter_mut().zip(src) {
                    *o = to.reduce_centered_below_twice(x, from);
                }
            } else if from < F64_EXACT && t < F64_EXACT {
                let inv = to.reciprocal();
                for (o, &x) in out.iter_mut().zip(src) {
                    *o = to.reduce_centered_f64(x, from, inv);
                }
            } else {
                for (o, &x) in out.iter_mut().zip(src) {
                    *o = to.reduce_centered(x, from);
                }
            }
        },
    );
}

/// Moduli below this bound reduce through [`Modulus::reduce_centered_f64`].
const F64_EXACT: u64 = 1 << 52;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    fn moduli(bits: &[u32]) -> Vec<Modulus> {
        ntt_primes(bits, 16, &mut Vec::new())
            .unwrap()
            .into_iter()
            .map(Modulus::new)
            .collect()
    }

    proptest! {
        #[test]
        fn conversion_is_exact_for_centered_values(x in -(1i128 << 100)..(1i128 << 100)) {
            let from = moduli(&[50, 50, 50]);
            let to = moduli(&[40, 61]);
            let conv = BaseConverter::new(&from, &to);
            let res: Vec<Vec<u64>> = from
                .iter()
                .map(|m| vec![(x.rem_euclid(m.value() as i128)) as u64])
                .collect();
            let input: Vec<&[u64]> = res.iter().map(|v| v.as_slice()).collect();
            let mut out = vec![vec![0u64]; to.len()];
            let mut out_refs: Vec<&mut [u64]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
            conv.convert(&input, &mut out_refs);
            for (m, o) in to.iter().zip(&out) {
                prop_assert_eq!(o[0] as i128, x.rem_euclid(m.value() as i128));
            }
        }

        /// Each of the lift's three paths (`from/2` below `t`, below `2t`, beyond) keeps a
        /// residue's centered meaning, at the edges of the centered range too.
        #[test]
        fn centered_lift_matches_the_signed_value(x in any::<u64>(), case in 0usize..4) {
            let (from, to) = [
                (134_250_497u64, 268_369_921u64), // from/2 < t
                (268_369_921, 134_250_497),       // t <= from/2 < 2t
                (1_125_899_906_826_241, 65_537),  // the quotient in f64
                ((1 << 61) - 1, 1_099_511_480_321),
            ][case];
            let m = Modulus::new(to);
            let xs = [x % from, 0, 1, from / 2, from / 2 + 1, from - 1];
            let mut out = vec![0u64; xs.len()];
            lift_centered(&mut out, &xs, from, &m);
            for (&x, &o) in xs.iter().zip(&out) {
                let signed = if x > from / 2 { x as i128 - from as i128 } else { x as i128 };
                prop_assert_eq!(o as i128, signed.rem_euclid(to as i128), "{} from {}", x, from);
            }
        }

        #[test]
        fn crt_reconstructs_centered(x in -(1i128 << 120)..(1i128 << 120)) {
            let ps = moduli(&[50, 40, 45]);
            let crt = CrtToFloat::new(&ps);
            let res: Vec<u64> = ps.iter().map(|m| x.rem_euclid(m.value() as i128) as u64).collect();
            let got = crt.to_f64(&res, &mut Vec::new());
            prop_assert!((got - x as f64).abs() <= (x as f64).abs() * 1e-15 + 1.0);
        }

        #[test]
        fn fraction_sum_rounds(ys in proptest::collection::vec(any::<u64>(), 1..5)) {
            let q = (1u64 << 61) - 1; // only used as a denominator here
            let t = 1_000_003u64;
            let fracs: Vec<u128> = ys.iter().map(|_| frac128(t, q)).collect();
            let ys: Vec<u64> = ys.iter().map(|y| y % q).collect();
            let exact: f64 = ys.iter().map(|&y| y as f64 * t as f64 / q as f64).sum();
            let got = round_fraction_sum(&ys, &fracs);
            prop_assert!((got as f64 - exact).abs() <= 0.5 + 1e-6 * exact.max(1.0));
        }
    }
}
