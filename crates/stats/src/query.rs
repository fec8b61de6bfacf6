//! `AggregateCallsRequest` checked and typed: every field the aggregation reads
//! has been validated here, with messages that name the field.

use crate::error::StatsError;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use polymeter_model::buckets::{auto_width, capped_width, check_width, parse_zone};
use polymeter_model::{Aggregation, Metric, ProjectId, TenantId};
use polymeter_proto::v1::{self as pb, order::Key as PbOrderKey, Dimension, Grain};

/// Most `group_by` dimensions one query may use.
pub const MAX_GROUP_BY: usize = 4;
/// Most measures one query may ask for.
pub const MAX_MEASURES: usize = 128;
/// Most percentile measures one query may ask for (each keeps every value).
pub const MAX_PERCENTILES: usize = 100;
/// Most values one filter may list (values and prefixes together).
pub const MAX_FILTER_VALUES: usize = 1000;
/// Most measures × buckets one query may produce.
pub const MAX_CELLS: u64 = 2_000_000;

#[derive(Debug, Clone)]
pub struct Bucketing {
    pub width_seconds: u64,
    pub tz: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureSpec {
    pub metric: Metric,
    pub aggregation: Aggregation,
    /// 0..=100, for [`Aggregation::Percentile`].
    pub percentile: f64,
}

#[derive(Debug, Clone)]
pub struct RowFilter {
    pub dimension: Dimension,
    pub any_of: Vec<String>,
    pub prefixes: Vec<String>,
    pub absent: bool,
}

impl RowFilter {
    pub fn matches(&self, value: Option<&str>) -> bool {
        match value {
            None => self.absent,
            Some(v) => {
                self.any_of.iter().any(|a| a == v) || self.prefixes.iter().any(|p| v.starts_with(p))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrderKey {
    Bucket,
    RowCount,
    /// Position in `group_by`.
    Group(usize),
    /// Position in `measures`.
    Measure(usize),
}

#[derive(Debug, Clone)]
pub struct CallQuery {
    pub tenant: TenantId,
    pub projects: Vec<ProjectId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub grain: Grain,
    pub bucketing: Option<Bucketing>,
    pub filters: Vec<RowFilter>,
    pub group_by: Vec<Dimension>,
    pub measures: Vec<MeasureSpec>,
    pub order_by: Vec<(OrderKey, bool)>,
    pub limit: Option<usize>,
    pub offset: usize,
    pub fill_empty_buckets: bool,
    /// Projects with a retention period, each with its cutoff in µs: their
    /// calls that started before it have expired and are left out, even
    /// before the store has deleted them. Set by the service, not the caller.
    pub expired_before: Vec<(ProjectId, i64)>,
}

impl CallQuery {
    /// The earliest start time a call of `project` may have to count: the
    /// range's start, or the project's retention cutoff if later.
    pub fn earliest_us(&self, project: &ProjectId) -> i64 {
        let start = self.start.timestamp_micros();
        self.expired_before
            .iter()
            .find(|(p, _)| p == project)
            .map_or(start, |(_, cutoff)| start.max(*cutoff))
    }
}

fn instant(field: &str, us: i64) -> Result<DateTime<Utc>, StatsError> {
    polymeter_model::time::check_micros(field, us).map_err(StatsError::invalid)
}

fn dimension(field: &str, value: i32) -> Result<Dimension, StatsError> {
    match Dimension::try_from(value) {
        Ok(Dimension::Unspecified) | Err(_) => Err(StatsError::invalid(format!(
            "{field}: unknown dimension {value}"
        ))),
        Ok(d) => Ok(d),
    }
}

/// Multi-valued dimensions filter but cannot form groups.
fn is_multi_valued(d: Dimension) -> bool {
    matches!(d, Dimension::InputRefs | Dimension::OutputRefs)
}

impl TryFrom<pb::AggregateCallsRequest> for CallQuery {
    type Error = StatsError;

    fn try_from(req: pb::AggregateCallsRequest) -> Result<Self, StatsError> {
        let tenant = TenantId::new(req.tenant).map_err(|e| StatsError::invalid(e.to_string()))?;
        let projects = req
            .project_ids
            .iter()
            .map(|p| ProjectId::parse(p).map_err(|e| StatsError::invalid(e.to_string())))
            .collect::<Result<_, _>>()?;
        let start = instant("start", req.start_us)?;
        let end = instant("end", req.end_us)?;
        if end <= start {
            return Err(StatsError::invalid(format!(
                "end ({}) must be after start ({})",
                end.to_rfc3339(),
                start.to_rfc3339()
            )));
        }
        let grain = match Grain::try_from(req.grain) {
            Ok(Grain::Call) | Ok(Grain::Unspecified) => Grain::Call,
            Ok(Grain::Usage) => Grain::Usage,
            Err(_) => {
                return Err(StatsError::invalid(format!(
                    "grain: unknown value {}",
                    req.grain
                )))
            }
        };
        let bucketing = req
            .bucketing
            .map(|b| -> Result<Bucketing, StatsError> {
                let tz = if b.timezone.is_empty() {
                    Tz::UTC
                } else {
                    parse_zone(&b.timezone)
                        .map_err(|e| StatsError::invalid(format!("bucketing.timezone: {e}")))?
                };
                let range = end - start;
                let width = match b.width_seconds {
                    0 => auto_width(range),
                    w => check_width(w).map_err(|e| {
                        StatsError::invalid(format!("bucketing.width_seconds: {e}"))
                    })?,
                };
                Ok(Bucketing {
                    width_seconds: capped_width(width, range),
                    tz,
                })
            })
            .transpose()?;
        let filters = req
            .filters
            .into_iter()
            .enumerate()
            .map(|(i, f)| -> Result<RowFilter, StatsError> {
                if f.any_of.len() + f.prefixes.len() > MAX_FILTER_VALUES {
                    return Err(StatsError::invalid(format!(
                        "filters[{i}]: at most {MAX_FILTER_VALUES} values, got {}",
                        f.any_of.len() + f.prefixes.len()
                    )));
                }
                Ok(RowFilter {
                    dimension: dimension(&format!("filters[{i}].dimension"), f.dimension)?,
                    any_of: f.any_of,
                    prefixes: f.prefixes,
                    absent: f.absent,
                })
            })
            .collect::<Result<_, _>>()?;
        let group_by: Vec<Dimension> = req
            .group_by
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let d = dimension(&format!("group_by[{i}]"), d)?;
                if is_multi_valued(d) {
                    return Err(StatsError::invalid(format!(
                        "group_by[{i}]: {} has many values per call and cannot form groups",
                        d.as_str_name()
                    )));
                }
                Ok(d)
            })
            .collect::<Result<_, _>>()?;
        let percentiles = req
            .measures
            .iter()
            .filter(|m| Aggregation::from_proto(m.aggregation) == Some(Aggregation::Percentile))
            .count();
        if percentiles > MAX_PERCENTILES {
            return Err(StatsError::invalid(format!(
                "measures: at most {MAX_PERCENTILES} percentiles, got {percentiles}"
            )));
        }
        if req.measures.len() > MAX_MEASURES {
            return Err(StatsError::invalid(format!(
                "measures: at most {MAX_MEASURES}, got {}",
                req.measures.len()
            )));
        }
        if let Some(b) = &bucketing {
            let range = (end - start).num_seconds().max(0) as u64;
            let buckets = range / b.width_seconds.max(1) + 2;
            let cells = buckets.saturating_mul(req.measures.len().max(1) as u64);
            if cells > MAX_CELLS {
                return Err(StatsError::invalid(format!(
                    "measures: {} measures over {buckets} buckets is more than {MAX_CELLS} values; ask for fewer measures or wider buckets",
                    req.measures.len()
                )));
            }
        }
        if group_by.len() > MAX_GROUP_BY {
            return Err(StatsError::invalid(format!(
                "group_by: at most {MAX_GROUP_BY} dimensions, got {}",
                group_by.len()
            )));
        }
        let measures: Vec<MeasureSpec> = req
            .measures
            .iter()
            .enumerate()
            .map(|(i, m)| -> Result<MeasureSpec, StatsError> {
                let metric = Metric::from_proto(m.metric).ok_or_else(|| {
                    StatsError::invalid(format!(
                        "measures[{i}].metric: unknown metric {}",
                        m.metric
                    ))
                })?;
                let aggregation = Aggregation::from_proto(m.aggregation).ok_or_else(|| {
                    StatsError::invalid(format!(
                        "measures[{i}].aggregation: unknown aggregation {}",
                        m.aggregation
                    ))
                })?;
                if aggregation == Aggregation::Percentile && !(0.0..=100.0).contains(&m.percentile)
                {
                    return Err(StatsError::invalid(format!(
                        "measures[{i}].percentile: {} is outside 0..=100",
                        m.percentile
                    )));
                }
                Ok(MeasureSpec {
                    metric,
                    aggregation,
                    percentile: m.percentile,
                })
            })
            .collect::<Result<_, _>>()?;
        let order_by = req
            .order_by
            .iter()
            .enumerate()
            .map(|(i, o)| -> Result<(OrderKey, bool), StatsError> {
                let key = match o.key {
                    Some(PbOrderKey::Bucket(_)) => OrderKey::Bucket,
                    Some(PbOrderKey::RowCount(_)) => OrderKey::RowCount,
                    Some(PbOrderKey::Measure(m)) if (m as usize) < measures.len() => {
                        OrderKey::Measure(m as usize)
                    }
                    Some(PbOrderKey::Dimension(d)) => {
                        let d = dimension(&format!("order_by[{i}]"), d)?;
                        let pos = group_by.iter().position(|g| *g == d).ok_or_else(|| {
                            StatsError::invalid(format!(
                                "order_by[{i}]: {} is not a group_by dimension",
                                d.as_str_name()
                            ))
                        })?;
                        OrderKey::Group(pos)
                    }
                    _ => {
                        return Err(StatsError::invalid(format!(
                            "order_by[{i}]: needs a bucket, row count, group_by dimension or measure index"
                        )))
                    }
                };
                Ok((key, o.descending))
            })
            .collect::<Result<_, _>>()?;
        Ok(CallQuery {
            tenant,
            projects,
            start,
            end,
            grain,
            bucketing,
            filters,
            group_by,
            measures,
            order_by,
            limit: (req.limit > 0).then_some(req.limit as usize),
            offset: req.offset as usize,
            fill_empty_buckets: req.fill_empty_buckets,
            expired_before: Vec::new(),
        })
    }
}
