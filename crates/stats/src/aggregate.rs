//! The single aggregation every dialect ends in.
//!
//! Rows (calls, or a call's per-model usage entries) are filtered, assigned
//! to a bucket of the zone-aligned grid and a group, and folded into one
//! accumulator per metric. Values are kept in fixed units (latency in
//! microseconds, tokens and counts as integers) so sums are exact and come out
//! the same whatever order a store yields rows in.

use crate::error::StatsError;
use crate::query::{CallQuery, MeasureSpec, OrderKey};
use crate::store::{CallStore, Scope};
use polymeter_model::{Aggregation, BucketGrid, CallRecord, Metric, ModelUsage};
use polymeter_proto::v1::{Dimension, Grain};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

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

/// One row of the aggregation's input: a call, or one model's usage in a call.
#[derive(Clone, Copy)]
struct Row<'a> {
    call: &'a CallRecord,
    usage: Option<&'a ModelUsage>,
}

/// Fixed units per reported unit.
fn scale(metric: Metric) -> f64 {
    match metric {
        Metric::LatencyMs => 1000.0,
        _ => 1.0,
    }
}

fn token_field(metric: Metric, u: &ModelUsage) -> i64 {
    match metric {
        Metric::InputTokens => u.input_tokens,
        Metric::OutputTokens => u.output_tokens,
        Metric::TotalTokens => u.total_tokens,
        Metric::CacheReadInputTokens => u.cache_read_input_tokens,
        Metric::CacheCreationInputTokens => u.cache_creation_input_tokens,
        Metric::Requests => u.requests,
        _ => 0,
    }
}

impl Row<'_> {
    /// The row's value of `metric` in fixed units; `None` where it has none.
    fn value(&self, metric: Metric) -> Option<i64> {
        match metric {
            Metric::InputTokens
            | Metric::OutputTokens
            | Metric::TotalTokens
            | Metric::CacheReadInputTokens
            | Metric::CacheCreationInputTokens
            | Metric::Requests => Some(match self.usage {
                Some(u) => token_field(metric, u),
                None => self
                    .call
                    .usage()
                    .iter()
                    .map(|u| token_field(metric, u))
                    .sum(),
            }),
            // Priced when the price table lands; until then every call costs 0.
            Metric::InputCost | Metric::OutputCost | Metric::TotalCost => Some(0),
            Metric::LatencyMs => {
                let (s, e) = (self.call.start.as_ref()?, self.call.end.as_ref()?);
                (e.ended_at - s.started_at).num_microseconds()
            }
            Metric::CallCount => Some(1),
            Metric::ErrorCount => Some(self.call.is_error() as i64),
            Metric::SuccessCount => Some(self.call.is_success() as i64),
        }
    }

    fn dimension(&self, d: Dimension) -> Option<&str> {
        let c = self.call;
        let s = c.start.as_ref();
        let v = s.map(|s| &s.vendor);
        match d {
            Dimension::ProjectId => Some(c.project_id.as_str()),
            Dimension::CallId => Some(c.call_id.as_str()),
            Dimension::Model => match self.usage {
                Some(u) => Some(u.model.as_str()),
                None => c.dominant_model(),
            },
            Dimension::OpName => s.map(|s| s.op_name.as_str()),
            Dimension::DisplayName => s.and_then(|s| s.display_name.as_deref()),
            Dimension::TraceId => s.map(|s| s.trace_id.as_str()),
            Dimension::ParentId => s.and_then(|s| s.parent_id.as_deref()),
            Dimension::ThreadId => s.and_then(|s| s.thread_id.as_deref()),
            Dimension::TurnId => s.and_then(|s| s.turn_id.as_deref()),
            Dimension::WbUserId => s.and_then(|s| s.wb_user_id.as_deref()),
            Dimension::WbRunId => s.and_then(|s| s.wb_run_id.as_deref()),
            Dimension::ServiceId => v.and_then(|v| v.service_id.as_deref()),
            Dimension::ServiceName => v.and_then(|v| v.service_name.as_deref()),
            Dimension::AppId => v.and_then(|v| v.app_id.as_deref()),
            Dimension::ClientId => v.and_then(|v| v.client_id.as_deref()),
            Dimension::ApiKeyId => v.and_then(|v| v.api_key_id.as_deref()),
            Dimension::ModelId => v.and_then(|v| v.model_id.as_deref()),
            Dimension::ResourceId => v.and_then(|v| v.resource_id.as_deref()),
            Dimension::InputRefs | Dimension::OutputRefs | Dimension::Unspecified => None,
        }
    }

    fn refs(&self, d: Dimension) -> &[String] {
        match d {
            Dimension::InputRefs => self.call.start.as_ref().map(|s| s.input_refs.as_slice()),
            Dimension::OutputRefs => self.call.end.as_ref().map(|e| e.output_refs.as_slice()),
            _ => None,
        }
        .unwrap_or(&[])
    }
}

