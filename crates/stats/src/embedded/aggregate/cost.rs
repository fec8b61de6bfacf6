//! Cost at query time: each usage row priced by its model's fixed price
//! (exact picodollars), per partition, so sums are exact and scan-order free.

use super::*;
use crate::embedded::columns::Codes;

/// A cost metric's inputs for one partition: each usage row's model and token
/// counters, and the partition's price per model code.
#[derive(Clone, Copy)]
pub(super) struct CostSource<'p> {
    pub(super) kind: CostKind,
    pub(super) models: &'p Codes,
    pub(super) tokens: [&'p TokenColumn; 4],
    pub(super) prices: Option<&'p FxHashMap<u32, FixedPrice>>,
}

#[derive(Clone, Copy)]
pub(super) enum CostKind {
    Input,
    Output,
    Total,
}

impl CostSource<'_> {
    /// One usage row's cost in picodollars; 0 when its model has no price.
    #[inline]
    pub(super) fn of(&self, u: usize) -> i64 {
        let Some(price) = self.prices.and_then(|p| p.get(&self.models.get(u))) else {
            return 0;
        };
        let t = |i: usize| self.tokens[i].get(u);
        let (input, output, total) = price.cost(Tokens {
            input: t(0),
            output: t(1),
            cache_read: t(2),
            cache_write: t(3),
        });
        match self.kind {
            CostKind::Input => input,
            CostKind::Output => output,
            CostKind::Total => total,
        }
    }
}

/// Each model code used in `p`, priced for `p`'s project.
pub(super) fn partition_prices(
    p: &Partition,
    strings: &Interner,
    pricing: &Pricing,
) -> FxHashMap<u32, FixedPrice> {
    let mut prices = FxHashMap::default();
    let mut seen = rustc_hash::FxHashSet::default();
    for code in p.usage_model.iter() {
        if !seen.insert(code) {
            continue;
        }
        let model = strings.value(code).unwrap_or("");
        if let Some(price) = pricing.price(p.project.as_str(), model) {
            prices.insert(code, price.fixed());
        }
    }
    prices
}
