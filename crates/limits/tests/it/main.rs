//! The limits crate's integration tests: one binary, one module per concern. Redis tests run
//! against the real server at `REDIS_URL` (default `redis://127.0.0.1:6379`), each in keys of a
//! fresh random organisation, so tests never see each other's counters.

mod in_process;
mod in_redis;
mod properties;
mod scenarios;
mod support;
