//! A [`CallQuery`] as one SQL statement that ClickHouse answers whole:
//! filters, buckets, groups, every fold, exact percentiles, ordering and
//! paging. What comes back is one row per cell with the folds in fixed units
//! (sums, counts, minima, maxima, percentiles), which the shared rules of
//! [`crate::answer`] finish exactly as they finish the embedded store's.
//!
//! The statement has two levels. `merged` takes each call in the range once:
//! the newest row under each key (`FINAL`), live and carrying a start — the
//! writers keep each call whole under one key (see [`super::write`]). The
//! outer level filters, buckets and folds those calls (or, at usage grain,
//! their usage entries through `ARRAY JOIN`).
//!
//! Bucket boundaries come from the same [`BucketGrid`] the embedded store
//! uses: the grid is cut into runs of equally spaced starts (one run unless a
//! DST change falls inside), and SQL finds a row's run and its place in it.

use crate::answer;
use crate::query::{CallQuery, MeasureSpec, OrderKey, RowFilter};
use polymeter_clickhouse::{Param, Statement};
use polymeter_model::{Aggregation, BucketGrid, Metric};
use polymeter_pricing::FixedPrice;
use polymeter_proto::v1::{Dimension, Grain};
use std::fmt::Write;

/// One cell as the statement returns it.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
pub struct Cell {
    /// Index into the grid; -1 without buckets.
    pub bucket: i64,
    pub groups: Vec<Option<String>>,
    pub row_count: u64,
    pub sums: Vec<i128>,
    pub counts: Vec<u64>,
    pub mins: Vec<i64>,
    pub maxs: Vec<i64>,
    pub quantiles: Vec<Vec<f64>>,
    pub total: u64,
}

/// The fixed prices a cost metric reads, keyed `project/model` (a project id
/// holds exactly one `/`, so the key splits back unambiguously).
#[derive(Default)]
pub struct PriceList {
    pub keys: Vec<String>,
    pub prices: Vec<FixedPrice>,
}

/// Everything about a query the SQL depends on, worked out once.
pub struct Plan<'a> {
    pub query: &'a CallQuery,
    pub grid: Option<&'a BucketGrid>,
    /// Distinct metrics; each measure reads one slot.
    pub slots: Vec<Metric>,
    /// Per slot, the percentile levels asked (0..=1), in first-asked order.
    pub levels: Vec<Vec<f64>>,
}

impl<'a> Plan<'a> {
    pub fn new(query: &'a CallQuery, grid: Option<&'a BucketGrid>) -> Self {
        let mut slots: Vec<Metric> = Vec::new();
        for m in &query.measures {
            if !slots.contains(&m.metric) {
                slots.push(m.metric);
            }
        }
        let levels = slots
            .iter()
            .map(|s| {
                let mut out: Vec<f64> = Vec::new();
                for m in &query.measures {
                    let level = m.percentile / 100.0;
                    if m.metric == *s
                        && m.aggregation == Aggregation::Percentile
                        && !out.contains(&level)
                    {
                        out.push(level);
                    }
                }
                out
            })
            .collect();
        Plan {
            query,
            grid,
            slots,
            levels,
        }
    }

    pub fn slot(&self, m: &MeasureSpec) -> usize {
        self.slots
            .iter()
            .position(|s| *s == m.metric)
            .expect("every metric has a slot")
    }

    /// Index of a percentile measure's level in its slot's list.
    pub fn level(&self, m: &MeasureSpec) -> usize {
        let level = m.percentile / 100.0;
        self.levels[self.slot(m)]
            .iter()
            .position(|l| *l == level)
            .expect("every percentile has a level")
    }

    fn usage_grain(&self) -> bool {
        self.query.grain == Grain::Usage
    }

    pub fn priced(&self) -> bool {
        self.slots.iter().any(|m| {
            matches!(
                m,
                Metric::InputCost | Metric::OutputCost | Metric::TotalCost
            )
        })
    }

