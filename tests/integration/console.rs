//! The web console in a real browser (Debian's chromium, headless): a known
//! dataset goes in through the public APIs, a user signs in and reads the
//! panels, and the numbers on the page must be the dataset's — computed here
//! independently (counts, tokens, exact percentiles), or, for cost, what
//! `/calls/stats` answers any client. A wrong key is refused, the view's
//! state round-trips through the URL, and the page logs no error. Each
//! panel's screenshot is saved under `target/console-screenshots/`.

use crate::support::*;
use chrono::{Duration, Utc};
use polymeter_tests::browser::Chromium;
use polymeter_tests::{fixture, json, TestStack};
use serde_json::Value;
use std::path::PathBuf;

const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "in-house-7b"];
const READY: std::time::Duration = std::time::Duration::from_secs(60);

/// Call `i` of the recent dataset: its model, latency (ms), tokens in and
/// out, and whether it failed.
fn recent(i: i64) -> (&'static str, i64, i64, i64, bool) {
    (
        MODELS[(i % 3) as usize],
        50 + (i * 37) % 400,
        100 + i,
        10 + i % 7,
        i % 10 == 3,
    )
}

/// numpy's default percentile (linear between closest ranks).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Rows of the table under `selector`, as their cells' exact values.
fn rows_js(selector: &str) -> String {
    format!(
        "[...document.querySelectorAll({selector:?} + ' tbody tr')].map(tr => [...tr.children].map(c => c.dataset.value))"
    )
}

