//! The columns as a snapshot: a format tag, then every column array written as it is, so a
//! restart reads them back with a few large copies, the call-id index
//! included (checked against the ids as it is read). Only strings some row still uses
//! are written (codes renumbered), so the strings of a deleted or expired
//! project, which stay interned in memory, leave the disk.

use super::*;
use polymeter_store::packed::Times;
use polymeter_store::{SnapshotReader, SnapshotWriter};

type Read<T> = Result<T, String>;

/// The layout written; another (an older release's) is not read, and the
/// store loads its segments instead. 2: ids as hashes; 3: packed codes
/// and counters, durations in 32 bits; 4: start times in 32-bit offsets.
const FORMAT: u64 = 0x504d_434f_4c53_0004;

fn put_opt<T: polymeter_store::snapshot::Le>(out: &mut SnapshotWriter, c: Option<&Column<T>>) {
    out.option(c, |out, c| out.array(c));
}

fn get_opt<T: polymeter_store::snapshot::Le>(
    r: &mut SnapshotReader<'_>,
) -> Read<Option<Column<T>>> {
    r.option(|r| r.array().map(Column::from))
}

/// Old string code → the code written (`NONE` where no row uses it), and
/// whether that changes any code in use.
struct Renumber(Vec<u32>, bool);

impl Renumber {
    fn packed(&self, out: &mut SnapshotWriter, codes: &Codes) {
        if !self.1 {
            return codes.0.write(out);
        }
        let renumbered: Packed = codes
            .iter()
            .map(|c| if c == NONE { NONE } else { self.0[c as usize] }.wrapping_add(1))
            .collect();
        renumbered.write(out);
    }

    fn codes(&self, out: &mut SnapshotWriter, codes: &[u32]) {
        out.array_of(
            codes.len(),
            codes
                .iter()
                .map(|&c| if c == NONE { NONE } else { self.0[c as usize] }),
        );
    }
}

fn put_refs(out: &mut SnapshotWriter, refs: &RefLists, renumber: &Renumber) {
    put_opt(out, refs.spans.as_ref());
    renumber.codes(out, &refs.pool);
}

fn get_refs(r: &mut SnapshotReader<'_>) -> Read<RefLists> {
    Ok(RefLists {
        spans: get_opt(r)?,
        pool: r.array()?.into(),
    })
}

