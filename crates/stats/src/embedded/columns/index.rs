//! Rows by call id: open addressing over row numbers, four bytes a slot and
//! at most three quarters full, the id hashes compared in the call-id column.
//! The table grows by half (not double), so it is between half and three
//! quarters full: about six bytes a call. A slot's place depends only on the
//! id's hash and the table's length, so the table is written into snapshots
//! as it is.

#[derive(Default)]
pub(crate) struct CallIndex {
    /// Row + 1; 0 is empty.
    pub(super) slots: Vec<u32>,
    pub(super) len: usize,
}

impl CallIndex {
    /// Where probing for `call` starts: the hash scaled to the length
    /// (a multiply, so the length need not be a power of two).
    #[inline]
    fn home(&self, call: u64) -> usize {
        ((call as u128 * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The row whose call id hashes to `call`.
    pub(crate) fn find(&self, ids: &[u64], call: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(call);
        loop {
            match self.slots[i] {
                0 => return None,
                slot => {
                    let row = slot as usize - 1;
                    if ids[row] == call {
                        return Some(row);
                    }
                }
            }
            i = self.next(i);
        }
    }

    /// Adds `row`, whose id is in `ids` and not in the index yet.
    pub(crate) fn insert(&mut self, ids: &[u64], row: usize) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow(ids);
        }
        self.place(ids, row);
        self.len += 1;
    }

    fn place(&mut self, ids: &[u64], row: usize) {
        let mut i = self.home(ids[row]);
        while self.slots[i] != 0 {
            i = self.next(i);
        }
        self.slots[i] = row as u32 + 1;
    }

    fn grow(&mut self, ids: &[u64]) {
        let size = (self.slots.len() + self.slots.len() / 2).max(1024);
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
    pub(crate) fn restored(slots: Vec<u32>, ids: &[u64], rows: usize) -> Result<Self, String> {
        let index = CallIndex { len: rows, slots };
        let sized = index.slots.is_empty() && rows == 0
            || !index.slots.is_empty() && rows * 4 <= index.slots.len() * 3;
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
            if index.find(ids, ids[row]) != Some(row) {
                return Err(format!("row {row} is not where its call id says"));
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::columns::id_hash;

    #[test]
    fn every_id_is_found_and_no_other() {
        let mut ids: Vec<u64> = Vec::new();
        let mut index = CallIndex::default();
        let id = |i: usize| match i % 3 {
            0 => format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7),
            1 => format!("call-{i}"),
            _ => format!("{i}"),
        };
        for row in 0..20_000 {
            ids.push(id_hash(&id(row)));
            index.insert(&ids, row);
        }
        for row in 0..20_000 {
            assert_eq!(index.find(&ids, id_hash(&id(row))), Some(row));
        }
        for absent in ["call-20000", "nope", "00000000-0000-4000-8000-000000000001"] {
            assert_eq!(index.find(&ids, id_hash(absent)), None, "{absent}");
        }
        assert!(index.slots.len() * 3 >= 20_000 * 4);
        let restored = CallIndex::restored(index.slots.clone(), &ids, 20_000).unwrap();
        assert_eq!(restored.len, 20_000);
        let mut shuffled = index.slots.clone();
        shuffled.rotate_left(1);
        assert!(CallIndex::restored(shuffled, &ids, 20_000).is_err());
    }
}
