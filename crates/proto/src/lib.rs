//! The internal protocol every Polymeter process speaks: `polymeter.v1`, generated
//! from `proto/polymeter/v1/polymeter.proto`. Nothing but generated code lives
//! here, so every service depends on one definition of the wire.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("polymeter.v1");
}
