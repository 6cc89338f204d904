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
    /// another zone. This is the key of day-keyed records (daily, body, menstruation, nutrition).
    pub fn day(&self) -> Option<&str> {
        let day = self.as_str().get(..10)?;
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
        let s = self.as_str();
        DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%z"))
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
        let long = "2026-07-01T07:04:11.123456789012+01:00 (a long, heap-stored form)";
        assert_eq!(Timestamp::new(long).as_str(), long);
        assert_eq!(Timestamp::new(long).day(), Some("2026-07-01"));
        assert_eq!(Timestamp::new(""), Timestamp::from(""));
        assert_eq!(Timestamp::new("é").day(), None);
        assert_eq!(Timestamp::new("2026-07-01Tgarbage+01:00").instant(), None);
    }
}
