//! The audit log's chart: calls per hour (or per day over long ranges) stacked by decision,
//! drawn on the server as SVG from the store's hourly rollup, so it needs no script.

use store::audit::{AuditDecision, HourlyCount};
use time::{Duration, OffsetDateTime, Time};

/// What "all time" charts: the last this many days.
pub(crate) const ALL_TIME_DAYS: i64 = 30;
/// Ranges longer than this are drawn per day instead of per hour.
const HOURLY_UP_TO_DAYS: i64 = 7;
/// The longest range drawn; a longer one shows its last year.
const MAX_DAYS: i64 = 366;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// Stacking order, bottom up: calm outcomes first, refusals and failures on top.
const ORDER: [AuditDecision; 8] = [
    AuditDecision::Allow,
    AuditDecision::Approved,
    AuditDecision::Passthrough,
    AuditDecision::ApprovalPending,
    AuditDecision::RateLimited,
    AuditDecision::Deny,
    AuditDecision::Hidden,
    AuditDecision::UpstreamError,
];

#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) x: String,
    pub(crate) y: String,
    pub(crate) w: String,
    pub(crate) h: String,
    pub(crate) decision: &'static str,
}

/// One bucket's full-height hover target with its numbers.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) x: String,
    pub(crate) w: String,
    pub(crate) title: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub(crate) at: String,
    pub(crate) label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Legend {
    pub(crate) decision: &'static str,
    pub(crate) label: String,
    pub(crate) count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ChartView {
    pub(crate) title: String,
    pub(crate) summary: String,
    pub(crate) total: u64,
    pub(crate) bars: Vec<Bar>,
    pub(crate) columns: Vec<Column>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) x_ticks: Vec<Tick>,
    pub(crate) legend: Vec<Legend>,
    pub(crate) plot_left: String,
    pub(crate) plot_right: String,
    pub(crate) plot_top: String,
    pub(crate) plot_height: String,
    pub(crate) baseline: String,
    pub(crate) label_y: String,
}

fn floor_hour(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::from_hms(t.hour(), 0, 0).expect("a valid hour"))
}

fn floor_day(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::MIDNIGHT)
}

/// The start the chart's counts are read from: the range's start, at most a year before its end.
pub(crate) fn chart_start(from: OffsetDateTime, to: OffsetDateTime) -> OffsetDateTime {
    from.max(to - Duration::days(MAX_DAYS))
}

/// A round number at least `n` (1, 2, 5 × 10^k), so the axis reads easily.
fn nice_ceiling(n: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= n {
                return m * step;
            }
        }
        step *= 10;
    }
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn day_label(t: OffsetDateTime) -> String {
    format!(
        "{} {}",
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day()
    )
}

