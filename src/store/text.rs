//! Text as PostgreSQL stores it: `text` and `jsonb` cannot hold U+0000, which JSON strings may
//! carry (`\u0000`). Every string terra-sink writes goes through [`PgText`] (text columns and
//! keys) or [`jsonb_text`] (`data` columns), so no column can forget.
//!
//! Text columns use an encoding that keeps distinct strings distinct (keys must never collide):
//! U+FFFD, the replacement character, is the escape: a U+FFFD in the input is written twice,
//! and U+0000 is written as U+FFFD followed by `0`. A string holding neither (almost every
//! string) is stored unchanged. In `data`, a `\u0000` escape becomes `\ufffd` (`data` is never a
//! key, and the ledger keeps the raw bytes).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// The escape character of the text encoding.
const ESCAPE: char = '\u{fffd}';

/// A string made storable in a PostgreSQL `text` column (see the module docs).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgText(String);

impl PgText {
    /// Encodes `s` (no copy of the work when there is nothing to escape beyond the allocation).
    pub fn new(s: &str) -> Self {
        Self(encode(s).into_owned())
    }

    /// Wraps a string known to contain neither U+0000 nor U+FFFD (digests, generated keys).
    pub(crate) fn from_plain(s: String) -> Self {
        debug_assert!(!s.contains(['\0', ESCAPE]), "not plain: {s:?}");
        Self(s)
    }

    /// Wraps a string that is already in stored form (read back from a text column).
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for PgText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PgText {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<&String> for PgText {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for PgText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for PgText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for PgText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PgText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An optional string made storable.
pub fn opt(s: Option<&str>) -> Option<PgText> {
    s.map(PgText::new)
}

/// The text encoding: U+FFFD doubled, U+0000 as U+FFFD `0`.
fn encode(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => {
                out.push(ESCAPE);
                out.push('0');
            }
            ESCAPE => {
                out.push(ESCAPE);
                out.push(ESCAPE);
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// A record's JSON text as PostgreSQL's jsonb accepts it: each `\u0000` escape becomes
/// `\ufffd`. Everything else is untouched, and no copy is made when there is nothing to replace.
pub fn jsonb_text(raw: &str) -> Cow<'_, str> {
    const NUL: &[u8] = b"\\u0000";
    if !raw.contains("\\u0000") {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        // A backslash starts an escape (a `\\` pair is skipped whole, so `\\u0000`, a literal
        // backslash followed by `u0000`, is left alone). A backslash byte never occurs inside a
        // multi-byte UTF-8 sequence, so `i` is a char boundary here.
        if bytes[i..].starts_with(NUL) {
            out.push_str(&raw[copied..i]);
            out.push_str("\\ufffd");
            i += NUL.len();
            copied = i;
        } else {
            i += 2;
        }
    }
    out.push_str(&raw[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_unchanged() {
        assert!(matches!(encode("abc é"), Cow::Borrowed("abc é")));
        assert_eq!(PgText::new("user-1").as_str(), "user-1");
    }

    #[test]
    fn nul_and_the_escape_are_encoded_without_collisions() {
        assert_eq!(PgText::new("a\0b").as_str(), "a\u{fffd}0b");
        assert_eq!(PgText::new("a\u{fffd}").as_str(), "a\u{fffd}\u{fffd}");
        let inputs = [
            "a\0",
            "a\u{fffd}",
            "a\u{fffd}0",
            "a\0\0",
            "a\u{fffd}\u{fffd}",
            "a0",
            "a",
        ];
        let encoded: std::collections::HashSet<String> = inputs
            .iter()
            .map(|s| PgText::new(s).into_string())
            .collect();
        assert_eq!(encoded.len(), inputs.len(), "{encoded:?}");
        assert!(encoded.iter().all(|s| !s.contains('\0')));
    }

    #[test]
    fn nul_escapes_in_json_are_replaced_only_where_they_are_escapes() {
        assert!(matches!(jsonb_text(r#"{"a":"b"}"#), Cow::Borrowed(_)));
        assert_eq!(jsonb_text(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(
            jsonb_text(r#"{"\u0000":"\u0000\u0000"}"#),
            r#"{"\ufffd":"\ufffd\ufffd"}"#
        );
        // `\\u0000` is a literal backslash followed by "u0000": valid in jsonb, kept.
        assert_eq!(jsonb_text(r#"{"a":"\\u0000"}"#), r#"{"a":"\\u0000"}"#);
        assert_eq!(jsonb_text(r#"{"a":"\\\u0000"}"#), r#"{"a":"\\\ufffd"}"#);
        assert_eq!(jsonb_text(r#"{"é":"ü\u0000"}"#), r#"{"é":"ü\ufffd"}"#);
        // Other escapes are untouched.
        assert_eq!(
            jsonb_text(r#"["\u00001","\u0001"]"#),
            r#"["\ufffd1","\u0001"]"#
        );
    }
}
