//! Serialization: round trips for every object of both schemes, and rejection of truncated,
//! bit-flipped, wrong-kind and wrong-parameter input.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
use blindsight_he::serialize::read_header;
use blindsight_he::*;
use common::{Fixture, bfv, ckks};
use proptest::prelude::*;

fn fixtures() -> [&'static Fixture; 2] {
    [bfv(), ckks()]
}

fn encrypt_ramp(f: &Fixture, offset: u64) -> Ciphertext {
    let pt = plain(f, offset);
    f.sk.encrypt(&f.ctx, &pt).unwrap()
}

fn plain(f: &Fixture, offset: u64) -> Plaintext {
    match f.ctx.scheme() {
        Scheme::Bfv => {
            let v: Vec<u64> = (0..8192).map(|i| (i * 31 + offset) % 65536).collect();
            BfvEncoder::new(&f.ctx).unwrap().encode(&v).unwrap()
        }
        _ => {
            let e = CkksEncoder::new(&f.ctx).unwrap();
            let v: Vec<f64> = (0..4096)
                .map(|i| ((i + offset) % 100) as f64 / 100.0)
                .collect();
            e.encode(&v, e.default_scale(), f.ctx.max_level()).unwrap()
        }
    }
}

/// Every way of damaging `bytes` must be rejected by `read`.
fn assert_damage_rejected<T>(bytes: &[u8], read: impl Fn(&[u8]) -> Result<T>) {
    assert!(read(bytes).is_ok());
    for cut in [
        0,
        3,
        47,
        48,
        49,
        bytes.len() / 2,
        bytes.len() - 5,
        bytes.len() - 1,
    ] {
        assert!(read(&bytes[..cut]).is_err(), "truncated at {cut} accepted");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(read(&longer).is_err(), "trailing byte accepted");
    let step = (bytes.len() / 61).max(1);
    for pos in (0..bytes.len())
        .step_by(step)
        .chain([4, 6, 7, 8, 40, bytes.len() - 1])
    {
        for bit in [0, 5] {
            let mut bad = bytes.to_vec();
            bad[pos] ^= 1 << bit;
            assert!(
                read(&bad).is_err(),
                "bit {bit} of byte {pos} flipped, accepted"
            );
        }
    }
}

#[test]
fn ciphertexts_round_trip_seeded_and_full() {
    for f in fixtures() {
        let ct = encrypt_ramp(f, 7);
        assert!(ct.is_seeded());
        let seeded = ct.to_bytes(&f.ctx).unwrap();
        let back = Ciphertext::from_bytes(&f.ctx, &seeded).unwrap();
        assert_eq!(back, ct);
        let mut full_ct = ct.clone();
        full_ct.drop_seed();
        let full = full_ct.to_bytes(&f.ctx).unwrap();
        assert_eq!(Ciphertext::from_bytes(&f.ctx, &full).unwrap(), full_ct);
        // c_1 becomes a 32-byte seed: half the residues, plus the fixed envelope (header,
        // metadata, seed, checksum; under 100 bytes).
        assert!(
            seeded.len() <= full.len() / 2 + 100,
            "seeded {} vs full {}",
            seeded.len(),
            full.len()
        );
        // a 3-polynomial product and a lower-level ciphertext round-trip too
        let prod = f.ev.multiply(&ct, &ct).unwrap();
        assert_eq!(
            Ciphertext::from_bytes(&f.ctx, &prod.to_bytes(&f.ctx).unwrap()).unwrap(),
            prod
        );
        let low = f.ev.mod_switch_down(&ct).unwrap();
        assert_eq!(
            Ciphertext::from_bytes(&f.ctx, &low.to_bytes(&f.ctx).unwrap()).unwrap(),
            low
        );
    }
}

#[test]
fn keys_and_plaintexts_round_trip() {
    for f in fixtures() {
        let ctx = &f.ctx;
        let pk = PublicKey::from_bytes(ctx, &f.pk.to_bytes(ctx).unwrap()).unwrap();
        assert_eq!(pk, f.pk);
        assert_eq!(
            RelinKey::from_bytes(ctx, &f.rk.to_bytes(ctx).unwrap()).unwrap(),
            f.rk
        );
        assert_eq!(
            GaloisKeys::from_bytes(ctx, &f.gk.to_bytes(ctx).unwrap()).unwrap(),
            f.gk
        );
        let pt = plain(f, 3);
        assert_eq!(
            Plaintext::from_bytes(ctx, &pt.to_bytes(ctx).unwrap()).unwrap(),
            pt
        );
        let sk = SecretKey::from_bytes(ctx, &f.sk.to_bytes(ctx).unwrap()).unwrap();
        // the restored key decrypts what the original encrypted
        let ct = encrypt_ramp(f, 11);
        assert_eq!(
            sk.decrypt(ctx, &ct).unwrap(),
            f.sk.decrypt(ctx, &ct).unwrap()
        );
        let params = Parameters::from_envelope(&ctx.params().to_envelope()).unwrap();
        assert_eq!(&params, ctx.params());
    }
}

#[test]
fn damaged_bytes_are_rejected() {
    for f in fixtures() {
        let ctx = &f.ctx;
        let ct = encrypt_ramp(f, 1);
        assert_damage_rejected(&ct.to_bytes(ctx).unwrap(), |b| {
            Ciphertext::from_bytes(ctx, b)
        });
        let mut full = ct.clone();
        full.drop_seed();
        assert_damage_rejected(&full.to_bytes(ctx).unwrap(), |b| {
            Ciphertext::from_bytes(ctx, b)
        });
        assert_damage_rejected(&f.pk.to_bytes(ctx).unwrap(), |b| {
            PublicKey::from_bytes(ctx, b)
        });
        assert_damage_rejected(&f.rk.to_bytes(ctx).unwrap(), |b| {
            RelinKey::from_bytes(ctx, b)
        });
        assert_damage_rejected(&f.sk.to_bytes(ctx).unwrap(), |b| {
            SecretKey::from_bytes(ctx, b)
        });
        assert_damage_rejected(&plain(f, 2).to_bytes(ctx).unwrap(), |b| {
            Plaintext::from_bytes(ctx, b)
        });
        assert_damage_rejected(&ctx.params().to_envelope(), Parameters::from_envelope);
    }
}

#[test]
fn wrong_kind_and_wrong_parameters_are_rejected() {
    let (b, c) = (bfv(), ckks());
    let ct = encrypt_ramp(b, 0).to_bytes(&b.ctx).unwrap();
    assert!(matches!(
        PublicKey::from_bytes(&b.ctx, &ct),
        Err(HeError::WrongKind { .. })
    ));
    assert!(matches!(
        GaloisKeys::from_bytes(&b.ctx, &ct),
        Err(HeError::WrongKind { .. })
    ));
    assert!(matches!(
        Ciphertext::from_bytes(&c.ctx, &ct),
        Err(HeError::ParameterMismatch { .. })
    ));
    let other = Context::preset("bfv-4096").unwrap();
    assert!(matches!(
        Ciphertext::from_bytes(&other, &ct),
        Err(HeError::ParameterMismatch { .. })
    ));
    assert!(matches!(
        RelinKey::from_bytes(&c.ctx, &b.rk.to_bytes(&b.ctx).unwrap()),
        Err(HeError::ParameterMismatch { .. })
    ));
    // a key from another context is refused by the operations, too
    let ct_c = encrypt_ramp(c, 0);
    assert!(
        c.ev.relinearize(&c.ev.multiply(&ct_c, &ct_c).unwrap(), &b.rk)
            .is_err()
    );
    assert!(read_header(b"not a blindsight object at all, just some text....").is_err());
}

#[test]
fn residues_above_their_modulus_are_rejected() {
    // Re-seal a ciphertext whose first residue is set to all ones (>= q): the checksum is
    // recomputed, so only the residue check can catch it.
    let f = bfv();
    let mut ct = encrypt_ramp(f, 0);
    ct.drop_seed();
    let mut bytes = ct.to_bytes(&f.ctx).unwrap();
    let payload_start = 48 + 3 + 8;
    for b in &mut bytes[payload_start..payload_start + 7] {
        *b = 0xff;
    }
    bytes[payload_start + 6] |= 0x03; // 50 bits set
    let len = bytes.len();
    let crc = crc32(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    let err = Ciphertext::from_bytes(&f.ctx, &bytes).unwrap_err();
    assert!(matches!(err, HeError::Malformed { .. }), "{err}");
}

fn crc32(data: &[u8]) -> u32 {
    // bitwise CRC-32 (IEEE), independent of the library's implementation
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn random_ciphertexts_round_trip(offset in any::<u32>()) {
        for f in fixtures() {
            let ct = f.ev.add(&encrypt_ramp(f, offset as u64), &encrypt_ramp(f, 1)).unwrap();
            prop_assert_eq!(Ciphertext::from_bytes(&f.ctx, &ct.to_bytes(&f.ctx).unwrap()).unwrap(), ct);
        }
    }
}
