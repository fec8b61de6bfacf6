//! Polymeter's web console. This crate owns what the browser loads — one
//! page, its script and its style sheet, compiled into the binary so the
//! console needs no build step, CDN or network — and the SVG charts the page
//! asks for ([`chart`]).
//!
//! The console is a client of the public query APIs: the page fetches every
//! number from `/calls/stats`, `/feedback/aggregate` and `/v1/projects` with
//! the user's Weave key, exactly as any client would, and hands the numbers
//! it got to the chart renderer, which reads no data. The gateway serves the
//! routes (`polymeter_gateway::console`).

pub mod chart;

pub use chart::{render, ChartError, ChartKind, ChartSpec, Series};

/// A file the console serves: its path under `/console/`, content type and
/// bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The page (served at `/console/`), its script and its style sheet.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        path: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
    Asset {
        path: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
];
