//! Pure planning of a backfill: which data types, which date range, which request windows, and
//! how many days each user may still request. No I/O, no clock (callers pass `today`/`now`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};

/// Terra answers a request inline only up to this many days; longer ones are chunked to the
/// webhook, which is what a backfill avoids.
pub const MAX_WINDOW_DAYS: u32 = 28;

/// The six data types Terra serves over REST with a date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// `GET /activity`: workouts.
    Activity,
    /// `GET /body`: body metrics per day.
    Body,
    /// `GET /daily`: daily totals.
    Daily,
    /// `GET /menstruation`: cycle data per day.
    Menstruation,
    /// `GET /nutrition`: intake per day.
    Nutrition,
    /// `GET /sleep`: sleep sessions.
    Sleep,
}

impl DataType {
    /// Every type, in the order a backfill requests them.
    pub const ALL: [DataType; 6] = [
        DataType::Activity,
        DataType::Body,
        DataType::Daily,
        DataType::Menstruation,
        DataType::Nutrition,
        DataType::Sleep,
    ];

    /// The webhook `type` and REST path segment (they are the same word).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activity => "activity",
            Self::Body => "body",
            Self::Daily => "daily",
            Self::Menstruation => "menstruation",
            Self::Nutrition => "nutrition",
            Self::Sleep => "sleep",
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so width and alignment in format strings apply (the summary's columns).
        f.pad(self.as_str())
    }
}

/// One request's date range: `start` inclusive, `end` exclusive (Terra's `end_date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First day requested.
    pub start: NaiveDate,
    /// First day NOT requested.
    pub end: NaiveDate,
}

impl Window {
    /// Number of days the window covers (what Terra's limits count).
    pub fn days(&self) -> u32 {
        u32::try_from((self.end - self.start).num_days()).unwrap_or(0)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// Why a date range could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Neither a start date nor a number of days was given.
    #[error("no date range: give --start-date (and optionally --end-date) or --days N")]
    NoRange,
    /// Both a start date and a number of days were given.
    #[error("give either --start-date or --days, not both")]
    Ambiguous,
    /// The range is empty or reversed.
    #[error("empty date range: --end-date {end} (exclusive) must be after --start-date {start}")]
    Empty {
        /// Requested start.
        start: NaiveDate,
        /// Requested (exclusive) end.
        end: NaiveDate,
    },
    /// `--days 0`, or a window size outside 1..=28.
    #[error("{0}")]
    Invalid(String),
}

/// Resolves the command line's dates into `[start, end)`.
///
/// `end` defaults to tomorrow, so today is included; `--days N` means the N days ending with
/// the day before `end` (with the default end: the last N days, today included).
pub fn resolve_range(
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    days: Option<u32>,
    today: NaiveDate,
) -> Result<Window, PlanError> {
    let end = match end {
        Some(end) => end,
        None => today
            .checked_add_days(Days::new(1))
            .ok_or_else(|| PlanError::Invalid("date out of range".into()))?,
    };
    let start = match (start, days) {
        (Some(_), Some(_)) => return Err(PlanError::Ambiguous),
        (None, None) => return Err(PlanError::NoRange),
        (Some(start), None) => start,
        (None, Some(0)) => return Err(PlanError::Invalid("--days must be at least 1".into())),
        (None, Some(n)) => end
            .checked_sub_days(Days::new(u64::from(n)))
            .ok_or_else(|| PlanError::Invalid("--days reaches before the calendar".into()))?,
    };
    if end <= start {
        return Err(PlanError::Empty { start, end });
    }
    Ok(Window { start, end })
}

/// Splits `range` into consecutive windows of at most `max_days` days (clamped to 1..=28),
/// starting at `range.start`; the last one may be shorter. No gaps, no overlaps.
pub fn windows(range: Window, max_days: u32) -> Vec<Window> {
    let step = u64::from(max_days.clamp(1, MAX_WINDOW_DAYS));
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = start
            .checked_add_days(Days::new(step))
            .map_or(range.end, |e| e.min(range.end));
        out.push(Window { start, end });
        start = end;
    }
    out
}

/// A sliding-window budget of requested days for one user: Terra counts every day a request
/// covers against the user, so the budget is in days, not requests.
#[derive(Debug)]
pub struct DayBudget {
    /// Days allowed per `period`.
    limit: u32,
    period: Duration,
    /// When Terra last can have received each past request and how many days it covered,
    /// oldest first.
    spent: VecDeque<(Instant, u32)>,
}

