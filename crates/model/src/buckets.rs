//! Time buckets aligned in a zone.
//!
//! A grid is the list of bucket start instants covering `[start, end)`: it
//! begins with the bucket that contains `start` and ends with the last bucket
//! that starts before `end`. Where buckets start depends on the width:
//!
//! * **whole days** (`n × 86400`): local midnight of every date whose day number
//!   since 1970-01-01 is a multiple of `n`, so a "day" is 23 or 25 hours across
//!   a DST change;
//! * **a divisor of a day**: every instant whose local wall-clock time is a
//!   multiple of the width past local midnight. A wall-clock time skipped by a
//!   DST jump starts no bucket; one repeated by a DST fall-back starts one
//!   bucket, at its first occurrence. So a 6 h bucket spanning a change is 5 or
//!   7 hours long, and no bucket is empty by construction or listed twice;
//! * **anything else**: multiples of the width since the Unix epoch (UTC).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The most buckets one query may produce before the width is widened.
pub const MAX_BUCKETS: u64 = 10_000;

/// The widest bucket a query may ask for; wider ones would overflow
/// microsecond arithmetic and say nothing a single bucket does not.
pub const MAX_WIDTH_SECONDS: u64 = 10_000_000_000;

/// An IANA zone by name; the error says what was wrong, without a field name.
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("unknown IANA time zone {name:?} (e.g. \"UTC\", \"America/New_York\")")
    })
}

/// A bucket width in seconds, checked against [`MAX_WIDTH_SECONDS`].
pub fn check_width(seconds: u64) -> Result<u64, String> {
    if seconds > MAX_WIDTH_SECONDS {
        Err(format!(
            "at most {MAX_WIDTH_SECONDS} seconds (about 300 years), got {seconds}"
        ))
    } else {
        Ok(seconds)
    }
}
const DAY: u64 = 86_400;
const MICROS: i64 = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BucketWidthError {
    #[error("granularity must be a positive number of seconds, got {0}")]
    NotPositive(i64),
}

/// The width chosen when a client names none, from the length of the range.
pub fn auto_width(range: Duration) -> u64 {
    let secs = range.num_seconds();
    match secs {
        s if s <= 2 * 3600 => 300,
        s if s <= 12 * 3600 => 3600,
        s if s <= 3 * 86_400 => 21_600,
        s if s <= 14 * 86_400 => 43_200,
        _ => 86_400,
    }
}

/// Widens `width` when the range would need more than [`MAX_BUCKETS`] buckets:
/// `max(width, floor(range / 10000) + 1)`.
pub fn capped_width(width: u64, range: Duration) -> u64 {
    let range_us = range.num_microseconds().unwrap_or(i64::MAX).max(0) as u128;
    let limit_us = (MAX_BUCKETS as u128) * (width as u128) * (MICROS as u128);
    if range_us > limit_us {
        let widened = (range_us / (MAX_BUCKETS as u128 * MICROS as u128)) as u64 + 1;
        width.max(widened)
    } else {
        width
    }
}

/// The bucket starts covering one query's range.
#[derive(Debug, Clone)]
pub struct BucketGrid {
    width_seconds: u64,
    tz: Tz,
    /// Start instants in microseconds, strictly increasing.
    starts: Vec<i64>,
}

impl BucketGrid {
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        width_seconds: u64,
        tz: Tz,
    ) -> Result<Self, BucketWidthError> {
        if width_seconds == 0 {
            return Err(BucketWidthError::NotPositive(0));
        }
        let starts = if start >= end {
            Vec::new()
        } else if width_seconds.is_multiple_of(DAY) {
            day_starts(start, end, (width_seconds / DAY) as i64, tz)
        } else if DAY.is_multiple_of(width_seconds) {
            wall_clock_starts(start, end, width_seconds as i64, tz)
        } else {
            epoch_starts(start, end, width_seconds as i64)
        };
        Ok(Self {
            width_seconds,
            tz,
            starts,
        })
    }

    pub fn width_seconds(&self) -> u64 {
        self.width_seconds
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Bucket start instants, microseconds since the epoch.
    pub fn starts_us(&self) -> &[i64] {
        &self.starts
    }

    /// The bucket holding the instant `t_us`, if the grid reaches it.
    pub fn index_of(&self, t_us: i64) -> Option<usize> {
        self.starts.partition_point(|&s| s <= t_us).checked_sub(1)
    }

    /// The zone's UTC offset at the start of bucket `i`, in seconds.
    pub fn utc_offset_seconds(&self, i: usize) -> i32 {
        let t = Utc.timestamp_micros(self.starts[i]).unwrap();
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }
}

