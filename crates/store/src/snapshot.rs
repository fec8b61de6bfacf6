//! Snapshots: a table's in-memory state written whole, so a restart loads
//! it with a few large copies instead of rebuilding it from the segments row
//! by row. A snapshot is a cache: the segments and logs stay the truth, and a
//! snapshot that is missing, damaged or from another format is ignored (the
//! store then loads from the segments).
//!
//! ```text
//! <dir>/snapshots/<generation>.snap
//!     "PMSNAP01" | generation: u64 | payload | CRC-32 of everything before it: u32
//! ```
//!
//! A snapshot of generation G holds exactly the writes of generations up to
//! G. Numbers are little-endian; an array is its length (u64) then its items.

use crate::StoreError;
use std::path::{Path, PathBuf};

pub(crate) const MAGIC: &[u8; 8] = b"PMSNAP02";

/// Fixed-size values a snapshot stores, little-endian.
pub trait Le: Copy + Default {
    const SIZE: usize;
    /// A primitive number: on a little-endian machine its bytes in memory
    /// are its bytes on disk, so arrays of it are copied whole.
    const PLAIN: bool = false;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const PLAIN: bool = true;
            #[inline]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("sized by the caller"))
            }
        }
    )*};
}
le!(u8, u16, u32, u64, i64);

impl<A: Le, B: Le> Le for (A, B) {
    const SIZE: usize = A::SIZE + B::SIZE;
    fn put(self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }
    fn get(bytes: &[u8]) -> Self {
        (A::get(&bytes[..A::SIZE]), B::get(&bytes[A::SIZE..]))
    }
}

/// A snapshot being written, in memory.
pub struct SnapshotWriter {
    pub(crate) buf: Vec<u8>,
}

impl Default for SnapshotWriter {
    fn default() -> Self {
        // Room for the magic and the generation, filled in by `frame`.
        Self { buf: vec![0; 16] }
    }
}

impl SnapshotWriter {
    /// A writer with room for about `bytes`, so a snapshot the size of the
    /// last one is written without the buffer doubling.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(16));
        buf.resize(16, 0);
        Self { buf }
    }

    pub fn u64(&mut self, v: u64) {
        v.put(&mut self.buf);
    }

    pub fn array<T: Le>(&mut self, values: &[T]) {
        self.u64(values.len() as u64);
        if T::PLAIN && cfg!(target_endian = "little") {
            // SAFETY: T is a primitive number (PLAIN), so its memory is
            // exactly `len * SIZE` initialised bytes, in little-endian order.
            let bytes = unsafe {
                std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * T::SIZE)
            };
            self.buf.extend_from_slice(bytes);
            return;
        }
        self.buf.reserve(values.len() * T::SIZE);
        for &v in values {
            v.put(&mut self.buf);
        }
    }

    /// An array of `len` items given one by one.
    pub fn array_of<T: Le>(&mut self, len: usize, values: impl Iterator<Item = T>) {
        self.u64(len as u64);
        self.buf.reserve(len * T::SIZE);
        let mut n = 0;
        for v in values {
            v.put(&mut self.buf);
            n += 1;
        }
        assert_eq!(n, len, "an array's length and items disagree");
    }

    pub fn str(&mut self, s: &str) {
        self.array(s.as_bytes());
    }

    /// `None` and `Some` as a flag byte, then the value.
    pub fn option<T>(&mut self, v: Option<&T>, put: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(1);
                put(self, v);
            }
        }
    }
}

/// A snapshot being read.
pub struct SnapshotReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> SnapshotReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("cut short at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::get(self.take(8)?))
    }

    /// A count or length (a `u64` that must fit in `usize`).
    pub fn count(&mut self) -> Result<usize, String> {
        usize::try_from(self.u64()?).map_err(|e| e.to_string())
    }

    pub fn array<T: Le>(&mut self) -> Result<Vec<T>, String> {
        let n = self.count()?;
        let bytes = self.take(n.checked_mul(T::SIZE).ok_or("an array too long")?)?;
        if T::PLAIN && cfg!(target_endian = "little") {
            let mut out: Vec<T> = Vec::with_capacity(n);
            // SAFETY: T is a primitive number (PLAIN), for which every bit
            // pattern is a value; `bytes` holds exactly `n * SIZE` bytes and
            // `out` has room for `n` items, which the copy initialises.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    out.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                );
                out.set_len(n);
            }
            return Ok(out);
        }
        Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
    }

    pub fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.array::<u8>()?).map_err(|e| e.to_string())
    }

    pub fn option<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => get(self).map(Some),
            b => Err(format!("a bad option flag {b}")),
        }
    }

    pub fn is_at_end(&self) -> bool {
        self.at == self.bytes.len()
    }
}

pub(crate) fn path_of(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.snap"))
}

/// The framed bytes of a snapshot of `generation` with `payload`.
pub(crate) fn frame(generation: u64, payload: SnapshotWriter) -> Vec<u8> {
    let mut bytes = payload.buf;
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    crc.put(&mut bytes);
    bytes
}

/// A snapshot file, mapped into memory: reading it copies each array once,
/// from the page cache straight into its column.
pub(crate) struct Mapped(memmap2::Mmap);

impl Mapped {
    pub(crate) fn payload(&self) -> &[u8] {
        &self.0[16..self.0.len() - 4]
    }
}

/// The snapshot file at `path` and its generation, after checking its
/// framing and checksum.
pub(crate) fn read(path: &Path) -> Result<(u64, Mapped), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(StoreError::io(path))?;
    // SAFETY: snapshot files are written once under a temporary name and
    // renamed into place; nothing writes to one afterwards (a newer snapshot
    // is a new file), so the mapping does not change under the reader.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(StoreError::io(path))?;
    let bytes = &map[..];
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a snapshot of this format".into()));
    }
    let body = bytes.len() - 4;
    let crc = u32::get(&bytes[body..]);
    if crc32fast::hash(&bytes[..body]) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let generation = u64::get(&bytes[8..16]);
    Ok((generation, Mapped(map)))
}

impl<'a> SnapshotReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
}

/// For tables' tests: what a [`SnapshotReader`] reads back of a writer.
pub mod tests_support {
    pub fn payload(w: super::SnapshotWriter) -> Vec<u8> {
        w.buf[16..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_damage_is_caught() {
        let mut w = SnapshotWriter::default();
        w.array(&[1i64, -2, i64::MAX]);
        w.str("tenant");
        w.option(Some(&7u64), |w, v| w.u64(*v));
        w.array(&[(1u32, 2u32)]);
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), 3);
        std::fs::write(&path, frame(3, w)).unwrap();
        let (generation, mapped) = read(&path).unwrap();
        assert_eq!(generation, 3);
        let mut r = SnapshotReader::new(mapped.payload());
        assert_eq!(r.array::<i64>().unwrap(), [1, -2, i64::MAX]);
        assert_eq!(r.string().unwrap(), "tenant");
        assert_eq!(r.option(|r| r.u64()).unwrap(), Some(7));
        assert_eq!(r.array::<(u32, u32)>().unwrap(), [(1, 2)]);
        assert!(r.is_at_end());
        drop(mapped);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read(&path).err().unwrap().to_string().contains("checksum"));
    }
}
