//! Query expansion (server side): one ciphertext of `m ≤ N` coefficient-encoded values
//! becomes `m` ciphertexts, the `i`-th encrypting `2^L · value_i` as a constant
//! (`L = ⌈log2 m⌉`; the client encodes `value_i · 2^-L mod t`).
//!
//! Level `j` of the tree splits each ciphertext `c` (holding the values whose index is `k`
//! modulo `2^j`, at the multiples of `2^j`) by the substitution `X -> X^(N/2^j + 1)`, which
//! negates exactly the odd multiples of `2^j`: `c + σ(c)` keeps the indices `≡ k` and
//! `(c − σ(c))·X^-2^j` those `≡ k + 2^j (mod 2^(j+1))`, shifted down. Branches that hold no
//! index below `m` are never computed: `m − 1` substitutions in all.

use crate::errors::{PirError, Result};
use blindsight_he::{Ciphertext, Context, Evaluator, GaloisKeys, PlainOperand};
use rayon::prelude::*;

/// The levels of the expansion of `m` values.
pub fn levels(m: usize) -> u32 {
    m.max(1).next_power_of_two().trailing_zeros()
}

/// `X^-2^j` (`-X^(N - 2^j)`; `1` for a shift of 0), transformed once at `level`.
fn inverse_monomial(ctx: &Context, level: usize, t: u64, shift: usize) -> Result<PlainOperand> {
    let n = ctx.degree();
    let mut coeffs = vec![0u64; n];
    if shift == 0 {
        coeffs[0] = 1;
    } else {
        coeffs[n - shift] = t - 1;
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
    let mut cts = vec![query.clone()];
    for j in 0..levels(m) {
        let half = 1usize << j;
        let g = (n as u64 >> j) + 1;
        let shift = inverse_monomial(ctx, query.level(), t, half)?;
        // each ciphertext splits independently: in parallel once there are several
        let split = cts
            .into_par_iter()
            .enumerate()
            .map(|(k, c)| {
                let s = ev.substitute(&c, g, keys)?;
                let odd = if k + half < m {
                    Some(ev.mul_plain_operand(&ev.sub(&c, &s)?, &shift)?)
                } else {
                    None
                };
                Ok((ev.add(&c, &s)?, odd))
            })
            .collect::<Result<Vec<_>>>()?;
        // index k keeps its even half; k + half (when below m) takes the odd half
        let (even, odd): (Vec<_>, Vec<_>) = split.into_iter().unzip();
        cts = even.into_iter().chain(odd.into_iter().flatten()).collect();
    }
    cts.truncate(m);
    Ok(cts)
}
