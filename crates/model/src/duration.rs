//! Durations as operators write them in flags and URLs: `500ms`, `30s`,
//! `2m`, or a bare number of seconds.

use std::time::Duration;

/// Parses `500ms`, `30s`, `2m` or `30`; zero and anything else is `None`.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// For clap: the same, with an error that shows the accepted forms.
pub fn parse_flag(text: &str) -> Result<Duration, String> {
    parse(text).ok_or_else(|| format!("{text:?} is not a duration such as 500ms, 30s or 2m"))
}

/// A retention period as people write it: `30d`, `12h`, `90m`, `3600s`
/// (or a bare number of seconds); zero and anything else is `None`.
pub fn parse_period(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// A period in the largest unit that writes it whole (`30d`, `36h`, `90m`, `7s`).
pub fn format_period(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_operators_write() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        for bad in ["", "0s", "soon", "1h", "-1s", "1.5s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn periods_in_days_hours_minutes_and_seconds() {
        assert_eq!(parse_period("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_period("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_period("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_period("3600"), Some(Duration::from_secs(3600)));
        for bad in ["", "0d", "1w", "-1d", "1.5d", "99999999999999999999d"] {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
        for text in ["30d", "36h", "90m", "7s"] {
            assert_eq!(format_period(parse_period(text).unwrap()), text);
        }
    }
}
