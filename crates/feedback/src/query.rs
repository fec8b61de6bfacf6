//! `AggregateFeedbackRequest` checked and typed: the question a feedback
//! store is asked, with every field validated and named in its error.

use crate::error::FeedbackError;
use polymeter_model::feedback::{FeedbackDimension, SpanType};
use polymeter_proto::v1 as pb;
use std::collections::BTreeMap;

/// The most buckets one query may ask for.
pub const MAX_BUCKETS: i64 = 10_000;
/// Most values one filter list may hold.
pub const MAX_FILTER_VALUES: usize = 1000;

/// The rating that `rating_min` / `rating_max` bound.
pub const RATING_KEY: &str = "_rating_";

#[derive(Debug, Clone)]
pub struct FeedbackQuery {
    /// The request as asked: scope, range and the filters' values.
    pub request: pb::AggregateFeedbackRequest,
    /// Bucket width in milliseconds; `None`: no time buckets.
    pub width_ms: Option<i64>,
    pub span_types: Vec<SpanType>,
    pub group_by: Vec<FeedbackDimension>,
}

impl TryFrom<pb::AggregateFeedbackRequest> for FeedbackQuery {
    type Error = FeedbackError;

    fn try_from(q: pb::AggregateFeedbackRequest) -> Result<Self, FeedbackError> {
        let invalid = |m: String| Err(FeedbackError::InvalidArgument(m));
        if q.tenant.is_empty() {
            return invalid("tenant must not be empty".into());
        }
        if !polymeter_model::time::millis_in_range(q.after_ms) || q.before_ms < 0 {
            return invalid(format!(
                "after_ms and before_ms must be within {}",
                polymeter_model::time::RANGE
            ));
        }
        // An open-ended upper bound ("everything", often i64::MAX) reads as
        // the last instant anything can be stored at.
        let mut q = q;
        q.before_ms = q.before_ms.min(polymeter_model::time::LATEST_US / 1000);
        if q.before_ms <= q.after_ms {
            return invalid(format!(
                "before_ms ({}) must be greater than after_ms ({})",
                q.before_ms, q.after_ms
            ));
        }
        let width_ms = match q.time_bucket_seconds {
            None => None,
            Some(s) if s <= 0 => {
                return invalid(format!("time_bucket_seconds must be > 0, got {s}"))
            }
            Some(s) => {
                let w = s.saturating_mul(1000);
                let buckets = (q.before_ms - 1).div_euclid(w) - q.after_ms.div_euclid(w) + 1;
                if buckets > MAX_BUCKETS {
                    return invalid(format!(
                        "time_bucket_seconds {s} makes {buckets} buckets over the range; at most {MAX_BUCKETS} are allowed"
                    ));
                }
                Some(w)
            }
        };
        for (name, bound) in [("rating_min", q.rating_min), ("rating_max", q.rating_max)] {
            if let Some(b) = bound {
                if !(0.0..=1.0).contains(&b) {
                    return invalid(format!("{name} must be within 0..=1, got {b}"));
                }
            }
        }
        for (name, list) in [
            ("feedback_types", &q.feedback_types),
            ("monitor_ids", &q.monitor_ids),
            ("scorer_ids", &q.scorer_ids),
            ("span_agent_names", &q.span_agent_names),
            ("tags", &q.tags),
            ("span_types", &q.span_types),
        ] {
            if list.len() > MAX_FILTER_VALUES {
                return invalid(format!(
                    "{name}: at most {MAX_FILTER_VALUES} values, got {}",
                    list.len()
                ));
            }
        }
        let span_types = q
            .span_types
            .iter()
            .map(|t| {
                t.parse::<SpanType>()
                    .map_err(|e| FeedbackError::InvalidArgument(format!("span_types: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let group_by = q
            .group_by
            .iter()
            .map(|&d| {
                FeedbackDimension::from_proto(d).ok_or_else(|| {
                    FeedbackError::InvalidArgument(format!("group_by: unknown dimension {d}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(FeedbackQuery {
            request: q,
            width_ms,
            span_types,
            group_by,
        })
    }
}

/// Ratings are summed in fixed point (10⁻¹⁸ of a rating), so a sum is exact
/// and the same whatever order a store adds in; a rating of 0..=1 loses
/// nothing a float sum would keep.
pub const RATING_UNIT: f64 = 1e18;

/// A rating in fixed point (truncated, as ClickHouse's `toInt128` does).
pub fn rating_fixed(v: f64) -> i128 {
    (v * RATING_UNIT) as i128
}

/// One bucket × group cell as a store folded it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub total: u64,
    pub scored: u64,
    pub tags: Vec<(String, u64)>,
    /// Name, count, fixed-point sum.
    pub ratings: Vec<(String, u64, i128)>,
}

/// Cells keyed by (bucket start, group values) as the answer: in key order,
/// and one empty row for a query with neither buckets nor groups that
/// matched nothing.
pub fn respond(
    mut cells: BTreeMap<(Option<i64>, Vec<String>), Answer>,
    query: &FeedbackQuery,
) -> pb::AggregateFeedbackResponse {
    if query.width_ms.is_none() && query.group_by.is_empty() && cells.is_empty() {
        cells.insert((None, Vec::new()), Answer::default());
    }
    let buckets = cells
        .into_iter()
        .map(|((bucket, group), cell)| pb::FeedbackBucket {
            time_bucket_start_ms: bucket,
            group,
            total_count: cell.total,
            scored_count: cell.scored,
            tag_counts: cell.tags.into_iter().collect(),
            rating_counts: cell
                .ratings
                .iter()
                .map(|(name, n, _)| (name.clone(), *n))
                .collect(),
            rating_sums: cell
                .ratings
                .into_iter()
                .map(|(name, _, sum)| (name, sum as f64 / RATING_UNIT))
                .collect(),
        })
        .collect();
    pb::AggregateFeedbackResponse { buckets }
}
