//! The Redis limiter against the real Redis server: the shared scenarios, then what only a
//! shared store shows (replicas, expiry, memory, failure).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use limits::{Error, Limiter, Outcome, RedisConfig, RedisLimiter};

use crate::scenarios;
use crate::support::{Env, admitted, check, fresh_org, most_in_any_window, redis_connection};

#[tokio::test]
async fn admits_up_to_max_then_refuses() {
    scenarios::admits_up_to_max_then_refuses(&mut Env::redis().await).await;
}

#[tokio::test]
async fn slides_across_bucket_edges() {
    scenarios::slides_across_bucket_edges(&mut Env::redis().await).await;
}

#[tokio::test]
async fn all_counters_or_none() {
    scenarios::all_counters_or_none(&mut Env::redis().await).await;
}

#[tokio::test]
async fn refund_gives_the_slots_back() {
    scenarios::refund_gives_the_slots_back(&mut Env::redis().await).await;
}

#[tokio::test]
async fn late_refund_frees_nothing() {
    scenarios::late_refund_frees_nothing(&mut Env::redis().await).await;
}

#[tokio::test]
async fn rejects_checks_it_cannot_enforce() {
    scenarios::rejects_checks_it_cannot_enforce(&mut Env::redis().await).await;
}

/// Two replicas (two limiters, two connections) and 200 tasks hammer one counter for 4 s; in
/// no window-long interval were more than `max` calls admitted, judged from the admission
/// times the script stamped (Redis's clock), not from the counter itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_admit_more_than_max_in_any_window() {
    const MAX: u32 = 40;
    const WINDOW_MS: u64 = 1_000;
    let org = fresh_org();
    let calls = Arc::new([check(&org, "hammered", WINDOW_MS / 1000, MAX)]);
    let replicas: [Limiter; 2] = [
        crate::support::redis_limiter().await.into(),
        crate::support::redis_limiter().await.into(),
    ];
    let admitted_at = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(Mutex::new(0_u64));
    let deadline = Instant::now() + Duration::from_secs(4);

    let mut tasks = Vec::new();
    for task in 0..200 {
        let limiter = replicas[task % 2].clone();
        let (calls, admitted_at, refusals) = (calls.clone(), admitted_at.clone(), refusals.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match limiter.consume(&calls[..]).await.expect("Redis answers") {
                    Outcome::Admitted(r) => admitted_at.lock().unwrap().push(r.admitted_at_ms()),
                    Outcome::Refused(r) => {
                        *refusals.lock().unwrap() += 1;
                        // Do not wait as long as told: keep the pressure on the window's edge.
                        tokio::time::sleep(Duration::from_millis(r.retry_after_ms.min(20))).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let admitted_at = admitted_at.lock().unwrap();
    let most = most_in_any_window(&admitted_at, WINDOW_MS);
    let refusals = *refusals.lock().unwrap();
    assert!(
        most <= MAX as usize,
        "{most} admitted within one window (max {MAX})"
    );
    // And the limiter is not simply refusing everything: close to `max` per window got through.
    assert!(
        admitted_at.len() >= 3 * MAX as usize,
        "only {} admitted in 4 s",
        admitted_at.len()
    );
    assert!(
        refusals > 1_000,
        "the counter was under pressure ({refusals} refusals)"
    );
}

/// Counters vanish by themselves: their keys expire one window (plus a quantum) after the last
/// admission, and a counter that was emptied by refunds is deleted at once.
#[tokio::test]
async fn idle_counters_expire() {
    let org = fresh_org();
    let limiter = crate::support::redis_limiter().await;
    let mut con = redis_connection().await;
    let calls = [check(&org, "calls", 1, 5)];
    let counts = calls[0].key.clone();
    let quanta = format!("{counts}:q");

    let _kept = admitted(limiter.consume(&calls).await.unwrap());
    for key in [&counts, &quanta] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!((1..=1_001).contains(&ttl), "{key} expires in {ttl} ms");
    }
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let exists: u32 = redis::cmd("EXISTS")
        .arg(&counts)
        .arg(&quanta)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    let refunded = admitted(limiter.consume(&calls).await.unwrap());
    limiter.refund(refunded).await.unwrap();
    let exists: u32 = redis::cmd("EXISTS")
        .arg(&counts)
        .arg(&quanta)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0, "an empty counter is deleted");
}

/// However high `max` is, a counter holds at most 1,001 quanta: here 1.3 s of back-to-back
/// admissions on a 1 s window (quantum 1 ms) with a max of a million.
#[tokio::test]
async fn memory_per_counter_is_bounded_whatever_max() {
    let org = fresh_org();
    let limiter = crate::support::redis_limiter().await;
    let mut con = redis_connection().await;
    let calls = Arc::new([check(&org, "calls", 1, limits::MAX_LIMIT)]);
    let deadline = Instant::now() + Duration::from_millis(1_300);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (limiter, calls) = (limiter.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0_u64;
            while Instant::now() < deadline {
                let _ = admitted(limiter.consume(&calls[..]).await.unwrap());
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let quanta: u64 = redis::cmd("ZCARD")
        .arg(format!("{}:q", calls[0].key))
        .query_async(&mut con)
        .await
        .unwrap();
    let fields: u64 = redis::cmd("HLEN")
        .arg(&calls[0].key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(total > 1_001, "enough admissions to matter ({total})");
    assert!(quanta <= 1_001, "{quanta} quanta held");
    assert_eq!(fields, quanta + 1, "one count per quantum, and the total");
}

/// Nothing listens on port 1: connecting fails at once, with an error, never a limiter that
/// would admit.
#[tokio::test]
async fn unreachable_redis_is_an_error_quickly() {
    let started = Instant::now();
    let err = RedisLimiter::connect("redis://127.0.0.1:1", RedisConfig::default())
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(err, Error::Unavailable(_) | Error::Timeout(_)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let err = RedisLimiter::connect("http://example.com", RedisConfig::default())
        .await
        .expect_err("not a Redis URL");
    assert!(matches!(err, Error::InvalidUrl(_)), "{err}");
}

/// A Redis of the test's own goes away mid-run: every call fails within the call timeout (fail
/// closed), and once it is back, the same limiter works again without being rebuilt.
#[tokio::test]
async fn redis_going_away_fails_closed_then_recovers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let config = RedisConfig {
        call_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
    };
    let mut server = PrivateRedis::start(port);
    let limiter = RedisLimiter::connect(&url, config).await.unwrap();
    let calls = [check(&fresh_org(), "calls", 60, 100)];
    let _ = admitted(limiter.consume(&calls).await.unwrap());

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = limiter
            .consume(&calls)
            .await
            .expect_err("no Redis, no admission");
        assert!(
            matches!(err, Error::Unavailable(_) | Error::Timeout(_)),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "failed after {:?}",
            started.elapsed()
        );
    }

    let _server = PrivateRedis::start(port);
    let mut result = limiter.consume(&calls).await;
    for _ in 0..20 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        result = limiter.consume(&calls).await;
    }
    let _ = admitted(result.expect("the limiter reconnects by itself"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own, that keeps nothing on disk; stopped when dropped.
struct PrivateRedis(Option<Child>);

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        PrivateRedis(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