    /// Whether ordering and paging happen in SQL (they do unless empty
    /// buckets are filled in afterwards, which Weave asks for and never pages).
    pub fn pages_in_sql(&self) -> bool {
        !(self.query.fill_empty_buckets && self.grid.is_some())
    }
}

const USAGE_FIELDS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "requests",
];

/// The `merged` column of a dimension's value (a call-level attribute).
fn column(d: Dimension) -> &'static str {
    match d {
        Dimension::ProjectId => "project_id",
        Dimension::CallId => "call_id",
        Dimension::OpName => "m_op_name",
        Dimension::TraceId => "m_trace_id",
        Dimension::ParentId => "m_parent_id",
        Dimension::ThreadId => "m_thread_id",
        Dimension::TurnId => "m_turn_id",
        Dimension::WbUserId => "m_wb_user_id",
        Dimension::WbRunId => "m_wb_run_id",
        Dimension::DisplayName => "m_display_name",
        Dimension::ServiceId => "m_service_id",
        Dimension::ServiceName => "m_service_name",
        Dimension::AppId => "m_app_id",
        Dimension::ClientId => "m_client_id",
        Dimension::ApiKeyId => "m_api_key_id",
        Dimension::ModelId => "m_model_id",
        Dimension::ResourceId => "m_resource_id",
        Dimension::InputRefs => "m_input_refs",
        Dimension::OutputRefs => "m_output_refs",
        // Computed: see `value`.
        Dimension::Model | Dimension::Unspecified => "",
    }
}

fn nullable(d: Dimension) -> bool {
    !matches!(
        d,
        Dimension::ProjectId | Dimension::CallId | Dimension::OpName | Dimension::TraceId
    )
}

