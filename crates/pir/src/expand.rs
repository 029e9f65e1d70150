//! Query expansion (server side): one ciphertext of `m ≤ N` coefficient-encoded values
//! becomes `m` ciphertexts, the `i`-th encrypting `2^L · value_i` as a constant
//! (`L = ⌈log2 m⌉`; the client encodes `value_i · 2^-L mod t`).
//!
//! Level `j` of the tree splits each ciphertext `c` (holding the values whose index is `k`
//! modulo `2^j`, at the multiples of `2^j`) by the substitution `X -> X^(N/2^j + 1)`, which
//! negates exactly the odd multiples of `2^j`: `c + σ(c)` keeps the indices `≡ k` and
//! `(c − σ(c))·X^-2^j` those `≡ k + 2^j (mod 2^(j+1))`, shifted down. Branches that hold no
//! index below `m` are never computed, and a node whose odd half holds none (zeros, as the
//! client encodes the values past `m`) is doubled instead of substituted: `m − 1`
//! substitutions in all, not one per node of the `2^L`-leaf tree (2 527 instead of 4 095
//! for the 2 528 row selectors of a 10⁵-record database).

use crate::errors::{PirError, Result};
use blindsight_he::{Ciphertext, Context, Evaluator, GaloisKeys, PlainOperand};

/// The levels of the expansion of `m` values.
pub fn levels(m: usize) -> u32 {
    m.max(1).next_power_of_two().trailing_zeros()
}

/// `−X^-2^j = X^(N − 2^j)` (`−1` for a shift of 0), transformed once at `level`: the odd
/// half `(c − σ(c))·X^-2^j` is computed as `(σ(c) − c)·X^(N − 2^j)`, in `σ(c)`'s place.
fn negated_inverse_monomial(
    ctx: &Context,
    level: usize,
    t: u64,
    shift: usize,
) -> Result<PlainOperand> {
    let n = ctx.degree();
    let mut coeffs = vec![0u64; n];
    if shift == 0 {
        coeffs[0] = t - 1;
    } else {
        coeffs[n - shift] = 1;
    }
    let mut op = PlainOperand::zero(ctx, level)?;
    op.load(ctx, &coeffs)?;
    Ok(op)
}

/// Expands `query` into its first `m` values (see the module's documentation).
pub fn expand(
    ev: &Evaluator,
    keys: &GaloisKeys,
    query: &Ciphertext,
    m: usize,
) -> Result<Vec<Ciphertext>> {
    expand_map(ev, keys, query, m, Ok)
}

/// [`expand`], each value passed through `leaf` as soon as it is expanded. The tree is
/// walked depth first (both halves of a split in parallel), so that only the current paths'
/// ciphertexts and the leaves' outputs are held, not a whole level of the tree (at 2 528
/// values, 500 MB of ciphertexts at the query level).
pub fn expand_map<T: Send>(
    ev: &Evaluator,
    keys: &GaloisKeys,
    query: &Ciphertext,
    m: usize,
    leaf: impl Fn(Ciphertext) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let ctx = ev.context();
    let n = ctx.degree();
    if m == 0 || m > n {
        return Err(PirError::Parameters {
            what: "values in one query ciphertext",
            expected: format!("1 to {n}"),
            actual: m.to_string(),
        });
    }
    let t = ctx.params().plain_modulus();
    let depth = levels(m);
    let shifts = (0..depth)
        .map(|j| negated_inverse_monomial(ctx, query.level(), t, 1 << j))
        .collect::<Result<Vec<_>>>()?;
    let walk = Walk {
        ev,
        keys,
        m,
        depth,
        shifts: &shifts,
        leaf: &leaf,
    };
    let mut out = walk.node(query.clone(), 0, 0)?;
    // leaves come out in tree order: index k at its bit-reversed place; sort by index
    out.sort_by_key(|(k, _)| *k);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// The fixed inputs of a depth-first expansion.
struct Walk<'a, F> {
    ev: &'a Evaluator,
    keys: &'a GaloisKeys,
    m: usize,
    depth: u32,
    shifts: &'a [PlainOperand],
    leaf: &'a F,
}

impl<F> Walk<'_, F> {
    /// The leaves below node `k` of level `j` (the ciphertext holding the values whose
    /// index is `k` modulo `2^j`), with their indices.
    fn node<T>(&self, c: Ciphertext, k: usize, j: u32) -> Result<Vec<(usize, T)>>
    where
        T: Send,
        F: Fn(Ciphertext) -> Result<T> + Sync,
    {
        if j == self.depth {
            return Ok(vec![(k, (self.leaf)(c)?)]);
        }
        let half = 1usize << j;
        if k + half >= self.m {
            // no index of the odd half is below m: those coefficients hold zeros (the
            // client's encoding), so σ(c) = c there and on the even ones: c + σ(c) = 2c,
            // without a substitution
            let even = self.ev.add(&c, &c)?;
            drop(c);
            return self.node(even, k, j + 1);
        }
        let n = self.ev.context().degree() as u64;
        // σ(c)'s polynomials become the odd half, c's the even one: one copy, not three
        let mut odd = self.ev.substitute(&c, (n >> j) + 1, self.keys)?;
        let mut even = c.clone();
        self.ev.add_assign(&mut even, &odd)?;
        self.ev.sub_assign(&mut odd, &c)?;
        drop(c);
        self.ev
            .mul_plain_operand_assign(&mut odd, &self.shifts[j as usize])?;
        let (a, b) = rayon::join(
            || self.node(even, k, j + 1),
            || self.node(odd, k + half, j + 1),
        );
        let mut a = a?;
        a.extend(b?);
        Ok(a)
    }
}
