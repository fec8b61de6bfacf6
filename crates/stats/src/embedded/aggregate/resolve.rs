//! Where each dimension's value lives in the columns, and filters resolved
//! against the interner once per query, so the scan compares integers.

use super::*;

/// Where a dimension's value lives in the columns.
#[derive(Clone, Copy)]
pub(super) enum Source {
    Project,
    Op,
    Model,
    Attr(usize),
    Id(IdSel),
    Refs(bool),
}

#[derive(Clone, Copy)]
pub(super) enum IdSel {
    Call,
    Trace,
    Parent,
}

pub(super) fn source(d: Dimension) -> Source {
    match d {
        Dimension::ProjectId => Source::Project,
        Dimension::OpName => Source::Op,
        Dimension::Model => Source::Model,
        Dimension::CallId => Source::Id(IdSel::Call),
        Dimension::TraceId => Source::Id(IdSel::Trace),
        Dimension::ParentId => Source::Id(IdSel::Parent),
        Dimension::ThreadId => Source::Attr(Attr::ThreadId as usize),
        Dimension::TurnId => Source::Attr(Attr::TurnId as usize),
        Dimension::WbUserId => Source::Attr(Attr::WbUserId as usize),
        Dimension::WbRunId => Source::Attr(Attr::WbRunId as usize),
        Dimension::DisplayName => Source::Attr(Attr::DisplayName as usize),
        Dimension::ServiceId => Source::Attr(Attr::ServiceId as usize),
        Dimension::ServiceName => Source::Attr(Attr::ServiceName as usize),
        Dimension::AppId => Source::Attr(Attr::AppId as usize),
        Dimension::ClientId => Source::Attr(Attr::ClientId as usize),
        Dimension::ApiKeyId => Source::Attr(Attr::ApiKeyId as usize),
        Dimension::ModelId => Source::Attr(Attr::ModelId as usize),
        Dimension::ResourceId => Source::Attr(Attr::ResourceId as usize),
        Dimension::InputRefs => Source::Refs(true),
        Dimension::OutputRefs => Source::Refs(false),
        Dimension::Unspecified => Source::Op,
    }
}

/// The hash of row `row`'s id of one id dimension ([`NO_ID`]: none).
#[inline]
pub(super) fn id_of(p: &Partition, sel: IdSel, row: usize) -> u64 {
    match sel {
        IdSel::Call => p.call_id[row],
        IdSel::Trace => p.trace_id[row],
        // The flag first: most calls have no parent, and "roots only" asks
        // for no more than that.
        IdSel::Parent if p.flags[row] & FLAG_PARENT == 0 => NO_ID,
        IdSel::Parent => p.parent_id.get(row),
    }
}

pub(super) fn refs(p: &Partition, input: bool) -> &RefLists {
    if input {
        &p.input_refs
    } else {
        &p.output_refs
    }
}

/// A filter resolved against the interner.
pub(super) enum Pred {
    /// Interned values: `allowed[code]`, or `absent` for no value.
    Codes {
        source: Source,
        allowed: Vec<bool>,
        absent: bool,
    },
    /// Id hashes, sorted: the values asked for and the stored ids that
    /// start with a prefix asked for ([`IdMatches`]).
    Ids {
        sel: IdSel,
        hashes: Vec<u64>,
        absent: bool,
    },
    Project {
        allowed: Vec<String>,
        prefixes: Vec<String>,
    },
}

pub(super) fn allowed_codes(strings: &Interner, f: &RowFilter) -> Vec<bool> {
    let mut allowed = vec![false; strings.len()];
    for v in &f.any_of {
        if let Some(code) = strings.code(v) {
            allowed[code as usize] = true;
        }
    }
    if !f.prefixes.is_empty() {
        for (code, value) in strings.iter() {
            let code = code as usize;
            if f.prefixes.iter().any(|p| value.starts_with(p.as_str())) {
                allowed[code] = true;
            }
        }
    }
    allowed
}

pub(super) fn resolve(strings: &Interner, f: &RowFilter, prefixed: &[u64]) -> Pred {
    match source(f.dimension) {
        Source::Project => Pred::Project {
            allowed: f.any_of.clone(),
            prefixes: f.prefixes.clone(),
        },
        Source::Id(sel) => {
            let mut hashes: Vec<u64> = f.any_of.iter().map(|v| id_hash(v)).collect();
            hashes.extend_from_slice(prefixed);
            hashes.sort_unstable();
            hashes.dedup();
            Pred::Ids {
                sel,
                hashes,
                absent: f.absent,
            }
        }
        s => Pred::Codes {
            source: s,
            allowed: allowed_codes(strings, f),
            absent: f.absent,
        },
    }
}
