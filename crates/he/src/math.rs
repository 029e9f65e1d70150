//! Arithmetic foundations: modular arithmetic, NTT, RNS polynomials, sampling, base
//! conversion, the tensor-product kernels and the run-time dispatch of vector loops.
//! Everything here works on raw `u64` residues; the scheme layer sits above.

pub mod convert;
pub mod kernels;
pub mod modulus;
pub mod ntt;
pub mod poly;
pub mod primes;
pub mod sample;
pub mod simd;
