//! Polymeter's domain model, shared by every service: typed ids, the call record
//! and how writes merge into it, the closed sets of metrics and aggregations,
//! and the bucket grid that aligns time buckets in a zone.
//!
//! Nothing here does I/O; the services own storage and transport.

pub mod buckets;
pub mod call;
pub mod duration;
pub mod feedback;
pub mod ids;
pub mod measure;
pub mod time;

pub use buckets::{BucketGrid, BucketWidthError};
pub use call::{
    validate_write, CallEnd, CallRecord, CallStart, ModelUsage, RecordError, VendorDimensions,
};
pub use ids::{CallId, IdError, ProjectId, TenantId};
pub use measure::{Aggregation, Metric, UnknownName};