impl Plan<'_> {
    /// A dimension's value for one row, `Nullable(String)` where it may be absent.
    fn value(&self, d: Dimension) -> String {
        match d {
            Dimension::Model if self.usage_grain() => "u_model".into(),
            // The model with the most tokens; ties go to the first name.
            Dimension::Model => "if(empty(m_usage_model), NULL, \
                 arraySort((m, t) -> (-t, m), m_usage_model, m_usage_total_tokens)[1])"
                .into(),
            d => column(d).into(),
        }
    }

    fn nullable(&self, d: Dimension) -> bool {
        match d {
            Dimension::Model => !self.usage_grain(),
            d => nullable(d),
        }
    }

    /// One filter as a condition. Values are bound one by one into `IN (…)`
    /// and prefixes into `startsWith`, which ClickHouse evaluates once per
    /// dictionary entry of a `LowCardinality` column; a `NULL` value matches
    /// neither, so an absent value passes only where `absent` says so.
    fn filter(&self, st: &mut Statement, f: &RowFilter) -> String {
        let mut matches = |x: &str| {
            let mut parts = Vec::new();
            if !f.any_of.is_empty() {
                let values: Vec<String> = f
                    .any_of
                    .iter()
                    .map(|v| st.bind("String", Param::Str(v.clone())))
                    .collect();
                parts.push(format!("{x} IN ({})", values.join(", ")));
            }
            for p in &f.prefixes {
                let p = st.bind("String", Param::Str(p.clone()));
                parts.push(format!("startsWith({x}, {p})"));
            }
            if parts.is_empty() {
                "0".to_owned()
            } else {
                format!("({})", parts.join(" OR "))
            }
        };
        match f.dimension {
            // Every call has a project: `absent` never matches one.
            Dimension::ProjectId => matches("project_id"),
            Dimension::InputRefs | Dimension::OutputRefs => {
                let refs = column(f.dimension);
                let any = format!("arrayExists(r -> {}, {refs})", matches("r"));
                if f.absent {
                    format!("(empty({refs}) OR {any})")
                } else {
                    any
                }
            }
            d => {
                let v = self.value(d);
                let m = matches(&v);
                if f.absent && self.nullable(d) {
                    format!("(isNull({v}) OR {m})")
                } else {
                    m
                }
            }
        }
    }

    /// A metric's value and the condition under which a row has one.
    fn metric(&self, st: &mut Statement, m: Metric, prices: &PriceList) -> (String, String) {
        let usage = self.usage_grain();
        let counter = |field: &str| {
            if usage {
                format!("u_{field}")
            } else {
                format!("arraySum(m_usage_{field})")
            }
        };
        let error = "notEmpty(ifNull(m_exception, ''))";
        match m {
            Metric::InputTokens => (counter(USAGE_FIELDS[0]), "1".into()),
            Metric::OutputTokens => (counter(USAGE_FIELDS[1]), "1".into()),
            Metric::TotalTokens => (counter(USAGE_FIELDS[2]), "1".into()),
            Metric::CacheReadInputTokens => (counter(USAGE_FIELDS[3]), "1".into()),
            Metric::CacheCreationInputTokens => (counter(USAGE_FIELDS[4]), "1".into()),
            Metric::Requests => (counter(USAGE_FIELDS[5]), "1".into()),
            Metric::InputCost | Metric::OutputCost | Metric::TotalCost => {
                let cost = cost_expr(st, m, prices);
                let v = if usage {
                    cost(
                        "u_model",
                        "u_input_tokens",
                        "u_output_tokens",
                        "u_cache_read_input_tokens",
                        "u_cache_creation_input_tokens",
                    )
                } else {
                    format!(
                        "arraySum(arrayMap((um, ui, uo, ur, uw) -> {}, m_usage_model, m_usage_input_tokens, \
                         m_usage_output_tokens, m_usage_cache_read_input_tokens, m_usage_cache_creation_input_tokens))",
                        cost("um", "ui", "uo", "ur", "uw")
                    )
                };
                (v, "1".into())
            }
            Metric::LatencyMs => ("m_ended_us - m_started_us".into(), "m_has_end = 1".into()),
            Metric::CallCount => ("1".into(), "1".into()),
            Metric::ErrorCount => (error.into(), "1".into()),
            Metric::SuccessCount => (format!("m_has_end = 1 AND NOT {error}"), "1".into()),
            Metric::StartedAtUs => ("m_started_us".into(), "1".into()),
        }
    }

    /// The bucket index of `m_started_us` (see the module note on runs).
    fn bucket(&self, st: &mut Statement) -> String {
        let Some(grid) = self.grid else {
            return "toInt64(-1)".into();
        };
        let runs = runs(grid.starts_us());
        if let [(first, index, step, len)] = runs[..] {
            return format!(
                "toInt64({index} + least(intDiv(m_started_us - {first}, {step}), {}))",
                len - 1
            );
        }
        let starts = st.bind(
            "Array(Int64)",
            Param::Ints(runs.iter().map(|r| r.0).collect()),
        );
        let index = st.bind(
            "Array(Int64)",
            Param::Ints(runs.iter().map(|r| r.1).collect()),
        );
        let step = st.bind(
            "Array(Int64)",
            Param::Ints(runs.iter().map(|r| r.2).collect()),
        );
        let len = st.bind(
            "Array(Int64)",
            Param::Ints(runs.iter().map(|r| r.3).collect()),
        );
        let k = format!("arrayCount(s -> s <= m_started_us, {starts})");
        format!(
            "toInt64({index}[{k}] + least(intDiv(m_started_us - {starts}[{k}], {step}[{k}]), {len}[{k}] - 1))"
        )
    }

    /// The whole statement.
    pub fn statement(&self, prices: &PriceList) -> Statement {
        let q = self.query;
        let mut st = Statement::default();
        let tenant = st.bind("String", Param::Str(q.tenant.as_str().to_owned()));
        let lo = st.bind("Int64", Param::Int(q.start.timestamp_micros()));
        let hi = st.bind("Int64", Param::Int(q.end.timestamp_micros()));
        let projects = if q.projects.is_empty() {
            String::new()
        } else {
            let p = st.bind(
                "Array(String)",
                Param::Strs(q.projects.iter().map(|p| p.as_str().to_owned()).collect()),
            );
            format!(" AND has({p}, project_id)")
        };
        // Calls past their project's retention, not yet deleted, are left out.
        let mut projects = projects;
        for (project, cutoff) in &q.expired_before {
            let p = st.bind("String", Param::Str(project.as_str().to_owned()));
            let c = st.bind("Int64", Param::Int(*cutoff));
            let _ = write!(projects, " AND NOT (project_id = {p} AND sort_us < {c})");
        }
        // The cells.
        let bucket = self.bucket(&mut st);
        let mut inner = format!("SELECT {bucket} AS bucket");
        for (i, d) in q.group_by.iter().enumerate() {
            let _ = write!(
                inner,
                ", CAST({} AS Nullable(String)) AS g{i}",
                self.value(*d)
            );
        }
        inner.push_str(", count() AS row_count");
        for (k, m) in self.slots.iter().enumerate() {
            let (v, c) = self.metric(&mut st, *m, prices);
            // Only the folds some measure of this metric reads are computed.
            let asks = |a: &[Aggregation]| {
                q.measures
                    .iter()
                    .any(|x| x.metric == *m && a.contains(&x.aggregation))
            };
            // 128-bit sums, as the embedded store keeps: exact whatever is sent.
            let sum = if asks(&[Aggregation::Sum, Aggregation::Avg]) {
                format!("sumIf(toInt128({v}), {c})")
            } else {
                "toInt128(0)".to_owned()
            };
            let min = if asks(&[Aggregation::Min]) {
                format!("minIf(toInt64({v}), {c})")
            } else {
                "toInt64(0)".to_owned()
            };
            let max = if asks(&[Aggregation::Max]) {
                format!("maxIf(toInt64({v}), {c})")
            } else {
                "toInt64(0)".to_owned()
            };
            let _ = write!(
                inner,
                ", {sum} AS s{k}, countIf({c}) AS c{k}, {min} AS n{k}, {max} AS x{k}"
            );
            if self.levels[k].is_empty() {
                let _ = write!(inner, ", CAST([], 'Array(Float64)') AS q{k}");
            } else {
                let levels: Vec<String> = self.levels[k].iter().map(|l| format!("{l:?}")).collect();
                let _ = write!(
                    inner,
                    ", quantilesExactInclusiveIf({})(toInt64({v}), {c}) AS q{k}",
                    levels.join(", ")
                );
            }
        }
        let filters: Vec<String> = q.filters.iter().map(|f| self.filter(&mut st, f)).collect();
        let mut rest = String::new();
        if !filters.is_empty() {
            let _ = write!(rest, " WHERE {}", filters.join(" AND "));
        }
        inner.push_str(" FROM merged");
        if self.usage_grain() {
            // One row per usage entry: the arrays the statement reads, joined.
            let read = format!("{inner}{rest}");
            inner.push_str(" ARRAY JOIN m_usage_model AS u_model");
            for f in USAGE_FIELDS {
                if mentions(&read, &format!("u_{f}")) {
                    let _ = write!(inner, ", m_usage_{f} AS u_{f}");
                }
            }
        }
        inner.push_str(&rest);
        let mut keys: Vec<String> = Vec::new();
        if self.grid.is_some() {
            keys.push("bucket".into());
        }
        keys.extend((0..q.group_by.len()).map(|i| format!("g{i}")));
        if !keys.is_empty() {
            let _ = write!(inner, " GROUP BY {}", keys.join(", "));
        }

        // The answer's columns, in the order `Cell` reads them.
        let list = |prefix: &str, empty: &str| {
            if self.slots.is_empty() {
                format!("CAST([], '{empty}')")
            } else {
                let items: Vec<String> = (0..self.slots.len())
                    .map(|k| format!("{prefix}{k}"))
                    .collect();
                format!("[{}]", items.join(", "))
            }
        };
        let groups = if q.group_by.is_empty() {
            "CAST([], 'Array(Nullable(String))')".to_owned()
        } else {
            let g: Vec<String> = (0..q.group_by.len()).map(|i| format!("g{i}")).collect();
            format!("[{}]", g.join(", "))
        };
        // Each call once: the newest row under each key (`FINAL`), which the
        // writers keep as the whole call under its start time; keys a call
        // left (a moved start, an end that came first) hold tombstones. Only
        // the columns the outer level reads are selected.
        let mut merged =
            String::from("project_id, call_id, has_end AS m_has_end, started_us AS m_started_us");
        for c in super::schema::START_COLUMNS
            .iter()
            .chain(super::schema::END_COLUMNS)
        {
            if *c != "started_us" && mentions(&inner, &format!("m_{c}")) {
                let _ = write!(merged, ", {c} AS m_{c}");
            }
        }
        let table = super::schema::CALLS;
        let mut sql = format!(
            "WITH merged AS (SELECT {merged} FROM {table} FINAL \
             WHERE tenant = {tenant}{projects} AND sort_us >= {lo} AND sort_us < {hi} \
             AND has_start = 1 AND is_deleted = 0) "
        );
        let _ = write!(
            sql,
            "SELECT bucket, {groups} AS groups, row_count, {} AS sums, {} AS counts, \
             {} AS mins, {} AS maxs, {} AS quantiles, count() OVER () AS total FROM ({inner})",
            list("s", "Array(Int128)"),
            list("c", "Array(UInt64)"),
            list("n", "Array(Int64)"),
            list("x", "Array(Int64)"),
            list("q", "Array(Array(Float64))"),
        );
        if self.pages_in_sql() {
            let mut order: Vec<String> = q
                .order_by
                .iter()
                .map(|(key, desc)| {
                    let dir = if *desc {
                        "DESC NULLS LAST"
                    } else {
                        "ASC NULLS FIRST"
                    };
                    format!("{} {dir}", self.order_key(*key))
                })
                .collect();
            order.push("bucket ASC".into());
            order.extend((0..q.group_by.len()).map(|i| format!("g{i} ASC NULLS FIRST")));
            let _ = write!(sql, " ORDER BY {}", order.join(", "));
            if q.limit.is_some() || q.offset > 0 {
                let limit = q.limit.map_or(i64::MAX as u64, |l| l as u64);
                let _ = write!(sql, " LIMIT {limit} OFFSET {}", q.offset);
            }
        }
        // A key's rows never span partitions (the partition is a month of
        // the key's time), so `FINAL` need not merge across them.
        sql.push_str(" SETTINGS do_not_merge_across_partitions_select_final = 1");
        st.sql = sql;
        st
    }

    /// An order key as the value the answer will show, so SQL orders rows
    /// exactly as [`answer::compare`] would.
    fn order_key(&self, key: OrderKey) -> String {
        match key {
            OrderKey::Bucket => "bucket".into(),
            OrderKey::RowCount => "row_count".into(),
            OrderKey::Group(i) => format!("g{i}"),
            OrderKey::Measure(i) => {
                let m = &self.query.measures[i];
                let k = self.slot(m);
                let scale = format!("{:?}", answer::scale(m.metric));
                match m.aggregation {
                    Aggregation::Sum => format!("toFloat64(s{k}) / {scale}"),
                    Aggregation::Count => format!("toFloat64(c{k})"),
                    Aggregation::Avg => {
                        format!("if(c{k} = 0, 0., toFloat64(s{k}) / toFloat64(c{k}) / {scale})")
                    }
                    Aggregation::Min => format!("if(c{k} = 0, NULL, toFloat64(n{k}) / {scale})"),
                    Aggregation::Max => format!("if(c{k} = 0, NULL, toFloat64(x{k}) / {scale})"),
                    Aggregation::Percentile => {
                        format!("if(c{k} = 0, NULL, q{k}[{}] / {scale})", self.level(m) + 1)
                    }
                }
            }
        }
    }
}

