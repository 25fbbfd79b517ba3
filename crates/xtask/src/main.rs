//! Project automation behind `cargo xtask` (aliased in `.cargo/config.toml`).
//!
//! `cargo xtask bench store [--events N] [--iterations N] [--reseed]` seeds a dedicated database
//! with N audit events (10 M by default) and times the audit viewer's queries through the `store`
//! crate's own functions, printing p50/p95 per query against the 50 ms p95 budget. A seeded
//! database is reused by later runs with the same N. For figures that reflect a release build of
//! the services, run `cargo run --release -p xtask -- bench store`.
//!
//! `cargo xtask bench gateway [--seconds N] [--rate N] [--connections N] [--no-limits]` measures `tools/call`
//! directly against the GenieACS simulator, through the gateway (limits and audit on) and through
//! nginx, and prints throughput, p50/p99, the latency each proxy adds and the budget ratios.
//!
//! This is tooling, never linked into the product. Its only SQL is the bulk seeding of the
//! benchmark database (which the product never does); every measured query is the store's.
#![forbid(unsafe_code)]

mod bench_gateway;
mod bench_store;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "store", rest @ ..] => {
            let options = bench_store::Options::parse(rest)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(bench_store::run(options))
        }
        ["bench", "gateway", rest @ ..] => {
            let options = bench_gateway::Options::parse(rest)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(bench_gateway::run(options))
        }
        _ => bail!(
            "usage: cargo xtask bench gateway [--seconds N] [--rate N] [--connections N] [--no-limits]\n\
                    cargo xtask bench store [--events N] [--iterations N] [--reseed] [--database NAME]\n\
             (DATABASE_URL names the Postgres server; default postgres://postgres@127.0.0.1:5432/postgres)"
        ),
    }
}
