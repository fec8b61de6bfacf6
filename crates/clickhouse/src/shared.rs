//! [`Shared`]: a replica's in-memory copy of state every replica keeps in
//! ClickHouse (price overrides, retention periods). Readers take a cheap
//! snapshot; a change made here is published at once; a background re-read
//! brings in changes made through other replicas. A re-read that overlaps a
//! change made here is dropped (it may predate the change), and the next
//! one runs.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub struct Shared<S> {
    state: RwLock<Arc<S>>,
    /// Changes published here, and changes under way.
    changes: AtomicU64,
    writing: AtomicUsize,
}

/// A change under way; while it lives, re-reads are not applied.
pub struct Change<'a, S>(&'a Shared<S>);

impl<S> Change<'_, S> {
    /// Makes `next` the state (once it is durable in its backend).
    pub fn publish(self, next: S) {
        *self.0.state.write().expect("shared state") = Arc::new(next);
    }
}

impl<S> Drop for Change<'_, S> {
    fn drop(&mut self) {
        self.0.changes.fetch_add(1, Ordering::SeqCst);
        self.0.writing.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S: Send + Sync + 'static> Shared<S> {
    pub fn new(state: S) -> Self {
        Self {
            state: RwLock::new(Arc::new(state)),
            changes: AtomicU64::new(0),
            writing: AtomicUsize::new(0),
        }
    }

    /// The state as of now.
    pub fn get(&self) -> Arc<S> {
        self.state.read().expect("shared state").clone()
    }

    /// Starts a change (callers serialise their own changes).
    pub fn change(&self) -> Change<'_, S> {
        self.writing.fetch_add(1, Ordering::SeqCst);
        Change(self)
    }

    /// Re-reads the state with `load` every `every`, for as long as `owner`
    /// (which holds this state) lives; `what` names it in warnings.
    pub fn keep_fresh<O, F, Fut, E>(
        owner: &Arc<O>,
        shared: fn(&O) -> &Shared<S>,
        every: std::time::Duration,
        what: &'static str,
        load: F,
    ) where
        O: Send + Sync + 'static,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, E>> + Send,
        E: std::fmt::Display,
    {
        let weak = Arc::downgrade(owner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(owner) = weak.upgrade() else { return };
                let this = shared(&owner);
                let before = this.changes.load(Ordering::SeqCst);
                match load().await {
                    Ok(state) => {
                        let mut current = this.state.write().expect("shared state");
                        if this.writing.load(Ordering::SeqCst) == 0
                            && this.changes.load(Ordering::SeqCst) == before
                        {
                            *current = Arc::new(state);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot refresh the {what}"),
                }
            }
        });
    }
}
