//! Negacyclic NTT over one prime (tfhe-ntt underneath) and the order of its evaluation
//! points, from which automorphisms in the NTT domain are derived as permutations.

use super::modulus::Modulus;
use super::montgomery::Narrow;
use super::simd::vectorized;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A prime together with its NTT plan.
#[derive(Clone, Debug)]
pub struct Prime {
    /// Arithmetic modulo the prime.
    pub m: Modulus,
    plan: tfhe_ntt::prime64::Plan,
    /// The same transform on 32-bit words (primes below `2^31`), when tfhe-ntt has one whose
    /// outputs are the 64-bit plan's, in the same order (planned and checked on first use).
    plan32: std::sync::OnceLock<Option<tfhe_ntt::prime32::Plan>>,
    /// Products on 32-bit halves (primes below `2^31`): pointwise products and lazy sums.
    narrow: Option<Narrow>,
}

impl Prime {
    /// Plans the NTT of size `n` for prime `p`; `None` if `p` is not an NTT prime for `n`.
    pub fn new(p: u64, n: usize) -> Option<Self> {
        let plan = tfhe_ntt::prime64::Plan::try_new(n, p)?;
        Some(Self {
            m: Modulus::new(p),
            plan,
            plan32: std::sync::OnceLock::new(),
            narrow: Narrow::new(p),
        })
    }

    /// The 32-bit plan of the prime, planned on first use: `None` if the prime is not below
    /// `2^31` or tfhe-ntt's 32-bit outputs differ from the 64-bit plan's, in value or order,
    /// forward or (normalized) inverse.
    fn plan32(&self) -> Option<&tfhe_ntt::prime32::Plan> {
        self.plan32
            .get_or_init(|| {
                let (n, p) = (self.plan.ntt_size(), self.value());
                let plan32 = tfhe_ntt::prime32::Plan::try_new(n, u32::try_from(p).ok()?)?;
                // the monomial X and a dense vector transform alike on both plans
                let mut wide: Vec<u64> = (0..n as u64).map(|i| (i * 7919 + 1) % p).collect();
                wide[1] = 1;
                let mut narrow: Vec<u32> = wide.iter().map(|&x| x as u32).collect();
                self.plan.fwd(&mut wide);
                plan32.fwd(&mut narrow);
                let same = |w: &[u64], v: &[u32]| w.iter().zip(v).all(|(&w, &v)| w == u64::from(v));
                let forward = same(&wide, &narrow);
                // and the normalized inverse of the transformed vector
                self.plan.inv(&mut wide);
                self.plan.normalize(&mut wide);
                plan32.inv(&mut narrow);
                plan32.normalize(&mut narrow);
                (forward && same(&wide, &narrow)).then_some(plan32)
            })
            .as_ref()
    }

    /// Forward negacyclic NTT in place on 32-bit words (inputs below the prime, which is
    /// below `2^32`): the outputs of [`Self::forward`], about 1.6 times faster where
    /// tfhe-ntt has a 32-bit plan for the prime.
    pub fn forward_narrow(&self, a: &mut [u32]) {
        match self.plan32() {
            Some(plan) => plan.fwd(a),
            None => with_scratch(a.len(), |s| {
                for (w, &v) in s.iter_mut().zip(a.iter()) {
                    *w = u64::from(v);
                }
                self.plan.fwd(s);
                for (v, &w) in a.iter_mut().zip(s.iter()) {
                    *v = w as u32;
                }
            }),
        }
    }

    /// The prime.
    #[inline(always)]
    pub fn value(&self) -> u64 {
        self.m.value()
    }

    /// Forward negacyclic NTT in place (coefficients → evaluations). On a prime below
    /// `2^31` (`pir-4096`) it runs on tfhe-ntt's 32-bit plan, whose outputs are the same
    /// ([`Self::plan32`] checks it): 32-bit lanes hold twice the residues of 64-bit ones.
    #[inline]
    pub fn forward(&self, a: &mut [u64]) {
        match self.plan32() {
            Some(plan) => with_narrow_words(a, |w| plan.fwd(w)),
            None => self.plan.fwd(a),
        }
    }

    /// Inverse negacyclic NTT in place (evaluations → coefficients), normalized; on the
    /// 32-bit plan where [`Self::forward`] is.
    #[inline]
    pub fn backward(&self, a: &mut [u64]) {
        match self.plan32() {
            Some(plan) => with_narrow_words(a, |w| {
                plan.inv(w);
                plan.normalize(w);
            }),
            None => {
                self.plan.inv(a);
                self.plan.normalize(a);
            }
        }
    }

