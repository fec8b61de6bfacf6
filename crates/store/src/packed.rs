//! [`Packed`]: a column of `u32` values stored a block at a time in the
//! fewest bytes the block needs. Each block of [`PACK`] values keeps its
//! minimum as a base and the differences in 0, 1, 2 or 4 bytes: a block of
//! one repeated value (a request count of 1, a project's only op name) takes
//! none, interned codes of a few hundred strings take one, token counts
//! mostly two. Values stay exact: a value that does not fit its block's
//! width widens the block.
//!
//! Reads are a match on the block's width and an index. Loops that read
//! many values of one block take the block once ([`Packed::block`]).

use crate::snapshot::{SnapshotReader, SnapshotWriter};

/// Values per block.
pub const PACK: usize = 4096;
const SHIFT: u32 = PACK.trailing_zeros();

/// One block's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Every value is this one.
    Same(u32),
    /// `base + v[i]`.
    U8(u32, Vec<u8>),
    U16(u32, Vec<u16>),
    U32(Vec<u32>),
}

impl Block {
    /// Value `i` of the block.
    #[inline(always)]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Block::Same(v) => *v,
            Block::U8(base, v) => base + v[i] as u32,
            Block::U16(base, v) => base + v[i] as u32,
            Block::U32(v) => v[i],
        }
    }

    /// The smallest block holding `values` exactly.
    fn encode(values: &[u32]) -> Block {
        let (Some(&min), Some(&max)) = (values.iter().min(), values.iter().max()) else {
            return Block::Same(0);
        };
        let with_room = |bytes: usize| {
            // Room for a full block up front: blocks are small and most fill.
            let room = PACK.min(values.len().max(64).next_power_of_two());
            room * bytes
        };
        match max - min {
            0 => Block::Same(min),
            d if d <= u8::MAX as u32 => {
                let mut v = Vec::with_capacity(with_room(1));
                v.extend(values.iter().map(|&x| (x - min) as u8));
                Block::U8(min, v)
            }
            d if d <= u16::MAX as u32 => {
                let mut v = Vec::with_capacity(with_room(2) / 2);
                v.extend(values.iter().map(|&x| (x - min) as u16));
                Block::U16(min, v)
            }
            _ => {
                let mut v = Vec::with_capacity(with_room(4) / 4);
                v.extend_from_slice(values);
                Block::U32(v)
            }
        }
    }

    fn decode(&self, len: usize) -> Vec<u32> {
        (0..len).map(|i| self.get(i)).collect()
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Block::Same(_) => 0,
            Block::U8(_, v) => v.capacity(),
            Block::U16(_, v) => v.capacity() * 2,
            Block::U32(v) => v.capacity() * 4,
        }
    }
}

/// A column of `u32` values in per-block widths; see the module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed {
    blocks: Vec<Block>,
    len: usize,
}

