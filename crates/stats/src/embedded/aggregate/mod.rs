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

//!
//! Modules by concern: [`resolve`] (filters and dimensions against the
//! interner), [`scan`] (the fold), [`cost`] (prices per partition),
//! [`finish`] (rows out of cells) and [`percentile`].

mod cost;
mod finish;
pub mod percentile;
mod resolve;
mod scan;

use crate::answer::{fill, finish_measure, finish_percentile, order_and_page, Fold};
use crate::embedded::columns::{
    hex16, id_hash, Attr, CallColumns, Interner, Partition, RefLists, TokenColumn, BLOCK,
    FLAG_ERROR, FLAG_PARENT, NONE, NO_END, NO_ID,
};
use crate::error::StatsError;
use crate::prices::Pricing;
use crate::query::{CallQuery, RowFilter};
use crate::store::{AggregateResult, ResultRow};
use cost::*;
use finish::*;
use percentile::percentiles;
use polymeter_model::{Aggregation, BucketGrid, Metric, ProjectId, TenantId};
use polymeter_pricing::{FixedPrice, Tokens};
use polymeter_proto::v1::{Dimension, Grain};
use resolve::*;
use rustc_hash::FxHashMap;
use scan::*;

pub use crate::query::MAX_GROUP_BY;

/// Where the text of ids is read back from: the columns hold call, trace and
/// parent ids only as hashes, so a prefix filter on one of them, or a group
/// by one, reads the stored ids (segments and log) of the projects asked.
pub trait IdTexts {
    /// Calls `f` with every id stored for `tenant`'s `project`.
    fn each_id(
        &self,
        tenant: &TenantId,
        project: &ProjectId,
        f: &mut dyn FnMut(&str),
    ) -> Result<(), StatsError>;
}

/// For columns that are not stored anywhere (unit tests): no ids to read.
pub struct NoIdTexts;

impl IdTexts for NoIdTexts {
    fn each_id(
        &self,
        _: &TenantId,
        _: &ProjectId,
        _: &mut dyn FnMut(&str),
    ) -> Result<(), StatsError> {
        Ok(())
    }
}

/// Answers one query from the columns, reading id texts from `texts` where
/// it needs them.
pub fn aggregate(
    query: &CallQuery,
    columns: &CallColumns,
    pricing: &Pricing,
    texts: &dyn IdTexts,
) -> Result<AggregateResult, StatsError> {
    answer(query, || columns, pricing, texts)
}

/// [`aggregate`] over columns that `columns` lends for as long as each step
/// needs them (a lock guard): only the scan holds them; ids read back from
/// disk (a prefix filter on an id, a group by one) are read without.
pub fn answer<C: std::ops::Deref<Target = CallColumns>>(
    query: &CallQuery,
    columns: impl Fn() -> C,
    pricing: &Pricing,
    texts: &dyn IdTexts,
) -> Result<AggregateResult, StatsError> {
    let projects = projects_in_scope(query, &columns());
    let prefixed = prefixed_ids(query, &projects, texts)?;
    let scanned = scan_rows(query, &columns(), pricing, &prefixed)?;
    scanned.finish(query, &projects, texts)
}

/// The projects a query reads: those it names, or all of its tenant's.
fn projects_in_scope(query: &CallQuery, columns: &CallColumns) -> Vec<ProjectId> {
    columns
        .partitions_of(&query.tenant, &query.projects)
        .map(|p| p.project.clone())
        .collect()
}

fn is_id(d: Dimension) -> bool {
    matches!(source(d), Source::Id(_))
}