    /// `acc[i] += a[i] * b[i] mod p` (SIMD).
    #[inline]
    pub fn mul_acc(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        match &self.narrow {
            Some(narrow) => narrow.mul_acc(acc, a, b),
            None => self.plan.mul_accumulate(acc, a, b),
        }
    }

    /// `acc[i] = (acc[i] + Σ_k a_k[i] · b_k[i]) mod p` over `pairs` (SIMD). On a prime below
    /// `2^31` the products are added unreduced on 32-bit halves and each word is reduced once
    /// per [`Narrow::lazy_terms`] of them (a key switch's or an external product's digits:
    /// once); otherwise each product is reduced as in [`Self::mul_acc`].
    pub fn mul_acc_sum<'a>(
        &self,
        acc: &mut [u64],
        pairs: impl IntoIterator<Item = (&'a [u64], &'a [u64])>,
    ) {
        let Some(narrow) = &self.narrow else {
            for (a, b) in pairs {
                self.plan.mul_accumulate(acc, a, b);
            }
            return;
        };
        let mut pending = 0;
        for (a, b) in pairs {
            if pending == narrow.lazy_terms() {
                narrow.reduce_lazy(acc);
                pending = 0;
            }
            narrow.mul_add_lazy(acc, a, b);
            pending += 1;
        }
        if pending > 0 {
            narrow.reduce_lazy(acc);
        }
    }

    /// `a[i] = a[i] * b[i] mod p` (SIMD).
    #[inline]
    pub fn mul_assign(&self, a: &mut [u64], b: &[u64]) {
        if let Some(narrow) = &self.narrow {
            return narrow.mul_assign(a, b);
        }
        with_scratch(a.len(), |s| {
            s.fill(0);
            self.plan.mul_accumulate(s, a, b);
            a.copy_from_slice(s);
        });
    }

    /// `a[i] = a[i] * c mod p` for a constant `c < p` (SIMD: the constant is pre-multiplied
    /// by `n` so that the plan's normalizing product yields exactly `a·c`).
    #[inline]
    pub fn mul_const_assign(&self, a: &mut [u64], c: u64) {
        if let Some(narrow) = &self.narrow {
            return narrow.mul_const_assign(a, c);
        }
        let cn = self.m.mul(c, self.m.reduce(a.len() as u64));
        with_scratch(a.len(), |s| {
            s.fill(cn);
            self.plan.mul_assign_normalize(a, s);
        });
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    static NARROW: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `a`'s words narrowed to 32 bits (each below a prime below `2^31`) and writes
/// the results back, through this thread's 32-bit buffer (cleared afterwards, as in
/// [`with_scratch`]: the words may be a secret's transform).
fn with_narrow_words(a: &mut [u64], f: impl FnOnce(&mut [u32])) {
    with_cleared(&NARROW, a.len(), |w| {
        vectorized(
            #[inline(always)]
            || {
                for (w, &x) in w.iter_mut().zip(a.iter()) {
                    *w = x as u32;
                }
            },
        );
        f(w);
        vectorized(
            #[inline(always)]
            || {
                for (x, &w) in a.iter_mut().zip(w.iter()) {
                    *x = u64::from(w);
                }
            },
        );
    });
}

/// Runs `f` with a thread-local scratch buffer of `n` words (contents unspecified on entry),
/// and zeroes the `n` words it used afterwards: products computed here (`a·s` during key
/// generation and encryption, `s²` during decryption) must not outlive the call. Clearing
/// only the used prefix costs one `memset` of `n` words next to an `n`-word SIMD product.
/// A plain `fill(0)` is enough (no volatile writes): the buffer lives on in thread-local
/// storage and is read by the next call, so the stores cannot be optimized away.
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [u64]) -> R) -> R {
    with_cleared(&SCRATCH, n, f)
}

/// Runs `f` on the first `n` words of the thread-local buffer `key` (grown as needed) and
/// zeroes them afterwards; a re-entrant use gets a fresh buffer, cleared on drop.
fn with_cleared<T, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    n: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R
where
    T: Copy + Default + zeroize::DefaultIsZeroes,
{
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < n {
                // The old buffer is all zeros (every use clears it), so a reallocation
                // leaves no secret behind.
                buf.resize(n, T::default());
            }
            let used = &mut buf[..n];
            let out = f(used);
            used.fill(T::default());
            out
        }
        Err(_) => f(&mut Zeroizing::new(vec![T::default(); n])),
    })
}

