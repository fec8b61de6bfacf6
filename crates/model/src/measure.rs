//! The closed sets a query measures with: metrics and aggregations. Names are
//! the wire names shared by the Weave dialect and the docs; parsing an unknown
//! name yields an error that lists every allowed value.

use polymeter_proto::v1 as pb;
use std::{fmt, str::FromStr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown {kind} {got:?}; allowed: {allowed}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub got: String,
    pub allowed: String,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $pb:ty { $($variant:ident = $text:literal => $pbv:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn to_proto(self) -> $pb {
                match self { $($name::$variant => <$pb>::$pbv),+ }
            }

            /// `None` for the proto's UNSPECIFIED value or an unknown number.
            pub fn from_proto(value: i32) -> Option<Self> {
                match <$pb>::try_from(value).ok()? {
                    $(<$pb>::$pbv => Some($name::$variant),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// Parses among `allowed` only, naming them all when `text` is not one.
            pub fn parse_among(text: &str, allowed: &[$name]) -> Result<Self, UnknownName> {
                allowed
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| UnknownName {
                        kind: $kind,
                        got: text.to_owned(),
                        allowed: allowed.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    })
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(text: &str) -> Result<Self, UnknownName> {
                Self::parse_among(text, Self::ALL)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// A per-row quantity a query can aggregate.
    Metric, "metric", pb::Metric {
        InputTokens = "input_tokens" => InputTokens,
        OutputTokens = "output_tokens" => OutputTokens,
        TotalTokens = "total_tokens" => TotalTokens,
        CacheReadInputTokens = "cache_read_input_tokens" => CacheReadInputTokens,
        CacheCreationInputTokens = "cache_creation_input_tokens" => CacheCreationInputTokens,
        InputCost = "input_cost" => InputCost,
        OutputCost = "output_cost" => OutputCost,
        TotalCost = "total_cost" => TotalCost,
        Requests = "requests" => Requests,
        LatencyMs = "latency_ms" => LatencyMs,
        CallCount = "call_count" => CallCount,
        ErrorCount = "error_count" => ErrorCount,
        SuccessCount = "success_count" => SuccessCount,
        StartedAtUs = "started_at_us" => StartedAtUs,
    }
);

named_enum!(
    /// How a metric's values in one bucket × group become one number.
    Aggregation, "aggregation", pb::Aggregation {
        Sum = "sum" => Sum,
        Avg = "avg" => Avg,
        Min = "min" => Min,
        Max = "max" => Max,
        Count = "count" => Count,
        Percentile = "percentile" => Percentile,
    }
);

impl Metric {
    /// Weave's `usage_metrics`: grouped by bucket and model.
    pub const USAGE: &'static [Metric] = &[
        Metric::InputTokens,
        Metric::OutputTokens,
        Metric::TotalTokens,
        Metric::CacheReadInputTokens,
        Metric::CacheCreationInputTokens,
        Metric::InputCost,
        Metric::OutputCost,
        Metric::TotalCost,
    ];

    /// Weave's `call_metrics`: grouped by bucket.
    pub const CALL: &'static [Metric] = &[Metric::LatencyMs, Metric::CallCount, Metric::ErrorCount];

    /// Whether every value is a whole number (counts and tokens), so sums,
    /// minima and maxima can be rendered as integers.
    pub fn is_integral(self) -> bool {
        !matches!(
            self,
            Metric::InputCost | Metric::OutputCost | Metric::TotalCost | Metric::LatencyMs
        )
    }
}

impl Aggregation {
    /// The aggregations a client names in a list (`percentile` is asked for
    /// through a separate list of numbers).
    pub const LISTED: &'static [Aggregation] = &[
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Count,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_allowed_values() {
        let err = Metric::parse_among("latency", Metric::CALL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown metric \"latency\"; allowed: latency_ms, call_count, error_count"
        );
        assert_eq!(
            "p50".parse::<Aggregation>().unwrap_err().kind,
            "aggregation"
        );
    }

    #[test]
    fn proto_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_proto(m.to_proto() as i32), Some(*m));
        }
        assert_eq!(Metric::from_proto(0), None);
    }
}
