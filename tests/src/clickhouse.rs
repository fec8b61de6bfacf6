//! A ClickHouse for tests: a fresh database on the server named by
//! `POLYMETER_TEST_CLICKHOUSE_URL` (`http://user:password@host:8123`) when it
//! is set, and otherwise on ClickHouse's engine through the chDB adapter
//! (`tests/clickhouse/chdb_http.py`) started for this test with the test
//! venv's Python ([`crate::tools::python`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct ClickHouse {
    /// The store URL to hand to Polymeter (`clickhouse://…/database`).
    pub url: String,
    adapter: Option<Child>,
    dir: tempfile::TempDir,
}

use crate::tools::python as test_python;
pub use crate::tools::repo;

impl ClickHouse {
    /// A ClickHouse with an empty database of its own.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("polymeter_test_{:016x}", rand::random::<u64>());
        if let Ok(server) = std::env::var("POLYMETER_TEST_CLICKHOUSE_URL") {
            let rest = server.strip_prefix("http://").unwrap_or_else(|| {
                panic!("POLYMETER_TEST_CLICKHOUSE_URL must be http://…, got {server}")
            });
            return Self {
                url: format!("clickhouse://{}/{database}", rest.trim_end_matches('/')),
                adapter: None,
                dir,
            };
        }
        let (child, addr) = spawn_adapter(dir.path(), 0);
        Self {
            url: format!("clickhouse://default@{addr}/{database}"),
            adapter: Some(child),
            dir,
        }
    }

    /// Whether this is the chDB adapter (which tests can stop and start).
    pub fn is_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// Kills the adapter (`kill -9`): ClickHouse is gone until [`Self::restart`].
    pub fn kill(&mut self) {
        let child = self
            .adapter
            .as_mut()
            .expect("only the adapter can be killed");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the adapter: a ClickHouse
    /// that stalls rather than goes away.
    pub fn signal(&self, signal: &str) {
        let child = self
            .adapter
            .as_ref()
            .expect("only the adapter can be signalled");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Starts the adapter again on the same port over the same data.
    pub fn restart(&mut self) {
        let port: u16 = self
            .url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|p| p.parse().ok())
            .expect("the URL names a port");
        let (child, _) = spawn_adapter(self.dir.path(), port);
        self.adapter = Some(child);
    }
}

fn spawn_adapter(dir: &Path, port: u16) -> (Child, String) {
    let python = test_python();
    let mut child = Command::new(&python)
        .arg(repo().join("tests/clickhouse/chdb_http.py"))
        .args(["--port", &port.to_string(), "--path"])
        .arg(dir.join("chdb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} (the test venv): {e}", python.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the chDB adapter did not start (is chdb installed in {}?): {line:?}",
                python.display()
            )
        })
        .to_owned();
    (child, addr)
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(child) = &mut self.adapter {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
