//! Rows by call id: open addressing over row numbers, four bytes a slot and
//! at most three quarters full, the ids themselves compared in the id column
//! (so two ids with the same hash are told apart). A slot's place depends
//! only on the id, so the table is written into snapshots as it is.

use super::IdColumn;
use std::hash::{BuildHasher, Hasher};

#[derive(Default)]
pub(crate) struct CallIndex {
    /// Row + 1; 0 is empty. The length is 0 or a power of two.
    pub(super) slots: Vec<u32>,
    pub(super) len: usize,
}

/// The hash of an id as the id column stores it (packed UUID or text).
pub(crate) fn hash(uuid: bool, bytes: &[u8]) -> u64 {
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write_u8(uuid as u8);
    h.write(bytes);
    // Fx leaves the low bits weak for short keys; mix them.
    let x = h.finish();
    (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 32)
}

impl CallIndex {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The row whose id is `(uuid, bytes)`.
    pub(crate) fn find(&self, ids: &IdColumn, uuid: bool, bytes: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = hash(uuid, bytes) as usize & self.mask();
        loop {
            match self.slots[i] {
                0 => return None,
                slot => {
                    let row = slot as usize - 1;
                    if ids.raw(row) == Some((uuid, bytes)) {
                        return Some(row);
                    }
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Adds `row`, whose id is in `ids` and not in the index yet.
    pub(crate) fn insert(&mut self, ids: &IdColumn, row: usize) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow(ids);
        }
        self.place(ids, row);
        self.len += 1;
    }

    fn place(&mut self, ids: &IdColumn, row: usize) {
        let (uuid, bytes) = ids.raw(row).expect("every row has a call id");
        let mut i = hash(uuid, bytes) as usize & self.mask();
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = row as u32 + 1;
    }

    fn grow(&mut self, ids: &IdColumn) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place(ids, slot as usize - 1);
        }
    }

    /// Bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 4
    }

    /// A table read from a snapshot, checked against the ids it indexes:
    /// the sizes agree and every row is found where its id says.
    pub(crate) fn restored(slots: Vec<u32>, ids: &IdColumn, rows: usize) -> Result<Self, String> {
        let index = CallIndex { len: rows, slots };
        let sized = index.slots.is_empty() && rows == 0
            || index.slots.len().is_power_of_two() && rows * 4 <= index.slots.len() * 3;
        let filled = index.slots.iter().filter(|&&s| s != 0).count() == rows
            && index.slots.iter().all(|&s| (s as usize) <= rows);
        if !(sized && filled) {
            return Err("the call-id index disagrees with the rows".into());
        }
        // Rows are found at their own places (a table made with another hash
        // function would fail here; damage is the checksum's to catch), on
        // a sample, so a restart does not pay a lookup per row.
        let step = (rows / 4096).max(1);
        for row in (0..rows).step_by(step) {
            let (uuid, bytes) = ids.raw(row).ok_or("a row without a call id")?;
            if index.find(ids, uuid, bytes) != Some(row) {
                return Err(format!("row {row} is not where its call id says"));
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::columns::IdKey;

    #[test]
    fn every_id_is_found_and_no_other() {
        let mut ids = IdColumn::default();
        let mut index = CallIndex::default();
        let id = |i: usize| match i % 3 {
            0 => format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7),
            1 => format!("call-{i}"),
            _ => format!("{i}"),
        };
        for row in 0..20_000 {
            ids.push(Some(&id(row)));
            index.insert(&ids, row);
        }
        for row in 0..20_000 {
            let key = IdKey::new(&id(row));
            let (uuid, bytes) = key.parts();
            assert_eq!(index.find(&ids, uuid, bytes), Some(row));
        }
        for absent in ["call-20000", "nope", "00000000-0000-4000-8000-000000000001"] {
            let key = IdKey::new(absent);
            let (uuid, bytes) = key.parts();
            assert_eq!(index.find(&ids, uuid, bytes), None, "{absent}");
        }
        assert!(index.slots.len() * 3 >= 20_000 * 4);
        let restored = CallIndex::restored(index.slots.clone(), &ids, 20_000).unwrap();
        assert_eq!(restored.len, 20_000);
        let mut shuffled = index.slots.clone();
        shuffled.rotate_left(1);
        assert!(CallIndex::restored(shuffled, &ids, 20_000).is_err());
    }
}
