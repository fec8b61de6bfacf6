//! `AggregateFeedback`: filter, bucket on UTC epoch multiples, group, and count.
//!
//! Filters resolve to interned codes once per query; the scan then compares
//! integers. Per bucket × group: rows, rows with a tag or a rating, rows per
//! tag, rows per rating name and the sum per rating name. Empty cells are not
//! reported, except that a query with neither buckets nor groups always
//! answers exactly one row.

use crate::table::{FeedbackTable, Partition, Strings, NONE};
use polymeter_model::feedback::{span_status_name, FeedbackDimension, SpanType};
use polymeter_proto::v1 as pb;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// The most buckets one query may ask for.
pub const MAX_BUCKETS: i64 = 10_000;
/// The rating that `rating_min` / `rating_max` bound.
pub const RATING_KEY: &str = "_rating_";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

/// A filter on interned codes: `None` passes everything.
fn codes(
    strings: &Strings,
    wanted: &[String],
    prefix_star: bool,
    prefix_all: bool,
) -> Option<Vec<bool>> {
    if wanted.is_empty() {
        return None;
    }
    let mut allowed = vec![false; strings.len()];
    for (code, value) in strings.iter() {
        allowed[code as usize] = wanted.iter().any(|w| {
            if prefix_all {
                value.starts_with(w.as_str())
            } else if let Some(prefix) = w.strip_suffix('*').filter(|_| prefix_star) {
                value.starts_with(prefix)
            } else {
                value == w
            }
        });
    }
    Some(allowed)
}

fn passes(allowed: &Option<Vec<bool>>, code: u32) -> bool {
    match allowed {
        None => true,
        Some(a) => code != NONE && a[code as usize],
    }
}

#[derive(Default)]
struct Cell {
    total: u64,
    scored: u64,
    tags: FxHashMap<u32, u64>,
    ratings: FxHashMap<u32, (u64, f64)>,
}

