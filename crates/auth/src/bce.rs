//! Baidu Cloud's bce-auth-v1 request signature.
//!
//! ```text
//! Authorization = bce-auth-v1/{ak}/{timestamp}/{expiration}/{signedHeaders}/{signature}
//! SigningKey    = hex HMAC-SHA256(sk, "bce-auth-v1/{ak}/{timestamp}/{expiration}")
//! Canonical     = method \n encoded path \n sorted k=v query \n sorted header lines
//! signature     = hex HMAC-SHA256(SigningKey as ASCII bytes, Canonical)
//! ```
//! Header lines are `encode(lowercase name):encode(trimmed value)` (`/` encoded
//! too) for the signed headers plus every `x-bce-*` header, skipping empty
//! values. The body is not signed.

use crate::canonical::{
    canonical_query, decode, encode, encode_path, hmac_hex, query_pairs, SignedRequest,
};
use crate::{same_hex, AuthError, Index, SigningKey, CLOCK_SKEW_SECONDS};
use chrono::{DateTime, NaiveDateTime, Utc};

pub const PREFIX: &str = "bce-auth-v1";

/// Headers signed when the Authorization names none.
const DEFAULT_SIGNED: &[&str] = &["host", "content-md5", "content-length", "content-type"];

#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a str,
    pub timestamp: &'a str,
    pub expiration_seconds: i64,
    pub signed_headers: Vec<String>,
    pub signature: &'a str,
}

pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let bad = || {
        AuthError::Malformed(
            "Authorization must be bce-auth-v1/{accessKey}/{timestamp}/{expiration}/{signedHeaders}/{signature}".into(),
        )
    };
    let rest = value.trim().strip_prefix("bce-auth-v1/").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    let [access_key, timestamp, expiration, signed, signature] = parts[..] else {
        return Err(bad());
    };
    if access_key.is_empty() || signature.is_empty() {
        return Err(bad());
    }
    let expiration_seconds = expiration
        .parse::<i64>()
        .ok()
        .filter(|e| *e >= 0)
        .ok_or_else(|| {
            AuthError::Malformed(format!(
                "Authorization: expiration {expiration:?} is not a number of seconds"
            ))
        })?;
    Ok(Authorization {
        access_key,
        timestamp,
        expiration_seconds,
        signed_headers: signed
            .split(';')
            .filter(|h| !h.is_empty())
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature,
    })
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|n| n.and_utc())
}

/// The canonical request; `host` replaces the Host header's value when given
/// (to try the host without its port).
pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    host: Option<&str>,
) -> String {
    let query = query_pairs(request.query)
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    let signed = |name: &str| {
        name.starts_with("x-bce-")
            || if signed_headers.is_empty() {
                DEFAULT_SIGNED.contains(&name)
            } else {
                signed_headers.iter().any(|s| s == name)
            }
    };
    let mut lines: Vec<String> = request
        .headers
        .iter()
        .filter(|(name, _)| signed(name.as_str()))
        .filter_map(|(name, value)| {
            let value = match (name.as_str(), host) {
                ("host", Some(h)) => h,
                _ => value.to_str().ok()?.trim(),
            };
            (!value.is_empty()).then(|| format!("{}:{}", encode(name.as_str()), encode(value)))
        })
        .collect();
    lines.sort();
    format!(
        "{}\n{}\n{}\n{}",
        request.method,
        encode_path(&decode(request.path)),
        canonical_query(query),
        lines.join("\n")
    )
}

pub fn signing_key(
    secret: &str,
    access_key: &str,
    timestamp: &str,
    expiration_seconds: i64,
) -> String {
    hmac_hex(
        secret.as_bytes(),
        format!("{PREFIX}/{access_key}/{timestamp}/{expiration_seconds}").as_bytes(),
    )
}

