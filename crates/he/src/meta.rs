//! What every ciphertext, plaintext and product operand carries besides its residues: the
//! fingerprint of its parameter set, its level and its scale, in one type with one checked
//! constructor, so that a value of another parameter set, an impossible level or a
//! meaningless scale is an error where it is made, not a wrong answer where it is used.

use crate::context::Context;
use crate::errors::{HeError, Result};
use crate::params::short_hex;

/// The parameter set, level and scale of a ciphertext, plaintext or product operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Meta {
    /// Fingerprint of the parameter set.
    pub(crate) fingerprint: [u8; 32],
    /// Level: the value lives modulo `q_0 ⋯ q_level`.
    pub(crate) level: usize,
    /// CKKS scale (1 for BFV).
    pub(crate) scale: f64,
}

impl Meta {
    /// The metadata of a value of `ctx` at `level` with `scale`: refuses a level above the
    /// context's top and a scale that is not a finite positive number.
    pub fn new(ctx: &Context, level: usize, scale: f64) -> Result<Self> {
        if level > ctx.max_level() {
            return Err(HeError::LevelMismatch {
                expected: ctx.max_level(),
                actual: level,
            });
        }
        check_scale(scale)?;
        Ok(Self {
            fingerprint: ctx.params().fingerprint(),
            level,
            scale,
        })
    }

    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Level.
    pub fn level(&self) -> usize {
        self.level
    }

    /// CKKS scale (1 for BFV).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The same value at `level` with `scale` (after a rescale or a modulus switch): the
    /// level must not rise and the scale must be a finite positive number.
    pub(crate) fn lowered(self, level: usize, scale: f64) -> Result<Self> {
        if level > self.level {
            return Err(HeError::LevelMismatch {
                expected: self.level,
                actual: level,
            });
        }
        check_scale(scale)?;
        Ok(Self {
            level,
            scale,
            ..self
        })
    }

    /// Checks that the value belongs to `ctx` and that its level exists there.
    pub(crate) fn check_context(&self, ctx: &Context) -> Result<()> {
        let mine = ctx.params().fingerprint();
        if mine != self.fingerprint {
            return Err(HeError::ParameterMismatch {
                expected: short_hex(&mine),
                actual: short_hex(&self.fingerprint),
            });
        }
        if self.level > ctx.max_level() {
            return Err(HeError::LevelMismatch {
                expected: ctx.max_level(),
                actual: self.level,
            });
        }
        Ok(())
    }
}

fn check_scale(scale: f64) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(HeError::InvalidScale { scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Parameters;

    #[test]
    fn the_constructor_refuses_impossible_levels_and_scales() -> Result<()> {
        let ctx = Context::new(&Parameters::preset("bfv-4096")?)?;
        let top = ctx.max_level();
        let m = Meta::new(&ctx, top, 1.0)?;
        assert_eq!((m.level(), m.scale()), (top, 1.0));
        m.check_context(&ctx)?;
        assert!(Meta::new(&ctx, top + 1, 1.0).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Meta::new(&ctx, top, bad).is_err(), "scale {bad}");
            assert!(m.lowered(0, bad).is_err(), "scale {bad}");
        }
        if top > 0 {
            let low = m.lowered(top - 1, 2.0)?;
            assert!(low.lowered(top, 2.0).is_err(), "a level never rises");
        }
        let other = Context::new(&Parameters::preset("ckks-8192")?)?;
        assert!(m.check_context(&other).is_err());
        Ok(())
    }
}