impl Packed {
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` copies of `value`.
    pub fn filled(value: u32, len: usize) -> Self {
        Self {
            blocks: vec![Block::Same(value); len.div_ceil(PACK)],
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn get(&self, i: usize) -> u32 {
        debug_assert!(i < self.len);
        self.blocks[i >> SHIFT].get(i & (PACK - 1))
    }

    /// The block holding value `i`, for reading many of its values.
    #[inline(always)]
    pub fn block(&self, i: usize) -> &Block {
        &self.blocks[i >> SHIFT]
    }

    /// Index of value `i` within its block.
    #[inline(always)]
    pub fn offset(i: usize) -> usize {
        i & (PACK - 1)
    }

    /// Length of the block holding value `i`.
    fn block_len(&self, i: usize) -> usize {
        let start = i & !(PACK - 1);
        (self.len - start).min(PACK)
    }

    pub fn push(&mut self, value: u32) {
        let i = self.len;
        self.len += 1;
        if i.is_multiple_of(PACK) {
            self.blocks.push(Block::Same(value));
            return;
        }
        let at = i & (PACK - 1);
        let block = self.blocks.last_mut().expect("a block per PACK values");
        let fits = match block {
            Block::Same(v) => *v == value,
            Block::U8(base, v) if value >= *base && value - *base <= u8::MAX as u32 => {
                v.push((value - *base) as u8);
                true
            }
            Block::U16(base, v) if value >= *base && value - *base <= u16::MAX as u32 => {
                v.push((value - *base) as u16);
                true
            }
            Block::U32(v) => {
                v.push(value);
                true
            }
            _ => false,
        };
        if !fits {
            let mut values = block.decode(at);
            values.push(value);
            *block = Block::encode(&values);
        }
    }

    pub fn set(&mut self, i: usize, value: u32) {
        let at = i & (PACK - 1);
        let len = self.block_len(i);
        let block = &mut self.blocks[i >> SHIFT];
        let fits = match block {
            Block::Same(v) => *v == value,
            Block::U8(base, v) if value >= *base && value - *base <= u8::MAX as u32 => {
                v[at] = (value - *base) as u8;
                true
            }
            Block::U16(base, v) if value >= *base && value - *base <= u16::MAX as u32 => {
                v[at] = (value - *base) as u16;
                true
            }
            Block::U32(v) => {
                v[at] = value;
                true
            }
            _ => false,
        };
        if !fits {
            let mut values = block.decode(len);
            values[at] = value;
            *block = Block::encode(&values);
        }
    }

    /// Appends values `range` to `out`, one tight loop per block: for scans
    /// that read most values of a range, this beats a [`Packed::get`] each.
    pub fn decode_into(&self, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        let mut at = range.start;
        while at < range.end {
            let b = at >> SHIFT;
            let from = at & (PACK - 1);
            let to = (range.end - (b << SHIFT)).min(PACK);
            match &self.blocks[b] {
                Block::Same(v) => out.extend(std::iter::repeat_n(*v, to - from)),
                Block::U8(base, v) => out.extend(v[from..to].iter().map(|&d| base + d as u32)),
                Block::U16(base, v) => out.extend(v[from..to].iter().map(|&d| base + d as u32)),
                Block::U32(v) => out.extend_from_slice(&v[from..to]),
            }
            at = (b << SHIFT) + to;
        }
    }

    /// The largest value (0 when empty), a block at a time.
    pub fn max(&self) -> u32 {
        self.blocks
            .iter()
            .map(|b| match b {
                Block::Same(v) => *v,
                Block::U8(base, v) => base + v.iter().copied().max().unwrap_or(0) as u32,
                Block::U16(base, v) => base + v.iter().copied().max().unwrap_or(0) as u32,
                Block::U32(v) => v.iter().copied().max().unwrap_or(0),
            })
            .max()
            .unwrap_or(0)
    }

    /// How many values equal `value`, a block at a time.
    pub fn count(&self, value: u32) -> usize {
        self.blocks
            .iter()
            .enumerate()
            .map(|(b, block)| match block {
                Block::Same(v) => {
                    if *v == value {
                        (self.len - b * PACK).min(PACK)
                    } else {
                        0
                    }
                }
                Block::U8(base, v) => match value.checked_sub(*base).map(u8::try_from) {
                    Some(Ok(d)) => v.iter().filter(|&&x| x == d).count(),
                    _ => 0,
                },
                Block::U16(base, v) => match value.checked_sub(*base).map(u16::try_from) {
                    Some(Ok(d)) => v.iter().filter(|&&x| x == d).count(),
                    _ => 0,
                },
                Block::U32(v) => v.iter().filter(|&&x| x == value).count(),
            })
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    /// Gives back room reserved past the values.
    pub fn shrink_to_fit(&mut self) {
        for b in &mut self.blocks {
            match b {
                Block::Same(_) => {}
                Block::U8(_, v) => v.shrink_to_fit(),
                Block::U16(_, v) => v.shrink_to_fit(),
                Block::U32(v) => v.shrink_to_fit(),
            }
        }
        self.blocks.shrink_to_fit();
    }

    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.blocks.iter().map(Block::heap_bytes).sum::<usize>()
    }

    /// Written block by block as it is held.
    pub fn write(&self, out: &mut SnapshotWriter) {
        out.u64(self.len as u64);
        for b in &self.blocks {
            match b {
                Block::Same(v) => {
                    out.u64(0);
                    out.u64(*v as u64);
                }
                Block::U8(base, v) => {
                    out.u64(1);
                    out.u64(*base as u64);
                    out.array(v);
                }
                Block::U16(base, v) => {
                    out.u64(2);
                    out.u64(*base as u64);
                    out.array(v);
                }
                Block::U32(v) => {
                    out.u64(4);
                    out.array(v);
                }
            }
        }
    }

    /// What [`Packed::write`] wrote, checked: every block as long as the
    /// values it holds and every value within `u32`.
    pub fn read(r: &mut SnapshotReader<'_>) -> Result<Packed, String> {
        let len = r.count()?;
        let mut blocks = Vec::with_capacity(len.div_ceil(PACK));
        for b in 0..len.div_ceil(PACK) {
            let want = (len - b * PACK).min(PACK);
            let base = |r: &mut SnapshotReader<'_>| {
                u32::try_from(r.u64()?).map_err(|_| "a packed base past 32 bits".to_string())
            };
            let block = match r.u64()? {
                0 => Block::Same(base(r)?),
                1 => {
                    let base = base(r)?;
                    let v: Vec<u8> = r.array()?;
                    if v.iter().any(|&d| base.checked_add(d as u32).is_none()) {
                        return Err("a packed value past 32 bits".into());
                    }
                    Block::U8(base, v)
                }
                2 => {
                    let base = base(r)?;
                    let v: Vec<u16> = r.array()?;
                    if v.iter().any(|&d| base.checked_add(d as u32).is_none()) {
                        return Err("a packed value past 32 bits".into());
                    }
                    Block::U16(base, v)
                }
                4 => Block::U32(r.array()?),
                other => return Err(format!("unknown packed block kind {other}")),
            };
            let held = match &block {
                Block::Same(_) => want,
                Block::U8(_, v) => v.len(),
                Block::U16(_, v) => v.len(),
                Block::U32(v) => v.len(),
            };
            if held != want {
                return Err(format!("a packed block holds {held} values, not {want}"));
            }
            blocks.push(block);
        }
        Ok(Packed { blocks, len })
    }
}

impl FromIterator<u32> for Packed {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut p = Packed::new();
        for v in iter {
            p.push(v);
        }
        p
    }
}

/// A missing time in a [`Times`] column.
pub const NO_TIME: i64 = i64::MIN;

/// Offsets a near run keeps below its lowest time, so slightly earlier
/// times that arrive later still fit: ten minutes.
const MARGIN_US: i64 = 600_000_000;
const NEAR_ABSENT: u32 = u32::MAX;
/// Times per base.
pub const RUN: usize = 64;
/// The base of a run whose times span too far for 32-bit offsets: its
/// offsets index [`TimeBlock::wide`] instead.
const WIDE_RUN: i64 = i64::MAX;

/// One block of a [`Times`] column: runs of [`RUN`] times, each as 32-bit
/// offsets from the run's base, or, for a run whose times lie more than 71
/// minutes apart, as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeBlock {
    /// Per run: its base ([`NO_TIME`] while it holds no time; [`WIDE_RUN`]).
    bases: Vec<i64>,
    /// `base + offset` ([`NO_TIME`] where `u32::MAX`), or in a wide run the
    /// index of the time in `wide`.
    offsets: Vec<u32>,
    wide: Vec<i64>,
}

impl TimeBlock {
    #[inline(always)]
    pub fn get(&self, i: usize) -> i64 {
        let (base, d) = (self.bases[i / RUN], self.offsets[i]);
        match (base, d) {
            (WIDE_RUN, d) => self.wide[d as usize],
            (_, NEAR_ABSENT) => NO_TIME,
            (base, d) => base + d as i64,
        }
    }

    /// The offset of `value` in a run of `base`, if it has one.
    fn near(base: i64, value: i64) -> Option<u32> {
        if value == NO_TIME {
            return Some(NEAR_ABSENT);
        }
        if base == NO_TIME || base == WIDE_RUN {
            return None;
        }
        let d = value.checked_sub(base)?;
        u32::try_from(d).ok().filter(|&d| d != NEAR_ABSENT)
    }

    /// A run's base, with room below its lowest time; [`WIDE_RUN`] when its
    /// times span too far for 32-bit offsets.
    fn base_of(values: &[i64]) -> i64 {
        let present = values.iter().copied().filter(|&v| v != NO_TIME);
        let (min, max) = present.fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if min > max {
            return NO_TIME;
        }
        let room = (NEAR_ABSENT as i128 - 1) - (max as i128 - min as i128);
        if room < 0 {
            return WIDE_RUN;
        }
        min.saturating_sub((room as i64).min(MARGIN_US))
    }

    /// Sets run `run` to `values` (its whole length; the run may be new).
    fn encode_run(&mut self, run: usize, values: &[i64]) {
        let base = Self::base_of(values);
        let offsets: Vec<u32> = if base == WIDE_RUN {
            let first = self.wide.len() as u32;
            self.wide.extend_from_slice(values);
            (first..first + values.len() as u32).collect()
        } else {
            values
                .iter()
                .map(|&v| Self::near(base, v).expect("within the run's span"))
                .collect()
        };
        let at = run * RUN;
        if run == self.bases.len() {
            self.bases.push(base);
        } else {
            self.bases[run] = base;
        }
        let end = (at + RUN).min(self.offsets.len());
        self.offsets.splice(at..end, offsets);
    }

    fn run_values(&self, run: usize) -> Vec<i64> {
        let at = run * RUN;
        (at..(at + RUN).min(self.offsets.len()))
            .map(|i| self.get(i))
            .collect()
    }

    fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 4 + self.bases.capacity() * 8 + self.wide.capacity() * 8
    }

    /// Sets value `at` (or appends it, at the end): in place when it fits
    /// its run, else by encoding the run again.
    fn put(&mut self, at: usize, value: i64) {
        let run = at / RUN;
        let appending = at == self.offsets.len();
        if appending && self.offsets.capacity() == self.offsets.len() {
            // Most blocks fill: grow in large steps, to the block at most.
            self.offsets
                .reserve_exact((self.offsets.len().max(64)).min(PACK - self.offsets.len()));
        }
        if run == self.bases.len() {
            return self.encode_run(run, &[value]);
        }
        match (self.bases[run], Self::near(self.bases[run], value)) {
            (WIDE_RUN, _) if appending => {
                self.offsets.push(self.wide.len() as u32);
                self.wide.push(value);
            }
            (WIDE_RUN, _) => self.wide[self.offsets[at] as usize] = value,
            (_, Some(d)) if appending => self.offsets.push(d),
            (_, Some(d)) => self.offsets[at] = d,
            (_, None) => {
                let mut values = self.run_values(run);
                match values.get_mut(at - run * RUN) {
                    Some(v) => *v = value,
                    None => values.push(value),
                }
                self.encode_run(run, &values);
            }
        }
    }
}

/// Microsecond times ([`NO_TIME`] for none) in about four bytes each where
/// runs of [`RUN`] of them lie within 71 minutes of each other — as the
/// start times of calls written in the order they happen do — else in
/// eight. Exact either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Times {
    blocks: Vec<TimeBlock>,
    len: usize,
}

impl Times {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn get(&self, i: usize) -> i64 {
        self.blocks[i >> SHIFT].get(i & (PACK - 1))
    }

    pub fn push(&mut self, value: i64) {
        let at = self.len & (PACK - 1);
        self.len += 1;
        if at == 0 {
            self.blocks.push(TimeBlock::default());
        }
        self.blocks
            .last_mut()
            .expect("a block per PACK values")
            .put(at, value);
    }

    pub fn set(&mut self, i: usize, value: i64) {
        self.blocks[i >> SHIFT].put(i & (PACK - 1), value);
    }

    /// Appends values `range` to `out`, a run at a time.
    pub fn decode_into(&self, range: std::ops::Range<usize>, out: &mut Vec<i64>) {
        let mut at = range.start;
        while at < range.end {
            let b = at >> SHIFT;
            let block = &self.blocks[b];
            let from = at & (PACK - 1);
            let to = (range.end - (b << SHIFT)).min(PACK);
            let mut i = from;
            while i < to {
                let run_end = ((i / RUN + 1) * RUN).min(to);
                let offsets = &block.offsets[i..run_end];
                match block.bases[i / RUN] {
                    WIDE_RUN => out.extend(offsets.iter().map(|&d| block.wide[d as usize])),
                    base => out.extend(offsets.iter().map(|&d| {
                        if d == NEAR_ABSENT {
                            NO_TIME
                        } else {
                            base + d as i64
                        }
                    })),
                }
                i = run_end;
            }
            at = (b << SHIFT) + to;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<TimeBlock>()
            + self.blocks.iter().map(TimeBlock::heap_bytes).sum::<usize>()
    }

    pub fn write(&self, out: &mut SnapshotWriter) {
        out.u64(self.len as u64);
        for b in &self.blocks {
            out.array(&b.bases);
            out.array(&b.offsets);
            out.array(&b.wide);
        }
    }

    /// What [`Times::write`] wrote, checked: every block as long as the
    /// values it holds, a base per run, every offset within its run's kind.
    pub fn read(r: &mut SnapshotReader<'_>) -> Result<Times, String> {
        let len = r.count()?;
        let mut blocks = Vec::with_capacity(len.div_ceil(PACK));
        for b in 0..len.div_ceil(PACK) {
            let want = (len - b * PACK).min(PACK);
            let block = TimeBlock {
                bases: r.array()?,
                offsets: r.array()?,
                wide: r.array()?,
            };
            if block.offsets.len() != want || block.bases.len() != want.div_ceil(RUN) {
                return Err(format!("a time block disagrees with its {want} values"));
            }
            let fits = |(i, &d): (usize, &u32)| match block.bases[i / RUN] {
                WIDE_RUN => (d as usize) < block.wide.len(),
                _ if d == NEAR_ABSENT => true,
                NO_TIME => false,
                base => base.checked_add(d as i64).is_some(),
            };
            if !block.offsets.iter().enumerate().all(fits) {
                return Err("a time block's offsets do not fit its runs".into());
            }
            blocks.push(block);
        }
        Ok(Times { blocks, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: &Packed) -> Packed {
        let mut out = SnapshotWriter::default();
        p.write(&mut out);
        let bytes = crate::snapshot::tests_support::payload(out);
        let mut r = SnapshotReader::new(&bytes);
        let back = Packed::read(&mut r).unwrap();
        assert!(r.is_at_end());
        back
    }

    #[test]
    fn every_value_reads_back_exactly_in_the_narrowest_width() {
        let values: Vec<u32> = (0..3 * PACK as u32 + 17)
            .map(|i| match i as usize / PACK {
                0 => 1,                             // one value: no bytes
                1 => 1_000 + i % 200,               // one byte
                2 => 70_000 + (i * 37) % 60_000,    // two bytes
                _ => i.wrapping_mul(2_654_435_761), // four
            })
            .collect();
        let p: Packed = values.iter().copied().collect();
        assert_eq!(p.iter().collect::<Vec<_>>(), values);
        assert!(matches!(p.block(0), Block::Same(1)));
        assert!(matches!(p.block(PACK), Block::U8(1000, _)));
        assert!(matches!(p.block(2 * PACK), Block::U16(..)));
        assert!(matches!(p.block(3 * PACK), Block::U32(_)));
        assert_eq!(round_trip(&p), p);
        for range in [
            0..0,
            3..5,
            100..PACK + 9,
            PACK - 1..3 * PACK + 17,
            0..values.len(),
        ] {
            let mut out = Vec::new();
            p.decode_into(range.clone(), &mut out);
            assert_eq!(out, values[range]);
        }
    }

    #[test]
    fn a_value_that_does_not_fit_widens_its_block_only() {
        let mut p = Packed::filled(5, 2 * PACK);
        p.set(3, 4); // below the base
        p.set(PACK + 1, 5 + 300);
        p.push(u32::MAX);
        p.set(7, u32::MAX);
        let mut want = vec![5u32; 2 * PACK];
        want[3] = 4;
        want[PACK + 1] = 305;
        want.push(u32::MAX);
        want[7] = u32::MAX;
        assert_eq!(p.iter().collect::<Vec<_>>(), want);
        assert!(matches!(p.block(0), Block::U32(_)));
        assert!(matches!(p.block(PACK), Block::U16(5, _)));
        assert!(matches!(p.block(2 * PACK), Block::Same(u32::MAX)));
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn times_are_exact_in_four_bytes_or_eight() {
        let t = 1_714_521_600_000_000i64;
        let hour = 3_600_000_000i64;
        let mut want: Vec<i64> = Vec::new();
        let mut times = Times::new();
        // Block 0: near, with an absent time, a slightly earlier one and a
        // late start that only comes later (set).
        for i in 0..PACK as i64 {
            let v = match i {
                0 => NO_TIME,
                5 => t - 300_000_000,
                _ => t + i * 1000,
            };
            times.push(v);
            want.push(v);
        }
        times.set(0, t + 7);
        want[0] = t + 7;
        // Block 1: spans days: far.
        for i in 0..100i64 {
            let v = t + i * 24 * hour;
            times.push(v);
            want.push(v);
        }
        // Block 1 again: an absent time set into a far block.
        times.set(PACK + 3, NO_TIME);
        want[PACK + 3] = NO_TIME;
        assert_eq!(times.iter().collect::<Vec<_>>(), want);
        assert!(times.blocks[0].wide.is_empty(), "near");
        assert!(!times.blocks[1].wide.is_empty(), "far");
        let mut out = Vec::new();
        times.decode_into(3..PACK + 50, &mut out);
        assert_eq!(out, want[3..PACK + 50]);
        // Hours over the block, minutes over each run: still near.
        let spread: Times = {
            let mut t2 = Times::new();
            (0..PACK as i64).for_each(|i| t2.push(t + i * 10_000_000));
            t2
        };
        assert!(spread.blocks[0].wide.is_empty());
        assert_eq!(spread.get(PACK - 1), t + (PACK as i64 - 1) * 10_000_000);
        // Two batches ten hours apart in one block: only the run holding
        // both is kept wide.
        let mut two = Times::new();
        for i in 0..PACK as i64 {
            two.push(NO_TIME);
            let at = if i < 2000 { t + i } else { t + 10 * hour + i };
            two.set(i as usize, at);
        }
        assert_eq!(two.blocks[0].wide.len(), RUN);
        assert_eq!(two.get(1999), t + 1999);
        assert_eq!(two.get(2000), t + 10 * hour + 2000);
        // A near block that must widen: a time two hours out.
        let mut near = Times::new();
        near.push(NO_TIME);
        near.push(t);
        near.push(t + 2 * hour);
        near.push(i64::MAX);
        assert_eq!(
            near.iter().collect::<Vec<_>>(),
            [NO_TIME, t, t + 2 * hour, i64::MAX]
        );
        let mut w = SnapshotWriter::default();
        times.write(&mut w);
        let bytes = crate::snapshot::tests_support::payload(w);
        let back = Times::read(&mut SnapshotReader::new(&bytes)).unwrap();
        assert_eq!(back, times);
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let p: Packed = (0..100u32).collect();
        let mut out = SnapshotWriter::default();
        p.write(&mut out);
        let mut bytes = crate::snapshot::tests_support::payload(out);
        bytes[0] = 101; // says 101 values, holds 100
        assert!(Packed::read(&mut SnapshotReader::new(&bytes)).is_err());
    }
}
