//! Usage of models the shipped price table does not know (they cost
//! 0). Each such usage entry counts in `polymeter_unpriced_usage_total`, and
//! each such model is logged once per process, so a missing price is noticed
//! (and fixed with a project override) instead of silently under-reporting.

use polymeter_pricing::PriceTable;
use polymeter_proto::v1 as pb;
use std::collections::HashSet;
use std::sync::Mutex;

/// Distinct unpriced models remembered for logging; beyond this, counted only.
const REMEMBERED: usize = 1000;

static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Counts (and logs once) the unpriced models in `writes`.
pub fn note(writes: &[pb::CallWrite]) {
    let table = PriceTable::builtin();
    for usage in writes
        .iter()
        .filter_map(|w| w.end.as_ref())
        .flat_map(|e| &e.usage)
    {
        if table.lookup(&usage.model).is_some() {
            continue;
        }
        metrics::counter!("polymeter_unpriced_usage_total").increment(1);
        let mut logged = LOGGED.lock().expect("unpriced lock");
        let set = logged.get_or_insert_with(HashSet::new);
        if set.len() < REMEMBERED && set.insert(usage.model.clone()) {
            tracing::warn!(
                model = %usage.model,
                "model not in the price table: its calls cost 0 unless a project price override is set"
            );
        }
    }
}
