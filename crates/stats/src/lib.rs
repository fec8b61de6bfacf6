//! The stats service: it owns call records and answers `AggregateCalls`, the
//! one aggregation query every dialect ends in.
//!
//! The path of a query through this crate: [`service`] (gRPC) checks the
//! request into a typed [`query::CallQuery`] and asks its store
//! [`store::CallStore::aggregate`]; the embedded store answers in
//! [`embedded::aggregate`], the ClickHouse store in one SQL statement
//! ([`clickhouse::sql`]). Both finish their folds by the rules in [`answer`].
//! Nothing above the store trait knows which store it has.

pub mod answer;
pub mod clickhouse;
pub mod embedded;
pub mod error;
pub mod prices;
pub mod query;
pub mod service;
pub mod store;

pub use embedded::EmbeddedStore;
pub use error::StatsError;
pub use service::{serve, StatsServer};
pub use store::{AggregateResult, CallStore, ResultRow, StoreError, StoreSize};
