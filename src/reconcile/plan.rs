//! Pure decisions of a reconcile: which users to create, mark or restore given Terra's list and
//! ours, and which days of which users a gap backfill asks for. No I/O, no clock.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::backfill::Window;
use crate::db::reconcile::Held;

/// The status reconcile gives a connected user Terra no longer lists.
pub const MISSING: &str = "missing_at_terra";
/// The status of a user Terra lists and the lifecycle considers connected.
const CONNECTED: &str = "connected";

/// A user as Terra lists it, its text in stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraUser {
    /// Terra user id.
    pub user_id: String,
    /// Provider, e.g. `GARMIN`.
    pub provider: Option<String>,
    /// The developer's own id for the end user.
    pub reference_id: Option<String>,
    /// Granted scopes, split.
    pub scopes: Vec<String>,
    /// Terra's `active` flag (absent: active).
    pub active: bool,
}

/// What a reconcile changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Users Terra lists that terra-sink never saw, in user-id order.
    pub create: Vec<TerraUser>,
    /// Connected users Terra does not list, in user-id order.
    pub missing: Vec<String>,
    /// Users marked missing earlier that Terra lists again, in user-id order.
    pub restore: Vec<String>,
    /// Users held and left as they are.
    pub unchanged: usize,
}

/// Compares Terra's users with ours. Users in any other status (deauthenticated, replaced…) are
/// the lifecycle's business and stay as they are, listed or not.
pub fn compare(terra: &[TerraUser], ours: &[Held]) -> Plan {
    let listed: BTreeMap<&str, &TerraUser> =
        terra.iter().map(|u| (u.user_id.as_str(), u)).collect();
    let held: HashSet<&str> = ours.iter().map(|h| h.user_id.as_str()).collect();
    let mut plan = Plan {
        create: listed
            .iter()
            .filter(|(id, _)| !held.contains(*id))
            .map(|(_, u)| (*u).clone())
            .collect(),
        ..Plan::default()
    };
    let mut ours: Vec<&Held> = ours.iter().collect();
    ours.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    ours.dedup_by(|a, b| a.user_id == b.user_id);
    for h in ours {
        let is_listed = listed.contains_key(h.user_id.as_str());
        match (h.status.as_str(), is_listed) {
            (CONNECTED, false) => plan.missing.push(h.user_id.clone()),
            (MISSING, true) => plan.restore.push(h.user_id.clone()),
            _ => plan.unchanged += 1,
        }
    }
    plan
}

/// The days to backfill for a user whose newest record is at `newest` (`None`: no record):
/// from that record's day to today included, when it is older than `older_than`; at most the
/// last `max_days` days (which is also what a user without records gets).
pub fn gap(
    newest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    older_than: Duration,
    max_days: u32,
) -> Option<Window> {
    let threshold = chrono::Duration::from_std(older_than).ok()?;
    if newest.is_some_and(|t| t > now - threshold) || max_days == 0 {
        return None;
    }
    let today = now.date_naive();
    let end = today.checked_add_days(Days::new(1))?;
    let earliest = end.checked_sub_days(Days::new(u64::from(max_days)))?;
    // The newest record's own day is asked for again: it may have been partial.
    let start: NaiveDate = newest.map_or(earliest, |t| t.date_naive().max(earliest));
    (start < end).then_some(Window { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terra(id: &str) -> TerraUser {
        TerraUser {
            user_id: id.to_owned(),
            provider: Some("GARMIN".to_owned()),
            reference_id: None,
            scopes: Vec::new(),
            active: true,
        }
    }

    fn held(id: &str, status: &str) -> Held {
        Held {
            user_id: id.to_owned(),
            status: status.to_owned(),
        }
    }

    #[test]
    fn creates_marks_restores_and_leaves_the_rest() {
        let plan = compare(
            &[terra("new-b"), terra("kept"), terra("new-a"), terra("back")],
            &[
                held("kept", "connected"),
                held("gone", "connected"),
                held("back", MISSING),
                held("still-gone", MISSING),
                held("deauthed", "deauthenticated"),
                held("replaced", "replaced"),
            ],
        );
        let created: Vec<&str> = plan.create.iter().map(|u| u.user_id.as_str()).collect();
        assert_eq!(created, ["new-a", "new-b"]);
        assert_eq!(plan.missing, ["gone"]);
        assert_eq!(plan.restore, ["back"]);
        assert_eq!(plan.unchanged, 4);
    }

    #[test]
    fn listed_users_of_other_statuses_are_not_touched() {
        let plan = compare(
            &[terra("deauthed"), terra("err")],
            &[
                held("deauthed", "deauthenticated"),
                held("err", "connection_error"),
            ],
        );
        assert_eq!(
            plan,
            Plan {
                unchanged: 2,
                ..Plan::default()
            }
        );
    }

    #[test]
    fn repeated_users_count_once() {
        let plan = compare(
            &[terra("a"), terra("a")],
            &[held("b", "connected"), held("b", "connected")],
        );
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.missing, ["b"]);
    }

    #[test]
    fn an_empty_list_marks_every_connected_user() {
        let plan = compare(&[], &[held("a", "connected"), held("b", "replaced")]);
        assert_eq!(plan.missing, ["a"]);
        assert_eq!(plan.unchanged, 1);
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_gap_runs_from_the_newest_records_day_to_today() {
        let now = t("2026-12-02T08:00:00Z");
        let w = gap(Some(t("2026-11-25T10:00:00Z")), now, 2 * DAY, 90).unwrap();
        assert_eq!((w.start, w.end), (d("2026-11-25"), d("2026-12-03")));
    }

    #[test]
    fn recent_data_is_no_gap() {
        let now = t("2026-12-02T08:00:00Z");
        assert_eq!(gap(Some(t("2026-12-01T00:00:00Z")), now, 2 * DAY, 90), None);
        assert!(gap(Some(t("2026-11-30T07:59:59Z")), now, 2 * DAY, 90).is_some());
    }

    #[test]
    fn a_gap_is_capped_and_no_data_gets_the_cap() {
        let now = t("2026-12-02T08:00:00Z");
        let w = gap(Some(t("2025-01-01T00:00:00Z")), now, DAY, 10).unwrap();
        assert_eq!((w.start, w.end), (d("2026-11-23"), d("2026-12-03")));
        assert_eq!(w.days(), 10);
        assert_eq!(gap(None, now, DAY, 10), Some(w));
        assert_eq!(gap(None, now, DAY, 0), None);
    }
}
