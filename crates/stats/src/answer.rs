//! How any store turns what it folded into the answer, so that every store
//! renders the same numbers: measures finished from fixed-unit folds, rows
//! ordered and paged, empty buckets filled. A store computes the folds its
//! own way (a scan, or SQL); the rules here are shared.

use crate::query::{CallQuery, MeasureSpec, OrderKey};
use crate::store::{AggregateResult, ResultRow};
use polymeter_model::{Aggregation, BucketGrid, Metric};
use polymeter_pricing::PICO;
use std::cmp::Ordering;

/// One metric folded over one cell, in the metric's fixed unit (latency in
/// microseconds, cost in picodollars, everything else as counted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fold {
    pub sum: i128,
    pub count: u64,
    pub min: i64,
    pub max: i64,
}

impl Default for Fold {
    fn default() -> Self {
        Fold {
            sum: 0,
            count: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }
}

/// Fixed units per reported unit.
pub fn scale(metric: Metric) -> f64 {
    match metric {
        Metric::LatencyMs => 1000.0,
        Metric::InputCost | Metric::OutputCost | Metric::TotalCost => PICO,
        _ => 1.0,
    }
}

/// A measure other than a percentile, from its fold. An average of nothing
/// is 0 (Weave's convention); a minimum or maximum of nothing is absent.
pub fn finish_measure(measure: &MeasureSpec, fold: &Fold) -> Option<f64> {
    let scale = scale(measure.metric);
    let any = fold.count > 0;
    match measure.aggregation {
        Aggregation::Sum => Some(fold.sum as f64 / scale),
        Aggregation::Count => Some(fold.count as f64),
        Aggregation::Avg if !any => Some(0.0),
        Aggregation::Avg => Some(fold.sum as f64 / fold.count as f64 / scale),
        Aggregation::Min => any.then(|| fold.min as f64 / scale),
        Aggregation::Max => any.then(|| fold.max as f64 / scale),
        // A percentile is selected from the values, not folded.
        Aggregation::Percentile => None,
    }
}

/// A percentile found in fixed units, in the reported unit.
pub fn finish_percentile(metric: Metric, fixed: Option<f64>) -> Option<f64> {
    fixed.map(|v| v / scale(metric))
}

/// Row order under one key: absent values first, groups by their bytes.
pub fn compare(a: &ResultRow, b: &ResultRow, key: OrderKey) -> Ordering {
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

/// Rows in answer order — by bucket and group, then by the query's order
/// keys (a stable sort, so ties keep bucket-and-group order) — and paged.
pub fn order_and_page(
    mut rows: Vec<ResultRow>,
    query: &CallQuery,
    grid: Option<&BucketGrid>,
) -> AggregateResult {
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
    AggregateResult {
        bucket_width_seconds: grid.map(|g| g.width_seconds()),
        rows,
        total_rows,
    }
}

/// The measures of a cell nothing fell into.
pub fn empty_values(query: &CallQuery) -> Vec<Option<f64>> {
    query
        .measures
        .iter()
        .map(|m| finish_measure(m, &Fold::default()))
        .collect()
}

/// Adds the cells the query wants even when nothing fell into them: with
/// `fill_empty_buckets`, every bucket × every group seen (or the empty
/// group); with neither buckets nor groups, the one total row.
pub fn fill(rows: &mut Vec<ResultRow>, query: &CallQuery, grid: Option<&BucketGrid>) {
    let empty = |bucket: Option<usize>, group: Vec<Option<String>>| ResultRow {
        bucket_start_us: bucket.map(|b| grid.expect("a bucket needs a grid").starts_us()[b]),
        bucket_utc_offset_seconds: bucket
            .map(|b| grid.expect("a bucket needs a grid").utc_offset_seconds(b))
            .unwrap_or(0),
        group,
        row_count: 0,
        values: empty_values(query),
    };
    match grid {
        Some(grid) if query.fill_empty_buckets => {
            // Groups by number, and which (bucket, group) pairs have a row,
            // as a bitmap: no allocation per pair.
            let mut groups: Vec<Vec<Option<String>>> =
                rows.iter().map(|r| r.group.clone()).collect();
            if query.group_by.is_empty() {
                groups.push(Vec::new());
            }
            groups.sort();
            groups.dedup();
            let starts = grid.starts_us();
            if rows.len() == starts.len() * groups.len() {
                return; // every pair has its row already
            }
            let number: std::collections::HashMap<&[Option<String>], usize> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.as_slice(), i))
                .collect();
            let mut present = vec![false; starts.len() * groups.len()];
            for r in rows.iter() {
                if let Some(b) = r
                    .bucket_start_us
                    .and_then(|s| starts.binary_search(&s).ok())
                {
                    present[b * groups.len() + number[r.group.as_slice()]] = true;
                }
            }
            for (b, _) in starts.iter().enumerate() {
                for (g, group) in groups.iter().enumerate() {
                    if !present[b * groups.len() + g] {
                        rows.push(empty(Some(b), group.clone()));
                    }
                }
            }
        }
        None if query.group_by.is_empty() && rows.is_empty() => rows.push(empty(None, vec![])),
        _ => {}
    }
}
