//! `Timestamp`: Terra's ISO 8601 strings, kept verbatim and parsed only on demand.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 8601 time (or date) exactly as Terra sent it.
///
/// Terra usually sends microseconds and an offset (`2026-07-01T07:04:11.000000+01:00`) but
/// sometimes omits the offset, in which case the value is the user's local wall-clock time and
/// is *not* an instant. Decoding keeps the string (so it re-encodes byte for byte and costs no
/// parsing on the hot path); [`instant`](Self::instant) only answers when an offset is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(String);

impl Timestamp {
    /// Wraps a string as Terra would send it (no validation: see the accessors).
    pub fn new(s: impl Into<String>) -> Self {
        Timestamp(s.into())
    }

    /// The original string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The calendar day as written: the first 10 characters (`YYYY-MM-DD`), never converted to
    /// another zone. This is the key of day-keyed records (daily, body, menstruation, nutrition).
    pub fn day(&self) -> Option<&str> {
        let day = self.0.get(..10)?;
        let b = day.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        (digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
            .then_some(day)
    }

    /// The calendar day as a date (see [`day`](Self::day)).
    pub fn date(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(self.day()?, "%Y-%m-%d").ok()
    }

    /// True when the string carries a UTC offset (or `Z`), i.e. denotes an instant.
    pub fn has_offset(&self) -> bool {
        self.split_offset().1.is_some()
    }

    /// The instant, only when an offset (or `Z`) is present; `None` for local wall-clock times.
    pub fn instant(&self) -> Option<DateTime<FixedOffset>> {
        let (_, offset) = self.split_offset();
        offset?;
        DateTime::parse_from_rfc3339(&self.0)
            .or_else(|_| DateTime::parse_from_str(&self.0, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .or_else(|_| DateTime::parse_from_str(&self.0, "%Y-%m-%d %H:%M:%S%.f%z"))
            .ok()
    }

    /// The wall-clock date and time as written (ignoring any offset).
    pub fn local(&self) -> Option<NaiveDateTime> {
        let (wall, _) = self.split_offset();
        NaiveDateTime::parse_from_str(wall, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(wall, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()
    }

    /// Splits `2026-07-01T07:04:11.000000+01:00` into the wall-clock part and the offset part.
    fn split_offset(&self) -> (&str, Option<&str>) {
        let s = self.0.as_str();
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

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Timestamp {
    fn from(s: &str) -> Self {
        Timestamp(s.to_owned())
    }
}

impl AsRef<str> for Timestamp {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 8601 timestamp string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        Ok(Timestamp(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Timestamp, E> {
        Ok(Timestamp(v))
    }
}

impl super::Model for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_local_forms() {
        let t = Timestamp::new("2026-07-01T07:04:11.123456+01:00");
        assert_eq!(t.day(), Some("2026-07-01"));
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
        assert_eq!(local.day(), Some("2026-06-30"));

        // The day is never shifted into another zone, even near midnight.
        let late = Timestamp::new("2026-06-30T23:30:00.000000-05:00");
        assert_eq!(late.day(), Some("2026-06-30"));
        assert_eq!(
            late.instant().unwrap().naive_utc().date().to_string(),
            "2026-07-01"
        );

        let date_only = Timestamp::new("2026-06-28");
        assert_eq!(date_only.day(), Some("2026-06-28"));
        assert_eq!(date_only.instant(), None);
        assert!(!date_only.has_offset());

        assert_eq!(Timestamp::new("garbage").day(), None);
        assert_eq!(Timestamp::new("é").day(), None);
        assert_eq!(Timestamp::new("2026-07-01Tgarbage+01:00").instant(), None);
    }
}
