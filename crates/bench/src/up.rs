//! `polymeter up` as a child process on free loopback ports, with a fresh
//! development tenant, for the benchmarks that go through the gateway.

use anyhow::{bail, Context, Result};
use polymeter_auth::{Credentials, NewKey};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `polymeter up` with its data in `data`; returns the child, the
/// gateway's base URL and a Weave key of the tenant, once `/readyz` says so.
pub async fn start(polymeter: &Path, data: &Path) -> Result<(Child, String, String)> {
    std::fs::create_dir_all(data)?;
    let key = development_key(&data.join("credentials.toml"))?;
    let [gw, ing, st, fb] = [free_port()?, free_port()?, free_port()?, free_port()?];
    let child = Command::new(polymeter)
        .arg("up")
        .arg("--data-dir")
        .arg(data)
        .args(["--gateway-listen", &format!("127.0.0.1:{gw}")])
        .args(["--ingest-listen", &format!("127.0.0.1:{ing}")])
        .args(["--stats-listen", &format!("127.0.0.1:{st}")])
        .args(["--feedback-listen", &format!("127.0.0.1:{fb}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start polymeter up")?;
    let base = format!("http://127.0.0.1:{gw}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!("polymeter up did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, base, key))
}

/// Writes a fresh development tenant's credentials to `file`; returns its
/// Weave key.
pub fn development_key(file: &Path) -> Result<String> {
    let (credentials, keys) = Credentials::development("bench");
    credentials.save(file)?;
    Ok(keys
        .iter()
        .find_map(|k| match k {
            NewKey::Weave { key, .. } => Some(key.clone()),
            _ => None,
        })
        .expect("a weave key"))
}

/// A loopback port free right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Posts every body to `{base}{path}` from `clients` concurrent clients
/// with the Weave key `key` (and `headers`); fails on the first answer that
/// is not 200. Returns the seconds taken.
pub async fn post_all(
    base: &str,
    key: &str,
    path: &str,
    headers: &[(&'static str, &'static str)],
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> Result<f64> {
    let http = reqwest::Client::new();
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("{base}{path}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, bodies, next) = (
            http.clone(),
            url.clone(),
            key.to_owned(),
            bodies.clone(),
            next.clone(),
        );
        let headers = headers.to_vec();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                let mut request = http.post(&url).basic_auth("api", Some(&key));
                for (name, value) in &headers {
                    request = request.header(*name, *value);
                }
                let r = request.body(body.clone()).send().await?;
                if r.status() != 200 {
                    bail!(
                        "{url} answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Calls `project` holds, as `GET /v1/projects` counts them.
pub async fn calls_stored(base: &str, key: &str, project: &str) -> Result<u64> {
    // The projects list counts a project's calls over all time.
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/projects"))
        .basic_auth("api", Some(key))
        .send()
        .await?
        .json()
        .await?;
    Ok(listed["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["project_id"] == project)
        .and_then(|p| p["calls"].as_u64())
        .unwrap_or(0))
}
