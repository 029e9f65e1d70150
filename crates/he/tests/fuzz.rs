//! Mutation fuzzing of every deserializer of `he`: ciphertexts (seeded, full, 3-polynomial
//! at a lower level, rounded, ring-switched), plaintexts, public, secret, relinearization and Galois keys, the
//! parameter envelope and the bare envelope header. Valid serializations are damaged by bit
//! flips, byte and word overwrites, truncation, extension, deletion and splices from other
//! objects; most cases then rewrite the length field and the CRC so that the damage gets
//! past the envelope checks and reaches the field parsers.
//!
//! Every case must end in an error or in a value that serializes back to exactly the bytes
//! read (the encodings are canonical), never in a panic. Each deserializer gets
//! [`CASES`] cases spread over `bfv-4096` (small, most cases) and the real `bfv-8192` and
//! `ckks-8192` presets.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use blindsight_he::serialize::{Kind, read_header};
use blindsight_he::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::sync::OnceLock;

/// Cases per deserializer.
const CASES: u32 = 10_000;
const HEADER: usize = 48;
const TRAILER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    CiphertextSeeded,
    CiphertextFull,
    CiphertextProduct,
    CiphertextRounded,
    CiphertextSeededRounded,
    CiphertextSubring,
    Plaintext,
    PublicKey,
    SecretKey,
    RelinKey,
    GaloisKeys,
    RingSwitchKey,
    Parameters,
}

const TARGETS: [Target; 13] = [
    Target::CiphertextSeeded,
    Target::CiphertextFull,
    Target::CiphertextProduct,
    Target::CiphertextRounded,
    Target::CiphertextSeededRounded,
    Target::CiphertextSubring,
    Target::Plaintext,
    Target::PublicKey,
    Target::SecretKey,
    Target::RelinKey,
    Target::GaloisKeys,
    Target::RingSwitchKey,
    Target::Parameters,
];

impl Target {
    fn kind(self) -> Kind {
        match self {
            Target::CiphertextSeeded
            | Target::CiphertextFull
            | Target::CiphertextProduct
            | Target::CiphertextRounded
            | Target::CiphertextSeededRounded
            | Target::CiphertextSubring => Kind::Ciphertext,
            Target::Plaintext => Kind::Plaintext,
            Target::PublicKey => Kind::PublicKey,
            Target::SecretKey => Kind::SecretKey,
            Target::RelinKey => Kind::RelinKey,
            Target::GaloisKeys => Kind::GaloisKeys,
            Target::RingSwitchKey => Kind::RingSwitchKey,
            Target::Parameters => Kind::Parameters,
        }
    }
}

struct Fixture {
    ctx: Context,
    /// One valid serialization per target, in the order of [`TARGETS`].
    blobs: Vec<Vec<u8>>,
}

