//! Feedback's closed sets and the Weave refs its dimensions derive from.
//!
//! A ref is `weave:///{entity}/{project}/{kind}/{name…}`. A scorer or monitor
//! ref names an object or op version, `…/object/{name}:{digest}`, whose
//! `name` becomes the `scorer_id` / `monitor_id`; a feedback's `weave_ref`
//! names what it is about, and its second-to-last segment is the span type
//! for agent spans (`…/agent_turn/{id}`).

use crate::measure::UnknownName;
use polymeter_proto::v1 as pb;
use std::str::FromStr;

const PREFIX: &str = "weave:///";

/// A parsed `weave:///` ref, borrowing its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaveRef<'a> {
    pub entity: &'a str,
    pub project: &'a str,
    pub kind: &'a str,
    /// The segments after the kind (at least one).
    pub rest: Vec<&'a str>,
}

impl<'a> WeaveRef<'a> {
    /// Parses `text`; the error names `field` and the expected shape.
    pub fn parse(field: &str, text: &'a str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{field}: expected a ref like \"weave:///entity/project/kind/name\", got {text:?}"
            )
        };
        let path = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 4 || segments.iter().any(|s| s.is_empty()) {
            return Err(bad());
        }
        Ok(Self {
            entity: segments[0],
            project: segments[1],
            kind: segments[2],
            rest: segments[3..].to_vec(),
        })
    }

    /// The object or op name of a versioned ref: `…/object/my_scorer:abc` → `my_scorer`.
    pub fn object_name(&self, field: &str) -> Result<&'a str, String> {
        let name = self.rest[0].split(':').next().unwrap_or_default();
        if !matches!(self.kind, "object" | "op") || name.is_empty() {
            return Err(format!(
                "{field}: expected an object or op ref like \"weave:///entity/project/object/name:digest\", got kind {:?}",
                self.kind
            ));
        }
        Ok(name)
    }

    /// `agent_turn` or `agent_conversation` when the second-to-last segment is one.
    pub fn span_type(text: &str) -> Option<SpanType> {
        let mut segments = text.rsplit('/');
        segments.next()?;
        segments.next()?.parse().ok()
    }
}

/// The kinds of agent span feedback can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanType {
    AgentTurn,
    AgentConversation,
}

impl SpanType {
    pub const ALL: [SpanType; 2] = [SpanType::AgentTurn, SpanType::AgentConversation];

    pub fn as_str(self) -> &'static str {
        match self {
            SpanType::AgentTurn => "agent_turn",
            SpanType::AgentConversation => "agent_conversation",
        }
    }
}

impl FromStr for SpanType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "span type",
                got: s.to_owned(),
                allowed: "agent_turn, agent_conversation".into(),
            })
    }
}

/// OpenTelemetry's span status codes, as feedback records them.
pub fn parse_span_status(s: &str) -> Result<pb::SpanStatus, UnknownName> {
    match s {
        "" | "UNSET" => Ok(pb::SpanStatus::Unset),
        "OK" => Ok(pb::SpanStatus::Ok),
        "ERROR" => Ok(pb::SpanStatus::Error),
        other => Err(UnknownName {
            kind: "span_status_code",
            got: other.to_owned(),
            allowed: "UNSET, OK, ERROR".into(),
        }),
    }
}

pub fn span_status_name(status: pb::SpanStatus) -> &'static str {
    match status {
        pb::SpanStatus::Unset => "UNSET",
        pb::SpanStatus::Ok => "OK",
        pb::SpanStatus::Error => "ERROR",
    }
}

/// The dimensions feedback can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedbackDimension {
    ScorerId,
    SpanAgentName,
    SpanAgentVersion,
    SpanStatusCode,
}

impl FeedbackDimension {
    pub const ALL: [FeedbackDimension; 4] = [
        FeedbackDimension::ScorerId,
        FeedbackDimension::SpanAgentName,
        FeedbackDimension::SpanAgentVersion,
        FeedbackDimension::SpanStatusCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackDimension::ScorerId => "scorer_id",
            FeedbackDimension::SpanAgentName => "span_agent_name",
            FeedbackDimension::SpanAgentVersion => "span_agent_version",
            FeedbackDimension::SpanStatusCode => "span_status_code",
        }
    }

    pub fn to_proto(self) -> pb::FeedbackDimension {
        match self {
            FeedbackDimension::ScorerId => pb::FeedbackDimension::ScorerId,
            FeedbackDimension::SpanAgentName => pb::FeedbackDimension::SpanAgentName,
            FeedbackDimension::SpanAgentVersion => pb::FeedbackDimension::SpanAgentVersion,
            FeedbackDimension::SpanStatusCode => pb::FeedbackDimension::SpanStatusCode,
        }
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.to_proto() as i32 == value)
    }
}

impl FromStr for FeedbackDimension {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "group_by dimension",
                got: s.to_owned(),
                allowed: Self::ALL.map(|d| d.as_str()).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorer_ids_are_object_names() {
        let r = WeaveRef::parse("runnable_ref", "weave:///e/p/object/my_scorer:abc").unwrap();
        assert_eq!(r.object_name("runnable_ref").unwrap(), "my_scorer");
        let op = WeaveRef::parse("runnable_ref", "weave:///e/p/op/judge:v3").unwrap();
        assert_eq!(op.object_name("runnable_ref").unwrap(), "judge");
        let call = WeaveRef::parse("runnable_ref", "weave:///e/p/call/123").unwrap();
        assert!(call
            .object_name("runnable_ref")
            .unwrap_err()
            .contains("object or op"));
    }

    #[test]
    fn malformed_refs_name_the_field() {
        for bad in [
            "",
            "http://x",
            "weave:///e/p",
            "weave:///e/p/object",
            "weave:///e//object/x",
        ] {
            let err = WeaveRef::parse("weave_ref", bad).unwrap_err();
            assert!(err.starts_with("weave_ref: expected"), "{bad}: {err}");
        }
    }

    #[test]
    fn span_type_is_the_second_to_last_segment() {
        assert_eq!(
            WeaveRef::span_type("weave:///e/p/agent_turn/t1"),
            Some(SpanType::AgentTurn)
        );
        assert_eq!(
            WeaveRef::span_type("weave:///e/p/call/agent_conversation/c9"),
            Some(SpanType::AgentConversation)
        );
        assert_eq!(WeaveRef::span_type("weave:///e/p/call/c9"), None);
    }

    #[test]
    fn span_status_lists_allowed_values() {
        assert_eq!(parse_span_status("OK").unwrap(), pb::SpanStatus::Ok);
        assert!(parse_span_status("FINE")
            .unwrap_err()
            .to_string()
            .contains("UNSET, OK, ERROR"));
    }
}
