//! `Timestamp`: Terra's ISO 8601 strings, kept verbatim and parsed only on demand.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveDateTime};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 8601 time (or date) exactly as Terra sent it.
///
/// Terra usually sends microseconds and an offset (`2026-07-01T07:04:11.000000+01:00`) but
/// sometimes omits the offset, in which case the value is the user's local wall-clock time and
/// is *not* an instant. Decoding keeps the string (so it re-encodes byte for byte and costs no
/// parsing on the hot path); [`instant`](Self::instant) only answers when an offset is present.
///
/// ISO 8601's end of day, `2025-10-01T24:00:00` (with or without zero fractions and an offset),
/// is the next day's midnight everywhere: [`instant`](Self::instant), [`local`](Self::local),
/// [`day`](Self::day) and [`date`](Self::date) all say 2025-10-02. Only `24:00:00` itself is
/// accepted; `24:00:01` is as invalid as `25:00:00`.
///
/// Strings of up to 38 bytes (every Terra timestamp: the longest form is 32) are stored inline,
/// so hours of 1 Hz samples cost no allocation per timestamp.
#[derive(Clone)]
pub struct Timestamp(Repr);

const INLINE: usize = 38;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

impl Timestamp {
    /// Wraps a string as Terra would send it (no validation: see the accessors).
    pub fn new(s: impl AsRef<str>) -> Self {
        let s = s.as_ref();
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            // `s.len() <= 38` fits in a u8.
            Timestamp(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Timestamp(Repr::Heap(s.into()))
        }
    }

    /// The original string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always valid UTF-8: the bytes were copied from a `&str` on a char boundary.
            Repr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            Repr::Heap(s) => s,
        }
    }

    /// The calendar day as written: the first 10 characters (`YYYY-MM-DD`), never converted to
    /// another zone; for an end-of-day time (`T24:00:00`) the next day, as that is its midnight.
    /// This is the key of day-keyed records (daily, body, menstruation, nutrition).
    pub fn day(&self) -> Option<Cow<'_, str>> {
        let day = self.written_day()?;
        if self.end_of_day().is_none() {
            return Some(Cow::Borrowed(day));
        }
        // An end of day on an impossible date (`2026-02-30T24:00:00`) keeps the day as written,
        // like any other time on that date.
        Some(self.date().map_or(Cow::Borrowed(day), |date| {
            Cow::Owned(date.format("%Y-%m-%d").to_string())
        }))
    }

    /// The calendar day as a date (see [`day`](Self::day)).
    pub fn date(&self) -> Option<NaiveDate> {
        let written = NaiveDate::parse_from_str(self.written_day()?, "%Y-%m-%d").ok()?;
        match self.end_of_day() {
            Some(_) => written.succ_opt(),
            None => Some(written),
        }
    }

    /// True when the string carries a UTC offset (or `Z`), i.e. denotes an instant.
    pub fn has_offset(&self) -> bool {
        self.split_offset().1.is_some()
    }

    /// The instant, only when an offset (or `Z`) is present; `None` for local wall-clock times.
    pub fn instant(&self) -> Option<DateTime<FixedOffset>> {
        let (_, offset) = self.split_offset();
        offset?;
        match self.end_of_day() {
            Some(midnight) => parse_instant(&midnight)?.checked_add_days(Days::new(1)),
            None => parse_instant(self.as_str()),
        }
    }

    /// The wall-clock date and time as written (ignoring any offset).
    pub fn local(&self) -> Option<NaiveDateTime> {
        match self.end_of_day() {
            Some(midnight) => parse_local(Timestamp::new(midnight).split_offset().0)?
                .checked_add_days(Days::new(1)),
            None => parse_local(self.split_offset().0),
        }
    }

    /// The first 10 characters when they have the shape `YYYY-MM-DD` (not checked as a date).
    fn written_day(&self) -> Option<&str> {
        let day = self.as_str().get(..10)?;
        let b = day.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        (digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
            .then_some(day)
    }

    /// For an end-of-day time (`…T24:00:00`, optionally `.000…`, then anything), the same string
    /// at `00:00:00` of the day as written: parse that and add one day.
    fn end_of_day(&self) -> Option<String> {
        let s = self.as_str();
        let after = s.get(10..)?;
        let rest = after
            .strip_prefix(['T', 't', ' '])?
            .strip_prefix("24:00:00")?;
        // A fraction must be all zeros: `24:00:00.5` is past the end of the day.
        if let Some(fraction) = rest.strip_prefix(['.', ',']) {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || fraction.bytes().take(digits).any(|b| b != b'0') {
                return None;
            }
        }
        // `s[..11]` is the date and separator; bytes 11..13 are the ASCII `24`.
        Some(format!("{}00{}", &s[..11], &s[13..]))
    }

    /// Splits `2026-07-01T07:04:11.000000+01:00` into the wall-clock part and the offset part.
    fn split_offset(&self) -> (&str, Option<&str>) {
        let s = self.as_str();
        // The offset can only follow the time part, which starts after the 10-char date.
        let Some(time) = s.get(11..) else {
            return (s, None);
        };
        if let Some(stripped) = s.strip_suffix(['Z', 'z']) {
            return (stripped, Some(&s[s.len() - 1..]));
        }
        match time.rfind(['+', '-']) {
            Some(i) => (&s[..11 + i], Some(&s[11 + i..])),
            None => (s, None),
        }
    }
}

