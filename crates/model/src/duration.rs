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
}
