//! The in-memory columnar layout queries scan.
//!
//! Calls are partitioned by `(tenant, project)`, so scoping a query prunes
//! whole partitions. Within a partition every attribute is a column indexed by
//! row, held in as few bytes as it allows (about 50 a call in all): start
//! times as 32-bit offsets ([`Times`]) and how long a call took in 32 bits;
//! low-cardinality strings (op names, models, thread/user/run ids, vendor
//! dimensions, refs) as codes of one [`Interner`] and token counters, both
//! packed per block ([`Packed`]: a block of one value takes nothing); and
//! high-cardinality ids (call, trace, parent) as 64-bit hashes ([`id_hash`];
//! their text stays on disk). Rows are grouped in blocks with their min/max
//! start time, so a time range skips whole blocks. Nothing on the scan path
//! allocates per row.

use polymeter_model::{ProjectId, TenantId};
use rustc_hash::FxHashMap;

mod index;
mod snapshot;

use index::CallIndex;

pub use polymeter_store::interner::{Interner, NONE};
use polymeter_store::packed::Times;
/// `started_us`/`ended_us` of a half not yet known.
pub use polymeter_store::packed::NO_TIME;
use polymeter_store::{Column, Packed};
/// [`Partition::took_us`] of a call whose end is not known.
pub const NO_END: u32 = u32::MAX;
/// [`Partition::took_us`] of a call whose end is in [`Partition::ends`].
pub const TOOK_WIDE: u32 = u32::MAX - 1;
/// Rows per zone-map block.
pub const BLOCK: usize = 4096;

pub const FLAG_ERROR: u8 = 1;
/// The call has a parent ([`Partition::parent_id`]).
pub const FLAG_PARENT: u8 = 2;

/// Ids only some rows have (a parent), per block of [`BLOCK`] rows: the
/// rows' offsets in the block, sorted, beside their ids. Ten bytes a row
/// that has one, nothing for a row that has none.
#[derive(Default)]
pub struct SparseIds {
    pub(super) blocks: Vec<(Vec<u16>, Vec<u64>)>,
}

impl SparseIds {
    #[inline]
    pub fn get(&self, row: usize) -> u64 {
        let Some((offsets, ids)) = self.blocks.get(row / BLOCK) else {
            return NO_ID;
        };
        match offsets.binary_search(&((row % BLOCK) as u16)) {
            Ok(i) => ids[i],
            Err(_) => NO_ID,
        }
    }

    fn set(&mut self, row: usize, id: u64) {
        let b = row / BLOCK;
        if self.blocks.len() <= b {
            if id == NO_ID {
                return;
            }
            self.blocks.resize_with(b + 1, Default::default);
        }
        let (offsets, ids) = &mut self.blocks[b];
        let offset = (row % BLOCK) as u16;
        match (offsets.binary_search(&offset), id) {
            (Ok(i), NO_ID) => {
                offsets.remove(i);
                ids.remove(i);
            }
            (Ok(i), id) => ids[i] = id,
            (Err(_), NO_ID) => {}
            (Err(i), id) => {
                offsets.insert(i, offset);
                ids.insert(i, id);
            }
        }
    }

    fn len(&self) -> usize {
        self.blocks.iter().map(|(o, _)| o.len()).sum()
    }

    fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * 48
            + self
                .blocks
                .iter()
                .map(|(o, i)| o.capacity() * 2 + i.capacity() * 8)
                .sum::<usize>()
    }
}

/// An id as the columns hold it: a 64-bit hash (never [`NO_ID`]). Call, trace
/// and parent ids are unique per call or nearly so, and as text they would
/// take most of a call's memory; the text stays in the segments and the log,
/// read back for the rare query that needs it (a prefix filter on an id, a
/// group by one: see `aggregate::IdTexts`). Two distinct ids share a hash
/// with odds of about 1 in 10^5 even among 10M calls of one project — taken,
/// as every store that de-duplicates by a 64-bit key takes it.
pub fn id_hash(id: &str) -> u64 {
    match twox_hash::XxHash64::oneshot(ID_SEED, id.as_bytes()) {
        NO_ID => 1,
        h => h,
    }
}