fn build(preset: &str) -> Fixture {
    let ctx = Context::preset(preset).unwrap();
    let sk = SecretKey::generate(&ctx).unwrap();
    let pk = PublicKey::generate(&ctx, &sk).unwrap();
    let rk = RelinKey::generate(&ctx, &sk).unwrap();
    let gk = GaloisKeys::generate(&ctx, &sk, &[1], true).unwrap();
    let ev = Evaluator::new(&ctx);
    let pt = match ctx.scheme() {
        Scheme::Bfv => {
            let v: Vec<u64> = (0..ctx.degree() as u64).map(|i| i * 7919 % 65537).collect();
            BfvEncoder::new(&ctx).unwrap().encode(&v).unwrap()
        }
        _ => {
            let e = CkksEncoder::new(&ctx).unwrap();
            let v: Vec<f64> = (0..ctx.slots()).map(|i| (i % 17) as f64 / 17.0).collect();
            e.encode(&v, e.default_scale(), ctx.max_level()).unwrap()
        }
    };
    let seeded = sk.encrypt(&ctx, &pt).unwrap();
    let mut full = pk.encrypt(&ctx, &pt).unwrap();
    full.drop_seed();
    let product = ev
        .mod_switch_down(&ev.multiply(&seeded, &full).unwrap())
        .unwrap();
    assert_eq!(product.size(), 3);
    let rounded = ev.round_for_transfer(&full, [20, 24]).unwrap();
    let seeded_rounded = ev.round_for_transfer(&seeded, [30, 0]).unwrap();
    let log_d = ring_switch::max_response_log_d(&ctx, 0);
    let response = ResponseSecretKey::generate(&ctx, log_d).unwrap();
    let rsk = RingSwitchKey::generate(&ctx, &sk, &response, 0, 6).unwrap();
    let low = ev.mod_switch_to(&full, 0).unwrap();
    let switched = ev.ring_switch(&low, &rsk, log_d, [20, 26]).unwrap();
    let blobs = TARGETS
        .iter()
        .map(|t| match t {
            Target::CiphertextSeeded => seeded.to_bytes(&ctx).unwrap(),
            Target::CiphertextFull => full.to_bytes(&ctx).unwrap(),
            Target::CiphertextProduct => product.to_bytes(&ctx).unwrap(),
            Target::CiphertextRounded => rounded.to_bytes(&ctx).unwrap(),
            Target::CiphertextSeededRounded => seeded_rounded.to_bytes(&ctx).unwrap(),
            Target::CiphertextSubring => switched.to_bytes(&ctx).unwrap(),
            Target::Plaintext => pt.to_bytes(&ctx).unwrap(),
            Target::PublicKey => pk.to_bytes(&ctx).unwrap(),
            Target::SecretKey => sk.to_bytes(&ctx).unwrap().to_vec(),
            Target::RelinKey => rk.to_bytes(&ctx).unwrap(),
            Target::GaloisKeys => gk.to_bytes(&ctx).unwrap(),
            Target::RingSwitchKey => rsk.to_bytes(&ctx).unwrap(),
            Target::Parameters => ctx.params().to_bytes(&ctx).unwrap(),
        })
        .collect();
    Fixture { ctx, blobs }
}

/// The fuzzed contexts: the small preset (half of the cases) and two real ones.
fn fixtures() -> &'static [Fixture; 3] {
    static F: OnceLock<[Fixture; 3]> = OnceLock::new();
    F.get_or_init(|| [build("bfv-4096"), build("bfv-8192"), build("ckks-8192")])
}

/// A position in the buffer being mutated, resolved against its current length.
#[derive(Clone, Copy, Debug)]
enum Pos {
    /// Offset from the start, within the header and the first payload fields.
    Head(u16),
    /// A fraction of the length (anywhere).
    Any(u32),
    /// Offset from the end (the CRC, the last residues, trailing fields).
    Tail(u16),
}