/// The instant a local wall-clock time names: the earlier one when it occurs
/// twice, none when a DST jump skips it.
fn resolve(tz: Tz, local: NaiveDateTime) -> Option<i64> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.timestamp_micros()),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).timestamp_micros()),
        LocalResult::None => None,
    }
}

/// The first instant of a local date: midnight, or the first wall-clock
/// minute after it when a DST jump skips midnight itself.
fn start_of_day(tz: Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap();
    (0..=24 * 60)
        .find_map(|m| resolve(tz, midnight + Duration::minutes(m)))
        .expect("every zone has a valid time within a day of midnight")
}

fn day_number(date: NaiveDate) -> i64 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
}

fn day_starts(start: DateTime<Utc>, end: DateTime<Utc>, days: i64, tz: Tz) -> Vec<i64> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let first = day_number(start.with_timezone(&tz).date_naive());
    let mut day = first - first.rem_euclid(days);
    let end_us = end.timestamp_micros();
    let mut starts = Vec::new();
    loop {
        let t = start_of_day(tz, epoch + Duration::days(day));
        if t >= end_us {
            break;
        }
        starts.push(t);
        day += days;
    }
    starts
}

fn wall_clock_starts(start: DateTime<Utc>, end: DateTime<Utc>, width: i64, tz: Tz) -> Vec<i64> {
    let (start_us, end_us) = (start.timestamp_micros(), end.timestamp_micros());
    let local = start.with_timezone(&tz).naive_local();
    let midnight = local.date().and_hms_opt(0, 0, 0).unwrap();
    let since_midnight = (local - midnight).num_seconds();
    let mut cursor = midnight + Duration::seconds(since_midnight - since_midnight % width);
    // The floored wall-clock time may have been skipped by DST: the bucket that
    // holds `start` is then the one starting at the last earlier valid multiple.
    loop {
        match resolve(tz, cursor) {
            Some(t) if t <= start_us => break,
            _ => cursor -= Duration::seconds(width),
        }
    }
    let mut starts: Vec<i64> = Vec::new();
    loop {
        if let Some(t) = resolve(tz, cursor) {
            if t >= end_us {
                break;
            }
            if starts.last().is_none_or(|&last| t > last) {
                starts.push(t);
            }
        }
        cursor += Duration::seconds(width);
    }
    starts
}

