//! Remembers `x-acs-signature-nonce` values for as long as a request carrying
//! them could still pass the date check, so a captured request cannot be
//! replayed. Bounded: when full, new signed requests are refused (retry later)
//! rather than forgetting nonces that could still be replayed.

use crate::{AuthError, CLOCK_SKEW_SECONDS};
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

pub struct NonceCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashSet<(String, String)>,
    /// (signed time, access key, nonce), oldest first, for expiry.
    by_time: BTreeSet<(i64, String, String)>,
}

impl NonceCache {
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Records `nonce` for `access_key`, signed at `signed_at` (seconds);
    /// refuses it if seen before within the window.
    pub fn check(
        &self,
        access_key: &str,
        nonce: &str,
        signed_at: i64,
        now: i64,
    ) -> Result<(), AuthError> {
        let mut state = self.state.lock().expect("nonce lock");
        // A request signed before this is refused by the date check, so its
        // nonce no longer needs remembering.
        let horizon = now - CLOCK_SKEW_SECONDS;
        while let Some(first) = state.by_time.first().cloned() {
            if first.0 >= horizon {
                break;
            }
            state.by_time.pop_first();
            state.seen.remove(&(first.1, first.2));
        }
        let key = (access_key.to_owned(), nonce.to_owned());
        if state.seen.contains(&key) {
            return Err(AuthError::NonceReused(nonce.to_owned()));
        }
        if state.seen.len() >= self.capacity {
            return Err(AuthError::NonceCacheFull);
        }
        state
            .by_time
            .insert((signed_at, key.0.clone(), key.1.clone()));
        state.seen.insert(key);
        Ok(())
    }
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_key() {
        let cache = NonceCache::new(10);
        cache.check("ak", "n1", 1000, 1000).unwrap();
        assert!(matches!(
            cache.check("ak", "n1", 1000, 1001),
            Err(AuthError::NonceReused(_))
        ));
        cache.check("other", "n1", 1000, 1001).unwrap();
    }

    #[test]
    fn nonces_are_forgotten_only_once_their_dates_are_too_old_to_pass() {
        let cache = NonceCache::new(2);
        cache.check("ak", "a", 1000, 1000).unwrap();
        cache.check("ak", "b", 1000, 1000).unwrap();
        assert!(matches!(
            cache.check("ak", "c", 1000, 1000),
            Err(AuthError::NonceCacheFull)
        ));
        let later = 1000 + CLOCK_SKEW_SECONDS + 1;
        cache.check("ak", "c", later, later).unwrap();
        cache.check("ak", "a", later, later).unwrap();
    }
}
