//! RNS bases: which primes a polynomial's residues are taken modulo, in order. The context
//! builds them from its one table of primes (`Q_ℓ` a prefix of it, `Q_ℓ ∪ P` and `Q_ℓ ∪ R`
//! from index lists it computes once); every polynomial operation takes one, and checks
//! (in debug builds, where the kernels are not timed) that it has one prime per residue.

use super::ntt::Prime;

/// An RNS basis: primes of a table, all of them in order or those at a list of indices.
#[derive(Clone, Copy, Debug)]
pub struct Basis<'a> {
    table: &'a [Prime],
    indices: Option<&'a [usize]>,
}

impl<'a> Basis<'a> {
    /// Every prime of `table`, in order.
    pub fn all(table: &'a [Prime]) -> Self {
        Self {
            table,
            indices: None,
        }
    }

    /// The primes of `table` at `indices`, in that order (each index below `table.len()`).
    pub fn at(table: &'a [Prime], indices: &'a [usize]) -> Self {
        Self {
            table,
            indices: Some(indices),
        }
    }

    /// Number of primes.
    pub fn len(&self) -> usize {
        self.indices.map_or(self.table.len(), <[usize]>::len)
    }

    /// Whether the basis has no prime.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prime `i` of the basis.
    pub fn prime(&self, i: usize) -> &'a Prime {
        match self.indices {
            None => &self.table[i],
            Some(idx) => &self.table[idx[i]],
        }
    }

    /// The primes in order.
    pub fn iter(&self) -> Primes<'a> {
        Primes {
            basis: *self,
            next: 0,
            end: self.len(),
        }
    }

    /// The primes `start..end` of the basis.
    pub fn range(&self, start: usize, end: usize) -> Self {
        match self.indices {
            None => Self::all(&self.table[start..end]),
            Some(idx) => Self::at(self.table, &idx[start..end]),
        }
    }

    /// The first `count` primes.
    pub fn prefix(&self, count: usize) -> Self {
        self.range(0, count)
    }
}

impl<'a> IntoIterator for &Basis<'a> {
    type Item = &'a Prime;
    type IntoIter = Primes<'a>;
    fn into_iter(self) -> Primes<'a> {
        self.iter()
    }
}

impl std::ops::Index<usize> for Basis<'_> {
    type Output = Prime;
    fn index(&self, i: usize) -> &Prime {
        self.prime(i)
    }
}

/// The primes of a [`Basis`], in order.
#[derive(Clone, Debug)]
pub struct Primes<'a> {
    basis: Basis<'a>,
    next: usize,
    end: usize,
}

impl<'a> Iterator for Primes<'a> {
    type Item = &'a Prime;
    #[inline]
    fn next(&mut self) -> Option<&'a Prime> {
        if self.next >= self.end {
            return None;
        }
        let p = self.basis.prime(self.next);
        self.next += 1;
        Some(p)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Primes<'_> {}

impl<'a> DoubleEndedIterator for Primes<'a> {
    #[inline]
    fn next_back(&mut self) -> Option<&'a Prime> {
        if self.next >= self.end {
            return None;
        }
        self.end -= 1;
        Some(self.basis.prime(self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_select_their_primes_in_order() {
        let table: Vec<Prime> = [65537u64, 114689, 147457]
            .iter()
            .filter_map(|&p| Prime::new(p, 32))
            .collect();
        assert_eq!(table.len(), 3);
        let all = Basis::all(&table);
        let values = |b: &Basis<'_>| b.iter().map(Prime::value).collect::<Vec<_>>();
        assert_eq!(values(&all), [65537, 114689, 147457]);
        assert_eq!(values(&all.prefix(2)), [65537, 114689]);
        let idx = [2, 0];
        let picked = Basis::at(&table, &idx);
        assert_eq!(values(&picked), [147457, 65537]);
        assert_eq!(values(&picked.range(1, 2)), [65537]);
        assert_eq!(picked[0].value(), 147457);
        assert_eq!(picked.iter().len(), 2);
        assert!(all.range(1, 1).is_empty());
    }
}