/// Verifies a signed request and returns its key.
pub fn verify(
    index: &Index,
    request: &SignedRequest<'_>,
    now: DateTime<Utc>,
) -> Result<SigningKey, AuthError> {
    let header = request.header("authorization").ok_or_else(|| {
        AuthError::Missing("the request is not signed: Authorization is missing".into())
    })?;
    let auth = parse_authorization(header)?;
    let key = index
        .qianfan(auth.access_key)
        .ok_or(AuthError::UnknownAccessKey)?;
    let signed_at = parse_timestamp(auth.timestamp).ok_or_else(|| {
        AuthError::Malformed(format!(
            "Authorization: timestamp {:?} is not like 2024-01-01T00:00:00Z",
            auth.timestamp
        ))
    })?;
    let signing_key = signing_key(
        &key.secret,
        auth.access_key,
        auth.timestamp,
        auth.expiration_seconds,
    );
    let matches = |host: Option<&str>| {
        let canonical = canonical_request(request, &auth.signed_headers, host);
        same_hex(
            auth.signature,
            &hmac_hex(signing_key.as_bytes(), canonical.as_bytes()),
        )
    };
    // A client may sign the host with or without its port.
    let portless = request
        .header("host")
        .and_then(|h| h.trim().rsplit_once(':'))
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(host, _)| host);
    if !matches(None) && !portless.is_some_and(|h| matches(Some(h))) {
        return Err(AuthError::SignatureMismatch(
            "the request signature does not match the one calculated from the request and the secret key".into(),
        ));
    }
    if key.disabled {
        return Err(AuthError::DisabledKey(auth.access_key.to_owned()));
    }
    // Checked: an expiration of i64::MAX seconds would overflow a date; it
    // simply never expires within any date there is.
    let expires = chrono::Duration::try_seconds(auth.expiration_seconds)
        .and_then(|d| signed_at.checked_add_signed(d));
    if expires.is_some_and(|expires| now > expires) {
        return Err(AuthError::Expired(format!(
            "the signature made at {} expired after {} s",
            auth.timestamp, auth.expiration_seconds
        )));
    }
    if (signed_at - now).num_seconds() > CLOCK_SKEW_SECONDS {
        return Err(AuthError::Expired(format!(
            "the signing time {} is more than 15 minutes ahead of the server time",
            auth.timestamp
        )));
    }
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::test_headers as headers;
    use crate::credentials::{Credentials, KeyMeta, QianfanKey};
    use http::{HeaderMap, HeaderValue};

    /// A request captured from the official Python SDK (`qianfan` 0.4.12.3 on
    /// `bce-python-sdk` 0.9.79), and the canonical request its signer built.
    const SDK_HEADERS: &[(&str, &str)] = &[
        ("user-agent", "python-requests/2.34.2"),
        ("accept-encoding", "gzip, deflate"),
        ("accept", "*/*"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("host", "127.0.0.1:42871"),
        ("request-source", "qianfan_py_sdk_v0.4.12.3"),
        ("x-bce-date", "2026-11-23T09:05:36Z"),
        ("authorization", "bce-auth-v1/qianfanTestAK/2026-11-23T09:05:36Z/300/request-source;x-bce-date;content-type;host/e04e27ccde4278c65f35c3c7d181867a8ea2a1a26cecc76e307b09d099bad371"),
        ("content-length", "108"),
    ];
    const SDK_CANONICAL: &str = "POST\n/v2/service\nAction=DescribeServiceMetric\ncontent-type:application%2Fjson\nhost:127.0.0.1%3A42871\nrequest-source:qianfan_py_sdk_v0.4.12.3\nx-bce-date:2026-11-23T09%3A05%3A36Z";

    fn index(secret: &str, disabled: bool) -> Index {
        let mut c = Credentials::default();
        c.ensure_tenant("acme", &["acme".into()])
            .qianfan_keys
            .push(QianfanKey {
                access_key: "qianfanTestAK".into(),
                secret_key: secret.into(),
                meta: KeyMeta {
                    disabled,
                    ..Default::default()
                },
            });
        Index::build(&c)
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    fn request<'a>(h: &'a HeaderMap, query: &'a str) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path: "/v2/service",
            query,
            headers: h,
            body: b"{}",
        }
    }

    #[test]
    fn the_canonical_request_is_the_one_the_official_sdk_signs() {
        let h = headers(SDK_HEADERS);
        let auth = parse_authorization(h["authorization"].to_str().unwrap()).unwrap();
        let canonical = canonical_request(
            &request(&h, "Action=DescribeServiceMetric"),
            &auth.signed_headers,
            None,
        );
        assert_eq!(canonical, SDK_CANONICAL);
        let key = signing_key(
            "qianfanTestSK",
            "qianfanTestAK",
            auth.timestamp,
            auth.expiration_seconds,
        );
        assert_eq!(
            hmac_hex(key.as_bytes(), canonical.as_bytes()),
            auth.signature
        );
    }

    #[test]
    fn a_fixed_vector_from_the_specification() {
        // Computed independently with Python's hmac and Baidu's reference
        // signer: the signing key is hex, and that hex text is the next HMAC's
        // key; x-bce-* headers are signed although only `host` is named, and
        // the query value's space and slash are percent-encoded.
        let key = signing_key("sk", "ak", "2024-01-10T08:39:09Z", 1800);
        assert_eq!(
            key,
            "98121051393d93aac9b5c3b8e595b7cee990c649838d941f845af247a2dfc421"
        );
        let h = headers(&[
            ("host", "qianfan.baidubce.com"),
            ("x-bce-date", "2024-01-10T08:39:09Z"),
            ("content-type", "application/json"),
            ("x-other", "no"),
        ]);
        let canonical = canonical_request(
            &request(&h, "Action=DescribeServiceMetric&b=a%20b%2Fc"),
            &["host".to_owned()],
            None,
        );
        assert_eq!(
            canonical,
            "POST\n/v2/service\nAction=DescribeServiceMetric&b=a%20b%2Fc\nhost:qianfan.baidubce.com\nx-bce-date:2024-01-10T08%3A39%3A09Z"
        );
        assert_eq!(
            hmac_hex(key.as_bytes(), canonical.as_bytes()),
            "80d536234b34c20bd05a215d41f705dc61480a0edae7749e93ab75a9a8b0c886"
        );
    }

    #[test]
    fn the_sdk_request_verifies_within_its_expiry_and_not_after() {
        let h = headers(SDK_HEADERS);
        let r = request(&h, "Action=DescribeServiceMetric");
        let key = verify(
            &index("qianfanTestSK", false),
            &r,
            at("2026-11-23T09:07:00Z"),
        )
        .unwrap();
        assert_eq!(key.principal.tenant, "acme");
        assert!(matches!(
            verify(
                &index("qianfanTestSK", false),
                &r,
                at("2026-11-23T09:10:37Z")
            ),
            Err(AuthError::Expired(_))
        ));
        assert!(matches!(
            verify(&index("qianfanTestSK", false), &r, at("2026-11-23T08:50:00Z")),
            Err(AuthError::Expired(m)) if m.contains("ahead")
        ));
    }

    #[test]
    fn the_body_is_not_signed_but_the_query_headers_and_key_are() {
        let now = at("2026-11-23T09:07:00Z");
        let h = headers(SDK_HEADERS);
        let good = index("qianfanTestSK", false);
        let mut r = request(&h, "Action=DescribeServiceMetric");
        r.body = b"{\"serviceId\": [\"other\"]}";
        verify(&good, &r, now).unwrap();
        assert!(matches!(
            verify(&good, &request(&h, "Action=Other"), now),
            Err(AuthError::SignatureMismatch(_))
        ));
        let mut extra = h.clone();
        extra.insert("x-bce-request-id", HeaderValue::from_static("injected"));
        assert!(matches!(
            verify(&good, &request(&extra, "Action=DescribeServiceMetric"), now),
            Err(AuthError::SignatureMismatch(_))
        ));
        let q = "Action=DescribeServiceMetric";
        assert!(matches!(
            verify(&index("wrong", false), &request(&h, q), now),
            Err(AuthError::SignatureMismatch(_))
        ));
        assert!(matches!(
            verify(&index("qianfanTestSK", true), &request(&h, q), now),
            Err(AuthError::DisabledKey(_))
        ));
        assert!(matches!(
            verify(&Index::build(&Credentials::default()), &request(&h, q), now),
            Err(AuthError::UnknownAccessKey)
        ));
    }

    #[test]
    fn the_host_may_be_signed_without_its_port() {
        let ts = "2026-11-23T09:05:36Z";
        let portless = headers(&[
            ("host", "127.0.0.1"),
            ("content-type", "application/json"),
            ("x-bce-date", ts),
        ]);
        let signed = vec!["host".to_owned(), "content-type".to_owned()];
        let r = request(&portless, "Action=DescribeServiceMetric");
        let key = signing_key("qianfanTestSK", "qianfanTestAK", ts, 1800);
        let signature = hmac_hex(
            key.as_bytes(),
            canonical_request(&r, &signed, None).as_bytes(),
        );
        let sent = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("x-bce-date", ts),
            (
                "authorization",
                &format!("bce-auth-v1/qianfanTestAK/{ts}/1800/host;content-type/{signature}"),
            ),
        ]);
        verify(
            &index("qianfanTestSK", false),
            &request(&sent, "Action=DescribeServiceMetric"),
            at(ts),
        )
        .unwrap();
    }
}