const ID_SEED: u64 = 0x706f_6c79_6d65_7465;
/// The hash of no id (a call without a parent, a half not yet known).
pub const NO_ID: u64 = 0;

/// [`id_hash`] of an optional id.
pub fn id_hash_opt(id: Option<&str>) -> u64 {
    id.map_or(NO_ID, id_hash)
}

/// An id hash as group values carry it through the scan (16 lowercase hex
/// digits, made without allocating), named once the scan is done.
pub fn hex16(hash: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    std::array::from_fn(|i| DIGITS[(hash >> (60 - 4 * i)) as usize & 0xF])
}

/// A column of interned codes ([`NONE`] for no value), packed per block
/// ([`Packed`], holding code + 1 so that no value is 0): a column of a few
/// distinct strings takes a byte a row, one no row has a value in, nothing.
#[derive(Default, Clone)]
pub struct Codes(pub(super) Packed);

impl Codes {
    #[inline(always)]
    pub fn get(&self, row: usize) -> u32 {
        self.0.get(row).wrapping_sub(1)
    }

    fn set(&mut self, row: usize, code: u32) {
        self.0.set(row, code.wrapping_add(1));
    }

    fn push(&mut self, code: u32) {
        self.0.push(code.wrapping_add(1));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|c| c.wrapping_sub(1))
    }

    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

/// Per-row lists of interned refs, allocated only once a row has refs.
#[derive(Default)]
pub struct RefLists {
    /// Row → (start, len) in `pool`; absent until some row has refs.
    spans: Option<Column<(u32, u32)>>,
    pool: Column<u32>,
}

impl RefLists {
    pub fn get(&self, row: usize) -> &[u32] {
        match &self.spans {
            Some(s) => {
                let (start, len) = s[row];
                &self.pool[start as usize..(start + len) as usize]
            }
            None => &[],
        }
    }

    fn set(&mut self, row: usize, rows: usize, codes: &[u32]) {
        if codes.is_empty() && self.get(row).is_empty() {
            return;
        }
        if self.get(row) == codes {
            return;
        }
        let span = (self.pool.len() as u32, codes.len() as u32);
        self.pool.extend_from_slice(codes);
        self.spans
            .get_or_insert_with(|| Column::from(vec![(0, 0); rows]))[row] = span;
    }

    fn push(&mut self) {
        if let Some(s) = &mut self.spans {
            s.push((0, 0));
        }
    }

    fn heap_bytes(&self) -> usize {
        self.spans.as_ref().map_or(0, |s| s.capacity() * 8) + self.pool.capacity() * 4
    }
}

/// Optional low-cardinality attributes of a call, one [`Codes`] column each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    ThreadId,
    TurnId,
    WbUserId,
    WbRunId,
    DisplayName,
    ServiceId,
    ServiceName,
    AppId,
    ClientId,
    ApiKeyId,
    ModelId,
    ResourceId,
}

pub const ATTRS: usize = 12;

/// Token counters of usage rows (input, output, total, cache read, cache
/// creation, requests), one [`TokenColumn`] each.
pub const TOKEN_FIELDS: usize = 6;

/// One token counter of every usage row, packed per block ([`Packed`]):
/// counts from 0 to 4,294,967,294 are held there, and any other value is
/// kept exactly beside them (the row holds [`WIDE`]). A column of zeros (or
/// of ones, as request counts mostly are) takes no memory.
#[derive(Default)]
pub struct TokenColumn {
    pub(super) narrow: Packed,
    pub(super) wide: FxHashMap<u64, i64>,
}

/// A row whose value is in [`TokenColumn::wide`].
pub const WIDE: u32 = u32::MAX;

