//! Integration tests for `genieacs-sim`: the server runs in-process on 127.0.0.1 port 0 and is
//! driven over real HTTP, by a hand-rolled client (protocol edge cases) and by real peers from
//! npm (the TypeScript SDK client and the official conformance suite).

mod acs;
mod peers;
mod support;
mod transport;
