//! The single aggregation every dialect ends in.
//!
//! Rows (calls, or a call's per-model usage entries) are filtered, assigned to
//! a bucket of the zone-aligned grid and to a group, and folded into one
//! accumulator per metric. It runs over [`CallColumns`] directly: filters and
//! group keys are resolved to interned codes once per query, so the scan
//! compares integers and allocates nothing per row. Values are kept in fixed
//! units (latency in microseconds, tokens and counts as integers) so sums are
//! exact and independent of scan order. Large scans are split across threads
//! and merged.

use crate::columns::{
    Attr, CallColumns, IdColumn, IdKey, Interner, Partition, RefLists, BLOCK, FLAG_ERROR, NONE,
    NO_TIME,
};
use crate::error::StatsError;
use crate::query::{CallQuery, MeasureSpec, OrderKey, RowFilter};
use polymeter_model::{Aggregation, BucketGrid, Metric};
use polymeter_pricing::{price_of, FixedPrice, Overrides, PriceTable, Tokens, PICO};
use polymeter_proto::v1::{Dimension, Grain};
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::collections::HashMap;

/// Most `group_by` dimensions one query may use.
pub const MAX_GROUP_BY: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub bucket_start_us: Option<i64>,
    pub bucket_utc_offset_seconds: i32,
    pub group: Vec<Option<String>>,
    pub row_count: u64,
    /// Parallel to the query's measures.
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateResult {
    pub bucket_width_seconds: Option<u64>,
    pub rows: Vec<ResultRow>,
    /// Rows before limit and offset.
    pub total_rows: usize,
}

/// Exact percentile by linear interpolation between the closest ranks
/// (numpy's default, SQL's `percentile_cont`) of `values`, which it reorders.
pub fn percentile(values: &mut [i64], p: f64) -> Option<f64> {
    percentiles(values, &[p])[0]
}

/// Several exact percentiles of the same values, in the order of `ps`. Ranks
/// are taken in ascending order, each selection working only on the part above
/// the previous one, so three percentiles cost about twice one, not three times.
pub fn percentiles(values: &mut [i64], ps: &[f64]) -> Vec<Option<f64>> {
    let mut out = vec![None; ps.len()];
    let Some(last) = values.len().checked_sub(1) else {
        return out;
    };
    let mut order: Vec<usize> = (0..ps.len()).collect();
    order.sort_by(|a, b| ps[*a].total_cmp(&ps[*b]));
    // values[..from] are all <= values[from..]
    let mut from = 0;
    for i in order {
        let rank = ps[i] / 100.0 * last as f64;
        let lo = (rank.floor() as usize).clamp(from, last);
        let (_, &mut a, above) = values[from..].select_nth_unstable(lo - from);
        let frac = rank - lo as f64;
        let a = a as f64;
        out[i] = Some(if frac <= 0.0 || above.is_empty() {
            a
        } else {
            let b = *above.iter().min().expect("not empty") as f64;
            a + (b - a) * frac
        });
        from = lo;
    }
    out
}

/// Where a dimension's value lives in the columns.
#[derive(Clone, Copy)]
enum Source {
    Project,
    Op,
    Model,
    Attr(usize),
    Id(IdSel),
    Refs(bool),
}

#[derive(Clone, Copy)]
enum IdSel {
    Call,
    Trace,
    Parent,
}

fn source(d: Dimension) -> Source {
    match d {
        Dimension::ProjectId => Source::Project,
        Dimension::OpName => Source::Op,
        Dimension::Model => Source::Model,
        Dimension::CallId => Source::Id(IdSel::Call),
        Dimension::TraceId => Source::Id(IdSel::Trace),
        Dimension::ParentId => Source::Id(IdSel::Parent),
        Dimension::ThreadId => Source::Attr(Attr::ThreadId as usize),
        Dimension::TurnId => Source::Attr(Attr::TurnId as usize),
        Dimension::WbUserId => Source::Attr(Attr::WbUserId as usize),
        Dimension::WbRunId => Source::Attr(Attr::WbRunId as usize),
        Dimension::DisplayName => Source::Attr(Attr::DisplayName as usize),
        Dimension::ServiceId => Source::Attr(Attr::ServiceId as usize),
        Dimension::ServiceName => Source::Attr(Attr::ServiceName as usize),
        Dimension::AppId => Source::Attr(Attr::AppId as usize),
        Dimension::ClientId => Source::Attr(Attr::ClientId as usize),
        Dimension::ApiKeyId => Source::Attr(Attr::ApiKeyId as usize),
        Dimension::ModelId => Source::Attr(Attr::ModelId as usize),
        Dimension::ResourceId => Source::Attr(Attr::ResourceId as usize),
        Dimension::InputRefs => Source::Refs(true),
        Dimension::OutputRefs => Source::Refs(false),
        Dimension::Unspecified => Source::Op,
    }
}

