//! The ClickHouse leg: the same calls and feedback ingested through gRPC into
//! `polymeter stats` / `polymeter feedback` running over ClickHouse, the same
//! query set timed there, the answers checked against the embedded store's,
//! and — beside the raw SQL on chDB the bench already runs — the time
//! Polymeter adds over the engine.

use crate::{ingest_all, percentile_ms, report, timed, Args, Service};
use anyhow::{bail, Context, Result};
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient,
    stats_service_client::StatsServiceClient,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What the leg measured, per query name: Polymeter-on-ClickHouse p50 ms.
pub struct OnClickHouse {
    pub p50: Vec<(String, f64)>,
    /// Keeps the adapter alive while the leg's numbers are printed.
    _adapter: Option<Adapter>,
}

struct Adapter(Child);

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chdb` starts the test suite's adapter; anything else is a store URL.
fn store_url(args: &Args, store: &str) -> Result<(String, Option<Adapter>)> {
    if store != "chdb" {
        return Ok((store.to_owned(), None));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clickhouse/chdb_http.py");
    let mut child = Command::new(&args.python)
        .arg(&script)
        .args(["--port", "0", "--path"])
        .arg(args.dir.join("chdb-server"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {} with chdb", args.python.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        bail!("the chDB adapter did not start: {line:?}");
    };
    Ok((
        format!("clickhouse://default@{addr}/polymeter_bench"),
        Some(Adapter(child)),
    ))
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    polymeter: &Path,
    args: &Args,
    store: &str,
    calls: Vec<(u64, pb::AppendCallsRequest)>,
    feedback: Vec<(u64, pb::AppendFeedbackRequest)>,
    set: &[crate::queries::Query],
    embedded: &[(Vec<f64>, Vec<pb::AggregateCallsResponse>)],
    (fb, fb_embedded): (&crate::feedback::Feedback, &pb::AggregateFeedbackResponse),
) -> Result<OnClickHouse> {
    let (url, adapter) = store_url(args, store)?;
    let data = args.dir.join("polymeter-on-clickhouse");
    let extra = ["--store", url.as_str()];
    let stats = Service::start_with(polymeter, "stats", &data, &extra)?;
    let client = StatsServiceClient::new(stats.channel().await?)
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(512 << 20);
    let n: u64 = calls.iter().map(|(n, _)| n).sum();
    let send = crate::call_sender(&client);
    let secs = ingest_all("ingest calls into ClickHouse", calls, args.writers, send).await?;
    println!(
        "ingest on clickhouse: {n} calls in {secs:.2} s = {:.0} calls/s (acknowledged after ClickHouse accepted each INSERT)",
        n as f64 / secs
    );
    let mut p50 = Vec::new();
    for (q, (_, want)) in set.iter().zip(embedded) {
        let (mut times, answer) = timed(args.iterations, || crate::ask(&client, q)).await?;
        report("pm+ch", q.name, &times);
        if &answer != want {
            bail!(
                "{}: Polymeter on ClickHouse and the embedded store disagree",
                q.name
            );
        }
        p50.push((q.name.to_owned(), percentile_ms(&mut times, 50.0)));
    }
    drop(stats);

    let service = Service::start_with(polymeter, "feedback", &data, &extra)?;
    let fb_client = FeedbackServiceClient::new(service.channel().await?)
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(512 << 20);
    let send = crate::feedback_sender(&fb_client);
    ingest_all(
        "ingest feedback into ClickHouse",
        feedback,
        args.writers,
        send,
    )
    .await?;
    let (mut times, answer) = timed(args.iterations, || async {
        Ok(fb_client
            .clone()
            .aggregate_feedback(fb.request())
            .await?
            .into_inner())
    })
    .await?;
    let name = "feedback 30 d in 6 h buckets by scorer_id";
    report("pm+ch", name, &times);
    if &answer != fb_embedded {
        bail!("{name}: Polymeter on ClickHouse and the embedded store disagree");
    }
    p50.push((name.to_owned(), percentile_ms(&mut times, 50.0)));
    Ok(OnClickHouse {
        p50,
        _adapter: adapter,
    })
}

/// Polymeter-on-ClickHouse beside the raw SQL on chDB and the embedded store.
pub fn print_overhead(ch: &OnClickHouse, rows: &[(String, f64, f64)]) {
    println!();
    println!(
        "{:<56} {:>10} {:>10} {:>10} {:>9}",
        "query (p50 ms)", "raw SQL", "pm+ch", "embedded", "overhead"
    );
    for (name, raw, embedded) in rows {
        let Some((_, on_ch)) = ch.p50.iter().find(|(n, _)| n == name) else {
            continue;
        };
        println!(
            "{name:<56} {raw:>10.1} {on_ch:>10.1} {embedded:>10.1} {:>8.1}x",
            on_ch / raw
        );
    }
    println!("(overhead = Polymeter on ClickHouse / the same question as raw SQL on the engine;");
    println!(" it includes gRPC, the HTTP hop to ClickHouse, the dedup of re-sent calls and cost pricing)");
}
