//! BFV encodings. Batch encoding: N integers modulo `t` in two rows of N/2 slots; rotating
//! columns is the automorphism `X -> X^(3^k)`, swapping rows is `X -> X^(2N-1)`. Coefficient
//! encoding: N integers modulo `t` as the plaintext polynomial's coefficients, so that a
//! product with a plaintext is the negacyclic convolution modulo `X^N + 1` (what private
//! retrieval's query expansion and record selection need), and an automorphism
//! `X -> X^g` permutes (and negates) coefficients.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::meta::Meta;
use crate::params::Scheme;
use crate::plaintext::{PlainData, Plaintext};
use zeroize::Zeroizing;

/// Encodes and decodes BFV slot vectors.
#[derive(Clone, Debug)]
pub struct BfvEncoder {
    ctx: Context,
}

impl BfvEncoder {
    /// An encoder for a BFV context.
    pub fn new(ctx: &Context) -> Result<Self> {
        if ctx.scheme() != Scheme::Bfv {
            return Err(HeError::WrongScheme {
                operation: "BfvEncoder",
                scheme: "CKKS",
            });
        }
        Ok(Self { ctx: ctx.clone() })
    }

    /// Encodes up to N values `< t` (missing slots are zero). Slot `i < N/2` is row 0,
    /// column `i`; slot `N/2 + i` is row 1, column `i`.
    pub fn encode(&self, values: &[u64]) -> Result<Plaintext> {
        let t = self.t();
        if let Some(&v) = values.iter().find(|&&v| v >= t) {
            return Err(HeError::ValueOutOfRange {
                what: "BFV slot",
                value: v.to_string(),
                hint: "slot values must be below the plaintext modulus",
            });
        }
        self.encode_reduced(values.iter().copied())
    }

    /// Encodes signed values in `(-t/2, t/2]`.
    pub fn encode_signed(&self, values: &[i64]) -> Result<Plaintext> {
        let t = self.t() as i64;
        if let Some(&v) = values.iter().find(|&&v| v > t / 2 || v < -t / 2) {
            return Err(HeError::ValueOutOfRange {
                what: "BFV slot",
                value: v.to_string(),
                hint: "signed slot values must lie in (-t/2, t/2]",
            });
        }
        let m = self.tables()?.t.m;
        // constant time (no division): the values are the secret message
        self.encode_reduced(values.iter().map(|&v| m.from_i64(v)))
    }

    fn encode_reduced(&self, values: impl ExactSizeIterator<Item = u64>) -> Result<Plaintext> {
        let n = self.ctx.degree();
        if values.len() > n {
            return Err(HeError::LengthMismatch {
                what: "BFV slots",
                expected: n,
                actual: values.len(),
            });
        }
        let tables = self.tables()?;
        let mut evals = vec![0u64; n];
        for (s, v) in values.enumerate() {
            evals[tables.slot_index[s]] = v;
        }
        tables.t.backward(&mut evals);
        Ok(Plaintext {
            data: PlainData::Bfv(evals),
            meta: Meta::new(&self.ctx, self.ctx.max_level(), 1.0)?,
        })
    }

    /// Encodes up to N values `< t` as the plaintext's coefficients (missing ones are zero):
    /// value `i` multiplies `X^i`.
    pub fn encode_coefficients(&self, values: &[u64]) -> Result<Plaintext> {
        let n = self.ctx.degree();
        check_coefficients(&self.ctx, values)?;
        let mut coeffs = vec![0u64; n];
        coeffs[..values.len()].copy_from_slice(values);
        Ok(Plaintext {
            data: PlainData::Bfv(coeffs),
            meta: Meta::new(&self.ctx, self.ctx.max_level(), 1.0)?,
        })
    }

    /// Decodes the N coefficients of a BFV plaintext (the inverse of
    /// [`BfvEncoder::encode_coefficients`]).
    pub fn decode_coefficients(&self, pt: &Plaintext) -> Result<Vec<u64>> {
        pt.meta.check_context(&self.ctx)?;
        let PlainData::Bfv(coeffs) = &pt.data else {
            return Err(HeError::WrongScheme {
                operation: "BFV decode",
                scheme: "CKKS",
            });
        };
        Ok(coeffs.clone())
    }

    /// Decodes the N slots of a BFV plaintext.
    pub fn decode(&self, pt: &Plaintext) -> Result<Vec<u64>> {
        pt.meta.check_context(&self.ctx)?;
        let PlainData::Bfv(coeffs) = &pt.data else {
            return Err(HeError::WrongScheme {
                operation: "BFV decode",
                scheme: "CKKS",
            });
        };
        let tables = self.tables()?;
        let mut evals = Zeroizing::new(coeffs.clone());
        tables.t.forward(&mut evals);
        Ok(tables.slot_index.iter().map(|&i| evals[i]).collect())
    }

    /// Decodes the N slots as centered values in `(-t/2, t/2]`.
    pub fn decode_signed(&self, pt: &Plaintext) -> Result<Vec<i64>> {
        let m = self.tables()?.t.m;
        Ok(self.decode(pt)?.into_iter().map(|v| m.center(v)).collect())
    }

    fn t(&self) -> u64 {
        self.ctx.params().plain_modulus()
    }

    fn tables(&self) -> Result<&crate::context::BfvTables> {
        self.ctx.inner.bfv.as_ref().ok_or(HeError::WrongScheme {
            operation: "BFV encoding",
            scheme: "CKKS",
        })
    }
}

/// Checks up to N coefficient values, each below `t` (coefficient encoding).
pub(crate) fn check_coefficients(ctx: &Context, values: &[u64]) -> Result<()> {
    let (n, t) = (ctx.degree(), ctx.params().plain_modulus());
    if values.len() > n {
        return Err(HeError::LengthMismatch {
            what: "BFV coefficients",
            expected: n,
            actual: values.len(),
        });
    }
    if let Some(&v) = values.iter().find(|&&v| v >= t) {
        return Err(HeError::ValueOutOfRange {
            what: "BFV coefficient",
            value: v.to_string(),
            hint: "coefficients must be below the plaintext modulus",
        });
    }
    Ok(())
}
