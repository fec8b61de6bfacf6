//! The feedback service owns feedback records (scorer ratings and tags about
//! calls and agent spans) and answers `AggregateFeedback`. Records are kept by
//! the same embedded store machinery as calls (`polymeter-store`): a
//! write-ahead log, Parquet segments, and an in-memory columnar table
//! ([`table::FeedbackTable`]) that [`aggregate::aggregate`] scans.

pub mod aggregate;
pub mod service;
pub mod table;

pub use service::{serve, FeedbackServer};
pub use table::FeedbackTable;

use polymeter_store::{Durable, Options, StoreError};
use std::path::Path;

/// Feedback in the durable embedded store under `dir`.
pub type FeedbackStore = Durable<FeedbackTable>;

/// Opens (or creates) the feedback store in `dir`, loading its segments and
/// replaying its log. Fails, naming the file, when stored data is corrupt.
pub fn open_store(dir: &Path, options: Options) -> Result<FeedbackStore, StoreError> {
    Durable::open(dir, FeedbackTable::default(), options)
}
