//! Low-cardinality strings (op names, models, scorer ids, tags…) stored once
//! each and named by a dense `u32` code, so in-memory tables hold codes and
//! queries compare integers.

use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::sync::Arc;

/// The code of "no value".
pub const NONE: u32 = u32::MAX;

#[derive(Default)]
pub struct Interner {
    codes: HashMap<Arc<str>, u32, FxBuildHasher>,
    values: Vec<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(&code) = self.codes.get(value) {
            return code;
        }
        let code = self.values.len() as u32;
        let value: Arc<str> = Arc::from(value);
        self.values.push(value.clone());
        self.codes.insert(value, code);
        code
    }

    /// [`NONE`] for `None`.
    pub fn intern_opt(&mut self, value: Option<&str>) -> u32 {
        value.map_or(NONE, |v| self.intern(v))
    }

    pub fn code(&self, value: &str) -> Option<u32> {
        self.codes.get(value).copied()
    }

    /// `None` for [`NONE`].
    pub fn value(&self, code: u32) -> Option<&str> {
        (code != NONE).then(|| &*self.values[code as usize])
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every string with its code, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.values
            .iter()
            .enumerate()
            .map(|(c, v)| (c as u32, &**v))
    }

    /// Heap bytes held, for size accounting.
    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(|v| v.len() + 16).sum::<usize>()
            + self.values.capacity() * 16
            + self.codes.capacity() * 20
    }
}
