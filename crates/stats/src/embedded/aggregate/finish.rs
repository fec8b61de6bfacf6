//! Cells become result rows: measures finished from their folds by the
//! rules every store shares ([`crate::answer`]).

use super::*;

/// Cells → result rows (only the cells something fell into).
pub(super) fn finish(
    plan: &Plan<'_>,
    columns: &CallColumns,
    mut acc: Acc,
    grid: Option<&BucketGrid>,
) -> Vec<ResultRow> {
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

/// Every cell's measure values; percentile selection is split across two
/// threads when there are many values.
pub(super) fn cell_values(
    plan: &Plan<'_>,
    cells: usize,
    metrics: &[Fold],
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
                out[i] = finish_percentile(*metric, v);
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
