//! The one-time keys of private retrieval: made by the client from a secret of their own
//! (never the search secret), sent once, cached by the server per collection.

use crate::errors::Result;
use blindsight_he::{Context, GaloisKeys, RelinKey, SecretKey};

/// The Galois elements query expansion substitutes: `X -> X^(N/2^j + 1)` for each level
/// `j` of the expansion tree (`log2 N` of them).
pub fn expansion_elements(n: usize) -> Vec<u64> {
    let levels = n.trailing_zeros();
    (0..levels).map(|j| (n as u64 >> j) + 1).collect()
}

/// The server's half of a retrieval: substitution keys for the expansion and the
/// relinearization key for the second dimension. Public material.
#[derive(Clone, Debug)]
pub struct QueryKeys {
    /// One key per expansion level.
    pub galois: GaloisKeys,
    /// Relinearizes the second dimension's ciphertext products.
    pub relin: RelinKey,
}

impl QueryKeys {
    /// The keys of `sk` (the client's retrieval secret).
    pub fn generate(ctx: &Context, sk: &SecretKey) -> Result<Self> {
        Ok(Self {
            galois: GaloisKeys::for_elements(ctx, sk, &expansion_elements(ctx.degree()))?,
            relin: RelinKey::generate(ctx, sk)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_element_per_level() {
        assert_eq!(
            expansion_elements(4096),
            vec![4097, 2049, 1025, 513, 257, 129, 65, 33, 17, 9, 5, 3]
        );
        assert_eq!(expansion_elements(8), vec![9, 5, 3]);
    }
}
