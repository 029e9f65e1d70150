//! Errors of the homomorphic-encryption layer.

use thiserror::Error;

/// Every failure the `he` layer reports. No public function panics on bad input: it
/// returns one of these instead.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum HeError {
    /// No parameter preset has this name.
    #[error("unknown parameter preset `{name}`; choose one of: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// Comma-separated list of known presets.
        known: String,
    },

    /// The parameter set is weaker than the HomomorphicEncryption.org 128-bit table allows.
    #[error(
        "parameters exceed the 128-bit security bound: log2(Q*P) = {actual} bits but N = {degree} \
         allows at most {expected} bits; use fewer or smaller moduli, or a larger degree"
    )]
    InsecureParameters {
        /// Polynomial degree N.
        degree: usize,
        /// Largest total modulus size allowed for N (bits).
        expected: u32,
        /// Total modulus size of the set (bits).
        actual: u32,
    },

    /// A parameter set is malformed (not prime, not NTT-friendly, wrong degree, ...).
    #[error("invalid parameters: {reason}")]
    InvalidParameters {
        /// What is wrong.
        reason: String,
    },

    /// Bytes holding product operands cannot be read in place (misaligned, or a
    /// big-endian machine).
    #[error("shared operand bytes cannot be read in place: {reason}")]
    UnusableBytes {
        /// Why.
        reason: String,
    },

    /// An input has the wrong length (vector of values, slot count, byte buffer, ...).
    #[error("{what}: expected {expected} values, got {actual}")]
    LengthMismatch {
        /// What was being checked.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },

    /// A value does not fit the plaintext space.
    #[error("{what}: value {value} is out of range; {hint}")]
    ValueOutOfRange {
        /// What was being encoded.
        what: &'static str,
        /// The offending value, printed.
        value: String,
        /// How to fix it.
        hint: &'static str,
    },

    /// Two objects belong to different parameter sets (or different keys' contexts).
    #[error(
        "parameter mismatch: object was made for parameter set {actual} but this context is \
         {expected}; use the context (preset) the object was created with"
    )]
    ParameterMismatch {
        /// Fingerprint of this context (hex).
        expected: String,
        /// Fingerprint found in the object (hex).
        actual: String,
    },

    /// Two ciphertexts (or a ciphertext and a plaintext) are at different levels.
    #[error("level mismatch: expected level {expected}, got level {actual}")]
    LevelMismatch {
        /// Level required.
        expected: usize,
        /// Level found.
        actual: usize,
    },

    /// CKKS operands carry scales too far apart to be added.
    #[error(
        "scale mismatch: expected scale 2^{expected:.3}, got 2^{actual:.3}; rescale or multiply \
         by a constant so that both operands carry the same scale"
    )]
    ScaleMismatch {
        /// log2 of the expected scale.
        expected: f64,
        /// log2 of the actual scale.
        actual: f64,
    },

    /// A scale that is not a finite positive number.
    #[error("scale {scale} is not a finite positive number; encode with a positive scale")]
    InvalidScale {
        /// The scale given.
        scale: f64,
    },

    /// A ciphertext has a number of polynomials the operation does not accept.
    #[error("ciphertext has {actual} polynomials, expected {expected}; relinearize first")]
    CiphertextSize {
        /// Size expected.
        expected: usize,
        /// Size found.
        actual: usize,
    },

    /// The modulus chain is exhausted.
    #[error("no modulus left to drop: the ciphertext is at level 0")]
    LevelExhausted,

    /// The operation is not defined for this scheme.
    #[error("operation `{operation}` is not available for {scheme}")]
    WrongScheme {
        /// Operation name.
        operation: &'static str,
        /// Scheme of the context.
        scheme: &'static str,
    },

    /// A key needed for the operation was not generated.
    #[error(
        "missing Galois key for element {element} (rotation step {step:?}); generate Galois \
         keys for this step"
    )]
    MissingGaloisKey {
        /// The Galois element.
        element: u64,
        /// The rotation step, if the element is a rotation.
        step: Option<i64>,
    },

    /// Serialized bytes could not be read.
    #[error("malformed {kind} bytes: {reason}")]
    Malformed {
        /// What was being read.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Serialized bytes end before the object does.
    #[error("truncated {kind}: expected {expected} bytes, got {actual}")]
    Truncated {
        /// What was being read.
        kind: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },

    /// A serialized object is of another kind than the one asked for.
    #[error("wrong object kind: expected {expected}, got {actual}")]
    WrongKind {
        /// Kind expected.
        expected: &'static str,
        /// Kind found.
        actual: String,
    },

    /// A serialized object uses a format version this build does not read.
    #[error("unsupported format version {actual}; this build reads version {expected}")]
    UnsupportedVersion {
        /// Version this build reads.
        expected: u16,
        /// Version found.
        actual: u16,
    },

    /// The serialized checksum does not match: the bytes were corrupted.
    #[error("checksum mismatch in {kind}: the bytes were corrupted in storage or transit")]
    Checksum {
        /// What was being read.
        kind: &'static str,
    },

    /// A coefficient of a CKKS encoding (the values times the scale, in the coefficient
    /// domain) reaches half the modulus of the level it is encoded at: it would wrap around
    /// and decrypt to garbage.
    #[error(
        "CKKS encoding overflow at level {level}: the values times the scale reach 2^{actual:.2} \
         (largest encoded coefficient), but the level's modulus only holds magnitudes below \
         2^{expected:.2}; lower the scale, encode at a higher level, or scale the values down"
    )]
    EncodingOverflow {
        /// Level encoded at.
        level: usize,
        /// log2 of the largest magnitude the level holds (half its modulus).
        expected: f64,
        /// log2 of the magnitude of the offending encoded coefficient.
        actual: f64,
    },

    /// A product accumulator already holds as many products as its modulus headroom allows.
    #[error(
        "product accumulator is full: it sums at most {capacity} products at this level (more \
         could overflow the extension basis); finish it, start another accumulator and add \
         the finished ciphertexts"
    )]
    AccumulatorFull {
        /// Largest number of products the accumulator sums.
        capacity: usize,
    },

    /// Native (extension-free) BFV products need `Q_ℓ ≡ 1 (mod t)` at the level.
    #[error(
        "native BFV products need Q ≡ 1 (mod t) at level {level}, but Q mod t = {q_mod_t}; \
         use a preset whose primes are ≡ 1 mod t (bfv-8192, bfv-16384) or extended products"
    )]
    NativeProductsUnsupported {
        /// The level asked for.
        level: usize,
        /// `Q_ℓ mod t` there.
        q_mod_t: u64,
    },

    /// Product operands and accumulators of different forms were mixed.
    #[error(
        "a product operand prepared {actual} cannot be added to an accumulator of {expected} \
         products; prepare both with the same method"
    )]
    ProductFormMismatch {
        /// The accumulator's form.
        expected: &'static str,
        /// The operand's form.
        actual: &'static str,
    },

    /// A ring-switched (response) ciphertext was given to an operation: it is under a
    /// response secret and supports only serialization and decryption.
    #[error(
        "the ciphertext was ring-switched to a response key (subring Z[X^{}]): it can only \
         be serialized and decrypted with that key, not used in further operations",
        1u64 << log_d
    )]
    RingSwitched {
        /// log2 of the subring's index.
        log_d: u32,
    },

    /// A ciphertext is under another secret than the key given to decrypt it.
    #[error(
        "the ciphertext is encrypted under {expected} but was given {actual}; decrypt \
         search responses with the response key and everything else with the main secret key"
    )]
    KeyMismatch {
        /// The key the ciphertext is under.
        expected: String,
        /// The key given.
        actual: String,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {reason}")]
    Randomness {
        /// The OS error.
        reason: String,
    },
}

/// Result type of the `he` layer.
pub type Result<T> = core::result::Result<T, HeError>;

/// `Ok` if `actual == expected`, else [`HeError::LengthMismatch`] about `what`.
pub(crate) fn check_length(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(HeError::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}