impl DayBudget {
    /// A budget of `limit` days per `period` (`limit` 0 means unlimited).
    pub fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            spent: VecDeque::new(),
        }
    }

    /// How long to wait at `now` before a request covering `days` fits the budget (zero when it
    /// fits now). A request larger than the whole budget waits until nothing else is counted,
    /// so it still goes through instead of waiting forever.
    pub fn wait_for(&mut self, days: u32, now: Instant) -> Duration {
        if self.limit == 0 {
            return Duration::ZERO;
        }
        while let Some(&(at, _)) = self.spent.front() {
            if now.saturating_duration_since(at) >= self.period {
                self.spent.pop_front();
            } else {
                break;
            }
        }
        let mut used: u32 = self.spent.iter().map(|&(_, d)| d).sum();
        let need = days.min(self.limit);
        if used + need <= self.limit {
            return Duration::ZERO;
        }
        // Wait until enough of the oldest requests have aged out of the period.
        for &(at, d) in &self.spent {
            used = used.saturating_sub(d);
            if used + need <= self.limit {
                return (at + self.period).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    /// Records a request covering `days` that Terra can have received as late as `at` (callers
    /// pass when it ended: it then counts for a whole period after any moment Terra saw it).
    pub fn spend(&mut self, days: u32, at: Instant) {
        if self.limit > 0 {
            // Kept in time order, which `wait_for` relies on; requests from an earlier run can
            // be dated after later ones (a deadline of one whose end was never recorded).
            let i = self.spent.partition_point(|&(t, _)| t <= at);
            self.spent.insert(i, (at, days));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn windows_cover_the_range_without_gaps_and_end_exclusive() {
        let range = Window {
            start: d("2026-01-01"),
            end: d("2026-03-01"),
        };
        let ws = windows(range, 28);
        assert_eq!(
            ws,
            vec![
                Window {
                    start: d("2026-01-01"),
                    end: d("2026-01-29")
                },
                Window {
                    start: d("2026-01-29"),
                    end: d("2026-02-26")
                },
                Window {
                    start: d("2026-02-26"),
                    end: d("2026-03-01")
                },
            ]
        );
        assert_eq!(ws.iter().map(Window::days).sum::<u32>(), 59);
        assert!(ws.iter().all(|w| w.days() <= MAX_WINDOW_DAYS));
    }

    #[test]
    fn window_size_is_clamped_to_terra_inline_limit() {
        let range = Window {
            start: d("2026-01-01"),
            end: d("2026-12-31"),
        };
        assert!(windows(range, 90).iter().all(|w| w.days() <= 28));
        assert_eq!(windows(range, 0).len(), 364);
        assert_eq!(windows(range, 7)[0].days(), 7);
    }

    #[test]
    fn a_single_day() {
        let range = Window {
            start: d("2026-05-05"),
            end: d("2026-05-06"),
        };
        assert_eq!(windows(range, 28), vec![range]);
    }

    #[test]
    fn range_resolution() {
        let today = d("2026-11-23");
        let r = resolve_range(None, None, Some(7), today).unwrap();
        assert_eq!((r.start, r.end), (d("2026-11-17"), d("2026-11-24")));
        assert_eq!(r.days(), 7);
        let r = resolve_range(Some(d("2026-01-01")), Some(d("2026-02-01")), None, today).unwrap();
        assert_eq!(r.days(), 31);
        let r = resolve_range(None, Some(d("2026-02-01")), Some(3), today).unwrap();
        assert_eq!(r.start, d("2026-01-29"));
        assert_eq!(
            resolve_range(None, None, None, today),
            Err(PlanError::NoRange)
        );
        assert_eq!(
            resolve_range(Some(today), None, Some(2), today),
            Err(PlanError::Ambiguous)
        );
        assert!(matches!(
            resolve_range(Some(today), Some(today), None, today),
            Err(PlanError::Empty { .. })
        ));
        assert!(resolve_range(None, None, Some(0), today).is_err());
    }

    #[test]
    fn day_budget_counts_days_per_period() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut b = DayBudget::new(60, minute);
        assert_eq!(b.wait_for(28, t0), Duration::ZERO);
        b.spend(28, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.wait_for(28, t1), Duration::ZERO);
        b.spend(28, t1);
        // 56 used: another 28 must wait until the first request leaves the period.
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(b.wait_for(28, t2), Duration::from_secs(40));
        assert_eq!(b.wait_for(4, t2), Duration::ZERO);
        // After the period everything is forgotten.
        assert_eq!(b.wait_for(28, t0 + Duration::from_secs(61)), Duration::ZERO);
    }

    #[test]
    fn day_budget_keeps_requests_in_time_order() {
        let t0 = Instant::now();
        let mut b = DayBudget::new(2, Duration::from_secs(60));
        // Known out of order: one counted until a deadline ahead, then one that ended now.
        b.spend(1, t0 + Duration::from_secs(30));
        b.spend(1, t0);
        // Room for one more day only once the request dated `t0` ages out, not the later one.
        assert_eq!(b.wait_for(1, t0), Duration::from_secs(60));
        assert_eq!(b.wait_for(2, t0), Duration::from_secs(90));
    }

    #[test]
    fn day_budget_never_blocks_forever() {
        let t0 = Instant::now();
        let mut b = DayBudget::new(10, Duration::from_secs(60));
        assert_eq!(b.wait_for(28, t0), Duration::ZERO);
        b.spend(28, t0);
        assert_eq!(b.wait_for(28, t0), Duration::from_secs(60));
        let mut unlimited = DayBudget::new(0, Duration::from_secs(60));
        unlimited.spend(1000, t0);
        assert_eq!(unlimited.wait_for(1000, t0), Duration::ZERO);
    }
}