fn number(cell: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

/// The whole browser scenario's deadline: every step has its own (a minute
/// at most), and this bounds their sum, so a browser that stalls fails the
/// test instead of holding CI.
const SCENARIO: std::time::Duration = std::time::Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_datasets_numbers_in_a_real_browser() {
    tokio::time::timeout(SCENARIO, scenario())
        .await
        .unwrap_or_else(|_| panic!("the browser scenario did not end within {SCENARIO:?}"));
}

async fn scenario() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let now = Utc::now();
    let calls: Vec<Call> = (0..60)
        .map(|i| {
            let (model, latency, input, output, failed) = recent(i);
            let call = Call::new(&format!("r{i}"), now - Duration::minutes(i * 5 + 1))
                .latency_ms(latency)
                .tokens(model, input, output);
            if failed {
                call.error("RateLimitError")
            } else {
                call
            }
        })
        .collect();
    ingest(c, &calls).await;
    // One call long ago, for a custom range in another zone.
    ingest(
        c,
        &[Call::new("old", t("2024-03-09T10:05:00Z")).tokens("gpt-4o", 7, 3)],
    )
    .await;
    ingest_into(
        c,
        "acme/other",
        &[Call::new("o1", now - Duration::minutes(3))],
    )
    .await;
    let rated = |scorer: &str, weave_ref: &str, extra: Value| {
        let mut v = json!({"project_id": PROJECT, "feedback_type": "wandb.runnable.relevance",
            "weave_ref": weave_ref, "payload": {},
            "runnable_ref": format!("weave:///acme/bot/object/{scorer}:v1")});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    c.post("/feedback/batch/create", &json!({"batch": [
        rated("relevance", "weave:///acme/bot/call/r1", json!({"scorer_ratings": {"_rating_": 0.9}, "scorer_tags": ["hallucination"]})),
        rated("relevance", "weave:///acme/bot/call/r2", json!({"scorer_ratings": {"_rating_": 0.2}})),
        rated("faithfulness", "weave:///acme/bot/call/r3", json!({"scorer_ratings": {"_rating_": 0.5}, "scorer_tags": ["hallucination", "toxic"]})),
    ]}))
    .await
    .ok();

    let chromium = Chromium::launch().await;
    let tab = chromium.tab().await;
    let base = format!("http://{}", c.host());

    // The root leads to the console, which asks for a key.
    tab.goto(&format!("{base}/")).await;
    tab.wait_ready(&["signed-out"], READY).await;
    assert_eq!(tab.eval::<String>("location.pathname").await, "/console/");

    // A wrong key is refused, and not kept.
    tab.type_into("#key", "pm-not-a-key").await;
    tab.click("#sign-in-form button").await;
    tab.wait_ready(&["refused"], READY).await;
    let said: String = tab
        .eval("document.getElementById('sign-in-error').textContent")
        .await;
    assert!(
        said.contains("refused") && said.contains("not known"),
        "{said}"
    );
    assert!(
        tab.eval::<bool>("sessionStorage.getItem('polymeter.key') === null")
            .await
    );

    // The right key, from the keyboard alone (Enter submits): the first
    // project, the last 24 hours, the browser's zone.
    tab.type_into("#key", fixture::ACME_WEAVE_KEY).await;
    tab.press("#key", "Enter").await;
    tab.wait_ready(&["true"], READY).await;
    let query: String = tab.eval("location.search").await;
    assert!(
        query.contains("project=acme%2Fbot") && query.contains("range=24h"),
        "{query}"
    );
    assert!(
        !query.contains(fixture::ACME_WEAVE_KEY),
        "the key never goes in the URL"
    );
    let projects: Vec<String> = tab
        .eval("[...document.querySelectorAll('#project option')].map(o => o.value)")
        .await;
    assert_eq!(projects, ["acme/bot", "acme/other"]);

    // Calls and errors: every bucket's count, summed, is the dataset's.
    let rows: Vec<Vec<String>> = tab.eval(&rows_js("[data-chart='Calls and errors']")).await;
    let calls_seen: f64 = rows.iter().map(|r| number(&r[1])).sum();
    let errors_seen: f64 = rows.iter().map(|r| number(&r[2])).sum();
    assert_eq!((calls_seen, errors_seen), (60.0, 6.0));
    let summary: String = tab
        .eval("document.querySelector('#panel-calls .summary').textContent")
        .await;
    assert_eq!(summary, "60 calls · 6 errors (10.00 %)");

    // Top models: calls, tokens, error rate and p95 as computed here; cost as
    // /calls/stats answers any client.
    let top: Vec<Vec<String>> = tab.eval(&rows_js("#panel-usage .table-wrap")).await;
    let from_api = c
        .post(
            "/calls/stats",
            &json!({"project_id": PROJECT, "start": (now - Duration::days(1)).to_rfc3339(),
                    "end": (now + Duration::minutes(1)).to_rfc3339(), "granularity": 36_500i64 * 86_400,
                    "usage_metrics": [{"metric": "total_cost"}]}),
        )
        .await
        .ok();
    for model in MODELS {
        let mine: Vec<i64> = (0..60).filter(|&i| recent(i).0 == model).collect();
        let latencies: Vec<f64> = mine.iter().map(|&i| recent(i).1 as f64).collect();
        let errors = mine.iter().filter(|&&i| recent(i).4).count() as f64;
        let cost = from_api["usage_buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["model"] == model)
            .map(|b| b["sum_total_cost"].as_f64().unwrap())
            .unwrap();
        let row = top
            .iter()
            .find(|r| r[0] == model)
            .unwrap_or_else(|| panic!("{model} missing from {top:?}"));
        assert_eq!(number(&row[1]), mine.len() as f64, "{model} calls");
        assert_eq!(
            number(&row[2]),
            mine.iter().map(|&i| recent(i).2).sum::<i64>() as f64,
            "{model} input"
        );
        assert_eq!(
            number(&row[3]),
            mine.iter().map(|&i| recent(i).3).sum::<i64>() as f64,
            "{model} output"
        );
        assert!(
            (number(&row[4]) - cost).abs() < 1e-12,
            "{model} cost {row:?} vs {cost}"
        );
        assert!(
            (number(&row[5]) - errors / mine.len() as f64 * 100.0).abs() < 1e-9,
            "{model} error rate"
        );
        assert!(
            (number(&row[6]) - percentile(&latencies, 95.0)).abs() < 1e-6,
            "{model} p95 {row:?}"
        );
    }

    // Latency: each bucket's exact p50, p95 and p99 (buckets of 15 minutes
    // for 24 hours, on the wall clock of a zone with a whole-quarter offset).
    let latency: Vec<Vec<String>> = tab
        .eval(&rows_js("[data-chart='Latency percentiles']"))
        .await;
    let mut seen: Vec<[f64; 3]> = latency
        .iter()
        .filter(|r| !r[1].is_empty())
        .map(|r| [number(&r[1]), number(&r[2]), number(&r[3])])
        .collect();
    let mut buckets: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for (i, call) in calls.iter().enumerate() {
        let started = t(call.body["started_at"].as_str().unwrap()).timestamp();
        buckets
            .entry(started.div_euclid(900))
            .or_default()
            .push(recent(i as i64).1 as f64);
    }
    let mut want: Vec<[f64; 3]> = buckets
        .values()
        .map(|l| {
            [
                percentile(l, 50.0),
                percentile(l, 95.0),
                percentile(l, 99.0),
            ]
        })
        .collect();
    let order = |a: &[f64; 3], b: &[f64; 3]| a.partial_cmp(b).unwrap();
    seen.sort_by(order);
    want.sort_by(order);
    assert_eq!(seen.len(), want.len(), "{seen:?} vs {want:?}");
    for (s, w) in seen.iter().zip(&want) {
        assert!(
            s.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-6),
            "{seen:?} vs {want:?}"
        );
    }
    // Every point of a chart has a hover title with its bucket, value and unit.
    let titles: Vec<String> = tab
        .eval("[...document.querySelectorAll(\"[data-chart='Latency percentiles'] svg circle title\")].map(t => t.textContent)")
        .await;
    assert!(!titles.is_empty());
    assert!(
        titles
            .iter()
            .all(|t| t.contains(" · p") && t.ends_with(" ms")),
        "{titles:?}"
    );
    let axis: Vec<String> = tab
        .eval("[...document.querySelectorAll(\"[data-chart='Latency percentiles'] svg text\")].map(t => t.textContent.trim())")
        .await;
    let zone: String = tab
        .eval("Intl.DateTimeFormat().resolvedOptions().timeZone")
        .await;
    assert!(
        axis.contains(&format!("time ({zone})")) && axis.contains(&"ms".to_owned()),
        "{axis:?}"
    );

    // Feedback: average rating per scorer and tag counts.
    let ratings: Vec<Vec<String>> = tab
        .eval(&rows_js("[data-chart='Average rating by scorer']"))
        .await;
    let mut by_scorer: Vec<(String, f64, f64)> = ratings
        .iter()
        .map(|r| (r[1].clone(), number(&r[2]), number(&r[3])))
        .collect();
    by_scorer.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_scorer.len(), 2, "{ratings:?}");
    assert_eq!(
        (by_scorer[0].0.as_str(), by_scorer[0].2),
        ("faithfulness", 1.0)
    );
    assert!((by_scorer[0].1 - 0.5).abs() < 1e-9);
    assert_eq!(
        (by_scorer[1].0.as_str(), by_scorer[1].2),
        ("relevance", 2.0)
    );
    assert!((by_scorer[1].1 - 0.55).abs() < 1e-9);
    let tags: Vec<Vec<String>> = tab.eval(&rows_js("[data-chart='Tags']")).await;
    assert_eq!(tags, [["hallucination", "2"], ["toxic", "1"]]);

    let shots = screenshots();
    // Panels first: the whole-page shot resizes the view for itself.
    for panel in ["calls", "latency", "usage", "feedback"] {
        tab.screenshot(
            Some(&format!("#panel-{panel}")),
            &shots.join(format!("panel-{panel}.png")),
        )
        .await;
    }
    tab.screenshot(None, &shots.join("console.png")).await;

    // A shared URL: a custom range in another zone, reproduced exactly.
    let shared = "?project=acme%2Fbot&range=custom&from=2024-03-09T15%3A00&to=2024-03-09T17%3A00&tz=Asia%2FKolkata";
    tab.goto(&format!("{base}/console/{shared}")).await;
    tab.wait_ready(&["true"], READY).await;
    assert_eq!(tab.eval::<String>("location.search").await, shared);
    let controls: Vec<String> = tab
        .eval("['project', 'range', 'from', 'to', 'tz', 'op'].map(id => document.getElementById(id).value)")
        .await;
    assert_eq!(
        controls,
        [
            "acme/bot",
            "custom",
            "2024-03-09T15:00",
            "2024-03-09T17:00",
            "Asia/Kolkata",
            ""
        ]
    );
    let rows: Vec<Vec<String>> = tab.eval(&rows_js("[data-chart='Calls and errors']")).await;
    let busy: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] != "0").collect();
    // 10:05 UTC is 15:35 in Kolkata; two hours make one-minute buckets.
    assert_eq!(
        busy,
        [&vec![
            "2024-03-09 15:35".to_owned(),
            "1".into(),
            "0".into(),
            "0".into()
        ]]
    );

    // An op filter that matches nothing: the panels say so.
    tab.type_into("#op", "weave:///acme/bot/op/nothing:v1")
        .await;
    tab.click("#controls button[type=submit]").await;
    tab.wait_ready(&["true"], READY).await;
    let query: String = tab.eval("location.search").await;
    assert!(query.contains("op=weave"), "{query}");
    let empty: String = tab
        .eval("document.querySelector('#panel-calls .empty').textContent")
        .await;
    assert_eq!(empty, "No calls in this range.");
    // Back restores the previous view.
    assert!(tab.eval::<bool>("(history.back(), true)").await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tab.wait_ready(&["true"], READY).await;
    assert_eq!(tab.eval::<String>("location.search").await, shared);
    assert_eq!(
        tab.eval::<String>("document.getElementById('op').value")
            .await,
        ""
    );

    // A link naming a project of another tenant: its answers (asked for
    // beside the project list) are refused and never shown; the key's first
    // project is shown instead, and the refusal is no error on the page.
    ingest_into(
        &c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY)),
        "globex/secret",
        &[Call::new("g1", now - Duration::minutes(2))],
    )
    .await;
    tab.goto(&format!(
        "{base}/console/?project=globex%2Fsecret&range=24h"
    ))
    .await;
    tab.wait_ready(&["true"], READY).await;
    assert_eq!(
        tab.eval::<String>("document.getElementById('project').value")
            .await,
        "acme/bot"
    );
    let rows: Vec<Vec<String>> = tab.eval(&rows_js("[data-chart='Calls and errors']")).await;
    assert_eq!(rows.iter().map(|r| number(&r[1])).sum::<f64>(), 60.0);

    // Readable on a phone: nothing wider than the screen.
    tab.screen(390, 844, true).await;
    tab.goto(&format!("{base}/console/?project=acme%2Fbot&range=24h"))
        .await;
    tab.wait_ready(&["true"], READY).await;
    let wide: f64 = tab.eval("document.documentElement.scrollWidth").await;
    assert!(
        wide <= 391.0,
        "the page is {wide} px wide on a 390 px screen"
    );
    tab.screenshot(None, &shots.join("console-phone.png")).await;

    assert_eq!(
        tab.problems(),
        Vec::<String>::new(),
        "the page logged errors"
    );
    chromium.close().await;
    stack.stop().await;
}