/// An instant in any of the forms Terra uses (RFC 3339, or without the colon in the offset).
fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%z"))
        .ok()
}

/// A wall-clock date and time (`T` or space between date and time).
fn parse_local(wall: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(wall, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Timestamp {}

impl std::hash::Hash for Timestamp {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    /// Orders by the original string (chronological only for equal offsets and formats).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl From<&str> for Timestamp {
    fn from(s: &str) -> Self {
        Timestamp::new(s)
    }
}

impl AsRef<str> for Timestamp {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 8601 timestamp string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        Ok(Timestamp::new(v))
    }
}

impl super::Model for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_local_forms() {
        let t = Timestamp::new("2026-07-01T07:04:11.123456+01:00");
        assert_eq!(t.day().as_deref(), Some("2026-07-01"));
        assert!(t.has_offset());
        let i = t.instant().unwrap();
        assert_eq!(i.to_rfc3339(), "2026-07-01T07:04:11.123456+01:00");
        assert_eq!(t.local().unwrap().to_string(), "2026-07-01 07:04:11.123456");

        let z = Timestamp::new("2026-07-01T09:12:33Z");
        assert_eq!(
            z.instant().unwrap().to_rfc3339(),
            "2026-07-01T09:12:33+00:00"
        );

        let local = Timestamp::new("2026-06-30T23:12:00.000000");
        assert!(!local.has_offset());
        assert_eq!(local.instant(), None);
        assert_eq!(local.local().unwrap().to_string(), "2026-06-30 23:12:00");
        assert_eq!(local.day().as_deref(), Some("2026-06-30"));

        // The day is never shifted into another zone, even near midnight.
        let late = Timestamp::new("2026-06-30T23:30:00.000000-05:00");
        assert_eq!(late.day().as_deref(), Some("2026-06-30"));
        assert_eq!(
            late.instant().unwrap().naive_utc().date().to_string(),
            "2026-07-01"
        );

        let date_only = Timestamp::new("2026-06-28");
        assert_eq!(date_only.day().as_deref(), Some("2026-06-28"));
        assert_eq!(date_only.instant(), None);
        assert!(!date_only.has_offset());

        assert_eq!(Timestamp::new("garbage").day().as_deref(), None);
        let long = "2026-07-01T07:04:11.123456789012+01:00 (a long, heap-stored form)";
        assert_eq!(Timestamp::new(long).as_str(), long);
        assert_eq!(Timestamp::new(long).day().as_deref(), Some("2026-07-01"));
        assert_eq!(Timestamp::new(""), Timestamp::from(""));
        assert_eq!(Timestamp::new("é").day().as_deref(), None);
        assert_eq!(Timestamp::new("2026-07-01Tgarbage+01:00").instant(), None);
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::new(s)
    }

    #[test]
    fn end_of_day_is_the_next_midnight() {
        let t = ts("2025-10-01T24:00:00+00:00");
        assert_eq!(
            t.instant().unwrap().to_rfc3339(),
            "2025-10-02T00:00:00+00:00"
        );
        assert_eq!(t.local().unwrap().to_string(), "2025-10-02 00:00:00");
        assert_eq!(t.day().as_deref(), Some("2025-10-02"));
        assert_eq!(t.date(), NaiveDate::from_ymd_opt(2025, 10, 2));
        assert_eq!(t.as_str(), "2025-10-01T24:00:00+00:00", "kept as sent");

        // Zero fractions, other offsets, no offset, a space, month and year ends.
        let cases = [
            (
                "2025-10-01T24:00:00.000000+01:00",
                "2025-10-02T00:00:00+01:00",
            ),
            ("2025-10-01T24:00:00.0Z", "2025-10-02T00:00:00+00:00"),
            ("2025-10-01T24:00:00-0700", "2025-10-02T00:00:00-07:00"),
            ("2025-10-01 24:00:00+00:00", "2025-10-02T00:00:00+00:00"),
            ("2025-02-28T24:00:00Z", "2025-03-01T00:00:00+00:00"),
            ("2024-02-28T24:00:00Z", "2024-02-29T00:00:00+00:00"),
            ("2025-12-31T24:00:00Z", "2026-01-01T00:00:00+00:00"),
        ];
        for (sent, expected) in cases {
            assert_eq!(ts(sent).instant().unwrap().to_rfc3339(), expected, "{sent}");
            assert_eq!(ts(sent).day().as_deref(), Some(&expected[..10]), "{sent}");
        }
        let local = ts("2025-12-31T24:00:00.000000");
        assert_eq!(local.instant(), None);
        assert_eq!(local.local().unwrap().to_string(), "2026-01-01 00:00:00");
        assert_eq!(local.day().as_deref(), Some("2026-01-01"));
        assert_eq!(local.date(), NaiveDate::from_ymd_opt(2026, 1, 1));
    }

    #[test]
    fn only_the_exact_end_of_day_is_hour_24() {
        for sent in [
            "2025-10-01T24:00:01+00:00",
            "2025-10-01T24:01:00+00:00",
            "2025-10-01T24:00:00.000001+00:00",
            "2025-10-01T24:00:00.+00:00",
            "2025-10-01T25:00:00+00:00",
        ] {
            let t = ts(sent);
            assert_eq!(t.instant(), None, "{sent}");
            assert_eq!(t.local(), None, "{sent}");
            // The day as written: the time does not move it.
            assert_eq!(t.day().as_deref(), Some("2025-10-01"), "{sent}");
        }
        assert_eq!(ts("2025-10-01T24:00:01").local(), None);
        // The end of the day with an impossible offset is no instant (the wall clock still is).
        assert_eq!(ts("2025-10-01T24:00:00+25:00").instant(), None);
        // An impossible date stays impossible; the day as written is still the key.
        let impossible = ts("2025-02-30T24:00:00Z");
        assert_eq!(impossible.instant(), None);
        assert_eq!(impossible.date(), None);
        assert_eq!(impossible.day().as_deref(), Some("2025-02-30"));
        // A bare date and an ordinary midnight are not moved.
        assert_eq!(ts("2025-10-01").day().as_deref(), Some("2025-10-01"));
        assert!(matches!(
            ts("2025-10-01T00:00:00Z").day(),
            Some(Cow::Borrowed(_))
        ));
        // The last representable day still has an end.
        assert_eq!(
            ts("9999-12-31T24:00:00Z").date(),
            NaiveDate::from_ymd_opt(10000, 1, 1)
        );
    }
}