impl TokenColumn {
    #[inline(always)]
    pub fn get(&self, row: usize) -> i64 {
        match self.narrow.get(row) {
            WIDE => self.wide[&(row as u64)],
            v => v as i64,
        }
    }

    /// The packed values when every one fits in 32 bits, for loops that
    /// read them directly.
    #[inline]
    pub fn narrow(&self) -> Option<&Packed> {
        self.wide.is_empty().then_some(&self.narrow)
    }

    fn push(&mut self, value: i64) {
        let narrow = match u32::try_from(value) {
            Ok(v) if v != WIDE => v,
            _ => {
                self.wide.insert(self.narrow.len() as u64, value);
                WIDE
            }
        };
        self.narrow.push(narrow);
    }

    fn heap_bytes(&self) -> usize {
        self.narrow.heap_bytes() + self.wide.capacity() * 17
    }
}

/// One `(tenant, project)`'s calls.
pub struct Partition {
    pub tenant: TenantId,
    pub project: ProjectId,
    pub rows: usize,
    index: CallIndex,
    /// [`id_hash`] of each row's call id; [`CallIndex`] finds rows by it.
    pub call_id: Column<u64>,
    /// When each call started ([`NO_TIME`]: not known yet), 32-bit
    /// offsets in blocks of nearby times.
    pub started_us: Times,
    /// How long the call took, `ended − started` in µs, when both are known
    /// and that fits ([`NO_END`]: no end yet; [`TOOK_WIDE`]: the end is in
    /// `ends`). A lone end, a negative duration or one past 71 minutes is
    /// kept exactly in `ends`.
    pub took_us: Column<u32>,
    pub ends: FxHashMap<u32, i64>,
    pub flags: Column<u8>,
    pub op_name: Codes,
    /// The dominant model (most tokens), for per-call dialects.
    pub model: Codes,
    /// [`id_hash`] of the trace and parent ids ([`NO_ID`]: none).
    pub trace_id: Column<u64>,
    pub parent_id: SparseIds,
    pub attrs: [Codes; ATTRS],
    pub input_refs: RefLists,
    pub output_refs: RefLists,
    /// Row → its usage rows `usage_first[row] .. + usage_len[row]`.
    pub usage_first: Packed,
    pub usage_len: Column<u8>,
    pub usage_model: Codes,
    pub usage_tokens: [TokenColumn; TOKEN_FIELDS],
    usage_rows: usize,
    /// Min/max `started_us` of each block of [`BLOCK`] rows.
    pub blocks: Column<(i64, i64)>,
}

impl Partition {
    fn new(tenant: TenantId, project: ProjectId) -> Self {
        Self {
            tenant,
            project,
            rows: 0,
            index: CallIndex::default(),
            call_id: Column::new(),
            started_us: Times::new(),
            took_us: Column::new(),
            ends: FxHashMap::default(),
            flags: Column::new(),
            op_name: Codes::default(),
            model: Codes::default(),
            trace_id: Column::new(),
            parent_id: SparseIds::default(),
            attrs: Default::default(),
            input_refs: RefLists::default(),
            output_refs: RefLists::default(),
            usage_first: Packed::new(),
            usage_len: Column::new(),
            usage_model: Codes::default(),
            usage_tokens: Default::default(),
            usage_rows: 0,
            blocks: Column::new(),
        }
    }

    fn find(&self, call: u64) -> Option<usize> {
        self.index.find(&self.call_id, call)
    }

    /// Appends an empty row for the call whose id hashes to `call`.
    fn new_row(&mut self, call: u64) -> usize {
        let row = self.rows;
        self.call_id.push(call);
        self.index.insert(&self.call_id, row);
        self.started_us.push(NO_TIME);
        self.took_us.push(NO_END);
        self.flags.push(0);
        self.op_name.push(NONE);
        self.model.push(NONE);
        self.trace_id.push(NO_ID);
        for a in &mut self.attrs {
            a.push(NONE);
        }
        self.input_refs.push();
        self.output_refs.push();
        // Where its usage would start: keeps the column rising, so packed narrow.
        self.usage_first.push(self.usage_rows as u32);
        self.usage_len.push(0);
        if row.is_multiple_of(BLOCK) {
            self.blocks.push((i64::MAX, i64::MIN));
        }
        self.rows += 1;
        row
    }

