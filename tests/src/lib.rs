//! The integration-test harness: [`TestStack`] boots the real stack (gateway,
//! ingest, stats, feedback, each on its own ephemeral port, talking gRPC) in
//! this process with the [`fixture`] credentials, and [`Client`] speaks HTTP
//! to its gateway — Weave with an API key, Alibaba and Qianfan signed as their
//! SDKs sign.

pub mod browser;
pub mod clickhouse;
pub mod fixture;
pub mod signing;
pub mod tools;

use polymeter::{start_stack, Stack, StackConfig};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::path::Path;

pub use serde_json::json;

/// HTTP to one gateway. Weave requests carry `weave_key` as Basic auth.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
    weave_key: Option<String>,
}

/// An HTTP answer: status code, headers and JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
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
    /// A client of `base` acting as the `acme` tenant's Weave key.
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
            weave_key: Some(fixture::ACME_WEAVE_KEY.to_owned()),
        }
    }

    /// The same gateway with another Weave key (`None`: no Authorization).
    pub fn with_weave_key(&self, key: Option<&str>) -> Self {
        Self {
            weave_key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    /// `host:port` of the gateway, as signatures cover it.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends a request with exactly these headers (signed by the caller).
    pub async fn send_with(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Answer {
        let request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .headers(headers)
            .body(body);
        send(request).await
    }

    /// `GET` the Alibaba metrics route with `query`, signed with ACS3-HMAC-SHA256.
    pub async fn alibaba(&self, key: &fixture::AccessKey, query: &str) -> Answer {
        let headers = signing::acs3_headers(
            self.host(),
            key,
            query,
            b"",
            chrono::Utc::now(),
            &signing::nonce(),
        );
        self.send_with(
            reqwest::Method::GET,
            &format!("{}?{query}", signing::ALIBABA_PATH),
            headers,
            vec![],
        )
        .await
    }

    /// `POST /v2/service?Action=DescribeServiceMetric` with `body`, signed with bce-auth-v1.
    pub async fn qianfan(&self, key: &fixture::AccessKey, body: &Value) -> Answer {
        self.qianfan_raw(key, body.to_string().into_bytes(), 1800)
            .await
    }

    /// The same with any body bytes and a signature valid for `expiration` seconds.
    pub async fn qianfan_raw(
        &self,
        key: &fixture::AccessKey,
        body: Vec<u8>,
        expiration: i64,
    ) -> Answer {
        let query = "Action=DescribeServiceMetric";
        let headers = signing::bce_headers(
            self.host(),
            key,
            "POST",
            signing::QIANFAN_PATH,
            query,
            chrono::Utc::now(),
            expiration,
        );
        self.send_with(
            reqwest::Method::POST,
            &format!("{}?{query}", signing::QIANFAN_PATH),
            headers,
            body,
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, body.to_string()).await
    }

    /// `method` with a JSON body, as the Weave key.
    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Answer {
        send(self.request(method, path).body(body.to_string())).await
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

    /// `GET`, as the Weave key (when the client has one).
    pub async fn get(&self, path: &str) -> Answer {
        send(self.request(reqwest::Method::GET, path)).await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json");
        match &self.weave_key {
            Some(key) => request.basic_auth("api", Some(key)),
            None => request,
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("gateway unreachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Which store a test stack keeps its records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Embedded,
    /// ClickHouse: a real server, or ClickHouse's engine through the chDB
    /// adapter (see [`clickhouse`]).
    ClickHouse,
}

/// The whole stack, in this process, on ephemeral loopback ports.
pub struct TestStack {
    pub stack: Stack,
    pub client: Client,
    pub dir: tempfile::TempDir,
    /// The ClickHouse the stack stores in, when it does.
    pub clickhouse: Option<clickhouse::ClickHouse>,
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(&fixture::credentials()).await
    }

    /// The stack with `credentials` instead of the fixture's.
    pub async fn start_with(credentials: &polymeter_auth::Credentials) -> Self {
        Self::start_on(credentials, Store::Embedded).await
    }

    /// The stack with the fixture's credentials on `store`.
    pub async fn start_with_store(store: Store) -> Self {
        Self::start_on(&fixture::credentials(), store).await
    }

    /// The stack with the fixture's credentials on a ClickHouse already started.
    pub async fn start_with_clickhouse(ch: clickhouse::ClickHouse) -> Self {
        Self::start_in(&fixture::credentials(), Some(ch)).await
    }

    async fn start_on(credentials: &polymeter_auth::Credentials, store: Store) -> Self {
        let clickhouse = match store {
            Store::Embedded => None,
            Store::ClickHouse => Some(clickhouse::ClickHouse::start()),
        };
        Self::start_in(credentials, clickhouse).await
    }

    async fn start_in(
        credentials: &polymeter_auth::Credentials,
        clickhouse: Option<clickhouse::ClickHouse>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StackConfig::ephemeral(dir.path().to_owned());
        credentials.save(&config.credentials).unwrap();
        if let Some(ch) = &clickhouse {
            config.store = polymeter::StoreChoice::parse(&ch.url).unwrap();
        }
        let stack = start_stack(config).await.expect("stack failed to start");
        let client = Client::new(format!("http://{}", stack.gateway));
        Self {
            stack,
            client,
            dir,
            clickhouse,
        }
    }

    /// Stops the stack and starts it again on the same data directory (and
    /// ClickHouse), on fresh ports.
    pub async fn restart(self) -> Self {
        let TestStack {
            stack,
            dir,
            clickhouse,
            ..
        } = self;
        stack.shutdown().await.expect("clean shutdown");
        let mut config = StackConfig::ephemeral(dir.path().to_owned());
        if let Some(ch) = &clickhouse {
            config.store = polymeter::StoreChoice::parse(&ch.url).unwrap();
        }
        let stack = start_stack(config).await.expect("stack failed to restart");
        let client = Client::new(format!("http://{}", stack.gateway));
        Self {
            stack,
            client,
            dir,
            clickhouse,
        }
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
