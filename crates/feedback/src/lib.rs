//! The feedback service owns feedback records (scorer ratings and tags about
//! calls and agent spans) and answers `AggregateFeedback`.
//!
//! The path of a query: [`service`] (gRPC) checks the request into a typed
//! [`query::FeedbackQuery`] and asks its store
//! [`store::FeedbackStore::aggregate`]; the embedded store (the same
//! write-ahead log and Parquet machinery as calls, `polymeter-store`) answers
//! in [`aggregate`] over its columnar [`table::FeedbackTable`]; the
//! ClickHouse store ([`clickhouse`]) in one `GROUP BY`. Both hand their cells
//! to [`query::respond`], so they answer alike.

pub mod aggregate;
pub mod clickhouse;
pub mod error;
pub mod query;
pub mod service;
pub mod store;
pub mod table;

pub use clickhouse::ClickHouseFeedbackStore;
pub use error::FeedbackError;
pub use service::{serve, FeedbackServer};
pub use store::{EmbeddedFeedbackStore, FeedbackStore};
pub use table::FeedbackTable;