/// Whether this thread's scratch buffer holds only zeros (it always should between
/// operations). A diagnostic for tests: key generation, encryption and decryption on this
/// thread must leave nothing secret-derived in it.
pub fn scratch_is_clear() -> bool {
    SCRATCH.with(|cell| {
        cell.try_borrow()
            .map(|buf| buf.iter().all(|&x| x == 0))
            .unwrap_or(false)
    })
}

/// Words currently allocated for this thread's scratch buffer (0 before its first use).
pub fn scratch_len() -> usize {
    SCRATCH.with(|cell| cell.try_borrow().map(|buf| buf.len()).unwrap_or(0))
}

/// The exponents of the evaluation points of the NTT outputs: output `i` is the polynomial
/// evaluated at `ψ^exponent[i]` for a primitive `2n`-th root `ψ` (the same table for every
/// prime, which is checked when the context is built).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NttOrder {
    exponent: Vec<u32>,
    index_of: Vec<u32>,
}

impl NttOrder {
    /// Reads the order off a prime's NTT by transforming the monomial `X`.
    pub fn of(prime: &Prime, n: usize) -> Option<Self> {
        let two_n = 2 * n;
        let mut x = vec![0u64; n];
        x[1] = 1;
        prime.forward(&mut x);
        let psi = x[0];
        let m = &prime.m;
        let mut log = HashMap::with_capacity(two_n);
        let mut acc = 1u64;
        for k in 0..two_n {
            log.insert(acc, k as u32);
            acc = m.mul(acc, psi);
        }
        if acc != 1 || log.len() != two_n {
            return None; // psi is not a primitive 2n-th root
        }
        let mut exponent = Vec::with_capacity(n);
        let mut index_of = vec![u32::MAX; two_n];
        for (i, v) in x.iter().enumerate() {
            let e = *log.get(v)?;
            if e % 2 == 0 || index_of[e as usize] != u32::MAX {
                return None;
            }
            index_of[e as usize] = i as u32;
            exponent.push(e);
        }
        Some(Self { exponent, index_of })
    }

    /// Index of the NTT output that holds the evaluation at `ψ^e` (`e` odd, `< 2n`).
    #[inline]
    pub fn index_of(&self, e: usize) -> usize {
        self.index_of[e] as usize
    }

    /// The permutation realizing `X -> X^g` in the NTT domain:
    /// `ntt(σ_g(a))[i] = ntt(a)[perm[i]]`.
    pub fn galois_permutation(&self, g: u64) -> Vec<u32> {
        // 2N is a power of two: reduce by a mask instead of a division per index
        let mask = (self.index_of.len() as u64).wrapping_sub(1);
        self.exponent
            .iter()
            .map(|&e| self.index_of[((e as u64).wrapping_mul(g) & mask) as usize])
            .collect()
    }
}