fn ids(p: &Partition, sel: IdSel) -> &IdColumn {
    match sel {
        IdSel::Call => &p.call_id,
        IdSel::Trace => &p.trace_id,
        IdSel::Parent => &p.parent_id,
    }
}

fn refs(p: &Partition, input: bool) -> &RefLists {
    if input {
        &p.input_refs
    } else {
        &p.output_refs
    }
}

/// A filter resolved against the interner.
enum Pred {
    /// Interned values: `allowed[code]`, or `absent` for no value.
    Codes {
        source: Source,
        allowed: Vec<bool>,
        absent: bool,
    },
    Ids {
        sel: IdSel,
        keys: Vec<IdKey>,
        prefixes: Vec<String>,
        absent: bool,
    },
    Project {
        allowed: Vec<String>,
        prefixes: Vec<String>,
    },
}

fn allowed_codes(strings: &Interner, f: &RowFilter) -> Vec<bool> {
    let mut allowed = vec![false; strings.len()];
    for v in &f.any_of {
        if let Some(code) = strings.code(v) {
            allowed[code as usize] = true;
        }
    }
    if !f.prefixes.is_empty() {
        for (code, value) in strings.iter() {
            let code = code as usize;
            if f.prefixes.iter().any(|p| value.starts_with(p.as_str())) {
                allowed[code] = true;
            }
        }
    }
    allowed
}

fn resolve(strings: &Interner, f: &RowFilter) -> Pred {
    match source(f.dimension) {
        Source::Project => Pred::Project {
            allowed: f.any_of.clone(),
            prefixes: f.prefixes.clone(),
        },
        Source::Id(sel) => Pred::Ids {
            sel,
            keys: f.any_of.iter().map(|v| IdKey::new(v)).collect(),
            prefixes: f.prefixes.clone(),
            absent: f.absent,
        },
        s => Pred::Codes {
            source: s,
            allowed: allowed_codes(strings, f),
            absent: f.absent,
        },
    }
}

/// A cost metric's inputs for one partition: each usage row's model and token
/// counters, and the partition's price per model code.
#[derive(Clone, Copy)]
struct CostSource<'p> {
    kind: CostKind,
    models: &'p [u32],
    tokens: [Option<&'p [i64]>; 4],
    prices: Option<&'p FxHashMap<u32, FixedPrice>>,
}

#[derive(Clone, Copy)]
enum CostKind {
    Input,
    Output,
    Total,
}

impl CostSource<'_> {
    /// One usage row's cost in picodollars; 0 when its model has no price.
    #[inline]
    fn of(&self, u: usize) -> i64 {
        let Some(price) = self.prices.and_then(|p| p.get(&self.models[u])) else {
            return 0;
        };
        let t = |i: usize| self.tokens[i].map_or(0, |c| c[u]);
        let (input, output, total) = price.cost(Tokens {
            input: t(0),
            output: t(1),
            cache_read: t(2),
            cache_write: t(3),
        });
        match self.kind {
            CostKind::Input => input,
            CostKind::Output => output,
            CostKind::Total => total,
        }
    }
}

