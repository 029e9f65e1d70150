//! # blindsight-os — what both sides of blindsight ask of the operating system
//!
//! A small crate shared by the client (`blindsight-client`, where the secret key lives) and
//! the server (`blindsight-server`, untrusted): it holds no keys and no protocol, only
//!
//! - [`random`]: bytes from the operating system's CSPRNG (the only source of ids, tokens,
//!   salts and nonces of the application) and the hexadecimal form of ids and tokens;
//! - [`files`]: permission bits, owner-only files (keystores, databases, segment files);
//! - [`procfs`]: size fields of Linux's `/proc` files (memory budgets, benchmark figures).

pub mod errors;
pub mod files;
pub mod procfs;
pub mod random;

pub use errors::{OsError, Result};