fn epoch_starts(start: DateTime<Utc>, end: DateTime<Utc>, width: i64) -> Vec<i64> {
    let step = width * MICROS;
    let first = start.timestamp_micros().div_euclid(step) * step;
    (0..)
        .map(|k| first + k * step)
        .take_while(|&t| t < end.timestamp_micros())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local_starts(grid: &BucketGrid) -> Vec<String> {
        grid.starts_us()
            .iter()
            .map(|&t| {
                Utc.timestamp_micros(t)
                    .unwrap()
                    .with_timezone(&grid.tz)
                    .format("%m-%d %H:%M%:z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn auto_width_follows_the_range() {
        assert_eq!(auto_width(Duration::hours(2)), 300);
        assert_eq!(auto_width(Duration::hours(2) + Duration::seconds(1)), 3600);
        assert_eq!(auto_width(Duration::hours(12)), 3600);
        assert_eq!(auto_width(Duration::days(3)), 21_600);
        assert_eq!(auto_width(Duration::days(14)), 43_200);
        assert_eq!(auto_width(Duration::days(15)), 86_400);
    }

    #[test]
    fn cap_widens_only_past_ten_thousand_buckets() {
        assert_eq!(capped_width(1, Duration::seconds(10_000)), 1);
        assert_eq!(capped_width(1, Duration::seconds(10_001)), 2);
        assert_eq!(capped_width(60, Duration::days(30)), 260);
        assert_eq!(capped_width(3600, Duration::days(30)), 3600);
    }

    #[test]
    fn six_hour_buckets_stretch_and_shrink_across_dst_in_new_york() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let spring = BucketGrid::new(
            utc("2024-03-10T05:00:00Z"),
            utc("2024-03-11T04:00:00Z"),
            21_600,
            tz,
        )
        .unwrap();
        assert_eq!(
            local_starts(&spring),
            [
                "03-10 00:00-05:00",
                "03-10 06:00-04:00",
                "03-10 12:00-04:00",
                "03-10 18:00-04:00"
            ]
        );
        // The first bucket is five hours long.
        assert_eq!(
            spring.starts_us()[1] - spring.starts_us()[0],
            5 * 3600 * MICROS
        );
        let fall = BucketGrid::new(
            utc("2024-11-03T04:00:00Z"),
            utc("2024-11-04T05:00:00Z"),
            21_600,
            tz,
        )
        .unwrap();
        assert_eq!(fall.starts_us()[1] - fall.starts_us()[0], 7 * 3600 * MICROS);
    }

    #[test]
    fn hourly_buckets_skip_the_missing_hour_and_list_the_repeated_one_once() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let spring = BucketGrid::new(
            utc("2024-03-10T05:00:00Z"),
            utc("2024-03-10T09:00:00Z"),
            3600,
            tz,
        )
        .unwrap();
        assert_eq!(
            local_starts(&spring),
            [
                "03-10 00:00-05:00",
                "03-10 01:00-05:00",
                "03-10 03:00-04:00",
                "03-10 04:00-04:00"
            ]
        );
        let fall = BucketGrid::new(
            utc("2024-11-03T04:00:00Z"),
            utc("2024-11-03T09:00:00Z"),
            3600,
            tz,
        )
        .unwrap();
        assert_eq!(
            local_starts(&fall),
            [
                "11-03 00:00-04:00",
                "11-03 01:00-04:00",
                "11-03 02:00-05:00",
                "11-03 03:00-05:00"
            ]
        );
    }

    #[test]
    fn days_are_local_midnights_and_23_or_25_hours_long() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let grid = BucketGrid::new(
            utc("2024-03-09T12:00:00Z"),
            utc("2024-03-12T00:00:00Z"),
            86_400,
            tz,
        )
        .unwrap();
        assert_eq!(
            local_starts(&grid),
            [
                "03-09 00:00-05:00",
                "03-10 00:00-05:00",
                "03-11 00:00-04:00"
            ]
        );
        assert_eq!(
            grid.starts_us()[2] - grid.starts_us()[1],
            23 * 3600 * MICROS
        );
    }

    #[test]
    fn multi_day_buckets_start_on_day_numbers_divisible_by_n() {
        // 1970-01-01 is day 0; 2024-01-01 is day 19723 (odd), so two-day
        // buckets start on 2023-12-31 (19722).
        let grid = BucketGrid::new(
            utc("2024-01-01T10:00:00Z"),
            utc("2024-01-04T00:00:00Z"),
            2 * 86_400,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(
            local_starts(&grid),
            ["12-31 00:00+00:00", "01-02 00:00+00:00"]
        );
    }

    #[test]
    fn half_hour_zone_aligns_hours_at_half_past_utc() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let grid = BucketGrid::new(
            utc("2024-05-01T00:00:00Z"),
            utc("2024-05-01T02:00:00Z"),
            3600,
            tz,
        )
        .unwrap();
        let utc_starts: Vec<_> = grid
            .starts_us()
            .iter()
            .map(|&t| Utc.timestamp_micros(t).unwrap().format("%H:%M").to_string())
            .collect();
        assert_eq!(utc_starts, ["23:30", "00:30", "01:30"]);
        assert_eq!(grid.utc_offset_seconds(0), 19_800);
    }

    #[test]
    fn other_widths_use_epoch_multiples() {
        let grid = BucketGrid::new(
            utc("1970-01-01T00:20:00Z"),
            utc("1970-01-01T00:40:00Z"),
            7 * 60,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(
            grid.starts_us(),
            [
                14 * 60 * MICROS,
                21 * 60 * MICROS,
                28 * 60 * MICROS,
                35 * 60 * MICROS
            ]
        );
        assert_eq!(grid.index_of(20 * 60 * MICROS), Some(0));
        assert_eq!(grid.index_of(13 * 60 * MICROS), None);
    }
}
