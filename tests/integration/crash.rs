//! Crash safety: an owning service (stats, then feedback) is killed with
//! SIGKILL at random moments while concurrent writers append, and restarted.
//! Every acknowledged record must be there exactly once, whole; nothing
//! unacknowledged may appear half-written. One harness serves both, as both
//! sit on the same store machinery.

use crate::support::polymeter_binary;
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient,
    stats_service_client::StatsServiceClient, Dimension, Grain,
};
use polymeter_tests::free_port;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const TENANT: &str = "crash";
const PROJECT: &str = "acme/crash";
const BASE_US: i64 = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z

/// The service under test.
#[derive(Clone, Copy)]
enum Subject {
    Stats,
    Feedback,
}

struct ServiceProcess {
    child: Child,
    url: String,
}

impl ServiceProcess {
    fn start(subject: Subject, dir: &std::path::Path, port: u16) -> Self {
        let command = match subject {
            Subject::Stats => "stats",
            Subject::Feedback => "feedback",
        };
        let child = Command::new(polymeter_binary())
            .args([
                command,
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
            .expect("cannot start the polymeter service");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Channel::from_shared(self.url.clone())
                .unwrap()
                .connect()
                .await
            {
                return c;
            }
            assert!(Instant::now() < deadline, "the service did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each call's tokens and latency derive from its number, so a half-written
/// or mixed-up call shows.
fn call(n: u64) -> pb::CallWrite {
    call_in(TENANT, PROJECT, n)
}

fn call_in(tenant: &str, project: &str, n: u64) -> pb::CallWrite {
    let started = BASE_US + (n as i64 % 86_400) * 1_000_000;
    pb::CallWrite {
        tenant: tenant.into(),
        project_id: project.into(),
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

/// A feedback record whose scorer and rating derive from its number.
fn feedback(n: u64) -> pb::FeedbackWrite {
    pb::FeedbackWrite {
        tenant: TENANT.into(),
        project_id: PROJECT.into(),
        feedback_id: format!("fb-{n}"),
        created_at_ms: BASE_US / 1000 + n as i64,
        feedback_type: "wandb.runnable.crash".into(),
        weave_ref: "weave:///acme/crash/call/x".into(),
        scorer_id: Some(format!("call-{n}")),
        scorer_ratings: [("_rating_".to_owned(), (n % 1000) as f64 / 1000.0)].into(),
        scorer_tags: vec!["t".into()],
        payload_json: "{}".into(),
        ..Default::default()
    }
}

async fn write(subject: Subject, channel: Channel, batch: &[u64]) -> Result<(), tonic::Status> {
    match subject {
        Subject::Stats => StatsServiceClient::new(channel)
            .append_calls(pb::AppendCallsRequest {
                calls: batch.iter().map(|&n| call(n)).collect(),
            })
            .await
            .map(|_| ()),
        Subject::Feedback => FeedbackServiceClient::new(channel)
            .append_feedback(pb::AppendFeedbackRequest {
                feedback: batch.iter().map(|&n| feedback(n)).collect(),
            })
            .await
            .map(|_| ()),
    }
}

/// Every stored record, by number: (rows, whole?).
async fn stored(subject: Subject, channel: Channel) -> HashMap<u64, (u64, bool)> {
    match subject {
        Subject::Stats => {
            stored_calls(&mut StatsServiceClient::new(channel).max_decoding_message_size(256 << 20))
                .await
                .into_iter()
                .map(|(id, (rows, finished, tokens, latency_ms))| {
                    let n: u64 = id.trim_start_matches("call-").parse().unwrap();
                    let latency_us = ((n % 1000) + 1) * 1000;
                    let whole = finished == 1.0
                        && tokens == n as f64
                        && latency_ms == latency_us as f64 / 1000.0;
                    (n, (rows, whole))
                })
                .collect()
        }
        Subject::Feedback => {
            let answer = FeedbackServiceClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .aggregate_feedback(pb::AggregateFeedbackRequest {
                    tenant: TENANT.into(),
                    project_id: PROJECT.into(),
                    after_ms: 0,
                    before_ms: i64::MAX / 2,
                    group_by: vec![pb::FeedbackDimension::ScorerId as i32],
                    ..Default::default()
                })
                .await
                .expect("aggregate after restart")
                .into_inner();
            answer
                .buckets
                .into_iter()
                .map(|b| {
                    let n: u64 = b.group[0].trim_start_matches("call-").parse().unwrap();
                    let rating = (n % 1000) as f64 / 1000.0;
                    let whole = b.scored_count == b.total_count
                        && b.tag_counts.get("t") == Some(&b.total_count)
                        && b.rating_sums.get("_rating_") == Some(&(rating * b.total_count as f64));
                    (n, (b.total_count, whole))
                })
                .collect()
        }
    }
}

/// Every stored call: id → (rows, finished rows, input tokens, latency ms).
async fn stored_calls(
    client: &mut StatsServiceClient<Channel>,
) -> HashMap<String, (u64, f64, f64, f64)> {
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
    crash_rounds(Subject::Stats, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_feedback_survives_kill_9_exactly_once() {
    crash_rounds(Subject::Feedback, 10).await;
}

async fn crash_rounds(subject: Subject, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_123);
    let acked: Arc<Mutex<HashSet<u64>>> = Default::default();
    let sent: Arc<Mutex<HashSet<u64>>> = Default::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));

    for round in 0..rounds {
        let process = ServiceProcess::start(subject, dir.path(), free_port());
        let channel = process.channel().await;

        // What earlier rounds acknowledged is all still there, once, whole.
        check(subject, channel.clone(), &acked, &sent, round).await;

        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (channel, acked, sent, next) =
                    (channel.clone(), acked.clone(), sent.clone(), next.clone());
                tokio::spawn(async move {
                    let mut previous: Vec<u64> = Vec::new();
                    for i in 0.. {
                        // Every fourth call batch re-sends the previous one: retries never
                        // double count. (Feedback has no retry key: ids are new each time.)
                        let batch: Vec<u64> = if matches!(subject, Subject::Stats)
                            && i % 4 == 3
                            && !previous.is_empty()
                        {
                            previous.clone()
                        } else {
                            let first = next.fetch_add(40, std::sync::atomic::Ordering::SeqCst);
                            (first..first + 40).collect()
                        };
                        sent.lock().unwrap().extend(&batch);
                        match write(subject, channel.clone(), &batch).await {
                            Ok(()) => acked.lock().unwrap().extend(&batch),
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

    let process = ServiceProcess::start(subject, dir.path(), free_port());
    check(subject, process.channel().await, &acked, &sent, rounds).await;
    assert!(
        acked.lock().unwrap().len() > 1000,
        "the writers made too little progress to prove anything"
    );
}

async fn check(
    subject: Subject,
    channel: Channel,
    acked: &Mutex<HashSet<u64>>,
    sent: &Mutex<HashSet<u64>>,
    round: usize,
) {
    let stored = stored(subject, channel).await;
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    for n in &acked {
        let got = stored
            .get(n)
            .unwrap_or_else(|| panic!("round {round}: acknowledged record {n} is lost"));
        assert_eq!(
            *got,
            (1, true),
            "round {round}: record {n} stored {} times / whole: {}",
            got.0,
            got.1
        );
    }
    for (n, got) in &stored {
        assert!(sent.contains(n), "round {round}: record {n} was never sent");
        // An unacknowledged record may have landed (the crash came after its
        // fsync), but only once and whole.
        assert_eq!(
            *got,
            (1, true),
            "round {round}: record {n} is duplicated or half-written"
        );
    }
}

/// Writes one batch of calls through a stats process with tiny log
/// generations, so that compaction leaves segments behind, then stops it.
async fn stats_dir_with_segments(dir: &std::path::Path) {
    let process = ServiceProcess::start(Subject::Stats, dir, free_port());
    let channel = process.channel().await;
    for first in (0..6000).step_by(200) {
        write(
            Subject::Stats,
            channel.clone(),
            &(first..first + 200).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while segments(dir).is_empty() {
        assert!(Instant::now() < deadline, "compaction wrote no segment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.kill9();
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("stats/segments"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_service_with_a_corrupt_segment_refuses_to_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    stats_dir_with_segments(dir.path()).await;
    let segment = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();

    let output = Command::new(polymeter_binary())
        .args([
            "stats",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a corrupt store must not be served"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(segment.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
}

#[tokio::test]
async fn a_torn_log_tail_is_dropped_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServiceProcess::start(Subject::Stats, dir.path(), free_port());
    let channel = process.channel().await;
    write(Subject::Stats, channel.clone(), &[1, 2, 3])
        .await
        .unwrap();
    write(Subject::Stats, channel, &[4, 5]).await.unwrap();
    process.kill9();
    // Cut the last frame short, as a crash in the middle of a write would.
    let wal = dir.path().join("stats/wal");
    let mut logs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    let log = logs.pop().unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let process = ServiceProcess::start(Subject::Stats, dir.path(), free_port());
    let stored = stored(Subject::Stats, process.channel().await).await;
    let mut numbers: Vec<u64> = stored.keys().copied().collect();
    numbers.sort();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "the intact frame is served, the torn one dropped"
    );
    assert!(stored.values().all(|v| *v == (1, true)));
}

/// The tenant whose projects are deleted and expired, apart from the one
/// whose every write is checked.
const OTHER_TENANT: &str = "crash-other";

/// Calls of `project` the stats service answers with.
async fn count_in(channel: Channel, project: &str) -> u64 {
    StatsServiceClient::new(channel)
        .aggregate_calls(pb::AggregateCallsRequest {
            tenant: OTHER_TENANT.into(),
            project_ids: vec![project.into()],
            start_us: BASE_US - 1,
            end_us: BASE_US + 2 * 86_400_000_000,
            grain: Grain::Call as i32,
            measures: vec![measure(pb::Metric::CallCount, pb::Aggregation::Sum)],
            ..Default::default()
        })
        .await
        .expect("aggregate after restart")
        .into_inner()
        .rows
        .iter()
        .map(|r| r.row_count)
        .sum()
}

/// Deleting a project and expiring another, while a third is written to and
/// the process is killed with SIGKILL at random moments: a deletion or an
/// expiry once acknowledged stays done after the restart (one not
/// acknowledged is done whole or not at all), and every acknowledged write
/// of the third project is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_expiry_survive_kill_9() {
    use polymeter_proto::v1::project_data_service_client::ProjectDataServiceClient;
    const DOOMED: &str = "acme/doomed";
    const EXPIRING: &str = "acme/expiring";
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_201);
    let acked: Arc<Mutex<HashSet<u64>>> = Default::default();
    let sent: Arc<Mutex<HashSet<u64>>> = Default::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // What the last round left of the doomed and expiring projects: the
    // calls written, and whether their removal was acknowledged.
    let mut last: Option<(u64, bool, bool)> = None;
    for round in 0..6 {
        let process = ServiceProcess::start(Subject::Stats, dir.path(), free_port());
        let channel = process.channel().await;
        check(Subject::Stats, channel.clone(), &acked, &sent, round).await;
        if let Some((written, deleted, expired)) = last {
            let doomed = count_in(channel.clone(), DOOMED).await;
            let expiring = count_in(channel.clone(), EXPIRING).await;
            if deleted {
                assert_eq!(doomed, 0, "round {round}: a deleted project came back");
            } else {
                assert!(
                    doomed == 0 || doomed == written,
                    "round {round}: {doomed} of {written}"
                );
            }
            if expired {
                assert_eq!(expiring, 0, "round {round}: expired calls came back");
            } else {
                assert!(
                    expiring == 0 || expiring == written,
                    "round {round}: {expiring}"
                );
            }
        }
        // The doomed and expiring projects get fresh calls (started in 2024).
        let written = 200u64;
        let fresh: Vec<u64> = (round as u64 * 10_000..round as u64 * 10_000 + written).collect();
        for project in [DOOMED, EXPIRING] {
            StatsServiceClient::new(channel.clone())
                .append_calls(pb::AppendCallsRequest {
                    calls: fresh
                        .iter()
                        .map(|&n| call_in(OTHER_TENANT, project, n))
                        .collect(),
                })
                .await
                .unwrap();
        }
        let mut data = ProjectDataServiceClient::new(channel.clone());
        // Kept forever again before this round's expiry, so its calls count.
        data.set_retention(pb::SetRetentionRequest {
            tenant: OTHER_TENANT.into(),
            project_id: EXPIRING.into(),
            retention_seconds: None,
        })
        .await
        .unwrap();
        let writer = {
            let (channel, acked, sent, next) =
                (channel.clone(), acked.clone(), sent.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(40, std::sync::atomic::Ordering::SeqCst);
                    let batch: Vec<u64> = (first..first + 40).collect();
                    sent.lock().unwrap().extend(&batch);
                    match write(Subject::Stats, channel.clone(), &batch).await {
                        Ok(()) => acked.lock().unwrap().extend(&batch),
                        Err(_) => return,
                    }
                }
            })
        };
        let removing = tokio::spawn(async move {
            let deleted = data
                .delete_project_data(pb::DeleteProjectDataRequest {
                    tenant: OTHER_TENANT.into(),
                    project_id: DOOMED.into(),
                })
                .await
                .is_ok();
            let expired = data
                .set_retention(pb::SetRetentionRequest {
                    tenant: OTHER_TENANT.into(),
                    project_id: EXPIRING.into(),
                    retention_seconds: Some(30 * 86_400),
                })
                .await
                .is_ok();
            (deleted, expired)
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..300))).await;
        process.kill9();
        writer.await.unwrap();
        let (deleted, expired) = removing.await.unwrap();
        last = Some((written, deleted, expired));
    }
    let process = ServiceProcess::start(Subject::Stats, dir.path(), free_port());
    let channel = process.channel().await;
    check(Subject::Stats, channel.clone(), &acked, &sent, 6).await;
    let (written, deleted, expired) = last.unwrap();
    let doomed = count_in(channel.clone(), DOOMED).await;
    assert!(doomed == 0 || (!deleted && doomed == written));
    let expiring = count_in(channel, EXPIRING).await;
    assert!(expiring == 0 || (!expired && expiring == written));
}
