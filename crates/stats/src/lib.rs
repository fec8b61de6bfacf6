//! The stats service: it owns call records and answers `AggregateCalls`, the
//! one aggregation query every dialect ends in ([`aggregate::aggregate`]).
//!
//! Records live behind the [`store::CallStore`] trait, so the embedded store
//! and ClickHouse plug in without touching the query code.

pub mod aggregate;
pub mod columns;
pub mod error;
pub mod prices;
pub mod query;
pub mod service;
pub mod store;
pub mod table;

pub use columns::CallColumns;
pub use error::StatsError;
pub use service::{serve, StatsServer};
pub use store::{CallStore, DurableStore, StoreError, StoreSize};
