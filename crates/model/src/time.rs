//! The one range every instant Polymeter accepts must fall in: from the Unix
//! epoch to the start of 2200. Times outside it are refused where they enter
//! (a 400 naming the field), so no later arithmetic — bucket grids, latency,
//! signature windows — ever meets a date it cannot represent.

use chrono::{DateTime, TimeZone, Utc};

/// 1970-01-01T00:00:00Z, in microseconds since the epoch.
pub const EARLIEST_US: i64 = 0;
/// 2200-01-01T00:00:00Z, in microseconds since the epoch.
pub const LATEST_US: i64 = 7_258_118_400_000_000;

/// The accepted range, for messages.
pub const RANGE: &str = "1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z";

/// Whether `t` is in the accepted range.
pub fn in_range(t: DateTime<Utc>) -> bool {
    (EARLIEST_US..=LATEST_US).contains(&t.timestamp_micros())
}

/// Microseconds since the epoch as an instant, if in range.
pub fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    (EARLIEST_US..=LATEST_US)
        .contains(&us)
        .then(|| Utc.timestamp_micros(us).single())
        .flatten()
}

/// Milliseconds since the epoch, if in range.
pub fn millis_in_range(ms: i64) -> bool {
    ms.checked_mul(1000)
        .is_some_and(|us| (EARLIEST_US..=LATEST_US).contains(&us))
}

/// `field`'s value in microseconds as an instant, or a message naming it.
pub fn check_micros(field: &str, us: i64) -> Result<DateTime<Utc>, String> {
    from_micros(us).ok_or_else(|| format!("{field} is outside {RANGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_the_epoch_to_2200() {
        assert_eq!(
            Utc.timestamp_micros(LATEST_US).unwrap().to_rfc3339(),
            "2200-01-01T00:00:00+00:00"
        );
        assert!(from_micros(-1).is_none());
        assert!(from_micros(LATEST_US + 1).is_none());
        assert!(from_micros(i64::MAX).is_none());
        assert!(millis_in_range(1_714_521_600_000));
        assert!(!millis_in_range(i64::MAX));
        assert_eq!(
            check_micros("start", i64::MIN).unwrap_err(),
            format!("start is outside {RANGE}")
        );
    }
}
