//! The in-process limiter: the shared scenarios on a hand-moved clock, the hammer on the real
//! monotonic clock, and its memory bounds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use limits::{Error, InProcessLimiter, Limiter, ManualClock, Outcome};

use crate::scenarios;
use crate::support::{Env, admitted, check, fresh_org, most_in_any_window, refused};

#[tokio::test]
async fn admits_up_to_max_then_refuses() {
    scenarios::admits_up_to_max_then_refuses(&mut Env::in_process()).await;
}

#[tokio::test]
async fn slides_across_bucket_edges() {
    scenarios::slides_across_bucket_edges(&mut Env::in_process()).await;
}

#[tokio::test]
async fn all_counters_or_none() {
    scenarios::all_counters_or_none(&mut Env::in_process()).await;
}

#[tokio::test]
async fn refund_gives_the_slots_back() {
    scenarios::refund_gives_the_slots_back(&mut Env::in_process()).await;
}

#[tokio::test]
async fn late_refund_frees_nothing() {
    scenarios::late_refund_frees_nothing(&mut Env::in_process()).await;
}

#[tokio::test]
async fn rejects_checks_it_cannot_enforce() {
    scenarios::rejects_checks_it_cannot_enforce(&mut Env::in_process()).await;
}

/// 200 tasks on two worker threads hammer one counter for 2 s on the real clock; no
/// window-long interval holds more than `max` admissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_never_admit_more_than_max_in_any_window() {
    const MAX: u32 = 40;
    let limiter: Limiter = InProcessLimiter::new().into();
    let calls = Arc::new([check(&fresh_org(), "hammered", 1, MAX)]);
    let admitted_at = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (limiter, calls, admitted_at) = (limiter.clone(), calls.clone(), admitted_at.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match limiter.consume(&calls[..]).await.unwrap() {
                    Outcome::Admitted(r) => admitted_at.lock().unwrap().push(r.admitted_at_ms()),
                    Outcome::Refused(r) => {
                        tokio::time::sleep(Duration::from_millis(r.retry_after_ms.min(5))).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let admitted_at = admitted_at.lock().unwrap();
    let most = most_in_any_window(&admitted_at, 1_000);
    assert!(most <= MAX as usize, "{most} admitted within one window");
    assert!(
        admitted_at.len() >= 2 * MAX as usize,
        "only {}",
        admitted_at.len()
    );
}

/// Counters whose admissions have all left their window are dropped, and past `max_counters`
/// live counters a new one is refused with an error rather than growing memory.
#[test]
fn idle_counters_are_dropped_and_live_ones_are_bounded() {
    let clock = ManualClock::starting_at(5_000);
    let limiter = InProcessLimiter::with_clock(clock.clone(), 3);
    let org = fresh_org();
    for name in ["a", "b", "c"] {
        let _ = admitted(limiter.consume(&[check(&org, name, 1, 1)]).unwrap());
    }
    assert_eq!(limiter.counters(), 3);
    let err = limiter
        .consume(&[check(&org, "d", 1, 1)])
        .expect_err("a fourth live counter is one too many");
    assert!(matches!(err, Error::TooManyCounters { max: 3 }), "{err}");
    // A full counter still answers with a refusal, not an error.
    let _ = refused(limiter.consume(&[check(&org, "a", 1, 1)]).unwrap());

    clock.advance(1_000);
    let _ = admitted(limiter.consume(&[check(&org, "d", 1, 1)]).unwrap());
    assert_eq!(limiter.counters(), 1, "a, b and c were idle and dropped");

    // A counter emptied by a refund is dropped at the next sweep.
    let r = admitted(limiter.consume(&[check(&org, "e", 60, 1)]).unwrap());
    limiter.refund(r);
    clock.advance(1_000);
    let _ = admitted(limiter.consume(&[check(&org, "f", 60, 1)]).unwrap());
    assert_eq!(limiter.counters(), 1, "only f holds anything");
}
