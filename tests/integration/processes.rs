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
        polymeter::run_gateway(listener, peers, keyring, shutdown).await
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
