//! Crash safety: the stats service is killed with SIGKILL at random moments
//! while concurrent writers append, and restarted. Every acknowledged call must
//! be there exactly once, whole; nothing unacknowledged may appear half-written.

use polymeter_proto::v1::{self as pb, stats_service_client::StatsServiceClient, Dimension, Grain};
use polymeter_tests::{free_port, polymeter_binary};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const TENANT: &str = "crash";
const PROJECT: &str = "acme/crash";
const BASE_US: i64 = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z

struct StatsProcess {
    child: Child,
    url: String,
}

impl StatsProcess {
    fn start(dir: &std::path::Path, port: u16) -> Self {
        let child = Command::new(polymeter_binary())
            .args([
                "stats",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            // Small log generations, so crashes also land mid-compaction.
            .args(["--wal-rotate-bytes", "200000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start polymeter stats");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn client(&self) -> StatsServiceClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = StatsServiceClient::connect(self.url.clone()).await {
                return c.max_decoding_message_size(256 << 20);
            }
            assert!(Instant::now() < deadline, "stats did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for StatsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each call's tokens and latency derive from its number, so a half-written
/// or mixed-up call shows.
fn call(n: u64) -> pb::CallWrite {
    let started = BASE_US + (n as i64 % 86_400) * 1_000_000;
    pb::CallWrite {
        tenant: TENANT.into(),
        project_id: PROJECT.into(),
        call_id: format!("call-{n}"),
        start: Some(pb::CallStart {
            trace_id: format!("trace-{n}"),
            op_name: "chat".into(),
            started_at_us: started,
            ..Default::default()
        }),
        end: Some(pb::CallEnd {
            ended_at_us: started + (n as i64 % 1000 + 1) * 1000,
            usage: vec![pb::ModelUsage {
                model: "gpt-4o".into(),
                input_tokens: n as i64,
                output_tokens: 1,
                total_tokens: n as i64 + 1,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn measure(metric: pb::Metric, aggregation: pb::Aggregation) -> pb::Measure {
    pb::Measure {
        metric: metric as i32,
        aggregation: aggregation as i32,
        percentile: 0.0,
    }
}

/// Every stored call: id → (rows, finished rows, input tokens, latency µs).
async fn stored(client: &mut StatsServiceClient<Channel>) -> HashMap<String, (u64, f64, f64, f64)> {
    let answer = client
        .aggregate_calls(pb::AggregateCallsRequest {
            tenant: TENANT.into(),
            start_us: BASE_US - 1,
            end_us: BASE_US + 2 * 86_400_000_000,
            grain: Grain::Call as i32,
            group_by: vec![Dimension::CallId as i32],
            measures: vec![
                measure(pb::Metric::LatencyMs, pb::Aggregation::Count),
                measure(pb::Metric::InputTokens, pb::Aggregation::Sum),
                measure(pb::Metric::LatencyMs, pb::Aggregation::Sum),
            ],
            ..Default::default()
        })
        .await
        .expect("aggregate after restart")
        .into_inner();
    answer
        .rows
        .into_iter()
        .map(|r| {
            let v = |i: usize| r.values[i].value.unwrap_or(f64::NAN);
            (
                r.group[0].value.clone().unwrap(),
                (r.row_count, v(0), v(1), v(2)),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_calls_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_123);
    let acked: Arc<Mutex<HashSet<u64>>> = Default::default();
    let sent: Arc<Mutex<HashSet<u64>>> = Default::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    const ROUNDS: usize = 12;

    for round in 0..ROUNDS {
        let port = free_port();
        let process = StatsProcess::start(dir.path(), port);
        let client = process.client().await;

        // What earlier rounds acknowledged is all still there, once, whole.
        check(&mut client.clone(), &acked, &sent, round).await;

        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (mut client, acked, sent, next) =
                    (client.clone(), acked.clone(), sent.clone(), next.clone());
                tokio::spawn(async move {
                    let mut previous: Vec<u64> = Vec::new();
                    for i in 0.. {
                        // Every fourth batch re-sends the previous one: retries never double count.
                        let batch: Vec<u64> = if i % 4 == 3 && !previous.is_empty() {
                            previous.clone()
                        } else {
                            let first = next.fetch_add(40, std::sync::atomic::Ordering::SeqCst);
                            (first..first + 40).collect()
                        };
                        sent.lock().unwrap().extend(&batch);
                        let request = pb::AppendCallsRequest {
                            calls: batch.iter().map(|&n| call(n)).collect(),
                        };
                        match client.append_calls(request).await {
                            Ok(_) => acked.lock().unwrap().extend(&batch),
                            Err(_) => return,
                        }
                        previous = batch;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..400))).await;
        process.kill9();
        for w in writers {
            w.await.unwrap();
        }
    }

    let process = StatsProcess::start(dir.path(), free_port());
    let mut client = process.client().await;
    check(&mut client, &acked, &sent, ROUNDS).await;
    assert!(
        acked.lock().unwrap().len() > 1000,
        "the writers made too little progress to prove anything"
    );
}

async fn check(
    client: &mut StatsServiceClient<Channel>,
    acked: &Mutex<HashSet<u64>>,
    sent: &Mutex<HashSet<u64>>,
    round: usize,
) {
    let stored = stored(client).await;
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    for n in &acked {
        let id = format!("call-{n}");
        let got = stored
            .get(&id)
            .unwrap_or_else(|| panic!("round {round}: acknowledged {id} is lost"));
        let latency_us = ((n % 1000) + 1) * 1000;
        assert_eq!(got.0, 1, "round {round}: {id} stored {} times", got.0);
        assert_eq!(got.1, 1.0, "round {round}: {id} has no end half");
        assert_eq!(got.2, *n as f64, "round {round}: {id} has the wrong tokens");
        assert_eq!(
            got.3,
            latency_us as f64 / 1000.0,
            "round {round}: {id} has the wrong latency"
        );
    }
    for (id, got) in &stored {
        let n: u64 = id.trim_start_matches("call-").parse().unwrap();
        assert!(sent.contains(&n), "round {round}: {id} was never sent");
        // An unacknowledged call may have landed (the crash came after its
        // fsync), but only whole.
        assert_eq!(
            (got.0, got.1, got.2),
            (1, 1.0, n as f64),
            "round {round}: {id} is half-written"
        );
    }
}
