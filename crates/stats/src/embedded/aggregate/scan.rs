//! The scan: rows filtered, assigned to a bucket and a group cell, and folded
//! into fixed-unit accumulators; one accumulator set per thread, merged.

use super::*;

/// Where one metric's value comes from, for one partition.
#[derive(Clone, Copy)]
pub(super) enum ValueSource<'p> {
    /// Usage grain: the usage row's counter.
    Counter(&'p TokenColumn),
    /// Call grain: the sum of the counter over the call's usage rows.
    CounterSum(&'p TokenColumn),
    Constant(i64),
    /// Usage grain: the usage row's cost.
    Cost(CostSource<'p>),
    /// Call grain: the cost summed over the call's usage rows.
    CostSum(CostSource<'p>),
    /// `ended − started` in microseconds; none while running.
    Latency,
    Error,
    Success,
    /// When the call started; none while only its end is known.
    Started,
}

impl ValueSource<'_> {
    /// The row's value in fixed units; `None` where it has none.
    #[inline]
    pub(super) fn get(self, p: &Partition, row: usize, usage_row: Option<usize>) -> Option<i64> {
        match self {
            ValueSource::Counter(column) => Some(usage_row.map_or(0, |u| column.get(u))),
            ValueSource::CounterSum(column) => {
                Some(p.usage_range(row).map(|u| column.get(u)).sum())
            }
            ValueSource::Constant(v) => Some(v),
            ValueSource::Cost(c) => Some(usage_row.map_or(0, |u| c.of(u))),
            ValueSource::CostSum(c) => Some(p.usage_range(row).map(|u| c.of(u)).sum()),
            ValueSource::Latency => p.latency_us(row),
            ValueSource::Error => Some((p.flags[row] & FLAG_ERROR != 0) as i64),
            ValueSource::Success => {
                Some((p.took_us[row] != NO_END && p.flags[row] & FLAG_ERROR == 0) as i64)
            }
            ValueSource::Started => match p.started_us.get(row) {
                crate::embedded::columns::NO_TIME => None,
                t => Some(t),
            },
        }
    }
}

/// One query, resolved and ready to scan.
pub(super) struct Plan<'a> {
    pub(super) query: &'a CallQuery,
    pub(super) usage_grain: bool,
    pub(super) preds: Vec<Pred>,
    pub(super) group: Vec<Source>,
    /// Distinct metrics; each measure reads one slot.
    pub(super) slots: Vec<Metric>,
    pub(super) keep_values: Vec<bool>,
    /// Whether a slot's minimum and maximum are asked for.
    pub(super) min_max: Vec<bool>,
    pub(super) grid: Option<&'a BucketGrid>,
    /// Fast path when every bucket is the same length.
    pub(super) uniform: Option<(i64, i64)>,
    /// Per partition (by address), the fixed price of each model code seen in
    /// it; only built when a cost metric is asked for.
    pub(super) prices: FxHashMap<usize, FxHashMap<u32, FixedPrice>>,
}

pub(super) type CellKey = (u32, [u32; MAX_GROUP_BY]);

/// One scanning thread's accumulators.
#[derive(Default)]
pub(super) struct Acc {
    pub(super) cells: FxHashMap<CellKey, u32>,
    pub(super) keys: Vec<CellKey>,
    pub(super) rows: Vec<u64>,
    pub(super) metrics: Vec<Fold>,
    pub(super) values: Vec<Vec<i64>>,
    /// Strings of group values that are not interned (project, ids).
    pub(super) local: Interner,
    /// With at most one interned group dimension, `bucket × (code + 1)` →
    /// cell, so the common queries skip hashing (`u32::MAX`: not yet made).
    pub(super) dense: Option<(usize, Vec<u32>)>,
}

pub(super) const NO_BUCKET: u32 = u32::MAX;

impl Acc {
    pub(super) fn cell(&mut self, key: CellKey, slots: usize, keep: &[bool]) -> usize {
        if let Some(&c) = self.cells.get(&key) {
            return c as usize;
        }
        let c = self.keys.len();
        self.cells.insert(key, c as u32);
        self.keys.push(key);
        self.rows.push(0);
        self.metrics
            .extend(std::iter::repeat_n(Fold::default(), slots));
        for _ in keep {
            self.values.push(Vec::new());
        }
        c
    }
}

impl Plan<'_> {
    #[inline]
    pub(super) fn bucket(&self, started: i64) -> Option<u32> {
        let Some(grid) = self.grid else {
            return Some(NO_BUCKET);
        };
        if let Some((first, width)) = self.uniform {
            if started < first {
                return None;
            }
            // A multiply instead of a 64-bit division (the slowest step of a
            // row), corrected by one where rounding put it off by one.
            let offset = started - first;
            let mut i = (offset as f64 * (1.0 / width as f64)) as i64;
            if i * width > offset {
                i -= 1;
            } else if (i + 1) * width <= offset {
                i += 1;
            }
            return ((i as usize) < grid.len()).then_some(i as u32);
        }
        grid.index_of(started).map(|i| i as u32)
    }

    #[inline]
    pub(super) fn code(
        &self,
        p: &Partition,
        source: Source,
        row: usize,
        usage_row: Option<usize>,
    ) -> u32 {
        match source {
            Source::Op => p.op_name.get(row),
            Source::Model => match usage_row {
                Some(u) => p.usage_model.get(u),
                None => p.model.get(row),
            },
            Source::Attr(a) => p.attrs[a].get(row),
            Source::Project | Source::Id(_) | Source::Refs(_) => NONE,
        }
    }

    #[inline(always)]
    pub(super) fn passes(&self, p: &Partition, row: usize, usage_row: Option<usize>) -> bool {
        self.preds.is_empty() || self.passes_all(p, row, usage_row)
    }

    fn passes_all(&self, p: &Partition, row: usize, usage_row: Option<usize>) -> bool {
        self.preds.iter().all(|pred| match pred {
            Pred::Codes {
                source: Source::Refs(input),
                allowed,
                absent,
            } => {
                let list = refs(p, *input).get(row);
                if list.is_empty() {
                    *absent
                } else {
                    list.iter()
                        .any(|&c| allowed.get(c as usize).copied().unwrap_or(false))
                }
            }
            Pred::Codes {
                source,
                allowed,
                absent,
            } => {
                let code = self.code(p, *source, row, usage_row);
                if code == NONE {
                    *absent
                } else {
                    allowed.get(code as usize).copied().unwrap_or(false)
                }
            }
            Pred::Ids {
                sel,
                hashes,
                absent,
            } => match id_of(p, *sel, row) {
                NO_ID => *absent,
                h => hashes.binary_search(&h).is_ok(),
            },
            Pred::Project { allowed, prefixes } => {
                let name = p.project.as_str();
                allowed.iter().any(|a| a == name)
                    || prefixes.iter().any(|x| name.starts_with(x.as_str()))
            }
        })
    }

    /// Each slot's metric, resolved against one partition's columns so the
    /// per-row loop reads slices instead of matching on the metric.
    pub(super) fn sources<'p>(&'p self, p: &'p Partition) -> Vec<ValueSource<'p>> {
        let counter = |field: usize| {
            let column = &p.usage_tokens[field];
            if self.usage_grain {
                ValueSource::Counter(column)
            } else {
                ValueSource::CounterSum(column)
            }
        };
        self.slots
            .iter()
            .map(|metric| match metric {
                Metric::InputTokens => counter(0),
                Metric::OutputTokens => counter(1),
                Metric::TotalTokens => counter(2),
                Metric::CacheReadInputTokens => counter(3),
                Metric::CacheCreationInputTokens => counter(4),
                Metric::Requests => counter(5),
                Metric::InputCost | Metric::OutputCost | Metric::TotalCost => {
                    let cost = CostSource {
                        kind: match metric {
                            Metric::InputCost => CostKind::Input,
                            Metric::OutputCost => CostKind::Output,
                            _ => CostKind::Total,
                        },
                        models: &p.usage_model,
                        tokens: [0, 1, 3, 4].map(|f| &p.usage_tokens[f]),
                        prices: self.prices.get(&(p as *const Partition as usize)),
                    };
                    if self.usage_grain {
                        ValueSource::Cost(cost)
                    } else {
                        ValueSource::CostSum(cost)
                    }
                }
                Metric::LatencyMs => ValueSource::Latency,
                Metric::CallCount => ValueSource::Constant(1),
                Metric::ErrorCount => ValueSource::Error,
                Metric::SuccessCount => ValueSource::Success,
                Metric::StartedAtUs => ValueSource::Started,
            })
            .collect()
    }

    /// The cell of a row (or usage row) in `bucket`, made if new.
    #[inline(always)]
    fn cell_of(
        &self,
        acc: &mut Acc,
        p: &Partition,
        row: usize,
        usage_row: Option<usize>,
        bucket: u32,
        (models, models_from): (&[u32], usize),
    ) -> usize {
        let mut key = [NONE; MAX_GROUP_BY];
        for (k, source) in key.iter_mut().zip(&self.group) {
            *k = match source {
                Source::Project => acc.local.intern(p.project.as_str()),
                // Named after the scan (`IdTexts`), from the hash's token.
                Source::Id(sel) => match id_of(p, *sel, row) {
                    NO_ID => NONE,
                    h => acc
                        .local
                        .intern(std::str::from_utf8(&hex16(h)).expect("hex digits")),
                },
                // Usage models decoded for the block, when they were.
                Source::Model if usage_row.is_some() && !models.is_empty() => {
                    models[usage_row.unwrap() - models_from].wrapping_sub(1)
                }
                s => self.code(p, *s, row, usage_row),
            };
        }
        let nslots = self.slots.len();
        match &mut acc.dense {
            Some((groups, index)) => {
                let b = if bucket == NO_BUCKET {
                    0
                } else {
                    bucket as usize
                };
                let slot = b * *groups + key[0].wrapping_add(1) as usize;
                match index[slot] {
                    u32::MAX => {
                        let c = acc.cell((bucket, key), nslots, &self.keep_values);
                        acc.dense.as_mut().unwrap().1[slot] = c as u32;
                        c
                    }
                    c => c as usize,
                }
            }
            None => acc.cell((bucket, key), nslots, &self.keep_values),
        }
    }

    /// Folds one slot's values of a block's selected rows: the metric is
    /// matched once per block, not once per row, so each arm is a tight loop.
    fn fold_slot(
        &self,
        acc: &mut Acc,
        p: &Partition,
        source: ValueSource<'_>,
        slot: usize,
        batch: &Batch,
        scratch: &std::cell::RefCell<Vec<u32>>,
    ) {
        let usage = |u: u32| (u != NO_USAGE).then_some(u as usize);
        match source {
            ValueSource::Counter(c) => match (c.narrow(), batch.dense_usage()) {
                (Some(n), Some(span)) => {
                    let mut values = scratch.borrow_mut();
                    values.clear();
                    n.decode_into(span.clone(), &mut values);
                    let from = span.start as u32;
                    self.fold_values(acc, slot, batch, |_, u| {
                        Some(values[(u - from) as usize] as i64)
                    })
                }
                (Some(n), None) => {
                    self.fold_values(acc, slot, batch, |_, u| Some(n.get(u as usize) as i64))
                }
                (None, _) => self.fold_values(acc, slot, batch, |_, u| Some(c.get(u as usize))),
            },
            ValueSource::Constant(v) => self.fold_values(acc, slot, batch, |_, _| Some(v)),
            ValueSource::Latency => {
                self.fold_values(acc, slot, batch, |row, _| p.latency_us(row as usize))
            }
            other => self.fold_values(acc, slot, batch, |row, u| {
                other.get(p, row as usize, usage(u))
            }),
        }
    }

    #[inline(always)]
    fn fold_values(
        &self,
        acc: &mut Acc,
        slot: usize,
        batch: &Batch,
        value: impl Fn(u32, u32) -> Option<i64>,
    ) {
        let nslots = self.slots.len();
        let (min_max, keep) = (self.min_max[slot], self.keep_values[slot]);
        for ((&row, &u), &cell) in batch.rows.iter().zip(&batch.usage).zip(&batch.cells) {
            let Some(v) = value(row, u) else { continue };
            let i = cell as usize * nslots + slot;
            let m = &mut acc.metrics[i];
            m.sum += v as i128;
            m.count += 1;
            if min_max {
                m.min = m.min.min(v);
                m.max = m.max.max(v);
            }
            if keep {
                acc.values[i].push(v);
            }
        }
    }

    /// Rows are folded a block at a time: first the block's rows that count
    /// are selected with their buckets, then each is given its cell, then
    /// each metric is folded over all of them.
    pub(super) fn scan(&self, work: &[(&Partition, usize)], strings: usize) -> Acc {
        let mut acc = Acc::default();
        let interned = self
            .group
            .iter()
            .all(|s| matches!(s, Source::Op | Source::Model | Source::Attr(_)));
        let buckets = self.grid.map_or(1, |g| g.len().max(1));
        let groups = if self.group.is_empty() {
            1
        } else {
            strings + 1
        };
        if self.group.len() <= 1 && interned && buckets.saturating_mul(groups) <= 1 << 24 {
            acc.dense = Some((groups, vec![u32::MAX; buckets * groups]));
        }
        let end = self.query.end.timestamp_micros();
        let mut current: Option<(*const Partition, Vec<ValueSource<'_>>, i64)> = None;
        let mut batch = Batch::default();
        let scratch = std::cell::RefCell::new(Vec::new());
        for &(p, block) in work {
            if current
                .as_ref()
                .is_none_or(|(q, _, _)| !std::ptr::eq(*q, p))
            {
                let start = self.query.earliest_us(&p.project);
                current = Some((p as *const Partition, self.sources(p), start));
            }
            let (_, sources, start) = current.as_ref().expect("set above");
            let start = *start;
            batch.clear();
            let rows = block * BLOCK..((block + 1) * BLOCK).min(p.rows);
            // Where each row's usage starts, decoded once for the block.
            let mut firsts = std::mem::take(&mut batch.firsts);
            if self.usage_grain {
                p.usage_first.decode_into(rows.clone(), &mut firsts);
            }
            let mut starts = std::mem::take(&mut batch.starts);
            p.started_us.decode_into(rows.clone(), &mut starts);
            for row in rows.clone() {
                let started = starts[row - rows.start];
                if started < start || started >= end {
                    continue;
                }
                if self.usage_grain {
                    let first = firsts[row - rows.start] as usize;
                    let range = first..first + p.usage_len[row] as usize;
                    if range.is_empty() {
                        continue;
                    }
                    let Some(bucket) = self.bucket(started) else {
                        continue;
                    };
                    for u in range {
                        if self.passes(p, row, Some(u)) {
                            batch.push(row, u as u32, bucket);
                        }
                    }
                } else if self.passes(p, row, None) {
                    if let Some(bucket) = self.bucket(started) {
                        batch.push(row, NO_USAGE, bucket);
                    }
                }
            }
            batch.firsts = firsts;
            batch.starts = starts;
            // Usage models, decoded once for the block when grouped by.
            let mut models = std::mem::take(&mut batch.models);
            let span = batch.dense_usage();
            if let (Some(span), true) =
                (&span, self.group.iter().any(|g| matches!(g, Source::Model)))
            {
                p.usage_model.0.decode_into(span.clone(), &mut models);
            }
            let models_from = span.map_or(0, |s| s.start);
            for i in 0..batch.rows.len() {
                let u = batch.usage[i];
                let usage_row = (u != NO_USAGE).then_some(u as usize);
                let cell = self.cell_of(
                    &mut acc,
                    p,
                    batch.rows[i] as usize,
                    usage_row,
                    batch.buckets[i],
                    (&models, models_from),
                );
                acc.rows[cell] += 1;
                batch.cells.push(cell as u32);
            }
            batch.models = models;
            for (slot, source) in sources.iter().enumerate() {
                self.fold_slot(&mut acc, p, *source, slot, &batch, &scratch);
            }
        }
        acc
    }
}

/// No usage row (call grain).
const NO_USAGE: u32 = u32::MAX;

/// A block's rows that count, with their usage rows, buckets and cells.
#[derive(Default)]
pub(super) struct Batch {
    rows: Vec<u32>,
    usage: Vec<u32>,
    buckets: Vec<u32>,
    cells: Vec<u32>,
    /// The lowest and highest usage row selected.
    usage_lo: u32,
    usage_hi: u32,
    /// Scratch for decoded usage starts and usage models.
    firsts: Vec<u32>,
    models: Vec<u32>,
    starts: Vec<i64>,
}

impl Batch {
    fn clear(&mut self) {
        self.rows.clear();
        self.usage.clear();
        self.buckets.clear();
        self.cells.clear();
        self.firsts.clear();
        self.models.clear();
        self.starts.clear();
        (self.usage_lo, self.usage_hi) = (u32::MAX, 0);
    }

    #[inline]
    fn push(&mut self, row: usize, usage: u32, bucket: u32) {
        self.rows.push(row as u32);
        self.usage.push(usage);
        self.buckets.push(bucket);
        if usage != NO_USAGE {
            self.usage_lo = self.usage_lo.min(usage);
            self.usage_hi = self.usage_hi.max(usage);
        }
    }

    /// The usage rows selected, as one range, when they are dense enough
    /// in it that decoding the whole range beats reading them one by one
    /// (usage rows are written in call order, so a block's are mostly
    /// together).
    fn dense_usage(&self) -> Option<std::ops::Range<usize>> {
        if self.usage_lo > self.usage_hi {
            return None;
        }
        let span = (self.usage_lo as usize)..(self.usage_hi as usize + 1);
        (span.len() <= 2 * self.usage.len() + 64).then_some(span)
    }
}

/// Folds `other` into `into`, translating its local group strings.
pub(super) fn merge(into: &mut Acc, other: Acc, plan: &Plan<'_>) {
    let nslots = plan.slots.len();
    let local_dims: Vec<bool> = plan
        .group
        .iter()
        .map(|s| matches!(s, Source::Project | Source::Id(_)))
        .collect();
    let mut values = other.values.into_iter();
    for (c, (bucket, mut key)) in other.keys.iter().copied().enumerate() {
        for (k, local) in key.iter_mut().zip(&local_dims) {
            if *local && *k != NONE {
                *k = into.local.intern(other.local.value(*k).unwrap());
            }
        }
        let cell = into.cell((bucket, key), nslots, &plan.keep_values);
        into.rows[cell] += other.rows[c];
        for slot in 0..nslots {
            let i = cell * nslots + slot;
            let b = other.metrics[c * nslots + slot];
            let a = &mut into.metrics[i];
            a.sum += b.sum;
            a.count += b.count;
            a.min = a.min.min(b.min);
            a.max = a.max.max(b.max);
            if let Some(mut v) = values.next() {
                into.values[i].append(&mut v);
            }
        }
    }
}