impl Partition {
    /// Every string code a row of this partition uses.
    fn codes(&self) -> impl Iterator<Item = u32> + '_ {
        self.op_name
            .iter()
            .chain(self.model.iter())
            .chain(self.usage_model.iter())
            .chain(self.attrs.iter().flat_map(Codes::iter))
            .chain(self.input_refs.pool.iter().copied())
            .chain(self.output_refs.pool.iter().copied())
            .filter(|&c| c != NONE)
    }

    fn write(&self, out: &mut SnapshotWriter, renumber: &Renumber) {
        out.str(self.tenant.as_str());
        out.str(self.project.as_str());
        out.u64(self.rows as u64);
        out.array(&self.call_id);
        self.started_us.write(out);
        out.array(&self.took_us);
        let ends: Vec<(u32, i64)> = self.ends.iter().map(|(&r, &e)| (r, e)).collect();
        out.array(&ends);
        out.array(&self.flags);
        renumber.packed(out, &self.op_name);
        renumber.packed(out, &self.model);
        out.array(&self.trace_id);
        out.u64(self.parent_id.blocks.len() as u64);
        for (offsets, ids) in &self.parent_id.blocks {
            out.array(offsets);
            out.array(ids);
        }
        for a in &self.attrs {
            renumber.packed(out, a);
        }
        put_refs(out, &self.input_refs, renumber);
        put_refs(out, &self.output_refs, renumber);
        self.usage_first.write(out);
        out.array(&self.usage_len);
        renumber.packed(out, &self.usage_model);
        for t in &self.usage_tokens {
            t.narrow.write(out);
            let wide: Vec<(u64, i64)> = t.wide.iter().map(|(&r, &v)| (r, v)).collect();
            out.array(&wide);
        }
        out.u64(self.usage_rows as u64);
        out.array(&self.blocks);
        out.array(&self.index.slots);
    }

    fn read(r: &mut SnapshotReader<'_>) -> Read<Partition> {
        let tenant = TenantId::new(r.string()?).map_err(|e| e.to_string())?;
        let project = ProjectId::parse(&r.string()?).map_err(|e| e.to_string())?;
        let mut p = Partition::new(tenant, project);
        p.rows = r.count()?;
        p.call_id = r.array()?.into();
        p.started_us = Times::read(r)?;
        p.took_us = r.array()?.into();
        p.ends = r.array::<(u32, i64)>()?.into_iter().collect();
        p.flags = r.array()?.into();
        p.op_name = Codes(Packed::read(r)?);
        p.model = Codes(Packed::read(r)?);
        p.trace_id = r.array()?.into();
        for _ in 0..r.count()? {
            p.parent_id.blocks.push((r.array()?, r.array()?));
        }
        for a in &mut p.attrs {
            a.0 = Packed::read(r)?;
        }
        p.input_refs = get_refs(r)?;
        p.output_refs = get_refs(r)?;
        p.usage_first = Packed::read(r)?;
        p.usage_len = r.array()?.into();
        p.usage_model = Codes(Packed::read(r)?);
        for t in &mut p.usage_tokens {
            t.narrow = Packed::read(r)?;
            t.wide = r.array::<(u64, i64)>()?.into_iter().collect();
        }
        p.usage_rows = r.count()?;
        p.blocks = r.array()?.into();
        let slots = r.array()?;
        p.check()?;
        p.index = CallIndex::restored(slots, &p.call_id, p.rows)?;
        Ok(p)
    }

    /// Every column as long as the rows, and every span inside its arena:
    /// a snapshot that passed its checksum but disagrees with itself is
    /// refused rather than served.
    fn check(&self) -> Read<()> {
        let rows = self.rows;
        let refs_ok = |l: &RefLists| {
            l.spans.as_ref().is_none_or(|s| {
                s.len() == rows
                    && s.iter()
                        .all(|&(start, len)| (start as usize + len as usize) <= l.pool.len())
            })
        };
        let usage = self.usage_rows;
        let ok = [
            self.started_us.len(),
            self.took_us.len(),
            self.flags.len(),
            self.op_name.len(),
            self.model.len(),
            self.usage_first.len(),
            self.usage_len.len(),
        ]
        .iter()
        .all(|&n| n == rows)
            && self.took_us.iter().filter(|&&d| d == TOOK_WIDE).count() == self.ends.len()
            && self.ends.keys().all(|&r| (r as usize) < rows && self.took_us[r as usize] == TOOK_WIDE)
            // A duration is only held against a known start.
            && self
                .started_us
                .iter()
                .zip(self.took_us.iter())
                .all(|(s, &d)| s != NO_TIME || d >= TOOK_WIDE)
            && self.usage_model.len() == usage
            && self.usage_tokens.iter().all(|t| {
                t.narrow.len() == usage
                    && t.narrow.count(WIDE) == t.wide.len()
                    && t.wide
                        .keys()
                        .all(|&u| (u as usize) < usage && t.narrow.get(u as usize) == WIDE)
            })
            && (0..rows).all(|row| self.usage_range(row).end <= usage)
            && self.attrs.iter().all(|a| a.len() == rows)
            && self.call_id.len() == rows
            && self.trace_id.len() == rows
            && self.parent_id.blocks.len() <= self.blocks.len()
            && self.parent_id.blocks.iter().enumerate().all(|(b, (offsets, ids))| {
                offsets.len() == ids.len()
                    && offsets.windows(2).all(|w| w[0] < w[1])
                    && offsets.iter().all(|&o| b * BLOCK + (o as usize) < rows)
                    && ids.iter().all(|&id| id != NO_ID)
                    && offsets
                        .iter()
                        .all(|&o| self.flags[b * BLOCK + o as usize] & FLAG_PARENT != 0)
            })
            && self.flags.iter().filter(|&&f| f & FLAG_PARENT != 0).count() == self.parent_id.len()
            && refs_ok(&self.input_refs)
            && refs_ok(&self.output_refs)
            && self.blocks.len() == rows.div_ceil(BLOCK);
        ok.then_some(()).ok_or_else(|| {
            format!(
                "partition {}/{}: columns disagree with its {rows} rows",
                self.tenant.as_str(),
                self.project.as_str()
            )
        })
    }
}

impl CallColumns {
    pub(crate) fn write_snapshot(&self, out: &mut SnapshotWriter) {
        let mut used = vec![false; self.strings.len()];
        for p in &self.partitions {
            for code in p.codes() {
                used[code as usize] = true;
            }
        }
        let mut renumber = Renumber(vec![NONE; used.len()], !used.iter().all(|&u| u));
        let mut kept = 0u32;
        for (code, _) in used.iter().enumerate().filter(|(_, u)| **u) {
            renumber.0[code] = kept;
            kept += 1;
        }
        out.u64(FORMAT);
        out.u64(kept as u64);
        for (code, value) in self.strings.iter() {
            if used[code as usize] {
                out.str(value);
            }
        }
        out.u64(self.partitions.len() as u64);
        for p in &self.partitions {
            p.write(out, &renumber);
        }
    }

    pub(crate) fn read_snapshot(r: &mut SnapshotReader<'_>) -> Read<CallColumns> {
        let format = r.u64()?;
        if format != FORMAT {
            return Err(format!(
                "snapshot format {format:#x}, not {FORMAT:#x}: loading segments instead"
            ));
        }
        let mut columns = CallColumns::new();
        for code in 0..r.count()? {
            let value = r.string()?;
            if columns.strings.intern(&value) as usize != code {
                return Err(format!("string {value:?} appears twice"));
            }
        }
        let strings = columns.strings.len();
        for _ in 0..r.count()? {
            let p = Partition::read(r)?;
            let codes_ok = |c: &[u32]| c.iter().all(|&x| x == NONE || (x as usize) < strings);
            // Codes are held plus one: at most `strings`.
            let packed_ok = |c: &Codes| (c.0.max() as usize) <= strings;
            if !(packed_ok(&p.op_name)
                && packed_ok(&p.model)
                && packed_ok(&p.usage_model)
                && p.attrs.iter().all(packed_ok)
                && codes_ok(&p.input_refs.pool)
                && codes_ok(&p.output_refs.pool))
            {
                return Err("a string code past the strings".into());
            }
            let pi = columns.partitions.len();
            columns
                .by_scope
                .entry(p.tenant.as_str().into())
                .or_default()
                .insert(p.project.as_str().into(), pi);
            columns.partitions.push(p);
        }
        Ok(columns)
    }
}
