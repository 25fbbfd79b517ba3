//! The behaviour both limiters must show, written once; `in_redis.rs` and `in_process.rs` run
//! each scenario against their limiter.

use limits::Error;

use crate::support::{Env, admitted, check, fresh_org, refused};

/// `max` calls pass, the next is refused by its counter, with a retry-after of about a window.
pub(crate) async fn admits_up_to_max_then_refuses(env: &mut Env) {
    let org = fresh_org();
    let calls = [check(&org, "calls", 60, 5)];
    let start = env.now_ms().await;
    for _ in 0..5 {
        let _ = admitted(env.consume(&calls).await);
    }
    let refusal = refused(env.consume(&calls).await);
    let elapsed = env.now_ms().await - start;
    assert_eq!(refusal.index, 0);
    // The first admission leaves the window 60 s after it (plus at most one 60 ms quantum).
    assert!(
        refusal.retry_after_ms <= 60_060 && refusal.retry_after_ms + elapsed >= 59_940,
        "retry after {} ms, {elapsed} ms after the first call",
        refusal.retry_after_ms
    );
    // A refusal takes nothing: still refused, with no longer a wait.
    let again = refused(env.consume(&calls).await);
    assert!(again.retry_after_ms <= refusal.retry_after_ms);
}

/// A fixed one-second bucket would start afresh at each whole second; a sliding window still
/// counts the calls admitted just before it, until a whole window has passed since them.
pub(crate) async fn slides_across_bucket_edges(env: &mut Env) {
    let org = fresh_org();
    let calls = [check(&org, "calls", 1, 3)];
    let late = env.pass_until_into_second(850).await;
    let mut admitted_at = Vec::new();
    for _ in 0..3 {
        admitted_at.push(admitted(env.consume(&calls).await).admitted_at_ms());
    }
    assert!(
        admitted_at.iter().all(|t| t / 1000 == late / 1000),
        "all three admitted late in the same second: {admitted_at:?}"
    );
    // Early in the next second: a fixed window would admit three more here.
    let early = env.pass_until_into_second(50).await;
    assert_eq!(
        early / 1000,
        late / 1000 + 1,
        "moved on by exactly one second"
    );
    let refusal = refused(env.consume(&calls).await);
    let now = env.now_ms().await;
    let first_leaves = admitted_at[0] + 1000;
    assert!(
        refusal.retry_after_ms >= 1 && refusal.retry_after_ms <= first_leaves - early,
        "retry after {} ms at {now}, the first admission ({}) leaves at {first_leaves}",
        refusal.retry_after_ms,
        admitted_at[0]
    );
    if !env.is_real_time() {
        assert_eq!(
            refusal.retry_after_ms,
            first_leaves - now,
            "exact with a 1 s window"
        );
    }
    // Once the oldest has left, there is room again.
    env.pass(refusal.retry_after_ms + if env.is_real_time() { 5 } else { 0 })
        .await;
    let _ = admitted(env.consume(&calls).await);
}

/// One full counter refuses the whole call, and nothing is taken from the others.
pub(crate) async fn all_counters_or_none(env: &mut Env) {
    let org = fresh_org();
    let full = check(&org, "full", 60, 1);
    let a = check(&org, "a", 60, 3);
    let b = check(&org, "b", 3600, 3);
    let _ = admitted(env.consume(std::slice::from_ref(&full)).await);

    for _ in 0..10 {
        let refusal = refused(env.consume(&[a.clone(), full.clone(), b.clone()]).await);
        assert_eq!(refusal.index, 1, "the full counter is named");
    }
    // `a` and `b` still have all three slots each.
    for _ in 0..3 {
        let _ = admitted(env.consume(&[a.clone(), b.clone()]).await);
    }
    let refusal = refused(env.consume(&[a.clone(), b.clone()]).await);
    assert_eq!(
        refusal.index, 1,
        "both are full; `b` (an hour) stays full longest"
    );
    assert!(refusal.retry_after_ms > 3_000_000);
}

/// A refund frees exactly the slots of that reservation, on every counter it consumed.
pub(crate) async fn refund_gives_the_slots_back(env: &mut Env) {
    let org = fresh_org();
    let a = check(&org, "a", 60, 2);
    let b = check(&org, "b", 5, 2);
    let both = [a.clone(), b.clone()];
    let first = admitted(env.consume(&both).await);
    let _second = admitted(env.consume(&both).await);
    let _ = refused(env.consume(&both).await);

    env.limiter.refund(first).await.unwrap();
    let third = admitted(env.consume(&both).await);
    let _ = refused(env.consume(std::slice::from_ref(&a)).await);
    let _ = refused(env.consume(std::slice::from_ref(&b)).await);

    // Refunding one call gives back one slot, not more.
    env.limiter.refund(third).await.unwrap();
    let _ = admitted(env.consume(std::slice::from_ref(&a)).await);
    let _ = refused(env.consume(std::slice::from_ref(&a)).await);
    let _ = admitted(env.consume(std::slice::from_ref(&b)).await);
    let _ = refused(env.consume(std::slice::from_ref(&b)).await);
}

/// A refund after the admission left the window touches nothing that other calls hold.
pub(crate) async fn late_refund_frees_nothing(env: &mut Env) {
    let org = fresh_org();
    let calls = [check(&org, "calls", 1, 1)];
    let old = admitted(env.consume(&calls).await);
    env.pass(1_100).await;
    let _new = admitted(env.consume(&calls).await);
    env.limiter.refund(old).await.unwrap();
    let _ = refused(env.consume(&calls).await);
}

/// Checks the limiter cannot enforce are errors, and nothing is consumed.
pub(crate) async fn rejects_checks_it_cannot_enforce(env: &mut Env) {
    let org = fresh_org();
    let ok = check(&org, "ok", 60, 1);
    let cases = [
        check(&org, "zero", 60, 0),
        check(&org, "huge", 60, limits::MAX_LIMIT + 1),
        check(&org, "forever", limits::MAX_WINDOW_SECS + 1, 1),
        ok.clone(),
    ];
    for (i, bad) in cases.iter().enumerate() {
        let err = env
            .limiter
            .consume(&[ok.clone(), bad.clone()])
            .await
            .expect_err("refused as invalid");
        assert!(
            matches!(err, Error::InvalidCheck { index: 1, .. }),
            "case {i}: {err}"
        );
    }
    let _ = admitted(env.consume(std::slice::from_ref(&ok)).await);
    // A call with no counters is admitted without asking anyone.
    let _ = admitted(env.consume(&[]).await);
}
