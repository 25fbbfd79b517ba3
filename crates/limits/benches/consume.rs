//! One call's consume latency: against Redis with 1 and 3 counters, beside a plain Redis PING
//! round trip on the same connection (what any Redis-backed check costs at least), and the
//! in-process limiter. Calls cycle over 1,024 grants so no counter fills up (as with many
//! agents), each counter with a one-minute window and a max of 1,000,000.
//!
//! Run: `cargo bench -p limits` (Redis at `REDIS_URL`, default `redis://127.0.0.1:6379`).
//! Prints criterion's figures, then the medians and the ratio of each to the PING baseline.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use limits::{InProcessLimiter, LimitCheck, Limiter, Outcome, RedisConfig, RedisLimiter};
use policy::{Pointer, Scope};

const GRANTS: usize = 1024;

/// For each grant, the counters one call consumes: `calls` per grant, then `reads` per grant
/// and `calls` per identity when `counters` is 3. (An organisation-wide counter would fill up:
/// the in-process limiter runs a million calls a second.)
fn calls(org: &str, counters: usize) -> Vec<Vec<LimitCheck>> {
    let check = |scope: Scope, id: &str, counter: &str| LimitCheck {
        rule: Pointer::root().push("all_tools").push("limits").push(0),
        key: format!("gh:{{{org}}}:rl:{scope}:{id}:{counter}:60"),
        counter: counter.into(),
        scope,
        window_secs: 60,
        max: limits::MAX_LIMIT,
    };
    (0..GRANTS)
        .map(|g| {
            let grant = format!("grant-{g}");
            let all = [
                check(Scope::Grant, &grant, "calls"),
                check(Scope::Grant, &grant, "reads"),
                check(Scope::Identity, &format!("agent-{g}"), "calls"),
            ];
            all[..counters].to_vec()
        })
        .collect()
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = rt
        .block_on(RedisLimiter::connect(&url, RedisConfig::default()))
        .expect("Redis at REDIS_URL answers");
    let org = format!("bench-{}", std::process::id());
    let one = calls(&org, 1);
    let three = calls(&org, 3);
    let redis_limiter: Limiter = redis.clone().into();
    let in_process: Limiter = InProcessLimiter::new().into();

    let consume = |limiter: &Limiter, calls: &[Vec<LimitCheck>], i: &mut usize| {
        *i = (*i + 1) % GRANTS;
        let outcome = rt.block_on(limiter.consume(black_box(&calls[*i])));
        let _kept = match outcome.expect("limiter answers") {
            Outcome::Admitted(r) => black_box(r),
            Outcome::Refused(r) => panic!("a bench counter filled up: {r:?}"),
        };
    };

    let mut group = c.benchmark_group("limits");
    group.bench_function("baseline_redis_ping", |b| {
        b.iter(|| rt.block_on(redis.ping()).expect("PONG"))
    });
    for (name, limiter, calls) in [
        ("redis_consume_1_counter", &redis_limiter, &one),
        ("redis_consume_3_counters", &redis_limiter, &three),
        ("in_process_consume_1_counter", &in_process, &one),
        ("in_process_consume_3_counters", &in_process, &three),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| b.iter(|| consume(limiter, calls, &mut i)));
    }
    group.finish();
    c.final_summary();

    let Some(baseline) = median(&out, "baseline_redis_ping") else {
        // `cargo bench -- --list` and filtered runs measure nothing to compare.
        return;
    };
    println!("\none call's consume, median:");
    println!(
        "  {:32} {:>9.1} µs  1.00× baseline",
        "baseline: Redis PING round trip",
        baseline / 1000.0
    );
    for name in [
        "redis_consume_1_counter",
        "redis_consume_3_counters",
        "in_process_consume_1_counter",
        "in_process_consume_3_counters",
    ] {
        if let Some(m) = median(&out, name) {
            println!(
                "  {name:32} {:>9.3} µs  {:.2}× baseline",
                m / 1000.0,
                m / baseline
            );
        }
    }
}

fn median(out: &Path, name: &str) -> Option<f64> {
    let path = out.join("limits").join(name).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}
