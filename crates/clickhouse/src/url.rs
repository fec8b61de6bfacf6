//! The store URL: `clickhouse://user:password@host:8123/database`.
//!
//! `clickhouses://` means HTTPS. A `?cluster=NAME` parameter makes the
//! migrations create replicated tables `ON CLUSTER NAME` behind `Distributed`
//! tables. User and password may instead come from `CLICKHOUSE_USER` and
//! `CLICKHOUSE_PASSWORD`, so they need not appear in a command line.
//! `query_timeout` and `write_timeout` (`30s`, `500ms`, `2m`) bound how long
//! the store waits for ClickHouse (defaults: 30 s and 10 s).

use std::time::Duration;

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub cluster: Option<String>,
    pub query_timeout: Duration,
    pub write_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("store URL {shown}: {message}")]
pub struct UrlError {
    shown: String,
    message: String,
}

/// Logs and errors show the URL without its password.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https {
            "clickhouses"
        } else {
            "clickhouse"
        };
        write!(
            f,
            "{scheme}://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )?;
        if let Some(c) = &self.cluster {
            write!(f, "?cluster={c}")?;
        }
        Ok(())
    }
}

fn decode(part: &str) -> String {
    ::url::form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl StoreUrl {
    /// Parses `text`; `env` supplies `CLICKHOUSE_USER`/`CLICKHOUSE_PASSWORD`
    /// for a URL without credentials.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, UrlError> {
        let fail = |message: &str| UrlError {
            // Never echo a password back.
            shown: match ::url::Url::parse(text) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    format!("{u:?}").trim_matches('"').to_owned()
                }
                Err(_) => "(unparsable)".into(),
            },
            message: message.into(),
        };
        let url = ::url::Url::parse(text).map_err(|e| fail(&e.to_string()))?;
        let https = match url.scheme() {
            "clickhouse" => false,
            "clickhouses" => true,
            other => {
                return Err(fail(&format!(
                    "scheme {other:?} is not clickhouse:// (or clickhouses:// for HTTPS)"
                )))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("names no host"))?
            .to_owned();
        let database = url.path().trim_matches('/').to_owned();
        let database = if database.is_empty() {
            "polymeter".to_owned()
        } else if database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            database
        } else {
            return Err(fail(
                "the database name may hold only letters, digits and _",
            ));
        };
        let mut cluster = None;
        let mut query_timeout = crate::QUERY_TIMEOUT;
        let mut write_timeout = crate::WRITE_TIMEOUT;
        for (k, v) in url.query_pairs() {
            let limit = || {
                polymeter_model::duration::parse(&v).ok_or_else(|| {
                    fail(&format!(
                        "{k}: {v:?} is not a duration such as 500ms, 30s or 2m"
                    ))
                })
            };
            match &*k {
                "cluster" if !v.is_empty() => cluster = Some(v.into_owned()),
                "query_timeout" => query_timeout = limit()?,
                "write_timeout" => write_timeout = limit()?,
                other => return Err(fail(&format!("unknown parameter {other:?}"))),
            }
        }
        let user = match url.username() {
            "" => env("CLICKHOUSE_USER").unwrap_or_else(|| "default".into()),
            u => decode(u),
        };
        let password = match url.password() {
            Some(p) => decode(p),
            None => env("CLICKHOUSE_PASSWORD").unwrap_or_default(),
        };
        Ok(StoreUrl {
            https,
            port: url.port().unwrap_or(if https { 8443 } else { 8123 }),
            host,
            user,
            password,
            database,
            cluster,
            query_timeout,
            write_timeout,
        })
    }

    /// The server's HTTP address (no credentials: they travel in headers).
    pub fn http_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_every_part() {
        let u = StoreUrl::parse("clickhouse://ann:s%40cret@ch.local:9000/metrics", no_env).unwrap();
        assert_eq!(u.http_url(), "http://ch.local:9000");
        assert_eq!((u.user.as_str(), u.password.as_str()), ("ann", "s@cret"));
        assert_eq!(u.database, "metrics");
        assert_eq!(u.cluster, None);
        let u = StoreUrl::parse("clickhouses://h?cluster=main", no_env).unwrap();
        assert_eq!(u.http_url(), "https://h:8443");
        assert_eq!(u.database, "polymeter");
        assert_eq!(u.cluster.as_deref(), Some("main"));
    }

    #[test]
    fn timeouts_are_durations() {
        let u = StoreUrl::parse(
            "clickhouse://h/db?query_timeout=500ms&write_timeout=2m",
            no_env,
        )
        .unwrap();
        assert_eq!(u.query_timeout, Duration::from_millis(500));
        assert_eq!(u.write_timeout, Duration::from_secs(120));
        let u = StoreUrl::parse("clickhouse://h/db", no_env).unwrap();
        assert_eq!(
            (u.query_timeout, u.write_timeout),
            (crate::QUERY_TIMEOUT, crate::WRITE_TIMEOUT)
        );
        let e = StoreUrl::parse("clickhouse://h/db?query_timeout=soon", no_env).unwrap_err();
        assert!(e.to_string().contains("query_timeout"), "{e}");
    }

    #[test]
    fn credentials_may_come_from_the_environment() {
        let env = |k: &str| Some(format!("{k}-value"));
        let u = StoreUrl::parse("clickhouse://h:8123/db", env).unwrap();
        assert_eq!(u.user, "CLICKHOUSE_USER-value");
        assert_eq!(u.password, "CLICKHOUSE_PASSWORD-value");
    }

    #[test]
    fn errors_and_logs_never_show_the_password() {
        let u = StoreUrl::parse("clickhouse://ann:hunter2@h/db", no_env).unwrap();
        assert!(!format!("{u} {u:?}").contains("hunter2"));
        let e = StoreUrl::parse("clickhouse://ann:hunter2@h/db?x=1", no_env).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("unknown parameter"), "{e}");
        let e = StoreUrl::parse("http://h/db", no_env).unwrap_err();
        assert!(e.to_string().contains("clickhouse://"), "{e}");
    }
}