/// A cost of one usage entry, in picodollars, as [`FixedPrice::cost`]
/// computes it: saturating 64-bit arithmetic, done in 128 bits and clamped.
fn cost_expr<'s>(
    st: &'s mut Statement,
    m: Metric,
    prices: &PriceList,
) -> impl Fn(&str, &str, &str, &str, &str) -> String {
    let keys = st.bind("Array(String)", Param::Strs(prices.keys.clone()));
    let mut column = |f: fn(&FixedPrice) -> i64| {
        st.bind(
            "Array(Int64)",
            Param::Ints(prices.prices.iter().map(f).collect()),
        )
    };
    let p_in = column(|p| p.input);
    let p_out = column(|p| p.output);
    let p_read = column(|p| p.cache_read);
    let p_write = column(|p| p.cache_write);
    move |model, input, output, read, write| {
        let price = |column: &str| {
            format!("toInt128(transform(concat(project_id, '/', {model}), {keys}, {column}, toInt64(0)))")
        };
        let sat = |x: String| {
            format!(
                "toInt64(least(greatest({x}, toInt128('-9223372036854775808')), toInt128('9223372036854775807')))"
            )
        };
        let input_cost = sat(format!(
            "greatest(toInt128({input}) - {read} - {write}, toInt128(0)) * {}",
            price(&p_in)
        ));
        let output_cost = sat(format!("toInt128({output}) * {}", price(&p_out)));
        match m {
            Metric::InputCost => input_cost,
            Metric::OutputCost => output_cost,
            _ => {
                let read_cost = sat(format!("toInt128({read}) * {}", price(&p_read)));
                let write_cost = sat(format!("toInt128({write}) * {}", price(&p_write)));
                let sum = sat(format!("toInt128({input_cost}) + {output_cost}"));
                let sum = sat(format!("toInt128({sum}) + {read_cost}"));
                sat(format!("toInt128({sum}) + {write_cost}"))
            }
        }
    }
}