    fn set_started(&mut self, row: usize, started_us: i64) {
        let ended = self.ended_us(row);
        self.started_us.set(row, started_us);
        let block = &mut self.blocks[row / BLOCK];
        block.0 = block.0.min(started_us);
        block.1 = block.1.max(started_us);
        // The end stays where it was; how long that is from the new start
        // may differ.
        if ended != NO_TIME {
            self.set_ended(row, ended);
        }
    }

    fn set_ended(&mut self, row: usize, ended_us: i64) {
        let started = self.started_us.get(row);
        let took = ended_us
            .checked_sub(started)
            .filter(|_| started != NO_TIME)
            .and_then(|d| u32::try_from(d).ok())
            .filter(|&d| d < TOOK_WIDE);
        match took {
            Some(d) => {
                if self.took_us[row] == TOOK_WIDE {
                    self.ends.remove(&(row as u32));
                }
                self.took_us[row] = d;
            }
            None => {
                self.took_us[row] = TOOK_WIDE;
                self.ends.insert(row as u32, ended_us);
            }
        }
    }

    /// When the call ended ([`NO_TIME`]: not yet known).
    #[inline]
    pub fn ended_us(&self, row: usize) -> i64 {
        match self.took_us[row] {
            NO_END => NO_TIME,
            TOOK_WIDE => self.ends[&(row as u32)],
            d => self.started_us.get(row) + d as i64,
        }
    }

    /// `ended − started` in µs, once both are known.
    #[inline(always)]
    pub fn latency_us(&self, row: usize) -> Option<i64> {
        match self.took_us[row] {
            NO_END => None,
            TOOK_WIDE => {
                let started = self.started_us.get(row);
                (started != NO_TIME).then(|| self.ends[&(row as u32)] - started)
            }
            d => Some(d as i64),
        }
    }

    /// The time a row is placed at for retention: its start, or for a lone
    /// end, its end.
    fn placed_us(&self, row: usize) -> i64 {
        match self.started_us.get(row) {
            NO_TIME => self.ended_us(row),
            started => started,
        }
    }

    /// A partition of the rows of this one that `keep` keeps, in order.
    fn retained(&self, keep: impl Fn(usize) -> bool) -> Partition {
        let mut out = Partition::new(self.tenant.clone(), self.project.clone());
        for row in (0..self.rows).filter(|&r| keep(r)) {
            let to = out.new_row(self.call_id[row]);
            let rows = out.rows;
            if self.started_us.get(row) != NO_TIME {
                out.set_started(to, self.started_us.get(row));
            }
            match self.ended_us(row) {
                NO_TIME => {}
                ended => out.set_ended(to, ended),
            }
            out.flags[to] = self.flags[row];
            out.op_name.set(to, self.op_name.get(row));
            out.model.set(to, self.model.get(row));
            out.trace_id[to] = self.trace_id[row];
            out.parent_id.set(to, self.parent_id.get(row));
            for (column, from) in out.attrs.iter_mut().zip(&self.attrs) {
                column.set(to, from.get(row));
            }
            out.input_refs.set(to, rows, self.input_refs.get(row));
            out.output_refs.set(to, rows, self.output_refs.get(row));
            let first = out.usage_rows;
            for u in self.usage_range(row) {
                out.usage_model.push(self.usage_model.get(u));
                for (column, from) in out.usage_tokens.iter_mut().zip(&self.usage_tokens) {
                    column.push(from.get(u));
                }
                out.usage_rows += 1;
            }
            out.usage_first.set(to, first as u32);
            out.usage_len[to] = self.usage_len[row];
        }
        out
    }

