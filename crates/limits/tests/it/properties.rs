//! A property test of the in-process limiter on a hand-moved clock: random sequences of clock
//! moves, calls over random sets of three counters and refunds, checked against
//!
//! - the guarantee itself: in no interval of a counter's window are more than its `max`
//!   admissions that were not refunded (from the admission times alone), and
//! - a model of the quantised window (see the crate docs), which decides exactly as the
//!   limiter must: admit iff every counter's live count is below its max; on refusal, name the
//!   counter that stays full longest and the first moment it has room again.

use limits::{InProcessLimiter, LimitCheck, ManualClock, Outcome, Reservation};
use proptest::prelude::*;

use crate::support::{check, most_in_any_window};

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Consume(u8),
    Refund(prop::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0_u64..1_500).prop_map(Op::Advance),
        6 => (1_u8..8).prop_map(Op::Consume),
        1 => any::<prop::sample::Index>().prop_map(Op::Refund),
    ]
}

fn counters() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec((prop::sample::select(vec![1_u64, 2, 3, 60]), 1_u32..6), 3)
}

/// The admissions of one counter, by time, with whether they were refunded.
struct Model {
    checks: Vec<LimitCheck>,
    admissions: Vec<Vec<(u64, usize)>>,
    refunded: Vec<bool>,
}

impl Model {
    /// Admissions counted at `now`: not refunded, in a quantum that is still live.
    fn live(&self, counter: usize, now: u64) -> u64 {
        let w = self.checks[counter].window_secs;
        let oldest_live = (now + 1).saturating_sub(w * 1000) / w;
        self.admissions[counter]
            .iter()
            .filter(|&&(t, id)| !self.refunded[id] && t / w >= oldest_live)
            .count() as u64
    }

    fn full(&self, counter: usize, now: u64) -> bool {
        self.live(counter, now) >= u64::from(self.checks[counter].max)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sliding_window_guarantee(counters in counters(), ops in prop::collection::vec(op(), 1..300)) {
        let clock = ManualClock::starting_at(1_000_000);
        let limiter = InProcessLimiter::with_clock(clock.clone(), 100);
        let mut model = Model {
            checks: counters
                .iter()
                .enumerate()
                .map(|(i, &(window, max))| check("prop", &format!("c{i}"), window, max))
                .collect(),
            admissions: vec![Vec::new(); 3],
            refunded: Vec::new(),
        };
        let mut outstanding: Vec<(Reservation, usize)> = Vec::new();

        for op in ops {
            let now = limits::Clock::now_ms(&clock);
            match op {
                Op::Advance(ms) => clock.advance(ms),
                Op::Refund(which) => {
                    if !outstanding.is_empty() {
                        let (reservation, id) = outstanding.swap_remove(which.index(outstanding.len()));
                        limiter.refund(reservation);
                        model.refunded[id] = true;
                    }
                }
                Op::Consume(mask) => {
                    let chosen: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
                    let checks: Vec<LimitCheck> = chosen.iter().map(|&i| model.checks[i].clone()).collect();
                    let must_admit = chosen.iter().all(|&i| !model.full(i, now));
                    match limiter.consume(&checks).unwrap() {
                        Outcome::Admitted(r) => {
                            prop_assert!(must_admit, "admitted although a counter is full");
                            prop_assert_eq!(r.admitted_at_ms(), now);
                            let id = model.refunded.len();
                            model.refunded.push(false);
                            for &i in &chosen {
                                model.admissions[i].push((now, id));
                            }
                            outstanding.push((r, id));
                        }
                        Outcome::Refused(refusal) => {
                            prop_assert!(!must_admit, "refused although every counter has room");
                            let wait = refusal.retry_after_ms;
                            let named = chosen[refusal.index];
                            prop_assert!(wait >= 1);
                            prop_assert!(model.full(named, now + wait - 1), "room before retry_after");
                            prop_assert!(!model.full(named, now + wait), "no room at retry_after");
                            for (position, &i) in chosen.iter().enumerate() {
                                prop_assert!(!model.full(i, now + wait), "counter {} stays full longer", i);
                                if position < refusal.index {
                                    prop_assert!(!model.full(i, now + wait - 1), "an earlier counter ties");
                                }
                            }
                        }
                    }
                }
            }
            for (i, c) in model.checks.iter().enumerate() {
                let kept: Vec<u64> = model.admissions[i]
                    .iter()
                    .filter(|&&(_, id)| !model.refunded[id])
                    .map(|&(t, _)| t)
                    .collect();
                let most = most_in_any_window(&kept, c.window_secs * 1000);
                prop_assert!(most <= c.max as usize, "counter {}: {} in one window, max {}", i, most, c.max);
            }
        }
    }
}