/// Where one metric's value comes from, for one partition.
#[derive(Clone, Copy)]
enum ValueSource<'p> {
    /// Usage grain: the usage row's counter (`None`: all zero so far).
    Counter(Option<&'p [i64]>),
    /// Call grain: the sum of the counter over the call's usage rows.
    CounterSum(Option<&'p [i64]>),
    Constant(i64),
    /// Usage grain: the usage row's cost.
    Cost(CostSource<'p>),
    /// Call grain: the cost summed over the call's usage rows.
    CostSum(CostSource<'p>),
    /// `ended − started` in microseconds; none while running.
    Latency,
    Error,
    Success,
}

impl ValueSource<'_> {
    /// The row's value in fixed units; `None` where it has none.
    #[inline]
    fn get(self, p: &Partition, row: usize, usage_row: Option<usize>) -> Option<i64> {
        match self {
            ValueSource::Counter(column) => Some(match (column, usage_row) {
                (Some(c), Some(u)) => c[u],
                _ => 0,
            }),
            ValueSource::CounterSum(column) => {
                Some(column.map_or(0, |c| c[p.usage_range(row)].iter().sum()))
            }
            ValueSource::Constant(v) => Some(v),
            ValueSource::Cost(c) => Some(usage_row.map_or(0, |u| c.of(u))),
            ValueSource::CostSum(c) => Some(p.usage_range(row).map(|u| c.of(u)).sum()),
            ValueSource::Latency => {
                let (s, e) = (p.started_us[row], p.ended_us[row]);
                (s != NO_TIME && e != NO_TIME).then(|| e - s)
            }
            ValueSource::Error => Some((p.flags[row] & FLAG_ERROR != 0) as i64),
            ValueSource::Success => {
                Some((p.ended_us[row] != NO_TIME && p.flags[row] & FLAG_ERROR == 0) as i64)
            }
        }
    }
}

/// One query, resolved and ready to scan.
struct Plan<'a> {
    query: &'a CallQuery,
    usage_grain: bool,
    preds: Vec<Pred>,
    group: Vec<Source>,
    /// Distinct metrics; each measure reads one slot.
    slots: Vec<Metric>,
    keep_values: Vec<bool>,
    /// Whether a slot's minimum and maximum are asked for.
    min_max: Vec<bool>,
    grid: Option<&'a BucketGrid>,
    /// Fast path when every bucket is the same length.
    uniform: Option<(i64, i64)>,
    /// Per partition (by address), the fixed price of each model code seen in
    /// it; only built when a cost metric is asked for.
    prices: FxHashMap<usize, FxHashMap<u32, FixedPrice>>,
}

/// A (bucket, group key) cell's accumulators.
#[derive(Clone, Copy, Default)]
struct MetricAcc {
    sum: i128,
    count: u64,
    min: i64,
    max: i64,
}

type CellKey = (u32, [u32; MAX_GROUP_BY]);

/// One scanning thread's accumulators.
#[derive(Default)]
struct Acc {
    cells: FxHashMap<CellKey, u32>,
    keys: Vec<CellKey>,
    rows: Vec<u64>,
    metrics: Vec<MetricAcc>,
    values: Vec<Vec<i64>>,
    /// Strings of group values that are not interned (project, ids).
    local: Interner,
    /// With at most one interned group dimension, `bucket × (code + 1)` →
    /// cell, so the common queries skip hashing (`u32::MAX`: not yet made).
    dense: Option<(usize, Vec<u32>)>,
}

const NO_BUCKET: u32 = u32::MAX;

impl Acc {
    fn cell(&mut self, key: CellKey, slots: usize, keep: &[bool]) -> usize {
        if let Some(&c) = self.cells.get(&key) {
            return c as usize;
        }
        let c = self.keys.len();
        self.cells.insert(key, c as u32);
        self.keys.push(key);
        self.rows.push(0);
        self.metrics.extend(std::iter::repeat_n(
            MetricAcc {
                sum: 0,
                count: 0,
                min: i64::MAX,
                max: i64::MIN,
            },
            slots,
        ));
        for _ in keep {
            self.values.push(Vec::new());
        }
        c
    }
}

impl Plan<'_> {
    #[inline]
    fn bucket(&self, started: i64) -> Option<u32> {
        let Some(grid) = self.grid else {
            return Some(NO_BUCKET);
        };
        if let Some((first, width)) = self.uniform {
            if started < first {
                return None;
            }
            let i = (started - first) / width;
            return ((i as usize) < grid.len()).then_some(i as u32);
        }
        grid.index_of(started).map(|i| i as u32)
    }

    #[inline]
    fn code(&self, p: &Partition, source: Source, row: usize, usage_row: Option<usize>) -> u32 {
        match source {
            Source::Op => p.op_name[row],
            Source::Model => match usage_row {
                Some(u) => p.usage_model[u],
                None => p.model[row],
            },
            Source::Attr(a) => p.attrs[a].get(row),
            Source::Project | Source::Id(_) | Source::Refs(_) => NONE,
        }
    }

    #[inline(always)]
    fn passes(&self, p: &Partition, row: usize, usage_row: Option<usize>) -> bool {
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
                keys,
                prefixes,
                absent,
            } => {
                let col = ids(p, *sel);
                if !col.is_some(row) {
                    *absent
                } else {
                    keys.iter().any(|k| col.matches(row, k))
                        || prefixes.iter().any(|x| col.starts_with(row, x))
                }
            }
            Pred::Project { allowed, prefixes } => {
                let name = p.project.as_str();
                allowed.iter().any(|a| a == name)
                    || prefixes.iter().any(|x| name.starts_with(x.as_str()))
            }
        })
    }

    /// Each slot's metric, resolved against one partition's columns so the
    /// per-row loop reads slices instead of matching on the metric.
    fn sources<'p>(&'p self, p: &'p Partition) -> Vec<ValueSource<'p>> {
        let counter = |field: usize| {
            let column = p.usage_tokens[field].as_slice();
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
                        tokens: [0, 1, 3, 4].map(|f| p.usage_tokens[f].as_slice()),
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
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fold(
        &self,
        acc: &mut Acc,
        p: &Partition,
        sources: &[ValueSource<'_>],
        row: usize,
        usage_row: Option<usize>,
        bucket: u32,
    ) {
        let mut key = [NONE; MAX_GROUP_BY];
        for (k, source) in key.iter_mut().zip(&self.group) {
            *k = match source {
                Source::Project => acc.local.intern(p.project.as_str()),
                Source::Id(sel) => {
                    let v = ids(p, *sel).value(row);
                    acc.local.intern_opt(v.as_deref())
                }
                s => self.code(p, *s, row, usage_row),
            };
        }
        let nslots = self.slots.len();
        let cell = match &mut acc.dense {
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
        };
        acc.rows[cell] += 1;
        for (slot, source) in sources.iter().enumerate() {
            if let Some(v) = source.get(p, row, usage_row) {
                let m = &mut acc.metrics[cell * nslots + slot];
                m.sum += v as i128;
                m.count += 1;
                if self.min_max[slot] {
                    m.min = m.min.min(v);
                    m.max = m.max.max(v);
                }
                if self.keep_values[slot] {
                    acc.values[cell * nslots + slot].push(v);
                }
            }
        }
    }

    fn scan(&self, work: &[(&Partition, usize)], strings: usize) -> Acc {
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
        let (start, end) = (
            self.query.start.timestamp_micros(),
            self.query.end.timestamp_micros(),
        );
        let mut current: Option<(*const Partition, Vec<ValueSource<'_>>)> = None;
        for &(p, block) in work {
            if current.as_ref().is_none_or(|(q, _)| !std::ptr::eq(*q, p)) {
                current = Some((p as *const Partition, self.sources(p)));
            }
            let sources = &current.as_ref().expect("set above").1;
            let rows = block * BLOCK..((block + 1) * BLOCK).min(p.rows);
            for row in rows {
                let started = p.started_us[row];
                if started < start || started >= end {
                    continue;
                }
                // Filters first: they are cheaper than placing a row in a bucket.
                if self.usage_grain {
                    let mut bucket = None;
                    for u in p.usage_range(row) {
                        if !self.passes(p, row, Some(u)) {
                            continue;
                        }
                        let b = *bucket.get_or_insert_with(|| self.bucket(started));
                        if let Some(b) = b {
                            self.fold(&mut acc, p, sources, row, Some(u), b);
                        }
                    }
                } else if self.passes(p, row, None) {
                    if let Some(bucket) = self.bucket(started) {
                        self.fold(&mut acc, p, sources, row, None, bucket);
                    }
                }
            }
        }
        acc
    }
}

/// Folds `other` into `into`, translating its local group strings.
fn merge(into: &mut Acc, other: Acc, plan: &Plan<'_>) {
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

/// Answers one query from the columns.
/// What cost metrics are priced with: the price table and the query tenant's
/// overrides, by project.
pub struct Pricing<'a> {
    pub table: &'a PriceTable,
    pub overrides: Option<&'a HashMap<String, Overrides>>,
}

impl Pricing<'static> {
    /// The shipped table, no overrides.
    pub fn table_only() -> Self {
        Self {
            table: PriceTable::builtin(),
            overrides: None,
        }
    }
}

/// Each model code used in `p`, priced for `p`'s project.
fn partition_prices(
    p: &Partition,
    strings: &Interner,
    pricing: &Pricing<'_>,
) -> FxHashMap<u32, FixedPrice> {
    let overrides = pricing.overrides.and_then(|o| o.get(p.project.as_str()));
    let mut prices = FxHashMap::default();
    let mut seen = rustc_hash::FxHashSet::default();
    for &code in &p.usage_model {
        if !seen.insert(code) {
            continue;
        }
        let model = strings.value(code).unwrap_or("");
        if let Some(price) = price_of(pricing.table, overrides, model) {
            prices.insert(code, price.fixed());
        }
    }
    prices
}

pub fn aggregate(
    query: &CallQuery,
    columns: &CallColumns,
    pricing: &Pricing<'_>,
) -> Result<AggregateResult, StatsError> {
    if query.group_by.len() > MAX_GROUP_BY {
        return Err(StatsError::invalid(format!(
            "group_by: at most {MAX_GROUP_BY} dimensions, got {}",
            query.group_by.len()
        )));
    }
    let grid = query
        .bucketing
        .as_ref()
        .map(|b| BucketGrid::new(query.start, query.end, b.width_seconds, b.tz))
        .transpose()
        .map_err(|e| StatsError::invalid(e.to_string()))?;
    let uniform = grid.as_ref().and_then(|g| {
        let s = g.starts_us();
        let width = (g.width_seconds() as i64) * 1_000_000;
        (!s.is_empty() && s.windows(2).all(|w| w[1] - w[0] == width)).then(|| (s[0], width))
    });

    let mut slots: Vec<Metric> = Vec::new();
    for m in &query.measures {
        if !slots.contains(&m.metric) {
            slots.push(m.metric);
        }
    }
    let keep_values = slots
        .iter()
        .map(|s| {
            query
                .measures
                .iter()
                .any(|m| m.metric == *s && m.aggregation == Aggregation::Percentile)
        })
        .collect();
    let min_max = slots
        .iter()
        .map(|s| {
            query.measures.iter().any(|m| {
                m.metric == *s && matches!(m.aggregation, Aggregation::Min | Aggregation::Max)
            })
        })
        .collect();
    let priced = slots.iter().any(|m| {
        matches!(
            m,
            Metric::InputCost | Metric::OutputCost | Metric::TotalCost
        )
    });
    let prices = if priced {
        columns
            .partitions_of(&query.tenant, &query.projects)
            .map(|p| {
                (
                    p as *const Partition as usize,
                    partition_prices(p, &columns.strings, pricing),
                )
            })
            .collect()
    } else {
        FxHashMap::default()
    };
    let plan = Plan {
        query,
        prices,
        usage_grain: query.grain == Grain::Usage,
        preds: query
            .filters
            .iter()
            .map(|f| resolve(&columns.strings, f))
            .collect(),
        group: query.group_by.iter().map(|d| source(*d)).collect(),
        slots,
        keep_values,
        min_max,
        grid: grid.as_ref(),
        uniform,
    };

    // Blocks whose start times overlap the range, split into two even halves.
    let (start, end) = (query.start.timestamp_micros(), query.end.timestamp_micros());
    let work: Vec<(&Partition, usize)> = columns
        .partitions_of(&query.tenant, &query.projects)
        .flat_map(|p| {
            p.blocks
                .iter()
                .enumerate()
                .filter(move |(_, (lo, hi))| *hi >= start && *lo < end)
                .map(move |(b, _)| (p, b))
        })
        .collect();
    let threads = if work.len() >= 64 { 2 } else { 1 };
    let chunk = work.len().div_ceil(threads).max(1);
    let mut accs: Vec<Acc> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|w| s.spawn(|| plan.scan(w, columns.strings.len())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan thread panicked"))
            .collect()
    });
    let mut acc = accs.pop().unwrap_or_default();
    for other in accs {
        merge(&mut acc, other, &plan);
    }

    let mut rows = finish(&plan, columns, acc, grid.as_ref());
    rows.sort_by(|a, b| {
        a.bucket_start_us
            .cmp(&b.bucket_start_us)
            .then_with(|| a.group.cmp(&b.group))
    });
    if !query.order_by.is_empty() {
        rows.sort_by(|a, b| {
            query
                .order_by
                .iter()
                .fold(Ordering::Equal, |acc, (key, desc)| {
                    acc.then_with(|| {
                        let o = compare(a, b, *key);
                        if *desc {
                            o.reverse()
                        } else {
                            o
                        }
                    })
                })
        });
    }
    let total_rows = rows.len();
    let rows = rows
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(AggregateResult {
        bucket_width_seconds: grid.map(|g| g.width_seconds()),
        rows,
        total_rows,
    })
}

/// Cells → result rows, zero-filled as the query asks.
fn finish(
    plan: &Plan<'_>,
    columns: &CallColumns,
    mut acc: Acc,
    grid: Option<&BucketGrid>,
) -> Vec<ResultRow> {
    let query = plan.query;
    let nslots = plan.slots.len();
    // Every group seen, and the empty group when there is no grouping.
    let mut seen: BTreeSet<[u32; MAX_GROUP_BY]> = acc.keys.iter().map(|(_, k)| *k).collect();
    if query.group_by.is_empty() {
        seen.insert([NONE; MAX_GROUP_BY]);
    }
    match grid {
        Some(grid) if query.fill_empty_buckets => {
            for bucket in 0..grid.len() as u32 {
                for key in &seen {
                    acc.cell((bucket, *key), nslots, &plan.keep_values);
                }
            }
        }
        None if query.group_by.is_empty() => {
            acc.cell((NO_BUCKET, [NONE; MAX_GROUP_BY]), nslots, &plan.keep_values);
        }
        _ => {}
    }
    let decode = |source: &Source, code: u32| -> Option<String> {
        match source {
            Source::Project | Source::Id(_) => acc.local.value(code).map(str::to_owned),
            _ => columns.strings.value(code).map(str::to_owned),
        }
    };
    let computed = cell_values(plan, acc.keys.len(), &acc.metrics, &mut acc.values);
    let mut rows = Vec::with_capacity(acc.keys.len());
    for ((cell, (bucket, key)), values) in acc.keys.iter().enumerate().zip(computed) {
        let bucket = (*bucket != NO_BUCKET).then_some(*bucket as usize);
        rows.push(ResultRow {
            bucket_start_us: bucket.map(|b| grid.unwrap().starts_us()[b]),
            bucket_utc_offset_seconds: bucket
                .map(|b| grid.unwrap().utc_offset_seconds(b))
                .unwrap_or(0),
            group: plan
                .group
                .iter()
                .zip(key)
                .map(|(s, &c)| decode(s, c))
                .collect(),
            row_count: acc.rows[cell],
            values,
        });
    }
    rows
}

/// Fixed units per reported unit.
/// Fixed units per reported unit.
fn scale(metric: Metric) -> f64 {
    match metric {
        Metric::LatencyMs => 1000.0,
        Metric::InputCost | Metric::OutputCost | Metric::TotalCost => PICO,
        _ => 1.0,
    }
}

/// Every cell's measure values; percentile selection is split across two
/// threads when there are many values.
fn cell_values(
    plan: &Plan<'_>,
    cells: usize,
    metrics: &[MetricAcc],
    values: &mut [Vec<i64>],
) -> Vec<Vec<Option<f64>>> {
    let nslots = plan.slots.len();
    let slot_of: Vec<usize> = plan
        .query
        .measures
        .iter()
        .map(|m| {
            plan.slots
                .iter()
                .position(|s| *s == m.metric)
                .expect("every metric has a slot")
        })
        .collect();
    let one = |cell: usize, values: &mut [Vec<i64>]| -> Vec<Option<f64>> {
        let mut out: Vec<Option<f64>> = plan
            .query
            .measures
            .iter()
            .zip(&slot_of)
            .map(|(m, &slot)| finish_measure(m, &metrics[cell * nslots + slot]))
            .collect();
        for (slot, metric) in plan.slots.iter().enumerate() {
            let asked: Vec<usize> = (0..out.len())
                .filter(|&i| {
                    slot_of[i] == slot
                        && plan.query.measures[i].aggregation == Aggregation::Percentile
                })
                .collect();
            if asked.is_empty() {
                continue;
            }
            let ps: Vec<f64> = asked
                .iter()
                .map(|&i| plan.query.measures[i].percentile)
                .collect();
            let found = percentiles(&mut values[slot], &ps);
            for (&i, v) in asked.iter().zip(found) {
                out[i] = v.map(|v| v / scale(*metric));
            }
        }
        out
    };
    if nslots == 0 || values.is_empty() {
        let mut empty: Vec<Vec<i64>> = vec![Vec::new(); nslots];
        return (0..cells).map(|c| one(c, &mut empty)).collect();
    }
    let total: usize = values.iter().map(Vec::len).sum();
    if total < 200_000 || cells < 2 {
        return values
            .chunks_mut(nslots)
            .enumerate()
            .map(|(c, v)| one(c, v))
            .collect();
    }
    let mid = cells / 2;
    let (left, right) = values.split_at_mut(mid * nslots);
    std::thread::scope(|s| {
        let upper = s.spawn(|| {
            right
                .chunks_mut(nslots)
                .enumerate()
                .map(|(c, v)| one(mid + c, v))
                .collect::<Vec<_>>()
        });
        let mut lower: Vec<_> = left
            .chunks_mut(nslots)
            .enumerate()
            .map(|(c, v)| one(c, v))
            .collect();
        lower.extend(upper.join().expect("percentile thread panicked"));
        lower
    })
}

/// A measure other than a percentile, from its accumulator.
fn finish_measure(measure: &MeasureSpec, acc: &MetricAcc) -> Option<f64> {
    let scale = scale(measure.metric);
    let any = acc.count > 0;
    match measure.aggregation {
        Aggregation::Sum => Some(acc.sum as f64 / scale),
        Aggregation::Count => Some(acc.count as f64),
        Aggregation::Avg if !any => Some(0.0),
        Aggregation::Avg => Some(acc.sum as f64 / acc.count as f64 / scale),
        Aggregation::Min => any.then(|| acc.min as f64 / scale),
        Aggregation::Max => any.then(|| acc.max as f64 / scale),
        // Filled in from the kept values by `cell_values`.
        Aggregation::Percentile => None,
    }
}

fn compare(a: &ResultRow, b: &ResultRow, key: OrderKey) -> Ordering {
    match key {
        OrderKey::Bucket => a.bucket_start_us.cmp(&b.bucket_start_us),
        OrderKey::RowCount => a.row_count.cmp(&b.row_count),
        OrderKey::Group(i) => a.group[i].cmp(&b.group[i]),
        OrderKey::Measure(i) => match (a.values[i], b.values[i]) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_interpolates_between_closest_ranks() {
        let mut v = [40, 10, 30, 20];
        assert_eq!(percentile(&mut v, 0.0), Some(10.0));
        assert_eq!(percentile(&mut v, 50.0), Some(25.0));
        assert_eq!(percentile(&mut v, 90.0), Some(37.0));
        assert_eq!(percentile(&mut v, 100.0), Some(40.0));
        assert_eq!(percentile(&mut [7], 99.9), Some(7.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}

#[cfg(test)]
mod query_tests {
    //! Grouping, ordering and paging, which the Weave dialect does not use but
    //! the per-call dialects do.

    use super::*;
    use crate::columns::CallColumns;
    use chrono::{TimeZone, Utc};
    use polymeter_model::{
        CallEnd, CallId, CallRecord, CallStart, ModelUsage, ProjectId, TenantId, VendorDimensions,
    };
    use polymeter_proto::v1 as pb;

    fn call(
        id: &str,
        project: &str,
        model_id: &str,
        latency_ms: i64,
        tokens: &[(&str, i64)],
    ) -> CallRecord {
        let started_at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        CallRecord {
            tenant: TenantId::new("t").unwrap(),
            project_id: ProjectId::parse(project).unwrap(),
            call_id: CallId::new(id).unwrap(),
            start: Some(CallStart {
                trace_id: id.into(),
                parent_id: None,
                thread_id: None,
                turn_id: None,
                op_name: "chat".into(),
                display_name: None,
                started_at,
                wb_user_id: None,
                wb_run_id: None,
                input_refs: vec![],
                vendor: VendorDimensions {
                    model_id: Some(model_id.into()),
                    ..Default::default()
                },
            }),
            end: Some(CallEnd {
                ended_at: started_at + chrono::Duration::milliseconds(latency_ms),
                exception: None,
                usage: tokens
                    .iter()
                    .map(|(m, n)| ModelUsage {
                        model: m.to_string(),
                        total_tokens: *n,
                        input_tokens: *n,
                        ..Default::default()
                    })
                    .collect(),
                output_refs: vec![],
            }),
        }
    }

    fn request(
        group_by: Vec<Dimension>,
        order_by: Vec<pb::Order>,
        limit: u64,
        offset: u64,
    ) -> pb::AggregateCallsRequest {
        pb::AggregateCallsRequest {
            tenant: "t".into(),
            project_ids: vec![],
            start_us: Utc
                .with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
                .unwrap()
                .timestamp_micros(),
            end_us: Utc
                .with_ymd_and_hms(2024, 5, 2, 0, 0, 0)
                .unwrap()
                .timestamp_micros(),
            grain: Grain::Call as i32,
            bucketing: None,
            filters: vec![],
            group_by: group_by.into_iter().map(|d| d as i32).collect(),
            measures: vec![
                pb::Measure {
                    metric: Metric::CallCount.to_proto() as i32,
                    aggregation: Aggregation::Sum.to_proto() as i32,
                    percentile: 0.0,
                },
                pb::Measure {
                    metric: Metric::InputTokens.to_proto() as i32,
                    aggregation: Aggregation::Sum.to_proto() as i32,
                    percentile: 0.0,
                },
            ],
            order_by,
            limit,
            offset,
            fill_empty_buckets: false,
        }
    }

    fn columns() -> CallColumns {
        let mut columns = CallColumns::new();
        for record in [
            call("1", "e/a", "m1", 10, &[("gpt", 5), ("claude", 9)]),
            call("2", "e/a", "m2", 20, &[("gpt", 50)]),
            call("3", "e/b", "m2", 30, &[("gpt", 7)]),
            call("4", "e/b", "m3", 40, &[]),
        ] {
            columns.upsert(&record);
        }
        columns
    }

    fn run(req: pb::AggregateCallsRequest) -> AggregateResult {
        aggregate(
            &CallQuery::try_from(req).unwrap(),
            &columns(),
            &Pricing::table_only(),
        )
        .unwrap()
    }

    fn groups(r: &AggregateResult) -> Vec<(Option<String>, Option<f64>)> {
        r.rows
            .iter()
            .map(|row| (row.group[0].clone(), row.values[1]))
            .collect()
    }

    #[test]
    fn groups_default_to_ascending_keys() {
        let r = run(request(vec![Dimension::ModelId], vec![], 0, 0));
        assert_eq!(
            groups(&r),
            [
                (Some("m1".into()), Some(14.0)),
                (Some("m2".into()), Some(57.0)),
                (Some("m3".into()), Some(0.0))
            ]
        );
    }

    #[test]
    fn call_grain_model_is_the_dominant_one() {
        let r = run(request(vec![Dimension::Model], vec![], 0, 0));
        assert_eq!(
            groups(&r),
            [
                (None, Some(0.0)),
                (Some("claude".into()), Some(14.0)),
                (Some("gpt".into()), Some(57.0))
            ]
        );
    }

    #[test]
    fn order_by_a_measure_descending_then_page() {
        let by_tokens_desc = vec![pb::Order {
            key: Some(pb::order::Key::Measure(1)),
            descending: true,
        }];
        let r = run(request(
            vec![Dimension::ModelId],
            by_tokens_desc.clone(),
            2,
            0,
        ));
        assert_eq!(r.total_rows, 3);
        assert_eq!(
            groups(&r),
            [
                (Some("m2".into()), Some(57.0)),
                (Some("m1".into()), Some(14.0))
            ]
        );
        let r = run(request(vec![Dimension::ModelId], by_tokens_desc, 2, 2));
        assert_eq!(groups(&r), [(Some("m3".into()), Some(0.0))]);
    }

    #[test]
    fn no_groups_no_buckets_is_one_row_even_when_empty() {
        let mut req = request(vec![], vec![], 0, 0);
        req.project_ids = vec!["e/none".into()];
        let r = run(req);
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].values, [Some(0.0), Some(0.0)]);
    }

    #[test]
    fn a_query_without_measures_still_counts_rows() {
        let mut req = request(vec![Dimension::ModelId], vec![], 0, 0);
        req.measures.clear();
        let r = run(req);
        let counts: Vec<u64> = r.rows.iter().map(|row| row.row_count).collect();
        assert_eq!(counts, [1, 2, 1]);
    }

    #[test]
    fn grouping_by_refs_is_refused() {
        let err =
            CallQuery::try_from(request(vec![Dimension::InputRefs], vec![], 0, 0)).unwrap_err();
        assert!(err.to_string().contains("group_by[0]"), "{err}");
    }
}

#[cfg(test)]
mod percentile_tests {
    use super::{percentile, percentiles};
    use rand::{Rng, SeedableRng};

    #[test]
    fn several_percentiles_at_once_match_one_at_a_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<i64> = (0..n).map(|_| rng.random_range(-1000..1000)).collect();
            let ps = [99.0, 0.0, 50.0, 95.0, 100.0, 99.9, 12.5];
            let together = percentiles(&mut values.clone(), &ps);
            for (p, got) in ps.iter().zip(together) {
                assert_eq!(got, percentile(&mut values.clone(), *p), "n={n} p={p}");
                let mut sorted = values.clone();
                sorted.sort();
                let rank = p / 100.0 * (n - 1) as f64;
                let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
                let want =
                    sorted[lo] as f64 + (sorted[hi] - sorted[lo]) as f64 * (rank - lo as f64);
                assert!(
                    (got.unwrap() - want).abs() < 1e-9,
                    "n={n} p={p}: {got:?} vs {want}"
                );
            }
        }
    }

    #[test]
    fn no_values_have_no_percentiles() {
        assert_eq!(percentiles(&mut [], &[50.0, 99.0]), vec![None, None]);
    }
}
