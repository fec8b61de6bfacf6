//! [`Column`]: a growable array for in-memory columns that overshoots by an
//! eighth rather than doubling. A doubling `Vec` of 10M rows may hold memory
//! for 16.7M; a column holds at most 12.5% more than its rows. Growing in
//! small steps costs little: a large array lives in its own `mmap`, which
//! `realloc` extends in place on Linux (`mremap`) instead of copying.

use std::ops::{Deref, DerefMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column<T>(Vec<T>);

impl<T> Default for Column<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Column<T> {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn push(&mut self, value: T) {
        if self.0.len() == self.0.capacity() {
            self.grow(1);
        }
        self.0.push(value);
    }

    #[cold]
    fn grow(&mut self, at_least: usize) {
        let step = (self.0.len() / 8).max(256).max(at_least);
        self.0.reserve_exact(step);
    }

    pub fn extend_from_slice(&mut self, values: &[T])
    where
        T: Clone,
    {
        if self.0.capacity() - self.0.len() < values.len() {
            self.grow(values.len());
        }
        self.0.extend_from_slice(values);
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Gives back memory past the rows.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    /// Bytes held, capacity included.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<T>()
    }
}

impl<T> From<Vec<T>> for Column<T> {
    fn from(v: Vec<T>) -> Self {
        Self(v)
    }
}

impl<T> Deref for Column<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Column<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_overshoots_by_an_eighth_at_most() {
        let mut c = Column::new();
        for i in 0..1_000_000u32 {
            c.push(i);
        }
        assert_eq!(c.len(), 1_000_000);
        assert_eq!(c[999_999], 999_999);
        assert!(
            c.capacity() <= 1_000_000 + 1_000_000 / 8 + 256,
            "{}",
            c.capacity()
        );
    }
}