    fn set_usage(&mut self, row: usize, usage: &[UsageView<'_>], strings: &mut Interner) {
        let len = usage.len().min(u8::MAX as usize);
        let first = self.usage_rows;
        for u in &usage[..len] {
            self.usage_model.push(strings.intern(u.model));
            for (column, &value) in self.usage_tokens.iter_mut().zip(&u.tokens) {
                column.push(value);
            }
            self.usage_rows += 1;
        }
        self.usage_first.set(row, first as u32);
        self.usage_len[row] = len as u8;
    }

    pub fn usage_range(&self, row: usize) -> std::ops::Range<usize> {
        let first = self.usage_first.get(row) as usize;
        first..first + self.usage_len[row] as usize
    }

    /// Bytes held by each column (capacity, not just length).
    fn memory(&self) -> [(&'static str, usize); 15] {
        let v = |cap: usize, size: usize| cap * size;
        [
            ("call-id index", self.index.heap_bytes()),
            ("call ids", v(self.call_id.capacity(), 8)),
            ("trace ids", v(self.trace_id.capacity(), 8)),
            ("parent ids", self.parent_id.heap_bytes()),
            ("started", self.started_us.heap_bytes()),
            (
                "took",
                v(self.took_us.capacity(), 4) + self.ends.capacity() * 13,
            ),
            ("flags", self.flags.capacity() + self.usage_len.capacity()),
            ("op names", self.op_name.heap_bytes()),
            ("models", self.model.heap_bytes()),
            ("attributes", self.attrs.iter().map(Codes::heap_bytes).sum()),
            (
                "refs",
                self.input_refs.heap_bytes() + self.output_refs.heap_bytes(),
            ),
            ("usage starts", self.usage_first.heap_bytes()),
            ("usage models", self.usage_model.heap_bytes()),
            (
                "token counters",
                self.usage_tokens.iter().map(TokenColumn::heap_bytes).sum(),
            ),
            ("blocks", v(self.blocks.capacity(), 16)),
        ]
    }
}

/// One model's usage, borrowed: `tokens` in [`TOKEN_FIELDS`] order (input,
/// output, total, cache read, cache creation, requests).
#[derive(Debug, Clone, Copy)]
pub struct UsageView<'a> {
    pub model: &'a str,
    pub tokens: [i64; TOKEN_FIELDS],
}

#[derive(Debug, Clone, Copy)]
pub struct StartView<'a> {
    pub started_us: i64,
    pub trace_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub op_name: &'a str,
    /// In [`Attr`] order.
    pub attrs: [Option<&'a str>; ATTRS],
    pub input_refs: &'a [&'a str],
}

#[derive(Debug, Clone, Copy)]
pub struct EndView<'a> {
    pub ended_us: i64,
    pub error: bool,
    pub usage: &'a [UsageView<'a>],
    pub output_refs: &'a [&'a str],
}

/// One write about a call, borrowed from wherever it was decoded (a gRPC
/// message, a log frame, a segment's Arrow arrays), so loading never copies
/// strings it already has interned.
#[derive(Debug, Clone, Copy)]
pub struct CallView<'a> {
    pub tenant: &'a str,
    pub project: &'a str,
    pub call_id: &'a str,
    pub start: Option<StartView<'a>>,
    pub end: Option<EndView<'a>>,
}

/// The model with the most tokens (ties: alphabetically first).
pub fn dominant_model<'a>(usage: &[UsageView<'a>]) -> Option<&'a str> {
    usage
        .iter()
        .max_by(|a, b| {
            a.tokens[2]
                .cmp(&b.tokens[2])
                .then_with(|| b.model.cmp(a.model))
        })
        .map(|u| u.model)
}

