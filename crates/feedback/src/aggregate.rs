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

use crate::query::{rating_fixed, respond, Answer, FeedbackQuery, RATING_KEY};

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
    ratings: FxHashMap<u32, (u64, i128)>,
}

/// Answers one feedback question from the table.
pub fn aggregate(table: &FeedbackTable, query: &FeedbackQuery) -> pb::AggregateFeedbackResponse {
    let q = &query.request;
    let width_ms = query.width_ms;
    let group = &query.group_by;
    let span_types: Vec<u8> = query
        .span_types
        .iter()
        .map(|t| match t {
            SpanType::AgentTurn => 1,
            SpanType::AgentConversation => 2,
        })
        .collect();

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
                group,
            },
            &mut cells,
        );
    }
    let name = |c: u32| s.value(c).unwrap_or_default().to_owned();
    let cells = cells
        .keys
        .into_iter()
        .zip(cells.cells)
        .map(|(key, cell)| {
            let answer = Answer {
                total: cell.total,
                scored: cell.scored,
                tags: cell.tags.iter().map(|(&t, &n)| (name(t), n)).collect(),
                ratings: cell
                    .ratings
                    .iter()
                    .map(|(&r, &(n, sum))| (name(r), n, sum))
                    .collect(),
            };
            (key, answer)
        })
        .collect();
    respond(cells, query)
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
            e.1 += rating_fixed(v);
        }
    }
}
