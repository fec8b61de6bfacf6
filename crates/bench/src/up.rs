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
    let (credentials, keys) = Credentials::development("bench");
    credentials.save(&data.join("credentials.toml"))?;
    let key = keys
        .iter()
        .find_map(|k| match k {
            NewKey::Weave { key, .. } => Some(key.clone()),
            _ => None,
        })
        .expect("a weave key");
    let port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let [gw, ing, st, fb] = [port()?, port()?, port()?, port()?];
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
