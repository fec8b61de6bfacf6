//! Writes: each call in a batch is merged with what is stored about it (the
//! new half replaces the stored half, as in the embedded store) and written
//! as one whole row under its start time, with tombstones where the call no
//! longer lives. Reading the stored rows is a point lookup by call id (a
//! bloom-filter index on `call_id`); it happens on writes only. Calls written
//! in halves are looked up once more after the insert, to merge halves that
//! two replicas wrote at the same moment (see `ClickHouseStore::repair`).

use super::schema::{CallRow, ModelRow};
use polymeter_model::{CallEnd, CallRecord, CallStart, ModelUsage, VendorDimensions};

/// Entries of a call's usage list a store keeps (the embedded store's limit).
pub const MAX_USAGE: usize = u8::MAX as usize;

pub(super) use polymeter_clickhouse::next_version;

/// What is known about one call.
#[derive(Default, Clone)]
pub(super) struct Known {
    pub start: Option<(u64, CallStart)>,
    pub end: Option<(u64, CallEnd)>,
    /// Per sort key of the stored rows: the newest row's version and whether
    /// it is a tombstone — what a `FINAL` read sees at that key.
    pub keys: std::collections::BTreeMap<i64, (u64, bool)>,
}

impl Known {
    /// Sort keys where a `FINAL` read finds a live row of this call.
    pub fn live_keys(&self) -> impl Iterator<Item = i64> + '_ {
        self.keys
            .iter()
            .filter(|(_, (_, deleted))| !deleted)
            .map(|(k, _)| *k)
    }

    /// Folds a stored row in: each half from the newest row carrying it.
    pub fn absorb(&mut self, row: CallRow) {
        let newest = self.keys.entry(row.sort_us).or_insert((0, false));
        if row.version >= newest.0 {
            *newest = (row.version, row.is_deleted == 1);
        }
        if row.has_start == 1 && self.start.as_ref().is_none_or(|(v, _)| row.version > *v) {
            self.start = Some((row.version, start_of(&row)));
        }
        if row.has_end == 1 && self.end.as_ref().is_none_or(|(v, _)| row.version > *v) {
            self.end = Some((row.version, end_of(&row)));
        }
    }

    /// A new write: each half it carries replaces the known one.
    pub fn apply(&mut self, record: CallRecord) {
        if let Some(s) = record.start {
            self.start = Some((u64::MAX, s));
        }
        if let Some(e) = record.end {
            self.end = Some((u64::MAX, e));
        }
    }
}

fn start_of(r: &CallRow) -> CallStart {
    CallStart {
        trace_id: r.trace_id.clone(),
        parent_id: r.parent_id.clone(),
        thread_id: r.thread_id.clone(),
        turn_id: r.turn_id.clone(),
        op_name: r.op_name.clone(),
        display_name: r.display_name.clone(),
        started_at: chrono::DateTime::from_timestamp_micros(r.started_us).unwrap_or_default(),
        wb_user_id: r.wb_user_id.clone(),
        wb_run_id: r.wb_run_id.clone(),
        input_refs: r.input_refs.clone(),
        vendor: VendorDimensions {
            service_id: r.service_id.clone(),
            service_name: r.service_name.clone(),
            app_id: r.app_id.clone(),
            client_id: r.client_id.clone(),
            api_key_id: r.api_key_id.clone(),
            model_id: r.model_id.clone(),
            resource_id: r.resource_id.clone(),
        },
    }
}

fn end_of(r: &CallRow) -> CallEnd {
    CallEnd {
        ended_at: chrono::DateTime::from_timestamp_micros(r.ended_us).unwrap_or_default(),
        exception: r.exception.clone(),
        usage: (0..r.usage_model.len())
            .map(|i| ModelUsage {
                model: r.usage_model[i].clone(),
                input_tokens: r.usage_input_tokens[i],
                output_tokens: r.usage_output_tokens[i],
                total_tokens: r.usage_total_tokens[i],
                cache_read_input_tokens: r.usage_cache_read_input_tokens[i],
                cache_creation_input_tokens: r.usage_cache_creation_input_tokens[i],
                requests: r.usage_requests[i],
            })
            .collect(),
        output_refs: r.output_refs.clone(),
    }
}

