//! Integration tests of the gateway: real Postgres (a fresh database per test), real Redis, real
//! upstreams (genieacs-sim, a recording upstream, broken ones) and, in `peers`, the TypeScript SDK.

mod approvals;
mod audit_path;
mod auth;
mod concurrency;
mod config;
mod conformance;
mod egress;
mod enforce;
mod guards;
mod hostile;
mod peers;
mod pinning;
mod sessions;
mod shutdown;
mod streams;
mod support;
mod upstream;
