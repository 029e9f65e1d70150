//! Search quality, measured: deterministic edited copies of gallery images ([`edits`]),
//! searched through the encrypted path.

pub mod edits;