/// The rows that record `known` for `(tenant, project, call_id)`: the whole
/// call under its start time (its end time while no start is known), and a
/// tombstone at every other key where a stored row of the call is still
/// live (a start that moved, an end that arrived before its start), so that
/// a `FINAL` read finds the call under one key only.
pub(super) fn rows(tenant: &str, project: &str, call_id: &str, known: &Known) -> Vec<CallRow> {
    let version = next_version();
    let start = known.start.as_ref().map(|(_, s)| s);
    let end = known.end.as_ref().map(|(_, e)| e);
    let started_us = start.map(|s| s.started_at.timestamp_micros());
    let ended_us = end.map(|e| e.ended_at.timestamp_micros());
    let sort_us = started_us.or(ended_us).unwrap_or_default();
    let mut row = CallRow {
        tenant: tenant.to_owned(),
        project_id: project.to_owned(),
        sort_us,
        call_id: call_id.to_owned(),
        version: version + 1,
        is_deleted: 0,
        has_start: start.is_some() as u8,
        started_us: started_us.unwrap_or_default(),
        has_end: end.is_some() as u8,
        ended_us: ended_us.unwrap_or_default(),
        ..Default::default()
    };
    if let Some(s) = start {
        row.trace_id = s.trace_id.clone();
        // An empty parent is no parent, as in the embedded store.
        row.parent_id = s.parent_id.clone().filter(|p| !p.is_empty());
        row.thread_id = s.thread_id.clone();
        row.turn_id = s.turn_id.clone();
        row.op_name = s.op_name.clone();
        row.display_name = s.display_name.clone();
        row.wb_user_id = s.wb_user_id.clone();
        row.wb_run_id = s.wb_run_id.clone();
        let v = &s.vendor;
        row.service_id = v.service_id.clone();
        row.service_name = v.service_name.clone();
        row.app_id = v.app_id.clone();
        row.client_id = v.client_id.clone();
        row.api_key_id = v.api_key_id.clone();
        row.model_id = v.model_id.clone();
        row.resource_id = v.resource_id.clone();
        row.input_refs = s.input_refs.clone();
    }
    if let Some(e) = end {
        row.exception = e.exception.clone();
        for u in e.usage.iter().take(MAX_USAGE) {
            row.usage_model.push(u.model.clone());
            row.usage_input_tokens.push(u.input_tokens);
            row.usage_output_tokens.push(u.output_tokens);
            row.usage_total_tokens.push(u.total_tokens);
            row.usage_cache_read_input_tokens
                .push(u.cache_read_input_tokens);
            row.usage_cache_creation_input_tokens
                .push(u.cache_creation_input_tokens);
            row.usage_requests.push(u.requests);
        }
        row.output_refs = e.output_refs.clone();
    }
    let mut out: Vec<CallRow> = known
        .live_keys()
        .filter(|&old| old != sort_us)
        .map(|old| CallRow {
            tenant: row.tenant.clone(),
            project_id: row.project_id.clone(),
            sort_us: old,
            call_id: row.call_id.clone(),
            version,
            is_deleted: 1,
            ..Default::default()
        })
        .collect();
    out.push(row);
    out
}

/// The models a batch's rows use, once each.
pub(super) fn models(rows: &[CallRow]) -> Vec<ModelRow> {
    let seen: std::collections::HashSet<ModelRow> = rows
        .iter()
        .flat_map(|r| {
            r.usage_model.iter().map(|m| ModelRow {
                tenant: r.tenant.clone(),
                project_id: r.project_id.clone(),
                model: m.clone(),
            })
        })
        .collect();
    seen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn start(at: i64) -> CallStart {
        CallStart {
            trace_id: "t".into(),
            parent_id: Some(String::new()),
            thread_id: None,
            turn_id: None,
            op_name: "op".into(),
            display_name: None,
            started_at: Utc.timestamp_micros(at).unwrap(),
            wb_user_id: None,
            wb_run_id: None,
            input_refs: vec![],
            vendor: Default::default(),
        }
    }

    fn end(at: i64) -> CallEnd {
        CallEnd {
            ended_at: Utc.timestamp_micros(at).unwrap(),
            exception: None,
            usage: vec![],
            output_refs: vec![],
        }
    }

    #[test]
    fn a_moved_start_leaves_one_tombstone_at_each_other_live_key() {
        let known = Known {
            start: Some((1, start(5_000))),
            end: None,
            keys: [(1_000, (1, false)), (5_000, (1, false)), (800, (2, true))].into(),
        };
        let rows = rows("t", "e/p", "c", &known);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let (tomb, call) = (&rows[0], &rows[1]);
        assert_eq!(
            (tomb.sort_us, tomb.is_deleted, tomb.has_start),
            (1_000, 1, 0)
        );
        assert_eq!(
            (call.sort_us, call.is_deleted, call.has_start),
            (5_000, 0, 1)
        );
        assert!(tomb.version < call.version);
        assert_eq!(call.parent_id, None, "an empty parent is no parent");
    }

    #[test]
    fn a_call_known_only_by_its_end_is_kept_at_its_end() {
        let known = Known {
            start: None,
            end: Some((1, end(9_000))),
            keys: Default::default(),
        };
        let rows = rows("t", "e/p", "c", &known);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].sort_us, rows[0].has_start, rows[0].has_end),
            (9_000, 0, 1)
        );
    }

    #[test]
    fn the_newest_stored_half_wins_and_a_new_half_replaces_it() {
        let mut known = Known::default();
        let row = |version, has_start, at| CallRow {
            version,
            has_start,
            started_us: at,
            sort_us: at,
            op_name: format!("v{version}"),
            ..Default::default()
        };
        known.absorb(row(3, 1, 300));
        known.absorb(row(1, 1, 100));
        assert_eq!(known.start.as_ref().unwrap().1.op_name, "v3");
        known.apply(CallRecord {
            tenant: polymeter_model::TenantId::new("t").unwrap(),
            project_id: polymeter_model::ProjectId::parse("e/p").unwrap(),
            call_id: polymeter_model::CallId::new("c").unwrap(),
            start: None,
            end: Some(end(400)),
        });
        assert_eq!(known.start.as_ref().unwrap().1.op_name, "v3");
        assert!(known.end.is_some());
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn the_newest_row_at_a_key_decides_whether_it_is_live() {
        let mut known = Known::default();
        let row = |sort_us, version, is_deleted, has_end| CallRow {
            sort_us,
            version,
            is_deleted,
            has_end,
            ended_us: sort_us,
            ..Default::default()
        };
        // An end that arrived first (key 900), later merged under its start
        // (key 100) and tombstoned; a start-only row at 100 superseded.
        known.absorb(row(900, 1, 0, 1));
        known.absorb(row(100, 3, 0, 1));
        known.absorb(row(900, 2, 1, 0));
        assert_eq!(known.live_keys().collect::<Vec<_>>(), [100]);
    }
}