/// Every call the stats service holds, in columns.
#[derive(Default)]
pub struct CallColumns {
    pub partitions: Vec<Partition>,
    by_scope: FxHashMap<Box<str>, FxHashMap<Box<str>, usize>>,
    pub strings: Interner,
}

impl CallColumns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Partitions of `tenant`, limited to `projects` unless that is empty.
    pub fn partitions_of<'a>(
        &'a self,
        tenant: &'a TenantId,
        projects: &'a [ProjectId],
    ) -> impl Iterator<Item = &'a Partition> + 'a {
        self.partitions.iter().filter(move |p| {
            &p.tenant == tenant && (projects.is_empty() || projects.contains(&p.project))
        })
    }

    fn partition(&mut self, tenant: &str, project: &str) -> usize {
        if let Some(&pi) = self.by_scope.get(tenant).and_then(|m| m.get(project)) {
            return pi;
        }
        // Views come from checked writes, so the ids parse.
        let (Ok(t), Ok(p)) = (TenantId::new(tenant), ProjectId::parse(project)) else {
            unreachable!("unvalidated write: {tenant:?} {project:?}")
        };
        self.partitions.push(Partition::new(t, p));
        let pi = self.partitions.len() - 1;
        self.by_scope
            .entry(tenant.into())
            .or_default()
            .insert(project.into(), pi);
        pi
    }

    /// Merges one write into its call's row: each
    /// half the write carries replaces that half.
    pub fn upsert_view(&mut self, w: &CallView<'_>) {
        let pi = self.partition(w.tenant, w.project);
        let strings = &mut self.strings;
        let p = &mut self.partitions[pi];
        let call = id_hash(w.call_id);
        let row = match p.find(call) {
            Some(row) => row,
            None => p.new_row(call),
        };
        let rows = p.rows;
        if let Some(s) = &w.start {
            p.set_started(row, s.started_us);
            p.op_name.set(row, strings.intern(s.op_name));
            p.trace_id[row] = id_hash(s.trace_id);
            let parent = id_hash_opt(s.parent_id);
            p.parent_id.set(row, parent);
            p.flags[row] =
                (p.flags[row] & !FLAG_PARENT) | if parent == NO_ID { 0 } else { FLAG_PARENT };
            for (column, value) in p.attrs.iter_mut().zip(s.attrs) {
                let code = strings.intern_opt(value);
                column.set(row, code);
            }
            let refs: Vec<u32> = s.input_refs.iter().map(|r| strings.intern(r)).collect();
            p.input_refs.set(row, rows, &refs);
        }
        if let Some(e) = &w.end {
            p.set_ended(row, e.ended_us);
            p.flags[row] = (p.flags[row] & !FLAG_ERROR) | if e.error { FLAG_ERROR } else { 0 };
            p.model
                .set(row, strings.intern_opt(dominant_model(e.usage)));
            p.set_usage(row, e.usage, strings);
            let refs: Vec<u32> = e.output_refs.iter().map(|r| strings.intern(r)).collect();
            p.output_refs.set(row, rows, &refs);
        }
    }

    pub fn rows(&self) -> usize {
        self.partitions.iter().map(|p| p.rows).sum()
    }

    /// The share of a project's calls placed before `before_us` (1.0 once
    /// 64k calls or more are), read from the block time ranges first.
    pub fn expired(&self, tenant: &str, project: &str, before_us: i64) -> f64 {
        let Some(&pi) = self.by_scope.get(tenant).and_then(|m| m.get(project)) else {
            return 0.0;
        };
        let p = &self.partitions[pi];
        let mut expired = 0usize;
        for (b, &(lo, _)) in p.blocks.iter().enumerate() {
            // A block whose earliest start is past the cutoff has nothing
            // expired (save lone ends, which the rebuild takes along).
            if lo >= before_us {
                continue;
            }
            let rows = b * BLOCK..((b + 1) * BLOCK).min(p.rows);
            expired += rows.filter(|&r| p.placed_us(r) < before_us).count();
        }
        if expired >= 1 << 16 {
            return 1.0;
        }
        expired as f64 / p.rows.max(1) as f64
    }

    /// Forgets a project's calls: all of them, or those placed before
    /// `before_us` (started before it; a call whose start is not known yet,
    /// ended before it). Its strings stay interned until the next restart.
    pub fn forget(&mut self, tenant: &str, project: &str, before_us: Option<i64>) {
        let Some(&pi) = self.by_scope.get(tenant).and_then(|m| m.get(project)) else {
            return;
        };
        match before_us {
            None => {
                self.partitions.remove(pi);
                self.by_scope.clear();
                for (i, p) in self.partitions.iter().enumerate() {
                    self.by_scope
                        .entry(p.tenant.as_str().into())
                        .or_default()
                        .insert(p.project.as_str().into(), i);
                }
            }
            Some(cutoff) => {
                let p = &self.partitions[pi];
                if (0..p.rows).any(|r| p.placed_us(r) < cutoff) {
                    self.partitions[pi] = p.retained(|r| p.placed_us(r) >= cutoff);
                }
            }
        }
    }

    /// The stored start and end times of one call, where known.
    pub fn halves(&self, tenant: &str, project: &str, call_id: &str) -> (Option<i64>, Option<i64>) {
        let Some(&pi) = self.by_scope.get(tenant).and_then(|m| m.get(project)) else {
            return (None, None);
        };
        let p = &self.partitions[pi];
        let Some(row) = p.find(id_hash(call_id)) else {
            return (None, None);
        };
        let known = |t: i64| (t != NO_TIME).then_some(t);
        (known(p.started_us.get(row)), known(p.ended_us(row)))
    }

    /// Bytes of heap the columns hold (capacity, not just length).
    pub fn heap_bytes(&self) -> usize {
        self.memory().iter().map(|(_, b)| b).sum()
    }

    /// Bytes held by each kind of column over every partition, the strings
    /// included: what a call costs in memory, and where.
    pub fn memory(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for p in &self.partitions {
            for (i, (name, bytes)) in p.memory().into_iter().enumerate() {
                match out.get_mut(i) {
                    Some(slot) => slot.1 += bytes,
                    None => out.push((name, bytes)),
                }
            }
        }
        out.push(("strings", self.strings.heap_bytes()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_hash_to_distinct_non_zero_keys_as_sent() {
        let ids = [
            "01a20727-2113-729c-8531-0ecc1008358b",
            "01A20727-2113-729C-8531-0ECC1008358B",
            "not-a-uuid",
            "",
        ];
        let hashes: Vec<u64> = ids.iter().map(|i| id_hash(i)).collect();
        assert!(hashes.iter().all(|&h| h != NO_ID));
        let mut distinct = hashes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "case is kept: upper case is another id"
        );
        assert_eq!(id_hash_opt(None), NO_ID);
        assert_eq!(id_hash(ids[0]), hashes[0], "stable");
    }

    #[test]
    fn token_counts_past_32_bits_are_kept_exactly() {
        let mut c = TokenColumn::default();
        let values = [
            0,
            0,
            5,
            u32::MAX as i64 - 1,
            u32::MAX as i64,
            5_000_000_000,
            -1,
            7,
        ];
        for &v in &values {
            c.push(v);
        }
        for (row, &v) in values.iter().enumerate() {
            assert_eq!(c.get(row), v, "row {row}");
        }
        assert!(c.narrow().is_none(), "wide values: no direct reads");
        let mut small = TokenColumn::default();
        small.push(0);
        // Zeros take no bytes of their own.
        let block = small.narrow().unwrap().block(0);
        assert!(matches!(block, polymeter_store::packed::Block::Same(0)));
        small.push(3);
        assert_eq!(small.narrow().unwrap().iter().collect::<Vec<_>>(), [0, 3]);
    }
}
