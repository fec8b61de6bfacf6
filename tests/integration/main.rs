//! Polymeter's integration suite, one binary. Each test boots the real stack
//! (HTTP → gateway → gRPC → services → store) on ephemeral loopback ports.

mod alibaba;
mod calls_stats;
mod clickhouse;
mod conformance;
mod consistency;
mod console;
mod contract;
mod cost;
mod crash;
mod deploy;
mod envelopes;
mod feedback;
mod hostile;
mod ingest;
mod otlp;
mod processes;
mod qianfan;
mod retention;
mod support;
mod tenancy;
mod tracing_context;
mod vendor_sdks;
