#![doc = include_str!("../README.md")]

pub mod accumulator;
pub mod bfv;
mod bfv_mul;
pub mod ckks;
pub mod context;
pub mod crypt;
pub mod errors;
pub mod evaluator;
pub mod flooding;
pub mod gsw;
pub mod keys;
mod keyswitch;
pub mod math;
pub mod meta;
pub mod narrow_products;
mod operand_layout;
pub mod params;
pub mod plain_operand;
pub mod plaintext;
pub mod product_operand;
pub mod ring_switch;
pub mod rotation_sum;
pub mod serialize;
mod tensor_sum;
pub mod transfer;

pub use accumulator::ProductAccumulator;
pub use bfv::BfvEncoder;
pub use ckks::{CkksEncoder, Complex};
pub use context::Context;
pub use errors::{HeError, Result};
pub use evaluator::{Evaluator, HoistedCiphertext};
pub use flooding::NoiseFlooding;
pub use gsw::Rgsw;
pub use keys::{GaloisKeys, PublicKey, RelinKey, SecretKey};
pub use meta::Meta;
pub use narrow_products::{
    NarrowCiphertext, NarrowOperands, NarrowProduct, NarrowSelectors, NarrowSums,
    accumulate_narrow, accumulate_narrow_by_prime,
};
pub use operand_layout::ProductForm;
pub use params::{Parameters, Scheme};
pub use plain_operand::PlainOperand;
pub use plaintext::{Ciphertext, Plaintext};
pub use product_operand::{OperandSpec, ProductOperand, SharedBytes};
pub use ring_switch::{ResponseSecretKey, RingSwitchKey};
pub use rotation_sum::RotationSum;
pub use serialize::{Kind, Serializable};

/// The workspace README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct WorkspaceReadmeDoctests;
