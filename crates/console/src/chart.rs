//! A time-series chart drawn as SVG with `plotters`, from numbers the
//! console already fetched from the public query APIs: the chart reads no
//! data of its own, so it cannot disagree with what a client is answered.
//!
//! Every point carries a `<title>` (its bucket in the chosen zone, the
//! series, the value and its unit) that a browser shows on hover; the axes
//! say the unit and the zone. A chart with nothing to draw says so.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use utoipa::ToSchema;

/// The most buckets and series a chart takes: what the query APIs answer
/// for a console view, with room to spare, and a bound on the work.
pub const MAX_BUCKETS: usize = 10_000;
pub const MAX_SERIES: usize = 64;
/// Buckets × series.
pub const MAX_POINTS: usize = 100_000;
/// The largest magnitude drawn (stacked sums included): far beyond any
/// count, token total or cost, and far from where axis arithmetic fails.
pub const MAX_VALUE: f64 = 1e18;
const MAX_SIDE: u32 = 4000;
const MIN_SIDE: u32 = 120;

/// How the series are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// One line per series; a missing value breaks the line.
    Line,
    /// Series stacked as areas (missing values count as zero).
    Stacked,
}

/// One named series, a value (or null) per bucket.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Series {
    #[schema(max_length = 200)]
    pub name: String,
    /// One per bucket, in bucket order.
    pub values: Vec<Option<f64>>,
}

/// What to draw.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    pub kind: ChartKind,
    /// For the SVG's own title (screen readers).
    #[schema(max_length = 200)]
    pub title: String,
    /// The values' unit, shown on the y axis and in every hover title.
    #[schema(max_length = 40, example = "ms")]
    pub unit: String,
    /// IANA zone the times are shown in.
    #[schema(example = "Europe/Paris")]
    pub zone: String,
    /// Bucket width in seconds.
    #[schema(minimum = 1)]
    pub bucket_seconds: u64,
    /// Bucket starts, milliseconds since the Unix epoch, increasing.
    pub buckets: Vec<i64>,
    pub series: Vec<Series>,
    /// Pixels; default 640 × 260.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Said in the middle of the chart when there is nothing to draw;
    /// default "No data in this range".
    #[schema(max_length = 200)]
    pub empty_text: Option<String>,
}

/// Why a chart cannot be drawn; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ChartError(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, ChartError> {
    Err(ChartError(message.into()))
}

/// Distinguishable on white and for the common colour-vision deficiencies
/// (Okabe–Ito order), then repeated.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(90, 90, 90),
    RGBColor(240, 228, 66),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

impl ChartSpec {
    fn check(&self) -> Result<(Tz, u32, u32), ChartError> {
        let zone: Tz = match self.zone.parse() {
            Ok(z) => z,
            Err(_) => return invalid(format!("zone: unknown IANA time zone {:?}", self.zone)),
        };
        if self.bucket_seconds == 0 {
            return invalid("bucket_seconds: must be at least 1");
        }
        if self.buckets.len() > MAX_BUCKETS {
            return invalid(format!(
                "buckets: at most {MAX_BUCKETS}, got {}",
                self.buckets.len()
            ));
        }
        if self.series.len() > MAX_SERIES {
            return invalid(format!(
                "series: at most {MAX_SERIES}, got {}",
                self.series.len()
            ));
        }
        if self.buckets.len() * self.series.len() > MAX_POINTS {
            return invalid(format!(
                "series: at most {MAX_POINTS} values in all, got {} buckets × {} series",
                self.buckets.len(),
                self.series.len()
            ));
        }
        if let Some(i) = self.buckets.windows(2).position(|w| w[0] >= w[1]) {
            return invalid(format!("buckets[{}]: bucket starts must increase", i + 1));
        }
        if let Some(i) = self.buckets.iter().position(|&ms| {
            DateTime::<Utc>::from_timestamp_millis(ms).is_none()
                || ms.checked_add(self.width_ms()).is_none()
        }) {
            return invalid(format!("buckets[{i}]: not a time this chart can show"));
        }
        for (i, s) in self.series.iter().enumerate() {
            if s.values.len() != self.buckets.len() {
                return invalid(format!(
                    "series[{i}].values: {} values for {} buckets",
                    s.values.len(),
                    self.buckets.len()
                ));
            }
            if let Some(j) = s
                .values
                .iter()
                .position(|v| v.is_some_and(|v| !v.is_finite()))
            {
                return invalid(format!("series[{i}].values[{j}]: not a finite number"));
            }
            if let Some(j) = s
                .values
                .iter()
                .position(|v| v.is_some_and(|v| v.abs() > MAX_VALUE))
            {
                return invalid(format!(
                    "series[{i}].values[{j}]: beyond ±{MAX_VALUE:e}, too large to draw"
                ));
            }
        }
        if self
            .drawn()
            .iter()
            .flatten()
            .flatten()
            .any(|v| v.abs() > MAX_VALUE)
        {
            return invalid(format!(
                "series: stacked, the sums go beyond ±{MAX_VALUE:e}, too large to draw"
            ));
        }
        let side = |field: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
            v if (MIN_SIDE..=MAX_SIDE).contains(&v) => Ok(v),
            v => invalid(format!("{field}: {v} is outside {MIN_SIDE}..={MAX_SIDE}")),
        };
        Ok((
            zone,
            side("width", self.width, 640)?,
            side("height", self.height, 260)?,
        ))
    }

    fn width_ms(&self) -> i64 {
        (self.bucket_seconds.min(i64::MAX as u64 / 1000) as i64).saturating_mul(1000)
    }

    /// Per series, the value each point is drawn at: stacked series are
    /// cumulative (missing counts as zero), lines keep their gaps.
    fn drawn(&self) -> Vec<Vec<Option<f64>>> {
        match self.kind {
            ChartKind::Line => self.series.iter().map(|s| s.values.clone()).collect(),
            ChartKind::Stacked => {
                let mut below = vec![0.0; self.buckets.len()];
                self.series
                    .iter()
                    .map(|s| {
                        below
                            .iter_mut()
                            .zip(&s.values)
                            .map(|(b, v)| {
                                *b += v.unwrap_or(0.0);
                                Some(*b)
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

/// A bucket start as the console shows it: local time in `zone`, with the
/// zone's abbreviation, to the minute (seconds when buckets are shorter).
pub fn bucket_label(ms: i64, zone: Tz, bucket_seconds: u64) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    let format = if bucket_seconds < 60 {
        "%Y-%m-%d %H:%M:%S %Z"
    } else {
        "%Y-%m-%d %H:%M %Z"
    };
    t.with_timezone(&zone).format(format).to_string()
}

/// Tick instants (ms) between `x0` and `x1`: a whole step of the wall
/// clock in `zone` (minutes, hours, days, weeks), about six of them.
fn time_ticks(x0: i64, x1: i64, zone: Tz) -> Vec<i64> {
    use chrono::Offset;
    const MINUTE: i64 = 60_000;
    const STEPS: [i64; 14] = [
        MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        60 * MINUTE,
        120 * MINUTE,
        180 * MINUTE,
        360 * MINUTE,
        720 * MINUTE,
        1440 * MINUTE,
        2 * 1440 * MINUTE,
        7 * 1440 * MINUTE,
        14 * 1440 * MINUTE,
    ];
    let span = (x1 - x0).max(1);
    let step = STEPS
        .into_iter()
        .find(|s| span / s <= 7)
        .unwrap_or_else(|| (span / 7 / (1440 * MINUTE) + 1) * 1440 * MINUTE);
    let offset = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.with_timezone(&zone).offset().fix().local_minus_utc() as i64 * 1000)
            .unwrap_or(0)
    };
    let local = x0 + offset(x0);
    let mut tick = (local.div_euclid(step) + 1) * step - offset(x0);
    if tick - step >= x0 {
        tick -= step;
    }
    let mut ticks = Vec::new();
    while tick <= x1 && ticks.len() < 32 {
        // Re-aligned to the wall clock across offset changes (DST).
        let aligned = tick + offset(x0) - offset(tick);
        if (x0..=x1).contains(&aligned) {
            ticks.push(aligned);
        }
        tick += step;
    }
    ticks
}

/// A value with its unit, as hover titles and axis labels show it.
pub fn value_label(v: f64, unit: &str) -> String {
    let number = if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.6}")
    };
    match unit {
        "" => number,
        "%" => format!("{number}%"),
        u => format!("{number} {u}"),
    }
}

/// Short axis numbers: 1.5k, 2M.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if scaled == scaled.trunc() {
        format!("{}", scaled as i64)
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 0.1 {
        format!("{scaled:.2}")
    } else {
        format!("{scaled:.4}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One hover target: where, in which colour, and what it says.
struct Point {
    x: i32,
    y: i32,
    color: RGBColor,
    title: String,
}

/// The chart as an SVG document.
pub fn render(spec: &ChartSpec) -> Result<String, ChartError> {
    let (zone, width, height) = spec.check()?;
    let mut svg = String::new();
    let mut points = Vec::new();
    let has_values = spec
        .series
        .iter()
        .any(|s| s.values.iter().any(Option::is_some));
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            if spec.buckets.is_empty() || !has_values {
                empty(&root, spec, width, height)?;
            } else {
                draw(&root, spec, zone, &mut points)?;
            }
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return invalid(format!("the chart could not be drawn: {e}"));
        }
    }
    Ok(finish(svg, spec, &points))
}

fn empty(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    spec: &ChartSpec,
    width: u32,
    height: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = spec
        .empty_text
        .as_deref()
        .unwrap_or("No data in this range");
    let style = TextStyle::from(("sans-serif", 16).into_font())
        .color(&RGBColor(90, 90, 90))
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    root.draw_text(text, &style, (width as i32 / 2, height as i32 / 2))?;
    Ok(())
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    spec: &ChartSpec,
    zone: Tz,
    points: &mut Vec<Point>,
) -> Result<(), Box<dyn std::error::Error>> {
    let drawn = spec.drawn();
    let x0 = spec.buckets[0];
    let x1 = spec.buckets[spec.buckets.len() - 1] + spec.width_ms();
    let top = drawn
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, &v| m.max(v));
    let bottom = drawn
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, &v| m.min(v));
    let top = if top > bottom {
        top * 1.08
    } else {
        bottom + 1.0
    };
    let span_s = (x1 - x0) / 1000;
    let x_format = if span_s <= 2 * 86_400 {
        "%H:%M"
    } else if span_s <= 120 * 86_400 {
        "%b %d"
    } else {
        "%Y-%m"
    };
    let ticks = time_ticks(x0, x1, zone);
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).with_key_points(ticks), bottom..top)?;
    let zone_name = zone.name();
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(5)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(232, 232, 232))
        .x_label_formatter(&|ms| {
            DateTime::<Utc>::from_timestamp_millis(*ms)
                .map(|t| t.with_timezone(&zone).format(x_format).to_string())
                .unwrap_or_default()
        })
        .y_label_formatter(&|v| axis_number(*v))
        .x_desc(format!("time ({zone_name})"))
        .y_desc(spec.unit.as_str())
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    let centre = |i: usize| spec.buckets[i] + spec.width_ms() / 2;
    match spec.kind {
        ChartKind::Line => {
            for (k, values) in drawn.iter().enumerate() {
                let c = color(k);
                // A missing value breaks the line into runs.
                let mut run: Vec<(i64, f64)> = Vec::new();
                let mut runs = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match v {
                        Some(v) => run.push((centre(i), *v)),
                        None => runs.push(std::mem::take(&mut run)),
                    }
                }
                runs.push(run);
                let mut labelled = false;
                // A point with no neighbour draws no line: mark it.
                let lone: Vec<(i64, f64)> =
                    runs.iter().filter(|r| r.len() == 1).map(|r| r[0]).collect();
                chart.draw_series(lone.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
                for run in runs.into_iter().filter(|r| !r.is_empty()) {
                    let series = chart.draw_series(LineSeries::new(run, c.stroke_width(2)))?;
                    if !labelled {
                        series
                            .label(spec.series[k].name.as_str())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                            });
                        labelled = true;
                    }
                }
            }
        }
        ChartKind::Stacked => {
            // Top of the stack first, so each lower area is drawn over it.
            for (k, values) in drawn.iter().enumerate().rev() {
                let c = color(k);
                let area: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (centre(i), v.unwrap_or(0.0)))
                    .collect();
                chart
                    .draw_series(AreaSeries::new(area, 0.0, c.mix(0.85)).border_style(c))?
                    .label(spec.series[k].name.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                    });
            }
        }
    }
    if spec.series.len() > 1 || spec.kind == ChartKind::Stacked {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 16))
            .draw()?;
    }
    for (k, values) in drawn.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let (Some(at), Some(own)) = (v, spec.series[k].values[i]) else {
                continue;
            };
            let (x, y) = chart.backend_coord(&(centre(i), *at));
            points.push(Point {
                x,
                y,
                color: color(k),
                title: format!(
                    "{} · {}: {}",
                    bucket_label(spec.buckets[i], zone, spec.bucket_seconds),
                    spec.series[k].name,
                    value_label(own, &spec.unit)
                ),
            });
        }
    }
    Ok(())
}

/// Adds what `plotters` does not draw: the document's accessible name, a
/// hover target with a `<title>` per point, and a scalable size.
fn finish(mut svg: String, spec: &ChartSpec, points: &[Point]) -> String {
    let mut overlay = String::from(
        "<style>.pm-pt{fill-opacity:0;stroke-opacity:0}.pm-pt:hover{fill-opacity:1;stroke-opacity:1}</style><g class=\"pm-points\">",
    );
    for p in points {
        let RGBColor(r, g, b) = p.color;
        overlay.push_str(&format!(
            "<circle class=\"pm-pt\" cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"rgb({r},{g},{b})\" stroke=\"white\"><title>{}</title></circle>",
            p.x,
            p.y,
            escape(&p.title)
        ));
    }
    overlay.push_str("</g></svg>");
    if let Some(end) = svg.rfind("</svg>") {
        svg.replace_range(end.., &overlay);
    }
    let head = format!(
        "<svg role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMid meet\"",
        escape(&spec.title)
    );
    if let Some(at) = svg.find("<svg") {
        svg.replace_range(at..at + 4, &head);
        if let Some(open_end) = svg[at..].find('>') {
            let insert = at + open_end + 1;
            svg.insert_str(insert, &format!("<title>{}</title>", escape(&spec.title)));
        }
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ChartKind, series: Vec<Series>) -> ChartSpec {
        ChartSpec {
            kind,
            title: "Latency".into(),
            unit: "ms".into(),
            zone: "Europe/Paris".into(),
            bucket_seconds: 3600,
            // 2024-03-09T00:00:00Z, then hourly.
            buckets: vec![1_709_942_400_000, 1_709_946_000_000, 1_709_949_600_000],
            series,
            width: None,
            height: None,
            empty_text: None,
        }
    }

    fn series(name: &str, values: &[Option<f64>]) -> Series {
        Series {
            name: name.into(),
            values: values.to_vec(),
        }
    }

    fn titles(svg: &str) -> Vec<String> {
        svg.split("<title>")
            .skip(1)
            .map(|t| t.split("</title>").next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_point_has_a_title_with_its_bucket_in_the_zone_its_value_and_unit() {
        let svg = render(&spec(
            ChartKind::Line,
            vec![
                series("p50", &[Some(120.0), None, Some(80.5)]),
                series("p95", &[Some(300.0), Some(310.25), None]),
            ],
        ))
        .unwrap();
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"Latency\""),
            "{svg}"
        );
        assert_eq!(
            titles(&svg),
            [
                "Latency",
                "2024-03-09 01:00 CET · p50: 120 ms",
                "2024-03-09 03:00 CET · p50: 80.500 ms",
                "2024-03-09 01:00 CET · p95: 300 ms",
                "2024-03-09 02:00 CET · p95: 310.2 ms",
            ]
        );
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect();
        assert!(
            texts.contains(&"time (Europe/Paris)"),
            "the x axis names the zone: {texts:?}"
        );
        assert!(
            texts.contains(&"ms"),
            "the y axis names the unit: {texts:?}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn stacked_titles_give_each_series_own_value_not_the_running_total() {
        let svg = render(&spec(
            ChartKind::Stacked,
            vec![
                series("gpt-4o", &[Some(10.0), Some(20.0), None]),
                series("claude", &[Some(5.0), None, Some(1.0)]),
            ],
        ))
        .unwrap();
        let t = titles(&svg);
        assert!(
            t.contains(&"2024-03-09 01:00 CET · claude: 5 ms".to_owned()),
            "{t:?}"
        );
        assert!(
            t.contains(&"2024-03-09 02:00 CET · gpt-4o: 20 ms".to_owned()),
            "{t:?}"
        );
        // Missing values add nothing and get no hover point.
        assert_eq!(t.len(), 1 + 4);
    }

    #[test]
    fn a_chart_with_nothing_to_draw_says_so() {
        let mut s = spec(ChartKind::Line, vec![series("calls", &[None, None, None])]);
        s.empty_text = Some("No calls in this range".into());
        let svg = render(&s).unwrap();
        assert!(svg.contains("No calls in this range"), "{svg}");
        assert_eq!(titles(&svg), ["Latency"]);
    }

    #[test]
    fn names_are_escaped_so_they_cannot_inject_markup() {
        let svg = render(&spec(
            ChartKind::Line,
            vec![series(
                "<script>alert(1)</script>",
                &[Some(1.0), Some(2.0), Some(3.0)],
            )],
        ))
        .unwrap();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let mut s = spec(ChartKind::Line, vec![series("a", &[Some(1.0)])]);
        assert!(render(&s)
            .unwrap_err()
            .0
            .starts_with("series[0].values: 1 values for 3 buckets"));
        s.series = vec![series("a", &[Some(1.0), Some(f64::NAN), None])];
        // NaN cannot arrive through JSON, but a caller in Rust can pass it.
        assert!(render(&s).unwrap_err().0.starts_with("series[0].values[1]"));
        s.series = vec![series("a", &[Some(f64::MAX), None, None])];
        let e = render(&s).unwrap_err().0;
        assert!(e.starts_with("series[0].values[0]: beyond ±1e18"), "{e}");
        let big = [Some(MAX_VALUE), Some(-MAX_VALUE), None];
        s.series = vec![series("a", &big), series("b", &big)];
        // The largest values draw as lines; stacked, their sums are too big.
        assert!(render(&s).is_ok());
        s.kind = ChartKind::Stacked;
        assert!(render(&s)
            .unwrap_err()
            .0
            .starts_with("series: stacked, the sums"));
        s.kind = ChartKind::Line;
        s.series = vec![];
        s.zone = "Mars/Olympus".into();
        assert!(render(&s).unwrap_err().0.starts_with("zone:"));
        s.zone = "UTC".into();
        s.buckets = vec![2, 1];
        assert!(render(&s).unwrap_err().0.starts_with("buckets[1]"));
        s.buckets = vec![i64::MAX];
        assert!(render(&s).unwrap_err().0.starts_with("buckets[0]"));
        s.buckets = vec![1];
        s.width = Some(10);
        assert!(render(&s).unwrap_err().0.starts_with("width:"));
    }

    #[test]
    fn ticks_fall_on_whole_wall_clock_steps_in_the_zone() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        // 2024-03-09T00:10Z (05:40 IST) .. +24 h: every six hours of
        // Kolkata's wall clock.
        let x0 = 1_709_943_000_000;
        let ticks = time_ticks(x0, x0 + 86_400_000, kolkata);
        let labels: Vec<String> = ticks
            .iter()
            .map(|&t| bucket_label(t, kolkata, 3600))
            .collect();
        assert_eq!(labels[0], "2024-03-09 06:00 IST");
        assert_eq!(labels[1], "2024-03-09 12:00 IST");
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == 6 * 3_600_000));
        assert!(ticks.iter().all(|t| (x0..=x0 + 86_400_000).contains(t)));
    }

    #[test]
    fn odd_but_valid_specs_still_draw() {
        let mut s = spec(
            ChartKind::Line,
            vec![series("tiny", &[Some(1e-300), Some(0.0), Some(-1e-300)])],
        );
        assert!(render(&s).is_ok());
        s.series = vec![series("negative", &[Some(-5.0), Some(-1e17), None])];
        assert!(render(&s).is_ok());
        s.series = vec![series("flat", &[Some(7.0), Some(7.0), Some(7.0)])];
        assert!(render(&s).is_ok());
        // A bucket of a thousand years, and one bucket only.
        s.bucket_seconds = 1000 * 365 * 86_400;
        s.buckets = vec![0];
        s.series = vec![series("one", &[Some(1.0)])];
        assert!(render(&s).is_ok());
        s.bucket_seconds = 1;
        s.buckets = vec![-62_135_596_800_000];
        assert!(render(&s).is_ok());
    }

    #[test]
    fn values_and_axis_numbers_read_well() {
        assert_eq!(value_label(1234.0, "tokens"), "1234 tokens");
        assert_eq!(value_label(0.0123, "USD"), "0.012 USD");
        assert_eq!(value_label(0.000123, "USD"), "0.000123 USD");
        assert_eq!(value_label(12.5, "%"), "12.500%");
        assert_eq!(axis_number(1_500.0), "1500");
        assert_eq!(axis_number(15_000.0), "15k");
        assert_eq!(axis_number(2_500_000.0), "2.5M");
        assert_eq!(axis_number(0.25), "0.25");
    }
}
