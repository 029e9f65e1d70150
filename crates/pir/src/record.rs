//! Records as plaintext coefficients: 16 bits per coefficient (two bytes, little-endian),
//! `n` coefficients per plaintext, the last plaintext padded with zeros. A 16 KiB record is
//! 8 192 coefficients: two plaintexts at N = 4096, one at N = 8192. The plaintext modulus
//! must exceed `2^16` (65 537 does).

use crate::errors::{PirError, Result};

/// Bits of a record each coefficient carries.
pub const BITS_PER_COEFFICIENT: u32 = 16;

/// Plaintexts of `n` coefficients a record of `record_bytes` takes.
pub fn plaintexts_per_record(record_bytes: usize, n: usize) -> usize {
    record_bytes.div_ceil(2).div_ceil(n.max(1))
}

/// `record` as coefficient vectors of `n` values below `2^16` each.
pub fn to_coefficients(record: &[u8], n: usize) -> Vec<Vec<u64>> {
    let n = n.max(1);
    let mut out: Vec<Vec<u64>> = (0..plaintexts_per_record(record.len(), n))
        .map(|_| vec![0u64; n])
        .collect();
    for (i, pair) in record.chunks(2).enumerate() {
        let v = u64::from(pair[0]) | pair.get(1).map_or(0, |&b| u64::from(b) << 8);
        out[i / n][i % n] = v;
    }
    out
}

/// Part `part` of `record` (coefficients `part·n .. (part+1)·n`, little-endian 16-bit
/// words) into `out` (`n` values, zeros past the record's end), without allocating.
pub fn part_coefficients(record: &[u8], part: usize, out: &mut [u16]) {
    let n = out.len();
    let start = (part * n * 2).min(record.len());
    let end = ((part + 1) * n * 2).min(record.len());
    let bytes = &record[start..end];
    let mut pairs = bytes.chunks_exact(2);
    let whole = pairs.len();
    for (o, pair) in out.iter_mut().zip(pairs.by_ref()) {
        *o = u16::from_le_bytes([pair[0], pair[1]]);
    }
    let rest = &mut out[whole..];
    if let (Some(o), [lo]) = (rest.first_mut(), pairs.remainder()) {
        *o = u16::from(*lo);
        rest[1..].fill(0);
    } else {
        rest.fill(0);
    }
}

/// The record of `record_bytes` that [`to_coefficients`] turned into `plaintexts`: an error
/// if they are too few, or a coefficient is not below `2^16` (a wrong key or a corrupted
/// answer decrypts to noise, which the record's own seal then refuses in any case).
pub fn from_coefficients(plaintexts: &[Vec<u64>], record_bytes: usize) -> Result<Vec<u8>> {
    let coefficients: usize = plaintexts.iter().map(Vec::len).sum();
    if coefficients < record_bytes.div_ceil(2) {
        return Err(PirError::Parameters {
            what: "the coefficients of a record",
            expected: format!("at least {}", record_bytes.div_ceil(2)),
            actual: coefficients.to_string(),
        });
    }
    let mut out = Vec::with_capacity(record_bytes + 1);
    for &v in plaintexts.iter().flatten() {
        if out.len() >= record_bytes {
            break;
        }
        if v >> BITS_PER_COEFFICIENT != 0 {
            return Err(PirError::Parameters {
                what: "a record coefficient",
                expected: format!("below 2^{BITS_PER_COEFFICIENT}"),
                actual: v.to_string(),
            });
        }
        out.extend_from_slice(&(v as u16).to_le_bytes());
    }
    out.truncate(record_bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_thumbnail_is_two_plaintexts_at_4096() {
        assert_eq!(plaintexts_per_record(16384, 4096), 2);
        assert_eq!(plaintexts_per_record(16384, 8192), 1);
        assert_eq!(plaintexts_per_record(16385, 8192), 2);
        assert_eq!(plaintexts_per_record(0, 4096), 0);
    }

    proptest! {
        #[test]
        fn records_round_trip(record in proptest::collection::vec(any::<u8>(), 0..3000), log_n in 2u32..10) {
            let n = 1usize << log_n;
            let pts = to_coefficients(&record, n);
            prop_assert_eq!(pts.len(), plaintexts_per_record(record.len(), n));
            prop_assert!(pts.iter().flatten().all(|&v| v < 1 << 16));
            prop_assert_eq!(from_coefficients(&pts, record.len()).unwrap(), record.clone());
            for (part, want) in pts.iter().enumerate() {
                let mut got = vec![7u16; n];
                part_coefficients(&record, part, &mut got);
                let got: Vec<u64> = got.into_iter().map(u64::from).collect();
                prop_assert_eq!(&got, want);
            }
            if !record.is_empty() {
                let mut bad = pts.clone();
                bad[0][0] = 1 << 16;
                prop_assert!(from_coefficients(&bad, record.len()).is_err());
                prop_assert!(from_coefficients(&pts, record.len() + 2 * n).is_err());
            }
        }
    }
}
