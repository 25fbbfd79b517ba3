//! Project automation behind `cargo xtask` (aliased in `.cargo/config.toml`).
//!
//! `cargo xtask bench store [--events N] [--iterations N] [--reseed]` seeds a dedicated database
//! with N audit events (10 M by default) and times the audit viewer's queries through the `store`
//! crate's own functions, printing p50/p95 per query against the 50 ms p95 budget. A seeded
//! database is reused by later runs with the same N. For figures that reflect a release build of
//! the services, run `cargo run --release -p xtask -- bench store`.
//!
//! `cargo xtask bench gateway [--seconds N] [--slice N] [--rate N] [--connections N] [--sessions N] …`
//! measures `tools/call` directly against the GenieACS simulator, through nginx, through the
//! gateway (limiter, audit journal and ingester on) and through the gateway with its durable path
//! off, in interleaved slices, plus the gateway's RSS idle and with N sessions open, and prints
//! each DESIGN.md §11 budget with PASS or MISS.
//! `cargo xtask bench audit [--events N] [--ingesters N] …` fills Redis shard streams with N calls
//! (write-ahead and outcome each) and times the audit ingester moving them into a fresh database,
//! printing events/s against the 20,000 events/s budget.
//!
//! `cargo xtask load [--quick] …` is the load and fault harness: private Postgres and Redis,
//! the simulator, N gateway replicas behind a TCP balancer and the ingester, all on loopback;
//! it prints throughput, latency, memory, rate-limit exactness, policy propagation and four fault
//! drills with an audit-loss check (see `load.rs` and the crate's README).
//!
//! This is tooling, never linked into the product. Its only SQL is the bulk seeding of the
//! benchmark database (which the product never does); every measured query is the store's.
#![forbid(unsafe_code)]

mod bench_audit;
mod bench_gateway;
mod bench_store;
mod bench_verify;
mod load;

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
            runtime()?.block_on(bench_store::run(options))
        }
        ["bench", "gateway", rest @ ..] => {
            let options = bench_gateway::Options::parse(rest)?;
            runtime()?.block_on(bench_gateway::run(options))
        }
        // Started by `bench gateway` only: its gateway with the durable path off.
        ["bench-serve-unaudited-gateway"] => bench_gateway::serve_unaudited(),
        ["load", rest @ ..] => {
            let options = load::Options::parse(rest)?;
            runtime()?.block_on(load::run(options))
        }
        ["bench", "audit", rest @ ..] => {
            let options = bench_audit::Options::parse(rest)?;
            runtime()?.block_on(bench_audit::run(options))
        }
        ["bench", "verify", rest @ ..] => {
            let options = bench_verify::Options::parse(rest)?;
            runtime()?.block_on(bench_verify::run(options))
        }
        _ => bail!(
            "usage: cargo xtask load [--quick] [--replicas N] … (see crates/xtask/README.md)\n\
                    cargo xtask bench gateway [--seconds N] [--slice N] [--rate N] [--connections N] [--sessions N] [--nginx-workers N] [--no-limits]\n\
                    cargo xtask bench store [--events N] [--iterations N] [--reseed] [--database NAME]\n\
                    cargo xtask bench audit [--events N] [--orgs N] [--ingesters N] [--batch N] [--shards N] [--database NAME]\n\
                    cargo xtask bench verify [--events N] [--database NAME]\n\
             (DATABASE_URL names the Postgres server; default postgres://postgres@127.0.0.1:5432/postgres; REDIS_URL the Redis)"
        ),
    }
}

/// The benchmarks' runtime: two workers, like the machine the budgets are set for.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