#[derive(Default, Clone)]
struct MetricAcc {
    sum: i128,
    count: u64,
    min: Option<i64>,
    max: Option<i64>,
    /// Kept only when a percentile of this metric is asked for.
    values: Vec<i64>,
}

#[derive(Clone)]
struct GroupAcc {
    rows: u64,
    metrics: Vec<MetricAcc>,
}

/// Exact percentile by linear interpolation between the closest ranks
/// (numpy's default, SQL's `percentile_cont`). `sorted` must be ascending.
pub fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p / 100.0 * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    Some(a + (b - a) * (rank - lo as f64))
}

type GroupKey = (Option<usize>, Vec<Option<String>>);

/// Answers one query from `store`.
pub fn aggregate(query: &CallQuery, store: &dyn CallStore) -> Result<AggregateResult, StatsError> {
    let grid = query
        .bucketing
        .as_ref()
        .map(|b| BucketGrid::new(query.start, query.end, b.width_seconds, b.tz))
        .transpose()
        .map_err(|e| StatsError::invalid(e.to_string()))?;

    // One accumulator per distinct metric, shared by all its aggregations.
    let mut slots: Vec<Metric> = Vec::new();
    for m in &query.measures {
        if !slots.contains(&m.metric) {
            slots.push(m.metric);
        }
    }
    let keep_values: Vec<bool> = slots
        .iter()
        .map(|s| {
            query
                .measures
                .iter()
                .any(|m| m.metric == *s && m.aggregation == Aggregation::Percentile)
        })
        .collect();
    let empty = GroupAcc {
        rows: 0,
        metrics: vec![MetricAcc::default(); slots.len()],
    };

    let mut groups: HashMap<GroupKey, GroupAcc> = HashMap::new();
    let scope = Scope {
        tenant: query.tenant.clone(),
        projects: query.projects.clone(),
        start: query.start,
        end: query.end,
    };
    let mut fold = |row: Row<'_>| {
        let passes = query.filters.iter().all(|f| match f.dimension {
            Dimension::InputRefs | Dimension::OutputRefs => {
                let refs = row.refs(f.dimension);
                if refs.is_empty() {
                    f.absent
                } else {
                    refs.iter().any(|r| f.matches(Some(r)))
                }
            }
            d => f.matches(row.dimension(d)),
        });
        if !passes {
            return;
        }
        let bucket = match &grid {
            Some(grid) => {
                let started = row
                    .call
                    .start
                    .as_ref()
                    .map(|s| s.started_at.timestamp_micros());
                match started.and_then(|t| grid.index_of(t)) {
                    Some(i) => Some(i),
                    None => return,
                }
            }
            None => None,
        };
        let key = (
            bucket,
            query
                .group_by
                .iter()
                .map(|d| row.dimension(*d).map(str::to_owned))
                .collect(),
        );
        let acc = groups.entry(key).or_insert_with(|| empty.clone());
        acc.rows += 1;
        for (slot, metric) in slots.iter().enumerate() {
            if let Some(v) = row.value(*metric) {
                let m = &mut acc.metrics[slot];
                m.sum += v as i128;
                m.count += 1;
                m.min = Some(m.min.map_or(v, |x| x.min(v)));
                m.max = Some(m.max.map_or(v, |x| x.max(v)));
                if keep_values[slot] {
                    m.values.push(v);
                }
            }
        }
    };
    store.scan(&scope, &mut |call: &CallRecord| match query.grain {
        Grain::Usage => call.usage().iter().for_each(|u| {
            fold(Row {
                call,
                usage: Some(u),
            })
        }),
        _ => fold(Row { call, usage: None }),
    })?;

    fill(query, grid.as_ref(), &mut groups, &empty);

    let mut rows: Vec<ResultRow> = groups
        .into_iter()
        .map(|((bucket, group), mut acc)| ResultRow {
            bucket_start_us: bucket.map(|i| grid.as_ref().unwrap().starts_us()[i]),
            bucket_utc_offset_seconds: bucket
                .map(|i| grid.as_ref().unwrap().utc_offset_seconds(i))
                .unwrap_or(0),
            group,
            row_count: acc.rows,
            values: query
                .measures
                .iter()
                .map(|m| {
                    finish(
                        m,
                        &mut acc.metrics[slots.iter().position(|s| *s == m.metric).unwrap()],
                    )
                })
                .collect(),
        })
        .collect();

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