/// Per filter, the hashes of stored ids that start with one of its prefixes
/// (empty unless it filters an id dimension by prefix). Read before the scan,
/// without the table's lock.
fn prefixed_ids(
    query: &CallQuery,
    projects: &[ProjectId],
    texts: &dyn IdTexts,
) -> Result<Vec<Vec<u64>>, StatsError> {
    let mut out = vec![Vec::new(); query.filters.len()];
    let wanted: Vec<usize> = (0..query.filters.len())
        .filter(|&i| is_id(query.filters[i].dimension) && !query.filters[i].prefixes.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    for project in projects {
        texts.each_id(&query.tenant, project, &mut |id| {
            for &i in &wanted {
                if query.filters[i]
                    .prefixes
                    .iter()
                    .any(|p| id.starts_with(p.as_str()))
                {
                    out[i].push(id_hash(id));
                }
            }
        })?;
    }
    for hashes in &mut out {
        hashes.sort_unstable();
        hashes.dedup();
    }
    Ok(out)
}

/// A query's rows before ids are named, empty buckets filled and the rows
/// ordered and paged: what needs the columns, so what runs under the lock.
struct Scanned {
    rows: Vec<ResultRow>,
    grid: Option<BucketGrid>,
}

impl Scanned {
    /// Names grouped ids (reading their text from `texts` when a group is
    /// an id dimension), then fills, orders and pages the rows.
    fn finish(
        mut self,
        query: &CallQuery,
        projects: &[ProjectId],
        texts: &dyn IdTexts,
    ) -> Result<AggregateResult, StatsError> {
        let id_groups: Vec<usize> = (0..query.group_by.len())
            .filter(|&g| is_id(query.group_by[g]))
            .collect();
        if !id_groups.is_empty() {
            name_ids(&mut self.rows, &id_groups, query, projects, texts)?;
        }
        fill(&mut self.rows, query, self.grid.as_ref());
        Ok(order_and_page(self.rows, query, self.grid.as_ref()))
    }
}

/// Replaces the hash tokens of grouped ids with the ids.
fn name_ids(
    rows: &mut [ResultRow],
    id_groups: &[usize],
    query: &CallQuery,
    projects: &[ProjectId],
    texts: &dyn IdTexts,
) -> Result<(), StatsError> {
    let mut names: FxHashMap<[u8; 16], Option<String>> = FxHashMap::default();
    for row in rows.iter() {
        for &g in id_groups {
            if let Some(token) = &row.group[g] {
                let key: [u8; 16] = token.as_bytes().try_into().expect("a hash token");
                names.insert(key, None);
            }
        }
    }
    let mut missing = names.len();
    for project in projects {
        if missing == 0 {
            break;
        }
        texts.each_id(&query.tenant, project, &mut |id| {
            if let Some(name @ None) = names.get_mut(&hex16(id_hash(id))) {
                *name = Some(id.to_owned());
                missing -= 1;
            }
        })?;
    }
    for row in rows {
        for &g in id_groups {
            if let Some(token) = &mut row.group[g] {
                let key: [u8; 16] = token.as_bytes().try_into().expect("a hash token");
                // Not on disk: deleted since the scan. Its token stays.
                if let Some(Some(name)) = names.get(&key) {
                    *token = name.clone();
                }
            }
        }
    }
    Ok(())
}

/// The part of [`aggregate`] that reads the columns: rows filtered, bucketed,
/// grouped and folded; ids named by their hash tokens. `prefixed` is
/// [`prefixed_ids`].
fn scan_rows(
    query: &CallQuery,
    columns: &CallColumns,
    pricing: &Pricing,
    prefixed: &[Vec<u64>],
) -> Result<Scanned, StatsError> {
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
            .zip(prefixed)
            .map(|(f, prefixed)| resolve(&columns.strings, f, prefixed))
            .collect(),
        group: query.group_by.iter().map(|d| source(*d)).collect(),
        slots,
        keep_values,
        min_max,
        grid: grid.as_ref(),
        uniform,
    };

    // Blocks whose start times overlap the range (from the project's
    // retention cutoff, when later), split into two even halves.
    let end = query.end.timestamp_micros();
    let work: Vec<(&Partition, usize)> = columns
        .partitions_of(&query.tenant, &query.projects)
        .flat_map(|p| {
            let start = query.earliest_us(&p.project);
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

    let rows = finish(&plan, columns, acc, grid.as_ref());
    Ok(Scanned { rows, grid })
}

#[cfg(test)]
mod query_tests {
    //! Grouping, ordering and paging, which the Weave dialect does not use but
    //! the per-call dialects do.

    use super::*;
    use crate::embedded::columns::CallColumns;
    use crate::embedded::writes::apply_record;
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
            apply_record(&mut columns, &record);
        }
        columns
    }

    fn run(req: pb::AggregateCallsRequest) -> AggregateResult {
        aggregate(
            &CallQuery::try_from(req).unwrap(),
            &columns(),
            &Pricing::table_only(),
            &NoIdTexts,
        )
        .unwrap()
    }

    fn groups(r: &AggregateResult) -> Vec<(Option<String>, Option<f64>)> {
        r.rows
            .iter()
            .map(|row| (row.group[0].clone(), row.values[1]))
            .collect()
    }

    /// A call sent as a start and then an end, or re-sent, is one call whose
    /// latest halves win: nothing counts twice.
    #[test]
    fn split_and_resent_calls_count_once_with_the_latest_halves() {
        let mut columns = CallColumns::new();
        let whole = call("9", "e/a", "m1", 10, &[("gpt", 5)]);
        let start_only = CallRecord {
            end: None,
            ..whole.clone()
        };
        let end_only = CallRecord {
            start: None,
            ..call("9", "e/a", "m1", 30, &[("gpt", 8)])
        };
        for record in [&start_only, &whole, &end_only, &end_only] {
            apply_record(&mut columns, record);
        }
        let r = aggregate(
            &CallQuery::try_from(request(vec![], vec![], 0, 0)).unwrap(),
            &columns,
            &Pricing::table_only(),
            &NoIdTexts,
        )
        .unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].row_count, 1);
        // The second measure sums input tokens: the last end's usage only.
        assert_eq!(r.rows[0].values[1], Some(8.0));
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