/// Draws `counts` (per hour and decision) over `[from, to)`.
pub(crate) fn chart(
    counts: &[HourlyCount],
    from: OffsetDateTime,
    to: OffsetDateTime,
    all_time: bool,
) -> ChartView {
    let from = chart_start(from, to).to_offset(time::UtcOffset::UTC);
    let to = to.to_offset(time::UtcOffset::UTC);
    let daily = to - from > Duration::days(HOURLY_UP_TO_DAYS);
    let (start, step) = if daily {
        (floor_day(from), Duration::days(1))
    } else {
        (floor_hour(from), Duration::hours(1))
    };
    let buckets = (((to - start).whole_seconds() as f64) / step.whole_seconds() as f64)
        .ceil()
        .max(1.0) as usize;
    let mut grid = vec![[0_u64; ORDER.len()]; buckets];
    let mut totals = [0_u64; ORDER.len()];
    for c in counts {
        let Some(k) = ORDER.iter().position(|d| *d == c.decision) else {
            continue;
        };
        let offset = (c.hour - start).whole_seconds();
        if offset < 0 {
            continue;
        }
        let i = (offset / step.whole_seconds()) as usize;
        if let Some(cell) = grid.get_mut(i) {
            let n = u64::try_from(c.count).unwrap_or(0);
            cell[k] += n;
            totals[k] += n;
        }
    }
    let total: u64 = totals.iter().sum();
    let peak = grid
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(peak.max(1));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / buckets as f64;
    let gap = if slot >= 4.0 { 1.0 } else { 0.0 };
    let unit = if daily { "day" } else { "hour" };
    let mut bars = Vec::new();
    let mut columns = Vec::new();
    for (i, cell) in grid.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let mut y = TOP + plot_h;
        let bucket_start = start + step * i as u32;
        let mut parts = Vec::new();
        for (k, n) in cell.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let h = plot_h * (*n as f64) / top as f64;
            y -= h;
            bars.push(Bar {
                x: px(x + gap / 2.0),
                y: px(y),
                w: px((slot - gap).max(0.5)),
                h: px(h),
                decision: ORDER[k].as_str(),
            });
            parts.push(format!("{} {}", n, ORDER[k].as_str().replace('_', " ")));
        }
        let when = if daily {
            day_label(bucket_start)
        } else {
            format!(
                "{} {:02}:00 UTC",
                day_label(bucket_start),
                bucket_start.hour()
            )
        };
        let sum: u64 = cell.iter().sum();
        columns.push(Column {
            x: px(x),
            w: px(slot),
            title: if sum == 0 {
                format!("{when}: no calls")
            } else {
                format!(
                    "{when}: {sum} call{} ({})",
                    if sum == 1 { "" } else { "s" },
                    parts.join(", ")
                )
            },
        });
    }
    // A middle line only where it falls on a whole number (0, 5, 10 but 0, 5 for 5).
    let middle = top.is_multiple_of(2).then_some(top / 2);
    let y_ticks = [Some(0), middle, Some(top)]
        .into_iter()
        .flatten()
        .map(|v| Tick {
            at: px(TOP + plot_h - plot_h * v as f64 / top as f64),
            label: v.to_string(),
        })
        .collect();
    // Day boundaries, thinned to at most about eight labels.
    let days: Vec<(usize, OffsetDateTime)> = (0..buckets)
        .map(|i| (i, start + step * i as u32))
        .filter(|(_, t)| daily || (t.hour() == 0))
        .collect();
    let every = days.len().div_ceil(8).max(1);
    let mut x_ticks: Vec<Tick> = days
        .iter()
        .step_by(every)
        .map(|(i, t)| Tick {
            at: px(LEFT + slot * *i as f64 + if daily { slot / 2.0 } else { 0.0 }),
            label: day_label(*t),
        })
        .collect();
    if !daily && buckets <= 48 {
        // Short ranges also mark the hours.
        let every = if buckets <= 12 { 2 } else { 6 };
        x_ticks = (0..buckets)
            .map(|i| (i, start + step * i as u32))
            .filter(|(_, t)| t.hour().is_multiple_of(every))
            .map(|(i, t)| Tick {
                at: px(LEFT + slot * i as f64),
                label: if t.hour() == 0 {
                    day_label(t)
                } else {
                    format!("{:02}:00", t.hour())
                },
            })
            .collect();
    }
    let legend = ORDER
        .iter()
        .zip(totals)
        .filter(|(_, n)| *n > 0)
        .map(|(d, n)| Legend {
            decision: d.as_str(),
            label: d.as_str().replace('_', " "),
            count: n,
        })
        .collect();
    let range = if all_time {
        format!("the last {ALL_TIME_DAYS} days")
    } else if daily {
        format!("{} to {}", day_label(from), day_label(to))
    } else {
        format!(
            "{} {:02}:00 to {} {:02}:{:02} UTC",
            day_label(from),
            from.hour(),
            day_label(to),
            to.hour(),
            to.minute()
        )
    };
    ChartView {
        title: format!("Calls per {unit}"),
        summary: format!(
            "{total} call{} in {range}",
            if total == 1 { "" } else { "s" }
        ),
        total,
        bars,
        columns,
        y_ticks,
        x_ticks,
        legend,
        plot_left: px(LEFT),
        plot_right: px(WIDTH - RIGHT),
        plot_top: px(TOP),
        plot_height: px(plot_h),
        baseline: px(TOP + plot_h),
        label_y: px(HEIGHT - 8.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn count(hour: OffsetDateTime, decision: AuditDecision, count: i64) -> HourlyCount {
        HourlyCount {
            hour,
            decision,
            count,
        }
    }

    #[test]
    fn hours_stack_by_decision_on_a_round_scale() {
        let from = datetime!(2026-05-01 10:30 UTC);
        let to = datetime!(2026-05-02 10:30 UTC);
        let counts = [
            count(datetime!(2026-05-01 10:00 UTC), AuditDecision::Allow, 7),
            count(datetime!(2026-05-01 10:00 UTC), AuditDecision::Deny, 2),
            count(
                datetime!(2026-05-02 09:00 UTC),
                AuditDecision::RateLimited,
                1,
            ),
        ];
        let c = chart(&counts, from, to, false);
        assert_eq!(c.title, "Calls per hour");
        assert_eq!(c.total, 10);
        assert_eq!(c.columns.len(), 25);
        assert_eq!(c.bars.len(), 3);
        // 9 calls at the peak: the axis goes to 10.
        assert_eq!(c.y_ticks.last().unwrap().label, "10");
        assert_eq!(
            c.columns[0].title,
            "May 1 10:00 UTC: 9 calls (7 allow, 2 deny)"
        );
        assert_eq!(c.columns[1].title, "May 1 11:00 UTC: no calls");
        // Allow sits below deny.
        assert_eq!(c.bars[0].decision, "allow");
        assert!(c.bars[1].y.parse::<f64>().unwrap() < c.bars[0].y.parse::<f64>().unwrap());
        assert_eq!(
            c.legend
                .iter()
                .map(|l| (l.decision, l.count))
                .collect::<Vec<_>>(),
            [("allow", 7), ("rate_limited", 1), ("deny", 2)]
        );
        assert!(c.x_ticks.iter().any(|t| t.label == "May 2"));
    }

    #[test]
    fn long_ranges_are_drawn_per_day() {
        let to = datetime!(2026-05-31 12:00 UTC);
        let counts = [
            count(datetime!(2026-05-03 01:00 UTC), AuditDecision::Allow, 3),
            count(datetime!(2026-05-03 23:00 UTC), AuditDecision::Allow, 1),
        ];
        let c = chart(&counts, to - Duration::days(30), to, true);
        assert_eq!(c.title, "Calls per day");
        assert_eq!(c.summary, "4 calls in the last 30 days");
        assert_eq!(c.bars.len(), 1, "both hours fall into one day");
        assert!(
            c.columns
                .iter()
                .any(|col| col.title == "May 3: 4 calls (4 allow)")
        );
        assert!(c.x_ticks.len() <= 8);
        let labels: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0", "5"], "no tick at a fraction");
    }

    #[test]
    fn round_ceilings() {
        assert_eq!(
            [1, 2, 3, 6, 10, 11, 99, 101].map(nice_ceiling),
            [1, 2, 5, 10, 10, 20, 100, 200]
        );
    }
}
