//! Pure conversions from Terra's values to column values: times, record keys, whole numbers.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::text::PgText;
use crate::model::{Integer, Timestamp};

/// A Terra time as a `timestamptz`: the instant when it has an offset; otherwise the local
/// wall-clock time taken as UTC; a bare date is midnight UTC. `None` when unparseable, and for
/// years outside 1..=9999 (garbage, and PostgreSQL's range is narrower than chrono's: such a
/// value must not make the whole delivery fail; the original string stays in `data`).
pub fn to_utc(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let utc = if let Some(instant) = ts.instant() {
        instant.with_timezone(&Utc)
    } else if let Some(local) = ts.local() {
        local.and_utc()
    } else if ts.as_str().len() == 10 {
        ts.date()?.and_hms_opt(0, 0, 0)?.and_utc()
    } else {
        // A time that cannot be read is not a date: not midnight of the day it names.
        return None;
    };
    (1..=9999).contains(&utc.year()).then_some(utc)
}

/// An instant from a string with an offset (any form [`Timestamp`] reads); `None` for a time
/// without an offset and outside years 1..=9999.
pub fn instant(s: &str) -> Option<DateTime<Utc>> {
    let utc = Timestamp::new(s).instant()?.with_timezone(&Utc);
    (1..=9999).contains(&utc.year()).then_some(utc)
}

/// [`to_utc`] of an optional time.
pub fn opt_utc(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(to_utc)
}

/// The fallback key of a record that has no key field at all: its JSON text's SHA-256. Stable
/// across redeliveries of byte-identical records, which is the best that can be done.
pub fn digest_key(raw: &str) -> PgText {
    PgText::from_plain(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(raw.as_bytes()))
    ))
}

/// Key of an id-keyed record (activity, sleep): the id; without one (or an empty one),
/// `start_time:<metadata.start_time as sent>`; without that either, [`digest_key`].
pub fn id_key(id: Option<&str>, start: Option<&Timestamp>, raw: &str) -> PgText {
    match (id, start) {
        (Some(id), _) if !id.is_empty() => PgText::new(id),
        (_, Some(start)) if !start.as_str().is_empty() => {
            PgText::new(&format!("start_time:{}", start.as_str()))
        }
        _ => digest_key(raw),
    }
}

/// Key and `day` of a day-keyed record: the first 10 characters of `metadata.start_time`;
/// without a day, [`digest_key`] and no date.
pub fn day_key(start: Option<&Timestamp>, raw: &str) -> (PgText, Option<NaiveDate>) {
    match start.and_then(Timestamp::day) {
        // Ten ASCII digits and dashes (checked by `Timestamp::day`): plain text.
        Some(day) => (
            PgText::from_plain(day.into_owned()),
            start.and_then(Timestamp::date),
        ),
        None => (digest_key(raw), None),
    }
}

/// A Terra integer as a whole number: fractional values are rounded (the exact value stays in
/// `data`); values outside `i64` are `None`.
pub fn whole(v: Option<Integer>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| {
        let r = v.as_f64().round();
        // 2^63 is exactly representable: [-2^63, 2^63) converts without saturating.
        (r.is_finite() && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r))
            .then_some(r as i64)
    })
}

/// A Terra integer as an `integer` column (`None` outside `i32`).
pub fn int32(v: Option<Integer>) -> Option<i32> {
    whole(v).and_then(|v| i32::try_from(v).ok())
}

/// An open code's numeric value as an `integer` column.
pub fn code32(code: Option<i64>) -> Option<i32> {
    code.and_then(|v| i32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::new(s)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_with_and_without_offset() {
        assert_eq!(
            to_utc(&ts("2026-07-01T07:04:11.250000+01:00")),
            Some(utc("2026-07-01T06:04:11.25Z"))
        );
        // No offset: the wall-clock time, taken as UTC.
        assert_eq!(
            to_utc(&ts("2026-06-30T23:12:00.000000")),
            Some(utc("2026-06-30T23:12:00Z"))
        );
        assert_eq!(to_utc(&ts("2026-06-28")), Some(utc("2026-06-28T00:00:00Z")));
        assert_eq!(
            to_utc(&ts("2026-07-01T09:12:33Z")),
            Some(utc("2026-07-01T09:12:33Z"))
        );
        assert_eq!(to_utc(&ts("yesterday")), None);
        assert_eq!(to_utc(&ts("0000-01-01T00:00:00Z")), None);
        assert_eq!(to_utc(&ts("+20000-01-01T00:00:00Z")), None);
        assert_eq!(
            to_utc(&ts("9999-12-31T23:59:59Z")),
            Some(utc("9999-12-31T23:59:59Z"))
        );
        assert_eq!(to_utc(&ts("")), None);
    }

    #[test]
    fn keys_fall_back_but_never_vanish() {
        let start = ts("2026-07-01T07:04:11+01:00");
        assert_eq!(id_key(Some("abc"), Some(&start), "{}"), "abc");
        assert_eq!(
            id_key(None, Some(&start), "{}"),
            "start_time:2026-07-01T07:04:11+01:00"
        );
        assert_eq!(
            id_key(Some(""), Some(&start), "{}"),
            "start_time:2026-07-01T07:04:11+01:00"
        );
        let digest = id_key(None, None, r#"{"a":1}"#);
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        assert_eq!(digest, id_key(None, None, r#"{"a":1}"#));
        assert_ne!(digest, id_key(None, None, r#"{"a":2}"#));

        let (key, day) = day_key(Some(&ts("2026-07-01T00:00:00.000000+01:00")), "{}");
        assert_eq!(key, "2026-07-01");
        assert_eq!(day, NaiveDate::from_ymd_opt(2026, 7, 1));
        // The day as written, even when the instant falls on another UTC day.
        let (key, _) = day_key(Some(&ts("2026-06-30T23:30:00-05:00")), "{}");
        assert_eq!(key, "2026-06-30");
        let (key, day) = day_key(None, "{}");
        assert!(key.starts_with("sha256:"));
        assert_eq!(day, None);
    }

    #[test]
    fn keys_with_nul_stay_distinct_from_keys_with_the_replacement_character() {
        assert_eq!(id_key(Some("x\0"), None, "{}"), "x\u{fffd}0");
        assert_ne!(
            id_key(Some("x\0"), None, "{}"),
            id_key(Some("x\u{fffd}"), None, "{}")
        );
        assert_eq!(
            id_key(None, Some(&ts("2026\0")), "{}"),
            "start_time:2026\u{fffd}0"
        );
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(whole(Some(Integer::from_i64(7902))), Some(7902));
        assert_eq!(whole(Some(Integer::from_f64(7902.0))), Some(7902));
        assert_eq!(whole(Some(Integer::from_f64(7902.5))), Some(7903));
        assert_eq!(whole(Some(Integer::from_f64(1e30))), None);
        assert_eq!(whole(None), None);
        assert_eq!(int32(Some(Integer::from_i64(1 << 40))), None);
        assert_eq!(int32(Some(Integer::from_i64(28))), Some(28));
    }
}
