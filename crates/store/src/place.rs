//! Where records live on disk. Each segment holds the records of one scope
//! (a tenant's project) placed on one UTC day, so deleting a project, or the
//! days of it past its retention, removes whole files and rewrites nothing.

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// A write's place: its scope, and the UTC day (days since 1970-01-01) of the
/// record it belongs to, as the table knows that record when the write is
/// compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub tenant: &'a str,
    pub project: &'a str,
    pub day: i32,
}

impl Place<'_> {
    pub fn scope(&self) -> u64 {
        scope_hash(self.tenant, self.project)
    }
}

/// The UTC day of a time in microseconds.
pub fn day_of_us(us: i64) -> i32 {
    us.div_euclid(DAY_US) as i32
}

/// A scope's name in segment file names: a 64-bit xxHash of tenant and
/// project (0xFF, which UTF-8 never contains, between them). Files also carry
/// the two names in their Parquet metadata, for people reading them.
pub fn scope_hash(tenant: &str, project: &str) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0);
    std::hash::Hasher::write(&mut h, tenant.as_bytes());
    std::hash::Hasher::write(&mut h, &[0xFF]);
    std::hash::Hasher::write(&mut h, project.as_bytes());
    std::hash::Hasher::finish(&h)
}

/// Whether all of `day` lies before `cutoff_us`.
pub fn day_before(day: i32, cutoff_us: i64) -> bool {
    (day as i64 + 1).saturating_mul(DAY_US) <= cutoff_us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_before_a_cutoff_only_when_all_of_it_is() {
        let day = day_of_us(DAY_US * 10 + 5);
        assert_eq!(day, 10);
        assert!(!day_before(day, DAY_US * 11 - 1));
        assert!(day_before(day, DAY_US * 11));
        assert_eq!(day_of_us(-1), -1);
    }

    #[test]
    fn scopes_hash_stably_and_apart() {
        assert_eq!(scope_hash("t", "e/p"), scope_hash("t", "e/p"));
        assert_ne!(scope_hash("t", "e/p"), scope_hash("te", "/p"));
        // Fixed: segment names written today must be found tomorrow.
        assert_eq!(
            format!("{:016x}", scope_hash("acme", "acme/app")),
            "0589ea5d4647c0fb"
        );
    }
}
