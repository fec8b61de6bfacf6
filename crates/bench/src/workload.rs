//! A realistic, reproducible workload: calls spread over 30 days in arrival
//! order, ~20 models with a long tail, 5 % errors, log-normal latencies and
//! token counts, several projects and op names, 30 % child calls, 15 % calls
//! that use a second model. Call `i` depends only on the seed and `i`, so
//! any range can be generated alone.

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use polymeter_proto::v1 as pb;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::sync::Arc;

pub const TENANT: &str = "bench";
pub const PROJECTS: [(&str, f64); 5] = [
    ("acme/support-bot", 0.40),
    ("acme/search", 0.25),
    ("acme/agents", 0.15),
    ("globex/copilot", 0.12),
    ("initech/rag", 0.08),
];
pub const OPS: [&str; 10] = [
    "weave:///acme/bot/op/chat:v3",
    "weave:///acme/bot/op/chat:v2",
    "weave:///acme/bot/op/retrieve:v1",
    "weave:///acme/bot/op/rerank:v1",
    "weave:///acme/bot/op/summarize:v4",
    "weave:///acme/bot/op/classify:v1",
    "weave:///acme/bot/op/embed:v2",
    "weave:///acme/bot/op/plan:v1",
    "weave:///acme/bot/op/tool_call:v2",
    "weave:///acme/bot/op/judge:v1",
];
pub const MODELS: [&str; 20] = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
    "o1-mini",
    "o1",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "llama-3.1-70b",
    "llama-3.1-8b",
    "mistral-large",
    "mixtral-8x7b",
    "qwen-max",
    "qwen-plus",
    "ernie-4.0",
    "deepseek-chat",
    "command-r-plus",
    "text-embedding-3-small",
];

#[derive(Debug, Clone)]
pub struct Workload {
    pub calls: u64,
    pub seed: u64,
    /// First instant, microseconds; calls spread over `span_us` from here.
    pub start_us: i64,
    pub span_us: i64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn uuid(bits: u128) -> String {
    let b = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Zipf-like weights `1 / (rank + 1)`.
fn zipf(rng: &mut SmallRng, n: usize) -> usize {
    let total: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
    let mut x = rng.random::<f64>() * total;
    for r in 0..n {
        x -= 1.0 / (r + 1) as f64;
        if x <= 0.0 {
            return r;
        }
    }
    n - 1
}

/// One generated call, in the shapes both engines load.
pub struct Call {
    pub write: pb::CallWrite,
    pub project: &'static str,
    pub op: &'static str,
    pub latency_us: i64,
    pub error: bool,
}

impl Workload {
    fn rng(&self, i: u64, stream: u64) -> SmallRng {
        SmallRng::seed_from_u64(splitmix(
            self.seed ^ splitmix(i.wrapping_mul(4).wrapping_add(stream)),
        ))
    }

    fn ids(&self, i: u64) -> (String, String) {
        let mut rng = self.rng(i, 1);
        (uuid(rng.random()), uuid(rng.random()))
    }

    pub fn call(&self, i: u64) -> Call {
        let mut rng = self.rng(i, 0);
        let step = (self.span_us / self.calls.max(1) as i64).max(1);
        let started = self.start_us + i as i64 * step + rng.random_range(0..step);
        let mut pick = rng.random::<f64>();
        let project = PROJECTS
            .iter()
            .find(|(_, w)| {
                pick -= w;
                pick <= 0.0
            })
            .map_or(PROJECTS[0].0, |(p, _)| *p);
        let op = OPS[zipf(&mut rng, OPS.len())];
        let (call_id, own_trace) = self.ids(i);
        let (parent_id, trace_id) = if i > 0 && rng.random_bool(0.3) {
            let (parent, parent_trace) = self.ids(i - 1);
            (Some(parent), parent_trace)
        } else {
            (None, own_trace)
        };
        let latency_us = (LogNormal::new(13.6, 0.9).unwrap().sample(&mut rng) as i64).max(1_000);
        let error = rng.random_bool(0.05);
        let tokens_in = LogNormal::new(6.0, 1.0).unwrap();
        let tokens_out = LogNormal::new(5.0, 0.8).unwrap();
        let models = if rng.random_bool(0.15) { 2 } else { 1 };
        let mut usage = Vec::with_capacity(models);
        let first = zipf(&mut rng, MODELS.len());
        for m in 0..models {
            let model = if m == 0 {
                first
            } else {
                (first + 1 + zipf(&mut rng, MODELS.len() - 1)) % MODELS.len()
            };
            let input = tokens_in.sample(&mut rng) as i64 + 1;
            let output = tokens_out.sample(&mut rng) as i64;
            let cached = if rng.random_bool(0.2) { input / 3 } else { 0 };
            usage.push(pb::ModelUsage {
                model: MODELS[model].into(),
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
                cache_read_input_tokens: cached,
                cache_creation_input_tokens: 0,
                requests: 1,
            });
        }
        let write = pb::CallWrite {
            tenant: TENANT.into(),
            project_id: project.into(),
            call_id,
            start: Some(pb::CallStart {
                trace_id,
                parent_id,
                op_name: op.into(),
                started_at_us: started,
                vendor: Some(pb::VendorDimensions::default()),
                ..Default::default()
            }),
            end: Some(pb::CallEnd {
                ended_at_us: started + latency_us,
                exception: error.then(|| "RateLimitError".into()),
                usage,
                output_refs: vec![],
            }),
        };
        Call {
            write,
            project,
            op,
            latency_us,
            error,
        }
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn calls_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("project_id", DataType::Utf8, false),
        Field::new("call_id", DataType::Utf8, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("parent_id", DataType::Utf8, true),
        Field::new("op_name", DataType::Utf8, false),
        Field::new("started_at", timestamp(), false),
        Field::new("latency_us", DataType::Int64, false),
        Field::new("error", DataType::UInt8, false),
    ]))
}

pub fn usage_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("project_id", DataType::Utf8, false),
        Field::new("started_at", timestamp(), false),
        Field::new("model", DataType::Utf8, false),
        Field::new("input_tokens", DataType::Int64, false),
        Field::new("output_tokens", DataType::Int64, false),
        Field::new("total_tokens", DataType::Int64, false),
        Field::new("cache_read_input_tokens", DataType::Int64, false),
    ]))
}

