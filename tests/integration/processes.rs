//! The services as separate processes talking gRPC over the network, the
//! gateway's answer when they are down, and a clean Ctrl-C.

use crate::support::*;
use polymeter_tests::{fixture, free_port, json, Client};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped, so a failing test leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `polymeter <args>` in `dir`, whose `./data/credentials.toml` (the
/// default path) holds the fixture credentials.
fn spawn(args: &[&str], dir: &std::path::Path) -> Process {
    spawn_with(args, dir, &[])
}

/// [`spawn`] with extra environment variables.
fn spawn_with(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
    let credentials = dir.join("data").join("credentials.toml");
    if !credentials.exists() {
        polymeter_tests::fixture::credentials()
            .save(&credentials)
            .unwrap();
    }
    Process(
        Command::new(polymeter_binary())
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start polymeter"),
    )
}

async fn wait_ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", client.base)).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "stack did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn services_run_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let [gw, ing, st, fb] = [free_port(), free_port(), free_port(), free_port()];
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let _stats = spawn(&["stats", "--listen", &addr(st)], dir.path());
    let _feedback = spawn(&["feedback", "--listen", &addr(fb)], dir.path());
    let _ingest = spawn(
        &["ingest", "--listen", &addr(ing), "--stats-url", &url(st)],
        dir.path(),
    );
    let _gateway = spawn(
        &[
            "gateway",
            "--listen",
            &addr(gw),
            "--ingest-url",
            &url(ing),
            "--stats-url",
            &url(st),
            "--feedback-url",
            &url(fb),
        ],
        dir.path(),
    );
    let client = Client::new(url(gw));
    wait_ready(&client).await;
    ingest(
        &client,
        &[Call::new("p1", t("2024-05-01T10:00:00Z")).latency_ms(40)],
    )
    .await;
    let body = stats(
        &client,
        json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
               "call_metrics": [{"metric": "latency_ms", "aggregations": ["max"]}]}),
    )
    .await;
    assert_eq!(body["call_buckets"][0]["max_latency_ms"], 40.0);
    assert!(
        dir.path().join("data/stats").is_dir(),
        "stats keeps its data under ./data/stats"
    );
}

