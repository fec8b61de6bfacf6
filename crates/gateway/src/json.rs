//! JSON bodies parsed so that every error names the field at fault
//! (`filter.op_names[2]: invalid type …`), which axum's own extractor does not.

use crate::error::{Error, Reason};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Parses a JSON body. A body that is not JSON at all carries
/// [`Reason::MalformedBody`], one of the wrong shape [`Reason::BodyShape`],
/// since some vendors answer each with a code of its own.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    // The whole body, including fields no one reads: serde skips unknown
    // fields without checking their bytes.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(
            Error::invalid(format!("request body is not valid UTF-8: {e}"))
                .with_reason(Reason::MalformedBody),
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::invalid(format!("request body is not valid JSON: {inner}"))
                .with_reason(Reason::MalformedBody)
        } else if path == "." {
            Error::invalid(format!("request body: {inner}")).with_reason(Reason::BodyShape)
        } else {
            Error::invalid(format!("{path}: {inner}")).with_reason(Reason::BodyShape)
        }
    })?;
    // One JSON document and nothing after it: `{…} xyz` is not a body.
    de.end().map_err(|e| {
        Error::invalid(format!("request body is not valid JSON: {e}"))
            .with_reason(Reason::MalformedBody)
    })?;
    Ok(value)
}

/// An ISO 8601 instant. A value without an offset is taken as UTC, as Python's
/// `datetime.isoformat()` writes naive UTC times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instant(pub DateTime<Utc>);

impl Instant {
    /// The instant `text` names, if it is ISO 8601 and within
    /// [`polymeter_model::time::RANGE`].
    pub fn parse(text: &str) -> Option<Self> {
        let t = match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())?
                .and_utc(),
        };
        polymeter_model::time::in_range(t).then_some(Self(t))
    }

    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Instant::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid date-time {:?}, expected ISO 8601 such as \"2024-05-01T12:00:00Z\" between {}",
                polymeter_error::truncate(&text, 64),
                polymeter_model::time::RANGE
            ))
        })
    }
}