/// The same calls as flat tables for ClickHouse: one row per call, one row
/// per (call, model).
pub fn to_arrow(calls: &[Call]) -> (RecordBatch, RecordBatch) {
    let mut c: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
    let mut started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut latency = Int64Builder::new();
    let mut error = UInt8Builder::new();
    let mut u: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
    let mut u_started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut u_tokens: Vec<Int64Builder> = (0..4).map(|_| Int64Builder::new()).collect();
    for call in calls {
        let s = call.write.start.as_ref().unwrap();
        let e = call.write.end.as_ref().unwrap();
        c[0].append_value(TENANT);
        c[1].append_value(call.project);
        c[2].append_value(&call.write.call_id);
        c[3].append_value(&s.trace_id);
        c[4].append_option(s.parent_id.as_deref());
        c[5].append_value(call.op);
        started.append_value(s.started_at_us);
        latency.append_value(call.latency_us);
        error.append_value(call.error as u8);
        for usage in &e.usage {
            u[0].append_value(TENANT);
            u[1].append_value(call.project);
            u_started.append_value(s.started_at_us);
            u[2].append_value(&usage.model);
            for (b, v) in u_tokens.iter_mut().zip([
                usage.input_tokens,
                usage.output_tokens,
                usage.total_tokens,
                usage.cache_read_input_tokens,
            ]) {
                b.append_value(v);
            }
        }
    }
    let mut calls_cols: Vec<ArrayRef> = c
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    calls_cols.insert(6, Arc::new(started.finish()));
    calls_cols.push(Arc::new(latency.finish()));
    calls_cols.push(Arc::new(error.finish()));
    let mut usage_cols: Vec<ArrayRef> = vec![
        Arc::new(u[0].finish()),
        Arc::new(u[1].finish()),
        Arc::new(u_started.finish()),
        Arc::new(u[2].finish()),
    ];
    usage_cols.extend(
        u_tokens
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    (
        RecordBatch::try_new(calls_schema(), calls_cols).expect("calls batch"),
        RecordBatch::try_new(usage_schema(), usage_cols).expect("usage batch"),
    )
}
