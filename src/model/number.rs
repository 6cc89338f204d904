//! `Integer`: a JSON integer that Terra may also send as a float (`7902.0`, sometimes `7902.5`).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value Terra's schema types as `integer`, decoded leniently so that no record is lost.
///
/// `7902` and `7902.0` both become the whole number 7902; a fractional value such as `7902.5`
/// (or an integer beyond `i64`) is kept as the float it was rather than rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Integer(Repr);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Repr {
    Whole(i64),
    Float(f64),
}

impl Integer {
    /// A whole number.
    pub const fn from_i64(v: i64) -> Self {
        Integer(Repr::Whole(v))
    }

    /// The value from a float: whole floats become whole numbers, others are kept as floats.
    pub fn from_f64(v: f64) -> Self {
        // 2^63 is exactly representable; values in [-2^63, 2^63) convert without loss.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            Integer(Repr::Whole(v as i64))
        } else {
            Integer(Repr::Float(v))
        }
    }

    /// The whole number, or `None` when Terra sent a fractional (or out-of-range) value.
    pub fn as_i64(self) -> Option<i64> {
        match self.0 {
            Repr::Whole(v) => Some(v),
            Repr::Float(_) => None,
        }
    }

    /// The value as a float (always available).
    pub fn as_f64(self) -> f64 {
        match self.0 {
            Repr::Whole(v) => v as f64,
            Repr::Float(v) => v,
        }
    }
}

impl From<i64> for Integer {
    fn from(v: i64) -> Self {
        Integer::from_i64(v)
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Whole(v) => v.fmt(f),
            Repr::Float(v) => v.fmt(f),
        }
    }
}

impl Serialize for Integer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Repr::Whole(v) => s.serialize_i64(v),
            Repr::Float(v) => s.serialize_f64(v),
        }
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntegerVisitor)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
        Ok(Integer::from_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => Integer::from_i64(v),
            Err(_) => Integer(Repr::Float(v as f64)),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Integer, E> {
        Ok(Integer::from_f64(v))
    }
}

impl super::Model for Integer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_floats_become_integers_and_fractions_are_kept() {
        let parse = |s: &str| serde_json::from_str::<Integer>(s).unwrap();
        assert_eq!(parse("7902").as_i64(), Some(7902));
        assert_eq!(parse("7902.0").as_i64(), Some(7902));
        assert_eq!(parse("-3").as_i64(), Some(-3));
        assert_eq!(parse("7902.5").as_i64(), None);
        assert_eq!(parse("7902.5").as_f64(), 7902.5);
        assert_eq!(
            parse("18446744073709551615").as_i64(),
            None,
            "beyond i64: kept as float"
        );
        assert_eq!(parse("1e3").as_i64(), Some(1000));
        assert!(serde_json::from_str::<Integer>("\"7\"").is_err());
        assert_eq!(serde_json::to_string(&parse("7902.0")).unwrap(), "7902");
        assert_eq!(serde_json::to_string(&parse("7902.5")).unwrap(), "7902.5");
        assert_eq!(Integer::from_f64(f64::NAN).as_i64(), None);
        assert_eq!(Integer::from_f64(9.3e18).as_i64(), None, "out of i64 range");
    }
}
