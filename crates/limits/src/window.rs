//! The sliding window's arithmetic: the in-process limiter runs this code, and the Redis scripts
//! (`consume.lua`, `refund.lua`) compute the same formulas in Lua.
//!
//! A counter is a log of admissions. Instead of one entry per admission (memory growing with
//! `max`), it keeps one count per *quantum* of time: `window_secs` milliseconds, i.e. a
//! thousandth of the window. An admission at time `t` (ms) is counted in quantum `t / quantum`.
//!
//! The guarantee needs: when a call arrives at `now`, the admissions in `(now - window, now]`
//! number fewer than `max`. Quantum `b` holds admissions from `b·q` to `(b+1)·q - 1`; it may
//! hold one inside the window as long as `(b+1)·q - 1 > now - window`, so it is counted until
//! then (conservatively: as if all its admissions happened at its last millisecond). Hence
//! quantum `b` is *live* iff `b >= (now + 1 - window) / q` (integer division), and a call is
//! refused while the live counts add up to `max`. Admissions are never under-counted, so no
//! interval of length `window` ever holds more than `max`; they are over-counted by at most one
//! quantum of time, so a caller waits at most 0.1 % of the window longer than strictly needed.
//! At most `window / q + 1 = 1001` quanta are live at once, whatever `max` is.

use std::collections::VecDeque;

/// Milliseconds per quantum for a window: a thousandth of the window.
pub(crate) fn quantum_ms(window_secs: u64) -> u64 {
    window_secs
}

/// The oldest quantum still live at `now`.
fn oldest_live(now: u64, window_secs: u64) -> u64 {
    (now + 1).saturating_sub(window_secs * 1000) / quantum_ms(window_secs)
}

/// When quantum `bucket` stops being live, as a wait from `now` (≥ 1 for a live quantum).
fn leaves_after(bucket: u64, now: u64, window_secs: u64) -> u64 {
    ((bucket + 1) * quantum_ms(window_secs) + window_secs * 1000 - 1).saturating_sub(now)
}

/// One counter: live quanta in time order, with their counts and the total.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    buckets: VecDeque<(u64, u32)>,
    live: u64,
}

impl Counter {
    /// Forgets quanta that have left the window.
    pub(crate) fn trim(&mut self, now: u64, window_secs: u64) {
        let lo = oldest_live(now, window_secs);
        while let Some(&(bucket, count)) = self.buckets.front() {
            if bucket >= lo {
                break;
            }
            self.live -= u64::from(count);
            self.buckets.pop_front();
        }
    }

    /// `None` if the counter admits a call now (after [`Counter::trim`]), else how long until it
    /// would: until enough of the oldest quanta have left the window to leave room for one.
    pub(crate) fn wait_ms(&self, now: u64, window_secs: u64, max: u32) -> Option<u64> {
        let max = u64::from(max);
        if self.live < max {
            return None;
        }
        let need = self.live - max + 1;
        let mut freed = 0;
        for &(bucket, count) in &self.buckets {
            freed += u64::from(count);
            if freed >= need {
                return Some(leaves_after(bucket, now, window_secs).max(1));
            }
        }
        // Unreachable while `live` is the sum of the counts; wait a whole window to be safe.
        Some(window_secs * 1000 + quantum_ms(window_secs))
    }

    /// Records one admission at `now`.
    pub(crate) fn add(&mut self, now: u64, window_secs: u64) {
        let bucket = now / quantum_ms(window_secs);
        self.live += 1;
        match self.buckets.back_mut() {
            Some((b, count)) if *b == bucket => *count += 1,
            Some((b, _)) if *b > bucket => {
                // Only a clock that went backwards gets here; keep the quanta sorted.
                match self.buckets.binary_search_by_key(&bucket, |&(b, _)| b) {
                    Ok(i) => self.buckets[i].1 += 1,
                    Err(i) => self.buckets.insert(i, (bucket, 1)),
                }
            }
            _ => self.buckets.push_back((bucket, 1)),
        }
    }

    /// Takes back one admission made at `at`, if its quantum is still held.
    pub(crate) fn give_back(&mut self, at: u64, window_secs: u64) {
        let bucket = at / quantum_ms(window_secs);
        if let Ok(i) = self.buckets.binary_search_by_key(&bucket, |&(b, _)| b) {
            self.live -= 1;
            self.buckets[i].1 -= 1;
            if self.buckets[i].1 == 0 {
                self.buckets.remove(i);
            }
        }
    }

    /// Whether the counter holds nothing (and may be dropped).
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_window_is_exact_to_the_millisecond() {
        let mut c = Counter::default();
        c.add(1_000, 1);
        c.trim(1_999, 1);
        assert_eq!(c.wait_ms(1_999, 1, 1), Some(1));
        c.trim(2_000, 1);
        assert_eq!(c.wait_ms(2_000, 1, 1), None);
    }

    #[test]
    fn a_minute_window_counts_a_whole_quantum() {
        // Quantum of 60 ms: an admission at 0 counts as if at 59, so it leaves at 60_059.
        let mut c = Counter::default();
        c.add(0, 60);
        c.trim(60_000, 60);
        assert_eq!(c.wait_ms(60_000, 60, 1), Some(59));
        c.trim(60_059, 60);
        assert_eq!(c.wait_ms(60_059, 60, 1), None);
    }

    #[test]
    fn give_back_frees_exactly_one() {
        let mut c = Counter::default();
        c.add(5, 1);
        c.add(5, 1);
        c.give_back(5, 1);
        assert_eq!(c.wait_ms(6, 1, 2), None);
        assert_eq!(c.wait_ms(6, 1, 1), Some(999));
        c.give_back(5, 1);
        assert!(c.is_empty());
        // A quantum that is no longer held is not touched.
        c.give_back(5, 1);
        assert!(c.is_empty());
    }
}