/// Stats replicas over ClickHouse are stateless: a call written through one
/// gateway and stats process is read back through another gateway whose
/// stats process never saw the write. The store comes from `POLYMETER_STORE`,
/// as compose and Kubernetes set it.
#[tokio::test]
async fn stats_replicas_over_clickhouse_share_every_call() {
    let ch = polymeter_tests::clickhouse::ClickHouse::start();
    let store = [("POLYMETER_STORE", ch.url.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let [gw_a, gw_b, ing, st_a, st_b, fb] = [(); 6].map(|_| free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let _stats_a = spawn_with(&["stats", "--listen", &addr(st_a)], dir.path(), &store);
    let _stats_b = spawn_with(&["stats", "--listen", &addr(st_b)], dir.path(), &store);
    let _feedback = spawn_with(&["feedback", "--listen", &addr(fb)], dir.path(), &store);
    let _ingest = spawn(
        &[
            "ingest",
            "--listen",
            &addr(ing),
            "--stats-url",
            &url(st_a),
            "--feedback-url",
            &url(fb),
        ],
        dir.path(),
    );
    let gateway = |gw: u16, st: u16| {
        spawn(
            &[
                "gateway",
                "--listen",
                &addr(gw),
                "--ingest-url",
                &url(ing),
                "--stats-url",
                &url(st),
                "--feedback-url",
                &url(fb),
            ],
            dir.path(),
        )
    };
    let (_gateway_a, _gateway_b) = (gateway(gw_a, st_a), gateway(gw_b, st_b));
    let (a, b) = (Client::new(url(gw_a)), Client::new(url(gw_b)));
    wait_ready(&a).await;
    wait_ready(&b).await;
    ingest(
        &a,
        &[Call::new("r1", t("2024-05-01T10:00:00Z")).latency_ms(40)],
    )
    .await;
    let body = stats(
        &b,
        json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
               "call_metrics": [{"metric": "latency_ms", "aggregations": ["max"]}]}),
    )
    .await;
    assert_eq!(body["call_buckets"][0]["max_latency_ms"], 40.0, "{body}");
    assert!(
        !dir.path().join("data/stats/wal").exists(),
        "over ClickHouse, stats keeps no call store of its own"
    );
}

#[tokio::test]
async fn a_missing_service_is_503_retry_in_the_weave_envelope() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let listener = polymeter::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, shutdown) = polymeter::Shutdown::new();
    let peers = nowhere.clone();
    tokio::spawn(async move {
        let peers = polymeter::GatewayPeers {
            ingest: &peers,
            stats: &peers,
            feedback: &peers,
        };
        let keyring = polymeter_auth::Keyring::fixed(&polymeter_tests::fixture::credentials());
        polymeter::run_gateway(listener, peers, keyring, Default::default(), shutdown).await
    });
    let client = Client::new(base);
    let alibaba = client.alibaba(&fixture::ACME_ALIBABA, "timeRange=1h").await;
    assert_eq!(alibaba.status, 503, "{}", alibaba.body);
    assert_eq!(alibaba.body["Code"], "ServiceUnavailable");
    assert_eq!(alibaba.body["success"], false);
    let qianfan = client
        .qianfan(
            &fixture::ACME_QIANFAN,
            &json!({"startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"}),
        )
        .await;
    assert_eq!(qianfan.status, 503, "{}", qianfan.body);
    assert_eq!(qianfan.body["code"], "ServiceUnavailable");
    assert_eq!(qianfan.headers["x-bce-error-code"], "ServiceUnavailable");
    let answer = client
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z"})),
        )
        .await;
    assert!(answer.reason(503).contains("unavailable"));
    let answer = client
        .post(
            "/call/start",
            &json!({"start": {"project_id": PROJECT, "op_name": "x", "started_at": "2024-05-01T10:00:00Z"}}),
        )
        .await;
    assert!(answer.reason(503).contains("retry"));
    assert_eq!(client.get("/readyz").await.status, 503);
    assert_eq!(client.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn up_prints_its_addresses_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let [gw, ing, st, fb] = [free_port(), free_port(), free_port(), free_port()];
    let mut child = Command::new(polymeter_binary())
        .args(["up"])
        .env("POLYMETER_GATEWAY_LISTEN", format!("127.0.0.1:{gw}"))
        .env("POLYMETER_INGEST_LISTEN", format!("127.0.0.1:{ing}"))
        .env("POLYMETER_STATS_LISTEN", format!("127.0.0.1:{st}"))
        .env("POLYMETER_FEEDBACK_LISTEN", format!("127.0.0.1:{fb}"))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let client = Client::new(format!("http://127.0.0.1:{gw}"));
    wait_ready(&client).await;
    assert!(
        dir.path().join("data").is_dir(),
        "data lives under ./data by default"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "polymeter up did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    for port in [gw, ing, st, fb] {
        assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    }
    // With no credentials file, `up` made a development tenant and printed
    // its keys; the file keeps only the Weave key's hash.
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("pm-"))
        .unwrap_or_else(|| panic!("no Weave key printed: {out}"));
    let file = dir.path().join("data").join("credentials.toml");
    assert!(!std::fs::read_to_string(&file).unwrap().contains(key));
    let keyring = polymeter_auth::Keyring::open(&file).unwrap();
    let principal = keyring.current().weave(key).unwrap();
    assert_eq!(principal.tenant, "local");
    assert!(principal.may_access("any-entity/any-project"));
    assert!(out.contains("alibaba access key: LTAI"), "{out}");
    assert!(out.contains("qianfan access key:"), "{out}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let stack = polymeter_tests::TestStack::start().await;
    let c = &stack.client;
    let body = stats_body(json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z"}));
    c.post("/calls/stats", &body).await.ok();
    c.post("/calls/stats", &json!({"project_id": PROJECT}))
        .await
        .reason(400);
    let response = reqwest::get(format!("{}/metrics", c.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for status in ["200", "400"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("polymeter_http_requests_total{")
                    && l.contains("route=\"/calls/stats\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .unwrap_or_else(|| panic!("no /calls/stats {status} counter in:\n{text}"));
        let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{line}");
    }
    assert!(
        text.contains("polymeter_http_request_duration_seconds_bucket"),
        "{text}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_in_the_weave_envelope() {
    let stack = polymeter_tests::TestStack::start().await;
    let c = &stack.client;
    let answer = c.post("/calls/statistics", &json!({})).await;
    assert!(answer.reason(404).contains("POST /calls/statistics"));
    stack.stop().await;
}

/// Sends `signal` (`STOP`, `CONT`) to a child process.
fn signal(process: &Process, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The four services as processes, the gateway with 1 s deadlines.
struct Stack {
    stats: Process,
    feedback: Process,
    _ingest: Process,
    _gateway: Process,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn stack_with_short_deadlines() -> Stack {
    stack_with(&[]).await
}

async fn stack_with(gateway_args: &[&str]) -> Stack {
    // A port found free can be taken (by another test's connection) before a
    // child binds it; then that child exits, and the stack starts again on
    // fresh ports.
    for _ in 0..3 {
        if let Some(stack) = try_stack_with(gateway_args).await {
            return stack;
        }
    }
    panic!("the stack did not start in three attempts");
}

async fn try_stack_with(gateway_args: &[&str]) -> Option<Stack> {
    let dir = tempfile::tempdir().unwrap();
    let [gw, ing, st, fb] = [free_port(), free_port(), free_port(), free_port()];
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let stats = spawn(&["stats", "--listen", &addr(st)], dir.path());
    let feedback = spawn(&["feedback", "--listen", &addr(fb)], dir.path());
    let ingest = spawn(
        &[
            "ingest",
            "--listen",
            &addr(ing),
            "--stats-url",
            &url(st),
            "--feedback-url",
            &url(fb),
        ],
        dir.path(),
    );
    let gateway = spawn(
        &[
            "gateway",
            "--listen",
            &addr(gw),
            "--ingest-url",
            &url(ing),
            "--stats-url",
            &url(st),
            "--feedback-url",
            &url(fb),
            "--query-timeout",
            "1s",
            "--write-timeout",
            "1s",
        ]
        .into_iter()
        .chain(gateway_args.iter().copied())
        .collect::<Vec<_>>(),
        dir.path(),
    );
    let client = Client::new(url(gw));
    let mut children = [stats, feedback, ingest, gateway];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", client.base)).await {
            if r.status() == 200 {
                break;
            }
        }
        if children
            .iter_mut()
            .any(|c| c.0.try_wait().ok().flatten().is_some())
        {
            return None;
        }
        assert!(Instant::now() < deadline, "stack did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [stats, feedback, ingest, gateway] = children;
    Some(Stack {
        stats,
        feedback,
        _ingest: ingest,
        _gateway: gateway,
        client,
        _dir: dir,
    })
}

/// `/readyz` within 1 s, and the names of the services it reports not serving.
async fn readiness(client: &Client) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let answer = client.get("/readyz").await;
    let elapsed = started.elapsed();
    let down = answer.body["services"]
        .as_object()
        .map(|s| {
            s.iter()
                .filter(|(_, v)| *v != "serving")
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    (elapsed, down)
}

const MARGIN: Duration = Duration::from_millis(1500);

/// The stats process stops (SIGSTOP) under concurrent writes and queries:
/// every request is answered within its 1 s deadline plus a margin (504 in
/// the Weave envelope while stats is stopped), `/readyz` answers within 1 s
/// and names stats, and after SIGCONT everything recovers without a restart.
/// Writes whose outcome was unknown are re-sent, as the answer says is safe:
/// in the end every call counts exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_stats_process_costs_callers_at_most_their_deadline() {
    let s = stack_with_short_deadlines().await;
    let c = s.client.clone();
    let send = |c: Client, i: usize| async move {
        let base = t("2024-05-01T10:00:00Z");
        let call =
            |i: usize| Call::new(&format!("f{i}"), base + chrono::Duration::seconds(i as i64));
        let started = Instant::now();
        let answer = c
            .post(
                &format!("/v2/{PROJECT}/calls/complete"),
                &json!({"batch": [call(i).body]}),
            )
            .await;
        (i, answer.status, answer.body, started.elapsed())
    };
    let query = |c: Client| async move {
        let started = Instant::now();
        let answer = c
            .post(
                "/calls/stats",
                &stats_body(json!({"start": "2024-05-01T00:00:00Z",
                "end": "2024-05-02T00:00:00Z", "granularity": 86400,
                "call_metrics": [{"metric": "call_count"}]})),
            )
            .await;
        (answer.status, answer.body, started.elapsed())
    };
    // Some calls go in while everything is well.
    for i in 0..10 {
        let (_, status, body, _) = send(c.clone(), i).await;
        assert_eq!(status, 200, "{body}");
    }
    signal(&s.stats, "STOP");
    let (elapsed, down) = readiness(&c).await;
    assert!(elapsed < Duration::from_secs(1), "/readyz took {elapsed:?}");
    assert_eq!(down, ["stats"]);
    let mut writes = tokio::task::JoinSet::new();
    for i in 10..30 {
        writes.spawn(send(c.clone(), i));
    }
    let mut queries = tokio::task::JoinSet::new();
    for _ in 0..10 {
        queries.spawn(query(c.clone()));
    }
    let mut unknown = Vec::new();
    while let Some(done) = writes.join_next().await {
        let (i, status, body, took) = done.unwrap();
        assert!(
            took < Duration::from_secs(1) + MARGIN,
            "write {i} took {took:?}"
        );
        assert_eq!(status, 504, "{body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("re-sending it is safe"), "{body}");
        unknown.push(i);
    }
    while let Some(done) = queries.join_next().await {
        let (status, body, took) = done.unwrap();
        assert!(
            took < Duration::from_secs(1) + MARGIN,
            "query took {took:?}"
        );
        assert_eq!(status, 504, "{body}");
    }
    signal(&s.stats, "CONT");
    // No restart: the same processes answer again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, down) = readiness(&c).await;
        if down.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {down:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in unknown {
        let (_, status, body, _) = send(c.clone(), i).await;
        assert_eq!(status, 200, "re-sending {i}: {body}");
    }
    let (status, body, _) = query(c.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["call_buckets"][0]["sum_call_count"], 30, "{body}");
}

/// The same with the feedback process: feedback writes answer 504 within
/// their deadline, queries about calls are unaffected, and after SIGCONT
/// every acknowledged record is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_feedback_process_costs_callers_at_most_their_deadline() {
    let s = stack_with_short_deadlines().await;
    let c = s.client.clone();
    let record = |i: usize| {
        json!({"project_id": PROJECT, "feedback_type": "wandb.reaction.1",
               "weave_ref": format!("weave:///acme/bot/call/x{i}"), "payload": {}})
    };
    for i in 0..5 {
        c.post("/feedback/create", &record(i)).await.ok();
    }
    signal(&s.feedback, "STOP");
    let (elapsed, down) = readiness(&c).await;
    assert!(elapsed < Duration::from_secs(1), "/readyz took {elapsed:?}");
    assert_eq!(down, ["feedback"]);
    let mut writes = tokio::task::JoinSet::new();
    for i in 5..15 {
        let c = c.clone();
        writes.spawn(async move {
            let started = Instant::now();
            let answer = c.post("/feedback/create", &record(i)).await;
            (answer.status, answer.body, started.elapsed())
        });
    }
    let mut unknown = 0;
    while let Some(done) = writes.join_next().await {
        let (status, body, took) = done.unwrap();
        assert!(took < Duration::from_secs(1) + MARGIN, "took {took:?}");
        assert_eq!(status, 504, "{body}");
        unknown += 1;
    }
    // Calls do not depend on feedback.
    ingest(&c, &[Call::new("independent", t("2024-05-01T10:00:00Z"))]).await;
    signal(&s.feedback, "CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = loop {
        let answer = c
            .post(
                "/feedback/aggregate",
                &json!({"project_id": PROJECT, "after_ms": 0,
                   "before_ms": 4_000_000_000_000i64}),
            )
            .await;
        if answer.status == 200 {
            break answer.body["buckets"][0]["total_count"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "feedback did not come back: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The 5 acknowledged records, plus any of the 10 that were applied late.
    assert!((5..=5 + unknown).contains(&total), "{total}");
}

/// More concurrent requests than `--max-inflight`: the excess is refused at
/// once with 503 and `Retry-After` in each dialect's envelope, none waits
/// past its deadline, and health stays answerable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_sheds_load_with_retry_after() {
    let s = stack_with(&["--max-inflight", "4"]).await;
    let c = s.client.clone();
    // Stats stalls, so every admitted query holds its slot for its deadline.
    signal(&s.stats, "STOP");
    let mut queries = tokio::task::JoinSet::new();
    for i in 0..24 {
        let c = c.clone();
        queries.spawn(async move {
            let started = Instant::now();
            let answer = if i % 3 == 0 {
                c.alibaba(
                    &fixture::ACME_ALIBABA,
                    "startTime=2024-05-01T00:00:00Z&endTime=2024-05-02T00:00:00Z",
                )
                .await
            } else {
                c.post(
                    "/calls/stats",
                    &stats_body(json!({"start": "2024-05-01T00:00:00Z",
                    "end": "2024-05-02T00:00:00Z"})),
                )
                .await
            };
            (i, answer, started.elapsed())
        });
    }
    let mut shed = 0;
    while let Some(done) = queries.join_next().await {
        let (i, answer, took) = done.unwrap();
        assert!(
            took < Duration::from_secs(1) + MARGIN,
            "request {i} took {took:?}"
        );
        match answer.status {
            504 => {}
            503 => {
                shed += 1;
                assert_eq!(answer.headers["retry-after"], "1");
                if i % 3 == 0 {
                    assert_eq!(answer.body["Code"], "ServiceUnavailable", "{}", answer.body);
                } else {
                    let reason = answer.body["reason"].as_str().unwrap();
                    assert!(reason.contains("limit of requests in flight"), "{reason}");
                }
            }
            other => panic!("request {i}: {other} {}", answer.body),
        }
    }
    assert!(shed >= 20 - 4, "only {shed} of 24 were shed");
    // Operators can still look in.
    let (elapsed, down) = readiness(&c).await;
    assert!(elapsed < Duration::from_secs(1));
    assert_eq!(down, ["stats"]);
    signal(&s.stats, "CONT");
}

/// One tenant's flood takes only its own share: with `--tenant-inflight 2`,
/// acme's excess is refused while globex is still admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_slot() {
    let s = stack_with(&["--tenant-inflight", "2"]).await;
    let c = s.client.clone();
    signal(&s.stats, "STOP");
    let body = stats_body(json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (c, body) = (c.clone(), body.clone());
        flood.spawn(async move { c.post("/calls/stats", &body).await });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let globex = c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    let theirs = globex
        .post(
            "/calls/stats",
            &json!({"project_id": "globex/app", "start": "2024-05-01T00:00:00Z",
               "end": "2024-05-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        theirs.status, 504,
        "globex was admitted and waited on stats: {}",
        theirs.body
    );
    let mut refused = 0;
    while let Some(done) = flood.join_next().await {
        let answer = done.unwrap();
        if answer.status == 503 {
            let reason = answer.body["reason"].as_str().unwrap();
            assert!(
                reason.contains("this tenant already has 2 requests"),
                "{reason}"
            );
            refused += 1;
        } else {
            assert_eq!(answer.status, 504, "{}", answer.body);
        }
    }
    assert_eq!(refused, 6);
    signal(&s.stats, "CONT");
}

/// Bodies in flight are bounded per tenant: with `--tenant-inflight-mib 1`,
/// a stalled upload that has sent most of a MiB leaves acme no room for
/// another body (503 + Retry-After, at once), while globex is unaffected;
/// once the stalled upload goes away, acme's bytes are its own again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_buffer_past_its_bytes() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;
    let s = stack_with(&["--tenant-inflight-mib", "1"]).await;
    let c = s.client.clone();
    let host = c.host().to_owned();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("api:{}", fixture::ACME_WEAVE_KEY));
    let mut stalled = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /call/upsert_batch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Authorization: Basic {basic}\r\nContent-Length: 8000000\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&vec![b' '; 900 << 10]).await.unwrap();
    stalled.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let batch = |project: &str| {
        let padding = "x".repeat(200 << 10);
        json!({"batch": [], "padding": padding, "project_id": project})
    };
    let started = Instant::now();
    let refused = c.post("/call/upsert_batch", &batch("acme/app")).await;
    assert!(started.elapsed() < Duration::from_secs(1) + MARGIN);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        refused
            .reason(503)
            .contains("1 MiB of request bodies in flight"),
        "{}",
        refused.body
    );
    let globex = c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    let theirs = globex
        .post("/call/upsert_batch", &batch("globex/app"))
        .await;
    assert_ne!(theirs.status, 503, "{}", theirs.body);

    drop(stalled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = c.post("/call/upsert_batch", &batch("acme/app")).await;
    assert_ne!(again.status, 503, "{}", again.body);
}

/// Slow clients cannot hold connections: headers that do not arrive within
/// `--header-timeout`, and connections left idle, are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = stack_with(&["--header-timeout", "1s"]).await;
    let addr = s.client.host().to_owned();
    let closed_within = |mut stream: tokio::net::TcpStream| async move {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("the connection was still open after 5 s"),
            }
        }
    };
    // Half a request, then nothing (slowloris).
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /calls/stats HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_within(slow).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A connection that never sends anything.
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let took = closed_within(idle).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A keep-alive connection left idle after a request.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(kept).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Well-behaved clients are unaffected.
    assert_eq!(s.client.get("/healthz").await.status, 200);
}

/// Every process can be scraped: each service on its `--metrics-listen`
/// address (gRPC calls by method and code, plus its own counters), the
/// gateway on `/metrics` (requests, shed requests, expired deadlines,
/// authentication refusals by reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_serves_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let [gw, ing, st, fb, m_ing, m_st, m_fb] = [(); 7].map(|_| free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let _stats = spawn(
        &[
            "stats",
            "--listen",
            &addr(st),
            "--metrics-listen",
            &addr(m_st),
        ],
        dir.path(),
    );
    let _feedback = spawn(
        &[
            "feedback",
            "--listen",
            &addr(fb),
            "--metrics-listen",
            &addr(m_fb),
        ],
        dir.path(),
    );
    let _ingest = spawn(
        &[
            "ingest",
            "--listen",
            &addr(ing),
            "--stats-url",
            &url(st),
            "--feedback-url",
            &url(fb),
            "--metrics-listen",
            &addr(m_ing),
        ],
        dir.path(),
    );
    let _gateway = spawn(
        &[
            "gateway",
            "--listen",
            &addr(gw),
            "--ingest-url",
            &url(ing),
            "--stats-url",
            &url(st),
            "--feedback-url",
            &url(fb),
        ],
        dir.path(),
    );
    let client = Client::new(url(gw));
    wait_ready(&client).await;
    ingest(
        &client,
        &[Call::new("m1", t("2024-05-01T10:00:00Z")).tokens("gpt-4o", 3, 4)],
    )
    .await;
    stats(
        &client,
        json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z"}),
    )
    .await;
    client
        .post(
            "/feedback/create",
            &json!({"project_id": PROJECT, "feedback_type": "wandb.reaction.1",
            "weave_ref": "weave:///acme/bot/call/m1", "payload": {}}),
        )
        .await
        .ok();
    let refused = client
        .with_weave_key(Some("pm-not-a-key"))
        .post("/calls/stats", &json!({}))
        .await;
    assert_eq!(refused.status, 401);
    let scrape = |port: u16| async move {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let stats_text = scrape(m_st).await;
    for want in [
        r#"method="/polymeter.v1.StatsService/AppendCalls""#,
        r#"method="/polymeter.v1.StatsService/AggregateCalls""#,
        "polymeter_grpc_request_duration_seconds_bucket",
        "polymeter_store_fsync_seconds",
    ] {
        assert!(
            stats_text.contains(want),
            "stats lacks {want}:\n{stats_text}"
        );
    }
    let ingest_text = scrape(m_ing).await;
    for want in [
        r#"method="/polymeter.v1.IngestService/IngestWeaveCalls""#,
        "polymeter_ingest_calls_total 1",
    ] {
        assert!(
            ingest_text.contains(want),
            "ingest lacks {want}:\n{ingest_text}"
        );
    }
    let feedback_text = scrape(m_fb).await;
    assert!(
        feedback_text.contains(r#"method="/polymeter.v1.FeedbackService/AppendFeedback""#),
        "{feedback_text}"
    );
    let gateway_text = reqwest::get(format!("{}/metrics", client.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        gateway_text.contains("polymeter_http_requests_total"),
        "{gateway_text}"
    );
    assert!(
        gateway_text.contains("polymeter_auth_refusals_total"),
        "{gateway_text}"
    );
}