pub fn aggregate(
    table: &FeedbackTable,
    q: &pb::AggregateFeedbackRequest,
) -> Result<pb::AggregateFeedbackResponse, InvalidQuery> {
    let invalid = |m: String| Err(InvalidQuery(m));
    if q.after_ms < 0 || q.before_ms < 0 {
        return invalid("after_ms and before_ms must be >= 0".into());
    }
    if q.before_ms <= q.after_ms {
        return invalid(format!(
            "before_ms ({}) must be greater than after_ms ({})",
            q.before_ms, q.after_ms
        ));
    }
    let width_ms = match q.time_bucket_seconds {
        None => None,
        Some(s) if s <= 0 => return invalid(format!("time_bucket_seconds must be > 0, got {s}")),
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
    let span_types: Vec<u8> = q
        .span_types
        .iter()
        .map(|t| match t.parse::<SpanType>() {
            Ok(SpanType::AgentTurn) => Ok(1),
            Ok(SpanType::AgentConversation) => Ok(2),
            Err(e) => Err(InvalidQuery(format!("span_types: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    let group: Vec<FeedbackDimension> = q
        .group_by
        .iter()
        .map(|&d| {
            FeedbackDimension::from_proto(d)
                .ok_or_else(|| InvalidQuery(format!("group_by: unknown dimension {d}")))
        })
        .collect::<Result<_, _>>()?;

    let s = &table.strings;
    let types = codes(s, &q.feedback_types, false, true);
    let monitors = codes(s, &q.monitor_ids, true, false);
    let scorers = codes(s, &q.scorer_ids, true, false);
    let agents = codes(s, &q.span_agent_names, false, false);
    let tags: Option<Vec<bool>> = codes(s, &q.tags, false, false);
    let bounded = q.rating_min.is_some() || q.rating_max.is_some();
    let rating_code = s.code(RATING_KEY);

    let mut cells: Cells = Cells::default();
    if let Some(p) = table.partition(&q.tenant, &q.project_id) {
        scan(
            table,
            p,
            q,
            &Scan {
                width_ms,
                types: &types,
                monitors: &monitors,
                scorers: &scorers,
                agents: &agents,
                tags: &tags,
                span_types: &span_types,
                bounded,
                rating_code,
                group: &group,
            },
            &mut cells,
        );
    }
    let mut cells: BTreeMap<(Option<i64>, Vec<String>), Cell> =
        cells.keys.into_iter().zip(cells.cells).collect();
    if width_ms.is_none() && group.is_empty() && cells.is_empty() {
        cells.insert((None, Vec::new()), Cell::default());
    }
    let name = |c: u32| s.value(c).unwrap_or_default().to_owned();
    let buckets = cells
        .into_iter()
        .map(|((bucket, group), cell)| pb::FeedbackBucket {
            time_bucket_start_ms: bucket,
            group,
            total_count: cell.total,
            scored_count: cell.scored,
            tag_counts: cell.tags.iter().map(|(&t, &n)| (name(t), n)).collect(),
            rating_counts: cell
                .ratings
                .iter()
                .map(|(&r, &(n, _))| (name(r), n))
                .collect(),
            rating_sums: cell
                .ratings
                .iter()
                .map(|(&r, &(_, sum))| (name(r), sum))
                .collect(),
        })
        .collect();
    Ok(pb::AggregateFeedbackResponse { buckets })
}

struct Scan<'a> {
    width_ms: Option<i64>,
    types: &'a Option<Vec<bool>>,
    monitors: &'a Option<Vec<bool>>,
    scorers: &'a Option<Vec<bool>>,
    agents: &'a Option<Vec<bool>>,
    tags: &'a Option<Vec<bool>>,
    span_types: &'a [u8],
    bounded: bool,
    rating_code: Option<u32>,
    group: &'a [FeedbackDimension],
}

/// Cells in the order first seen, found by their coded key; decoded and
/// sorted once at the end.
#[derive(Default)]
struct Cells {
    index: FxHashMap<(i64, [u32; 4]), usize>,
    keys: Vec<(Option<i64>, Vec<String>)>,
    cells: Vec<Cell>,
}

fn scan(
    table: &FeedbackTable,
    p: &Partition,
    q: &pb::AggregateFeedbackRequest,
    f: &Scan<'_>,
    out: &mut Cells,
) {
    for row in 0..p.rows() {
        let created = p.created_ms[row];
        if created < q.after_ms || created >= q.before_ms {
            continue;
        }
        if !passes(f.types, p.feedback_type[row])
            || !passes(f.monitors, p.monitor_id[row])
            || !passes(f.scorers, p.scorer_id[row])
            || !passes(f.agents, p.agent_name[row])
            || (!f.span_types.is_empty() && !f.span_types.contains(&p.span_type[row]))
        {
            continue;
        }
        let (t0, tn) = p.tags[row];
        let row_tags = &table.tag_pool[t0 as usize..(t0 + tn) as usize];
        if let Some(allowed) = f.tags {
            if !row_tags.iter().any(|&t| allowed[t as usize]) {
                continue;
            }
        }
        let (r0, rn) = p.ratings[row];
        let row_ratings = &table.rating_pool[r0 as usize..(r0 + rn) as usize];
        if f.bounded {
            let rating = f
                .rating_code
                .and_then(|c| row_ratings.iter().find(|(name, _)| *name == c))
                .map(|(_, v)| *v);
            match rating {
                None => continue,
                Some(v)
                    if q.rating_min.is_some_and(|m| v < m)
                        || q.rating_max.is_some_and(|m| v > m) =>
                {
                    continue
                }
                Some(_) => {}
            }
        }
        let bucket = f.width_ms.map(|w| created.div_euclid(w) * w);
        let mut key = [NONE; 4];
        for (k, d) in key.iter_mut().zip(f.group) {
            *k = match d {
                FeedbackDimension::ScorerId => p.scorer_id[row],
                FeedbackDimension::SpanAgentName => p.agent_name[row],
                FeedbackDimension::SpanAgentVersion => p.agent_version[row],
                FeedbackDimension::SpanStatusCode => p.status[row] as u32,
            };
        }
        let next = out.cells.len();
        let id = *out
            .index
            .entry((bucket.unwrap_or(i64::MIN), key))
            .or_insert(next);
        if id == next {
            let values = f
                .group
                .iter()
                .zip(key)
                .map(|(d, code)| match d {
                    FeedbackDimension::SpanStatusCode => span_status_name(
                        pb::SpanStatus::try_from(code as i32).unwrap_or(pb::SpanStatus::Unset),
                    )
                    .to_owned(),
                    // Group values are strings; a record without the dimension groups under "".
                    _ => table.strings.value(code).unwrap_or_default().to_owned(),
                })
                .collect();
            out.keys.push((bucket, values));
            out.cells.push(Cell::default());
        }
        let cell = &mut out.cells[id];
        cell.total += 1;
        if !row_tags.is_empty() || !row_ratings.is_empty() {
            cell.scored += 1;
        }
        for &t in row_tags {
            *cell.tags.entry(t).or_default() += 1;
        }
        for &(r, v) in row_ratings {
            let e = cell.ratings.entry(r).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
}