/// Appends to `out` one residue polynomial `a` permuted by an NTT-domain automorphism
/// (`out[i] = a[perm[i]]`; the indices of [`NttOrder::galois_permutation`] are below
/// `a.len()`, any other reads as zero).
#[inline]
pub fn permute(out: &mut Vec<u64>, a: &[u64], perm: &[u32]) {
    vectorized(
        #[inline(always)]
        || {
            out.extend(
                perm.iter()
                    .map(|&j| a.get(j as usize).copied().unwrap_or(0)),
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;

    fn negacyclic_mul(a: &[u64], b: &[u64], m: &Modulus) -> Vec<u64> {
        let n = a.len();
        let mut out = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let p = m.mul(a[i], b[j]);
                if i + j < n {
                    out[i + j] = m.add(out[i + j], p);
                } else {
                    out[i + j - n] = m.sub(out[i + j - n], p);
                }
            }
        }
        out
    }

    #[test]
    fn ntt_multiplies_and_inverts() {
        let n = 64;
        let p = ntt_primes(&[50], n, &mut Vec::new()).unwrap()[0];
        let prime = Prime::new(p, n).unwrap();
        let a: Vec<u64> = (0..n as u64).map(|i| (i * i * 31 + 7) % p).collect();
        let b: Vec<u64> = (0..n as u64).map(|i| (i * 977 + 3) % p).collect();
        let want = negacyclic_mul(&a, &b, &prime.m);
        let (mut fa, mut fb) = (a.clone(), b.clone());
        prime.forward(&mut fa);
        prime.forward(&mut fb);
        let mut prod = vec![0; n];
        prime.mul_acc(&mut prod, &fa, &fb);
        prime.backward(&mut prod);
        assert_eq!(prod, want);
        prime.backward(&mut fa);
        assert_eq!(fa, a);
    }

    #[test]
    fn galois_permutation_is_the_automorphism() {
        let n = 32;
        let primes = ntt_primes(&[40, 50], n, &mut Vec::new()).unwrap();
        let p0 = Prime::new(primes[0], n).unwrap();
        let order = NttOrder::of(&p0, n).unwrap();
        let p1 = Prime::new(primes[1], n).unwrap();
        assert_eq!(NttOrder::of(&p1, n).unwrap(), order);
        let m = &p0.m;
        let a: Vec<u64> = (0..n as u64)
            .map(|i| (i * 12345 + 17) % m.value())
            .collect();
        for g in [3u64, 5, 25, 2 * n as u64 - 1] {
            // σ_g(a) in the coefficient domain: X^i -> X^(i*g mod 2n), with sign.
            let mut want = vec![0u64; n];
            for (i, &c) in a.iter().enumerate() {
                let e = (i as u64 * g) % (2 * n as u64);
                if e < n as u64 {
                    want[e as usize] = m.add(want[e as usize], c);
                } else {
                    let k = (e - n as u64) as usize;
                    want[k] = m.sub(want[k], c);
                }
            }
            let mut fa = a.clone();
            p0.forward(&mut fa);
            let mut out = Vec::with_capacity(n);
            permute(&mut out, &fa, &order.galois_permutation(g));
            p0.backward(&mut out);
            assert_eq!(out, want, "g = {g}");
        }
    }
}

#[cfg(test)]
mod narrow_plan_tests {
    use super::*;
    use crate::math::primes::ntt_primes;

    /// Primes below 2^31 transform on the 32-bit plan, both ways, with the 64-bit plan's
    /// results; wider primes keep the 64-bit plan.
    #[test]
    fn narrow_primes_transform_on_the_32_bit_plan() {
        let n = 4096;
        for bits in [27u32, 28, 30] {
            let p = ntt_primes(&[bits], n, &mut Vec::new()).unwrap()[0];
            let prime = Prime::new(p, n).unwrap();
            assert!(prime.plan32().is_some(), "{bits}-bit prime {p}");
            let a: Vec<u64> = (0..n as u64).map(|i| (i * i * 31 + 7) % p).collect();
            let mut narrow = a.clone();
            prime.forward(&mut narrow);
            let mut wide = a.clone();
            prime.plan.fwd(&mut wide);
            assert_eq!(narrow, wide);
            prime.backward(&mut narrow);
            assert_eq!(narrow, a);
        }
        let p = ntt_primes(&[40], n, &mut Vec::new()).unwrap()[0];
        assert!(Prime::new(p, n).unwrap().plan32().is_none());
    }

    /// A sum of products equals the products reduced one by one, on a narrow prime past
    /// its lazy bound (the sum is reduced on the way) and on a wide prime.
    #[test]
    fn sums_of_products_match_one_by_one() {
        let n = 64;
        for bits in [28u32, 30, 50] {
            let p = ntt_primes(&[bits], 4096, &mut Vec::new()).unwrap()[0];
            let prime = Prime::new(p, n).unwrap();
            let terms = prime.narrow.map_or(5, |w| 2 * w.lazy_terms() + 3);
            let vecs: Vec<Vec<u64>> = (0..2 * terms as u64)
                .map(|k| {
                    (0..n as u64)
                        .map(|i| p - 1 - (i * 7 + k * 13) % 5)
                        .collect()
                })
                .collect();
            let pairs: Vec<(&[u64], &[u64])> = vecs
                .chunks_exact(2)
                .map(|c| (c[0].as_slice(), c[1].as_slice()))
                .collect();
            let start: Vec<u64> = (0..n as u64).map(|i| p - 1 - i).collect();
            let mut want = start.clone();
            for (a, b) in &pairs {
                for ((w, &x), &y) in want.iter_mut().zip(*a).zip(*b) {
                    *w = prime.m.add(*w, prime.m.mul(x, y));
                }
            }
            let mut got = start;
            prime.mul_acc_sum(&mut got, pairs.iter().copied());
            assert_eq!(got, want, "{bits}-bit prime, {terms} products");
        }
    }
}

#[cfg(test)]
mod preset_plan_tests {
    /// Every prime of `pir-4096` (ciphertext and special) has its 32-bit plan.
    #[test]
    fn every_pir_prime_has_a_32_bit_plan() {
        let ctx = crate::Context::preset("pir-4096").unwrap();
        for prime in ctx.qp_primes().iter() {
            assert!(prime.plan32().is_some(), "prime {}", prime.value());
        }
    }
}
