//! Exact percentiles: linear interpolation between the closest ranks
//! (numpy's default, SQL's `percentile_cont`, ClickHouse's
//! `quantileExactInclusive`), by selection rather than a full sort.

/// Exact percentile by linear interpolation between the closest ranks
/// (numpy's default, SQL's `percentile_cont`) of `values`, which it reorders.
pub fn percentile(values: &mut [i64], p: f64) -> Option<f64> {
    percentiles(values, &[p])[0]
}

/// Several exact percentiles of the same values, in the order of `ps`. Ranks
/// are taken in ascending order, each selection working only on the part above
/// the previous one, so three percentiles cost about twice one, not three times.
pub fn percentiles(values: &mut [i64], ps: &[f64]) -> Vec<Option<f64>> {
    let mut out = vec![None; ps.len()];
    let Some(last) = values.len().checked_sub(1) else {
        return out;
    };
    let mut order: Vec<usize> = (0..ps.len()).collect();
    order.sort_by(|a, b| ps[*a].total_cmp(&ps[*b]));
    // values[..from] are all <= values[from..]
    let mut from = 0;
    for i in order {
        // ClickHouse's `quantileExactInclusive` arithmetic, step for step
        // (1-based rank h, the fraction taken from h), so that both stores
        // produce the same bits and not merely close numbers.
        let h = ps[i] / 100.0 * last as f64 + 1.0;
        let n = (h as usize).clamp(1, last + 1);
        let lo = (n - 1).max(from);
        let (_, &mut a, above) = values[from..].select_nth_unstable(lo - from);
        out[i] = Some(if n > last || above.is_empty() {
            a as f64
        } else {
            let b = *above.iter().min().expect("not empty");
            a as f64 + (h - n as f64) * (b - a) as f64
        });
        from = lo;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_interpolates_between_closest_ranks() {
        let mut v = [40, 10, 30, 20];
        assert_eq!(percentile(&mut v, 0.0), Some(10.0));
        assert_eq!(percentile(&mut v, 50.0), Some(25.0));
        assert_eq!(percentile(&mut v, 90.0), Some(37.0));
        assert_eq!(percentile(&mut v, 100.0), Some(40.0));
        assert_eq!(percentile(&mut [7], 99.9), Some(7.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}

#[cfg(test)]
mod percentile_tests {
    use super::{percentile, percentiles};
    use rand::{Rng, SeedableRng};

    #[test]
    fn several_percentiles_at_once_match_one_at_a_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<i64> = (0..n).map(|_| rng.random_range(-1000..1000)).collect();
            let ps = [99.0, 0.0, 50.0, 95.0, 100.0, 99.9, 12.5];
            let together = percentiles(&mut values.clone(), &ps);
            for (p, got) in ps.iter().zip(together) {
                assert_eq!(got, percentile(&mut values.clone(), *p), "n={n} p={p}");
                let mut sorted = values.clone();
                sorted.sort();
                let rank = p / 100.0 * (n - 1) as f64;
                let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
                let want =
                    sorted[lo] as f64 + (sorted[hi] - sorted[lo]) as f64 * (rank - lo as f64);
                assert!(
                    (got.unwrap() - want).abs() < 1e-9,
                    "n={n} p={p}: {got:?} vs {want}"
                );
            }
        }
    }

    #[test]
    fn no_values_have_no_percentiles() {
        assert_eq!(percentiles(&mut [], &[50.0, 99.0]), vec![None, None]);
    }
}
