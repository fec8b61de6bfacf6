//! The feedback side of the benchmark: 5M feedback records over 30 days, and
//! one query — a 30-day aggregate in 6-hour buckets grouped by `scorer_id` —
//! on Polymeter and on ClickHouse, checked for equal answers.

use crate::workload::TENANT;
use arrow::array::{
    ArrayRef, Float64Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use polymeter_proto::v1 as pb;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PROJECT: &str = "acme/support-bot";
const SCORERS: [&str; 12] = [
    "relevance",
    "faithfulness",
    "toxicity",
    "helpfulness",
    "coherence",
    "conciseness",
    "pii_leak",
    "jailbreak",
    "sentiment",
    "groundedness",
    "tone",
    "format_check",
];
const TAGS: [&str; 5] = ["hallucination", "off_topic", "unsafe", "slow", "great"];
const AGENTS: [&str; 4] = ["planner", "writer", "researcher", "critic"];
pub const BUCKET_SECONDS: i64 = 6 * 3600;

pub struct Feedback {
    pub count: u64,
    pub seed: u64,
    pub start_ms: i64,
    pub span_ms: i64,
}

impl Feedback {
    pub fn record(&self, i: u64) -> pb::FeedbackWrite {
        let mut rng = SmallRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9).wrapping_add(i));
        let step = (self.span_ms / self.count.max(1) as i64).max(1);
        let scorer = SCORERS[(rng.random::<f64>().powi(2) * SCORERS.len() as f64) as usize];
        let mut tags = Vec::new();
        for t in TAGS {
            if rng.random_bool(0.12) {
                tags.push(t.to_owned());
            }
        }
        let mut ratings = std::collections::HashMap::new();
        if rng.random_bool(0.8) {
            // Two decimals, as scorers usually report.
            ratings.insert(
                "_rating_".to_owned(),
                rng.random_range(0..=100) as f64 / 100.0,
            );
        }
        if rng.random_bool(0.5) {
            ratings.insert(
                "accuracy".to_owned(),
                rng.random_range(0..=100) as f64 / 100.0,
            );
        }
        let mut w = pb::FeedbackWrite {
            tenant: TENANT.into(),
            project_id: PROJECT.into(),
            feedback_id: format!("fb-{i}"),
            created_at_ms: self.start_ms + i as i64 * step + rng.random_range(0..step),
            feedback_type: format!("wandb.runnable.{scorer}"),
            weave_ref: format!("weave:///acme/support-bot/agent_turn/{i}"),
            runnable_ref: Some(format!("weave:///acme/support-bot/object/{scorer}:v1")),
            scorer_id: Some(scorer.into()),
            span_agent_name: Some(AGENTS[rng.random_range(0..AGENTS.len())].into()),
            span_agent_version: Some("1.0".into()),
            span_type: Some("agent_turn".into()),
            scorer_tags: tags,
            scorer_ratings: ratings,
            payload_json: "{}".into(),
            ..Default::default()
        };
        w.set_span_status_code(if rng.random_bool(0.05) {
            pb::SpanStatus::Error
        } else {
            pb::SpanStatus::Ok
        });
        w
    }

    pub fn request(&self) -> pb::AggregateFeedbackRequest {
        pb::AggregateFeedbackRequest {
            tenant: TENANT.into(),
            project_id: PROJECT.into(),
            after_ms: self.start_ms,
            before_ms: self.start_ms + self.span_ms,
            time_bucket_seconds: Some(BUCKET_SECONDS),
            group_by: vec![pb::FeedbackDimension::ScorerId as i32],
            ..Default::default()
        }
    }

    pub fn sql(&self) -> String {
        format!(
            // Counts and sums in one sumMap: alone, sumMap drops a key whose
            // values sum to 0, and a rating that sums to 0 is still reported.
            "SELECT b, scorer_id, n, scored, tag_counts, (r.1, r.2), (r.1, r.3) FROM (\
             SELECT intDiv(toUnixTimestamp64Milli(created_at), {w}) * {w} AS b, scorer_id, count() AS n, \
             countIf(length(tags) > 0 OR length(rating_names) > 0) AS scored, \
             sumMap(tags, arrayMap(x -> toUInt64(1), tags)) AS tag_counts, \
             sumMap(rating_names, arrayMap(x -> toUInt64(1), rating_names), rating_values) AS r \
             FROM feedback WHERE tenant = '{TENANT}' AND project_id = '{PROJECT}' \
             AND created_at >= fromUnixTimestamp64Milli(toInt64({a}), 'UTC') \
             AND created_at < fromUnixTimestamp64Milli(toInt64({b}), 'UTC') GROUP BY b, scorer_id)",
            w = BUCKET_SECONDS * 1000,
            a = self.start_ms,
            b = self.start_ms + self.span_ms
        )
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("project_id", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("scorer_id", DataType::Utf8, false),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new(
            "rating_names",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new(
            "rating_values",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            false,
        ),
    ]))
}

