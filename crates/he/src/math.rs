//! Arithmetic foundations: modular arithmetic, NTT, RNS bases and polynomials (their NTT or
//! coefficient domain in the type), sampling, base conversion, the tensor-product kernels and
//! the run-time dispatch of vector loops. The scheme layer sits above.

pub mod basis;
pub mod convert;
pub mod kernels;
pub mod modulus;
pub mod montgomery;
pub mod ntt;
pub mod poly;
pub mod primes;
pub mod sample;
pub mod simd;
