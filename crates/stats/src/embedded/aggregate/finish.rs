//! Cells become result rows: measures finished from their accumulators,
//! empty buckets filled as the query asks, rows ordered.

use super::*;

/// Cells → result rows, zero-filled as the query asks.
pub(super) fn finish(
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
pub(super) fn scale(metric: Metric) -> f64 {
    match metric {
        Metric::LatencyMs => 1000.0,
        Metric::InputCost | Metric::OutputCost | Metric::TotalCost => PICO,
        _ => 1.0,
    }
}

/// Every cell's measure values; percentile selection is split across two
/// threads when there are many values.
pub(super) fn cell_values(
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
pub(super) fn finish_measure(measure: &MeasureSpec, acc: &MetricAcc) -> Option<f64> {
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

pub(super) fn compare(a: &ResultRow, b: &ResultRow, key: OrderKey) -> Ordering {
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
