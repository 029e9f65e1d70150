//! Randomness from the operating system (the only source of the application's ids, tokens,
//! salts and nonces), and the hexadecimal form of random tokens and ids.

use crate::errors::{OsError, Result};
use rand_core::{OsRng, TryRngCore};
use zeroize::Zeroizing;

/// `N` bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    OsRng
        .try_fill_bytes(&mut out)
        .map_err(|e| OsError::Randomness(e.to_string()))?;
    Ok(out)
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh secret token: 32 random bytes as 64 hexadecimal characters, zeroized on drop.
pub fn token() -> Result<Zeroizing<String>> {
    let raw = Zeroizing::new(bytes::<32>()?);
    Ok(Zeroizing::new(hex(&*raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_64_hex_characters() -> Result<()> {
        let (a, b) = (token()?, token()?);
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        Ok(())
    }
}
