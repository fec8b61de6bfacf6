//! The integration-test harness: [`TestStack`] boots the real stack (gateway,
//! ingest, stats, feedback, each on its own ephemeral port, talking gRPC) in
//! this process, and [`Client`] speaks HTTP to its gateway.

use polymeter::{start_stack, Stack, StackConfig};
use serde_json::Value;
use std::path::Path;

pub use serde_json::json;

/// HTTP to one gateway.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

/// An HTTP answer: status code and JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body after asserting a 200.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.body
        );
        self.body
    }

    /// Weave's error reason after asserting the status.
    #[track_caller]
    pub fn reason(&self, status: u16) -> &str {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.body
        );
        self.body["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("no reason in {}", self.body))
    }
}

impl Client {
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: String) -> Answer {
        send(self.request(reqwest::Method::POST, path).body(body)).await
    }

    /// A POST that carries a W3C `traceparent` header.
    pub async fn post_traced(&self, path: &str, body: &Value, traceparent: &str) -> Answer {
        let request = self
            .request(reqwest::Method::POST, path)
            .header("traceparent", traceparent)
            .body(body.to_string());
        send(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        send(self.http.get(format!("{}{path}", self.base))).await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("gateway unreachable");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// The whole stack, in this process, on ephemeral loopback ports.
pub struct TestStack {
    pub stack: Stack,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl TestStack {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stack = start_stack(StackConfig::ephemeral(dir.path().to_owned()))
            .await
            .expect("stack failed to start");
        let client = Client::new(format!("http://{}", stack.gateway));
        Self { stack, client, dir }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn stop(self) {
        self.stack.shutdown().await.expect("clean shutdown");
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