/// Whether `sql` names the identifier `name` (not merely a longer one).
fn mentions(sql: &str, name: &str) -> bool {
    sql.match_indices(name).any(|(i, _)| {
        let before = sql[..i].chars().next_back();
        let after = sql[i + name.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// The grid as runs of equally spaced starts: `(first start, index of that
/// start, spacing, starts in the run)`.
pub fn runs(starts: &[i64]) -> Vec<(i64, i64, i64, i64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < starts.len() {
        let step = starts.get(i + 1).map_or(1, |next| next - starts[i]);
        let mut j = i + 1;
        while j + 1 < starts.len() && starts[j + 1] - starts[j] == step {
            j += 1;
        }
        // starts[i..=j] are spaced by `step` (j = i + 1 when only two are).
        let end = j.min(starts.len() - 1);
        out.push((starts[i], i as i64, step, (end - i + 1) as i64));
        i = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn a_uniform_grid_is_one_run_and_a_dst_day_splits_it() {
        assert_eq!(runs(&[0, 10, 20, 30]), [(0, 0, 10, 4)]);
        assert_eq!(runs(&[5]), [(5, 0, 1, 1)]);
        // A 5-hour bucket in a 6-hour grid: the short gap ends the first run.
        let h = 3600;
        let starts = [0, 6 * h, 11 * h, 17 * h, 23 * h];
        let r = runs(&starts);
        for (i, &s) in starts.iter().enumerate() {
            let (first, index, step, len) = *r.iter().rev().find(|r| r.0 <= s).unwrap();
            assert_eq!(index + ((s - first) / step).min(len - 1), i as i64, "{r:?}");
        }
    }
}
