//! Signing requests as the vendor SDKs do, for tests that need to tamper with
//! a request after signing it. (The SDKs themselves are exercised by the
//! vendor-SDK tests; these helpers use the algorithms' public building blocks.)

use crate::fixture::AccessKey;
use chrono::{DateTime, Utc};
use polymeter_auth::{acs3, bce, SignedRequest};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub const ALIBABA_PATH: &str = "/api/v1/modelRouter/open/observation/metrics";
pub const QIANFAN_PATH: &str = "/v2/service";

pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    headers.insert(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
}

/// The headers of an ACS3-HMAC-SHA256 signed `GET` of the Alibaba metrics
/// route: host, every `x-acs-*` header, and `Authorization`.
pub fn acs3_headers(
    host: &str,
    key: &AccessKey,
    query: &str,
    body: &[u8],
    date: DateTime<Utc>,
    nonce: &str,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    insert(&mut h, "host", host);
    insert(&mut h, "x-acs-action", "ModelRouterQueryObservationMetrics");
    insert(&mut h, "x-acs-version", "20240611");
    insert(
        &mut h,
        "x-acs-date",
        &date.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    insert(&mut h, "x-acs-signature-nonce", nonce);
    insert(&mut h, "x-acs-content-sha256", &sha256_hex(body));
    insert(&mut h, "accept", "application/json");
    let mut signed: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
    signed.sort();
    let request = SignedRequest {
        method: "GET",
        path: ALIBABA_PATH,
        query,
        headers: &h,
        body,
    };
    let signature = acs3::sign(
        key.secret,
        &acs3::canonical_request(&request, &signed, &sha256_hex(body)),
    );
    insert(
        &mut h,
        "authorization",
        &format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={signature}",
            key.id,
            signed.join(";")
        ),
    );
    h
}

/// The headers of a bce-auth-v1 signed request (host, content-type and
/// x-bce-date signed), as the Qianfan SDK sends them.
pub fn bce_headers(
    host: &str,
    key: &AccessKey,
    method: &str,
    path: &str,
    query: &str,
    at: DateTime<Utc>,
    expiration: i64,
) -> HeaderMap {
    let timestamp = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut h = HeaderMap::new();
    insert(&mut h, "host", host);
    insert(&mut h, "content-type", "application/json");
    insert(&mut h, "x-bce-date", &timestamp);
    let signed = vec![
        "host".to_owned(),
        "content-type".to_owned(),
        "x-bce-date".to_owned(),
    ];
    let request = SignedRequest {
        method,
        path,
        query,
        headers: &h,
        body: b"",
    };
    let signing_key = bce::signing_key(key.secret, key.id, &timestamp, expiration);
    let canonical = bce::canonical_request(&request, &signed, None);
    let signature = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(signing_key.as_bytes()).unwrap();
        mac.update(canonical.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    insert(
        &mut h,
        "authorization",
        &format!(
            "bce-auth-v1/{}/{timestamp}/{expiration}/{}/{signature}",
            key.id,
            signed.join(";")
        ),
    );
    h
}