/// Zero-fills: every bucket × every group seen in the range; and without
/// groups, the one whole-range row even when no call matched.
fn fill(
    query: &CallQuery,
    grid: Option<&BucketGrid>,
    groups: &mut HashMap<GroupKey, GroupAcc>,
    empty: &GroupAcc,
) {
    let mut seen: BTreeSet<Vec<Option<String>>> = groups.keys().map(|(_, g)| g.clone()).collect();
    if query.group_by.is_empty() {
        seen.insert(Vec::new());
    }
    match grid {
        Some(grid) if query.fill_empty_buckets => {
            for bucket in 0..grid.len() {
                for group in &seen {
                    groups
                        .entry((Some(bucket), group.clone()))
                        .or_insert_with(|| empty.clone());
                }
            }
        }
        None if query.group_by.is_empty() => {
            groups
                .entry((None, Vec::new()))
                .or_insert_with(|| empty.clone());
        }
        _ => {}
    }
}

fn finish(measure: &MeasureSpec, acc: &mut MetricAcc) -> Option<f64> {
    let scale = scale(measure.metric);
    match measure.aggregation {
        Aggregation::Sum => Some(acc.sum as f64 / scale),
        Aggregation::Count => Some(acc.count as f64),
        Aggregation::Avg if acc.count == 0 => Some(0.0),
        Aggregation::Avg => Some(acc.sum as f64 / acc.count as f64 / scale),
        Aggregation::Min => acc.min.map(|v| v as f64 / scale),
        Aggregation::Max => acc.max.map(|v| v as f64 / scale),
        Aggregation::Percentile => {
            if !acc.values.is_sorted() {
                acc.values.sort_unstable();
            }
            percentile(&acc.values, measure.percentile).map(|v| v / scale)
        }
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
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 0.0), Some(10.0));
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 90.0), Some(37.0));
        assert_eq!(percentile(&v, 100.0), Some(40.0));
        assert_eq!(percentile(&[7], 99.9), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}

#[cfg(test)]
mod query_tests {
    //! Grouping, ordering and paging, which the Weave dialect does not use but
    //! the per-call dialects do.

    use super::*;
    use crate::store::MemoryStore;
    use chrono::{TimeZone, Utc};
    use polymeter_model::{CallEnd, CallId, CallStart, ProjectId, TenantId, VendorDimensions};
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

    fn store() -> MemoryStore {
        let store = MemoryStore::new();
        store
            .upsert(vec![
                call("1", "e/a", "m1", 10, &[("gpt", 5), ("claude", 9)]),
                call("2", "e/a", "m2", 20, &[("gpt", 50)]),
                call("3", "e/b", "m2", 30, &[("gpt", 7)]),
                call("4", "e/b", "m3", 40, &[]),
            ])
            .unwrap();
        store
    }

    fn run(req: pb::AggregateCallsRequest) -> AggregateResult {
        aggregate(&CallQuery::try_from(req).unwrap(), &store()).unwrap()
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
    fn grouping_by_refs_is_refused() {
        let err =
            CallQuery::try_from(request(vec![Dimension::InputRefs], vec![], 0, 0)).unwrap_err();
        assert!(err.to_string().contains("group_by[0]"), "{err}");
    }
}