pub fn setup_sql(parquet: &str) -> Vec<String> {
    vec![
        "CREATE TABLE feedback (tenant LowCardinality(String), project_id LowCardinality(String), \
         created_at DateTime64(3, 'UTC'), scorer_id LowCardinality(String), tags Array(String), \
         rating_names Array(String), rating_values Array(Float64)) \
         ENGINE = MergeTree ORDER BY (tenant, project_id, created_at)"
            .into(),
        format!("INSERT INTO feedback SELECT * FROM file('{parquet}/feedback-*.parquet', Parquet)"),
        "OPTIMIZE TABLE feedback FINAL".into(),
    ]
}

pub fn to_arrow(records: &[pb::FeedbackWrite]) -> RecordBatch {
    let mut s: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
    let mut created = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut tags = ListBuilder::new(StringBuilder::new());
    let mut names = ListBuilder::new(StringBuilder::new());
    let mut values = ListBuilder::new(Float64Builder::new());
    for r in records {
        s[0].append_value(&r.tenant);
        s[1].append_value(&r.project_id);
        s[2].append_value(r.scorer_id.as_deref().unwrap_or_default());
        created.append_value(r.created_at_ms);
        tags.append_value(r.scorer_tags.iter().map(Some));
        let sorted: BTreeMap<&String, &f64> = r.scorer_ratings.iter().collect();
        names.append_value(sorted.keys().map(|k| Some(k.as_str())));
        values.append_value(sorted.values().map(|v| Some(**v)));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(s[0].finish()),
        Arc::new(s[1].finish()),
        Arc::new(created.finish()),
        Arc::new(s[2].finish()),
        Arc::new(tags.finish()),
        Arc::new(names.finish()),
        Arc::new(values.finish()),
    ];
    RecordBatch::try_new(schema(), columns).expect("feedback batch")
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// ClickHouse's `sumMap` result: `[[keys], [values]]`.
fn sum_map(v: &Value) -> BTreeMap<String, f64> {
    let keys = v[0].as_array().cloned().unwrap_or_default();
    let values = v[1].as_array().cloned().unwrap_or_default();
    keys.iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), number(v)))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

pub fn compare(ours: &pb::AggregateFeedbackResponse, theirs: &Value) -> Result<usize, String> {
    let rows = theirs.as_array().ok_or("no ClickHouse rows")?;
    if rows.len() != ours.buckets.len() {
        return Err(format!(
            "{} buckets here, {} in ClickHouse",
            ours.buckets.len(),
            rows.len()
        ));
    }
    let mine: BTreeMap<(i64, String), &pb::FeedbackBucket> = ours
        .buckets
        .iter()
        .map(|b| ((b.time_bucket_start_ms.unwrap_or(0), b.group[0].clone()), b))
        .collect();
    for row in rows {
        let key = (
            number(&row[0]) as i64,
            row[1].as_str().unwrap_or_default().to_owned(),
        );
        let b = mine
            .get(&key)
            .ok_or_else(|| format!("bucket {key:?} missing here"))?;
        let maps_agree = |m: &std::collections::HashMap<String, f64>, v: &Value| {
            let theirs = sum_map(v);
            theirs.len() == m.len()
                && theirs
                    .iter()
                    .all(|(k, x)| m.get(k).is_some_and(|y| close(*x, *y)))
        };
        let counts = |m: &std::collections::HashMap<String, u64>| {
            m.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
        };
        if b.total_count as f64 != number(&row[2])
            || b.scored_count as f64 != number(&row[3])
            || !maps_agree(&counts(&b.tag_counts), &row[4])
            || !maps_agree(&counts(&b.rating_counts), &row[5])
            || !maps_agree(&b.rating_sums, &row[6])
        {
            return Err(format!("bucket {key:?} differs: {row}"));
        }
    }
    Ok(rows.len())
}