impl Pos {
    fn at(self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        match self {
            Pos::Head(x) => (x as usize).min(len - 1),
            Pos::Any(x) => ((x as u64 * len as u64) >> 32) as usize,
            Pos::Tail(x) => len - 1 - (x as usize).min(len - 1),
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Pos, u8),
    Overwrite(Pos, u8),
    /// Eight bytes (lengths, counts, Galois elements, the scale, seeds).
    OverwriteWord(Pos, u64),
    Truncate(Pos),
    Extend(Vec<u8>),
    Delete(Pos, u16),
    /// Copies `len` bytes from blob `donor` of the same context at `from` over (or, if
    /// `insert`, into) the buffer at `to`.
    Splice {
        donor: usize,
        from: Pos,
        len: u16,
        to: Pos,
        insert: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum Fixup {
    /// Leave the damage for the envelope checks.
    None,
    /// Recompute the CRC.
    Crc,
    /// Rewrite the payload length to match the buffer, then the CRC.
    LengthAndCrc,
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        3 => (0u16..160).prop_map(Pos::Head),
        4 => any::<u32>().prop_map(Pos::Any),
        1 => (0u16..64).prop_map(Pos::Tail),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (pos(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        3 => (pos(), any::<u8>()).prop_map(|(p, b)| Mutation::Overwrite(p, b)),
        2 => (pos(), prop_oneof![any::<u64>(), 0u64..300, Just(u64::MAX)])
            .prop_map(|(p, w)| Mutation::OverwriteWord(p, w)),
        1 => pos().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Extend),
        1 => (pos(), 1u16..600).prop_map(|(p, n)| Mutation::Delete(p, n)),
        2 => (0..TARGETS.len(), pos(), 1u16..2000, pos(), any::<bool>()).prop_map(
            |(donor, from, len, to, insert)| Mutation::Splice { donor, from, len, to, insert }
        ),
    ]
}

fn fixup() -> impl Strategy<Value = Fixup> {
    prop_oneof![
        1 => Just(Fixup::None),
        1 => Just(Fixup::Crc),
        4 => Just(Fixup::LengthAndCrc),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation, donors: &[Vec<u8>]) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(p, b) if len > 0 => bytes[p.at(len)] ^= 1 << b,
        Mutation::Overwrite(p, b) if len > 0 => bytes[p.at(len)] = *b,
        Mutation::OverwriteWord(p, w) if len > 0 => {
            let at = p.at(len);
            let end = (at + 8).min(len);
            bytes[at..end].copy_from_slice(&w.to_le_bytes()[..end - at]);
        }
        Mutation::Truncate(p) => bytes.truncate(p.at(len)),
        Mutation::Extend(extra) => bytes.extend_from_slice(extra),
        Mutation::Delete(p, n) if len > 0 => {
            let at = p.at(len);
            let end = (at + *n as usize).min(len);
            bytes.drain(at..end);
        }
        Mutation::Splice {
            donor,
            from,
            len: n,
            to,
            insert,
        } => {
            let src = &donors[*donor];
            let start = from.at(src.len());
            let piece = &src[start..(start + *n as usize).min(src.len())];
            let at = to.at(len).min(len);
            if *insert {
                bytes.splice(at..at, piece.iter().copied());
            } else {
                let end = (at + piece.len()).min(len);
                bytes.splice(at..end, piece.iter().copied());
            }
        }
        _ => {}
    }
}

fn fix(bytes: &mut [u8], f: Fixup) {
    let len = bytes.len();
    if len < HEADER + TRAILER {
        return;
    }
    if let Fixup::LengthAndCrc = f {
        bytes[40..48].copy_from_slice(&((len - HEADER - TRAILER) as u64).to_le_bytes());
    }
    if let Fixup::Crc | Fixup::LengthAndCrc = f {
        let crc = crc32fast::hash(&bytes[..len - TRAILER]);
        bytes[len - TRAILER..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads `bytes` as `target`; an accepted value must serialize back to the same bytes.
/// Returns whether it was accepted.
fn read_and_recheck(
    target: Target,
    ctx: &Context,
    bytes: &[u8],
) -> std::result::Result<bool, TestCaseError> {
    fn same(again: Result<Vec<u8>>, bytes: &[u8]) -> std::result::Result<bool, TestCaseError> {
        let again = again.map_err(|e| TestCaseError::fail(format!("re-serializing: {e}")))?;
        prop_assert!(
            again == bytes,
            "accepted bytes re-serialize differently ({} vs {} bytes)",
            again.len(),
            bytes.len()
        );
        Ok(true)
    }
    match target {
        Target::CiphertextSeeded
        | Target::CiphertextFull
        | Target::CiphertextProduct
        | Target::CiphertextRounded
        | Target::CiphertextSeededRounded
        | Target::CiphertextSubring => match Ciphertext::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::Plaintext => match Plaintext::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::PublicKey => match PublicKey::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::SecretKey => match SecretKey::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx).map(|z| z.to_vec()), bytes),
            Err(_) => Ok(false),
        },
        Target::RelinKey => match RelinKey::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::GaloisKeys => match GaloisKeys::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::RingSwitchKey => match RingSwitchKey::from_bytes(ctx, bytes) {
            Ok(v) => same(v.to_bytes(ctx), bytes),
            Err(_) => Ok(false),
        },
        Target::Parameters => {
            // both entry points: the context-free one and the trait's
            let free = Parameters::from_envelope(bytes);
            let via_trait = <Parameters as Serializable>::from_bytes(ctx, bytes);
            prop_assert_eq!(free.is_ok(), via_trait.is_ok());
            match free {
                Ok(p) => {
                    let again = p.to_envelope();
                    prop_assert_eq!(again.as_slice(), bytes);
                    Ok(true)
                }
                Err(_) => Ok(false),
            }
        }
    }
}

/// Runs [`CASES`] mutated inputs through the deserializer of `target` (and through
/// `read_header`), and checks that the mutations reach the field parsers.
fn fuzz(target: Target) {
    let index = TARGETS.iter().position(|&t| t == target).unwrap();
    let fx = fixtures();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let reached = Cell::new(0u32);
    let accepted = Cell::new(0u32);
    let strategy = (
        prop_oneof![2 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        proptest::collection::vec(mutation(), 1..4),
        fixup(),
    );
    let result = runner.run(&strategy, |(f, mutations, fixup)| {
        let fixture = &fx[f];
        let mut bytes = fixture.blobs[index].clone();
        for m in &mutations {
            apply(&mut bytes, m, &fixture.blobs);
        }
        fix(&mut bytes, fixup);
        // The header reader alone never panics either; when it accepts the envelope as
        // this kind for this context, the payload parser runs.
        if let Ok(h) = read_header(&bytes)
            && h.kind == target.kind()
            && h.fingerprint == fixture.ctx.params().fingerprint()
        {
            reached.set(reached.get() + 1);
        }
        if read_and_recheck(target, &fixture.ctx, &bytes)? {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target:?}: {e}");
    }
    let (reached, accepted) = (reached.get(), accepted.get());
    eprintln!(
        "{target:?}: {CASES} cases, {reached} reached the payload parser, {accepted} accepted"
    );
    assert!(
        reached >= CASES / 3,
        "{target:?}: only {reached} of {CASES} mutations got past the envelope"
    );
    assert!(
        accepted < reached,
        "{target:?}: the parser accepted everything"
    );
}

#[test]
fn fuzz_ciphertext_seeded() {
    fuzz(Target::CiphertextSeeded);
}

#[test]
fn fuzz_ciphertext_full() {
    fuzz(Target::CiphertextFull);
}

#[test]
fn fuzz_ciphertext_product() {
    fuzz(Target::CiphertextProduct);
}

#[test]
fn fuzz_ciphertext_rounded() {
    fuzz(Target::CiphertextRounded);
}

#[test]
fn fuzz_ciphertext_subring() {
    fuzz(Target::CiphertextSubring);
}

#[test]
fn fuzz_ring_switch_key() {
    fuzz(Target::RingSwitchKey);
}

#[test]
fn fuzz_ciphertext_seeded_rounded() {
    fuzz(Target::CiphertextSeededRounded);
}

#[test]
fn fuzz_plaintext() {
    fuzz(Target::Plaintext);
}

#[test]
fn fuzz_public_key() {
    fuzz(Target::PublicKey);
}

#[test]
fn fuzz_secret_key() {
    fuzz(Target::SecretKey);
}

#[test]
fn fuzz_relin_key() {
    fuzz(Target::RelinKey);
}

#[test]
fn fuzz_galois_keys() {
    fuzz(Target::GaloisKeys);
}

#[test]
fn fuzz_parameters() {
    fuzz(Target::Parameters);
}

/// The valid inputs themselves are accepted and canonical (the baseline of the fuzzing).
#[test]
fn unmutated_inputs_round_trip() {
    for fixture in fixtures() {
        for (target, bytes) in TARGETS.iter().zip(&fixture.blobs) {
            assert!(
                read_and_recheck(*target, &fixture.ctx, bytes).unwrap(),
                "{target:?}"
            );
        }
    }
}
