//! A first, cheap look at a delivery body: is it JSON, what `type` is it, which user is it for.
//!
//! Pure logic. It runs on the request path, so it never builds a JSON tree: it scans the body once
//! and borrows the few small values it needs. Full decoding happens later, off the request path.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::EVENT_TYPES;

/// What the first look found; stored on the ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The event `type`, when it is a string.
    pub event_type: Option<String>,
    /// The Terra user id (`user.user_id`, or `new_user.user_id` for `user_reauth`).
    pub user_id: Option<String>,
    /// The verdict.
    pub shape: BodyShape,
}

/// The verdict of the first look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyShape {
    /// A JSON object with a known `type`.
    Ok,
    /// Not JSON at all.
    InvalidJson(String),
    /// JSON, but not an object with a string `type`.
    UnexpectedShape(String),
    /// An object whose `type` Terra does not document (yet).
    UnknownType,
}

impl BodyShape {
    /// The label stored in `terra.deliveries.shape`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnexpectedShape(_) => "unexpected_shape",
            Self::UnknownType => "unknown_type",
        }
    }

    /// Why the shape is not `ok`, for `terra.deliveries.shape_error`.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Ok => None,
            Self::InvalidJson(e) | Self::UnexpectedShape(e) => Some(e),
            Self::UnknownType => Some("event type is not one Terra documents"),
        }
    }
}

#[derive(Deserialize, Default)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    new_user: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UserRef {
    #[serde(default)]
    user_id: Option<String>,
}

/// Looks at `body` without judging it harshly: every outcome is a value, never an error or panic.
pub fn peek(body: &[u8]) -> Peek {
    // serde would also read a struct from a JSON array, so insist on an object up front.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if is_object {
        serde_json::from_slice::<Envelope<'_>>(body)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| Envelope::default())
    };
    let envelope = match parsed {
        Ok(envelope) if is_object => envelope,
        Ok(_) => return Peek::unexpected("expected a JSON object, got another JSON value".into()),
        Err(e) if e.is_data() => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            // The whole body is valid JSON; only its shape is off (e.g. a repeated "type").
            Ok(_) => return Peek::unexpected(e.to_string()),
            Err(e) => return Peek::invalid_json(e.to_string()),
        },
        Err(e) => return Peek::invalid_json(e.to_string()),
    };
    let user_id = [envelope.user, envelope.new_user]
        .into_iter()
        .flatten()
        .find_map(|raw| {
            serde_json::from_str::<UserRef>(raw.get())
                .ok()
                .and_then(|u| u.user_id)
        });
    let Some(kind) = envelope.kind else {
        return Peek {
            user_id,
            ..Peek::unexpected("the object has no \"type\"".to_owned())
        };
    };
    let Ok(kind) = serde_json::from_str::<String>(kind.get()) else {
        return Peek {
            user_id,
            ..Peek::unexpected("\"type\" is not a string".to_owned())
        };
    };
    let shape = if EVENT_TYPES.contains(&kind.as_str()) {
        BodyShape::Ok
    } else {
        BodyShape::UnknownType
    };
    Peek {
        event_type: Some(kind),
        user_id,
        shape,
    }
}

impl Peek {
    fn invalid_json(reason: String) -> Self {
        Self {
            event_type: None,
            user_id: None,
            shape: BodyShape::InvalidJson(reason),
        }
    }

    fn unexpected(reason: String) -> Self {
        Self {
            event_type: None,
            user_id: None,
            shape: BodyShape::UnexpectedShape(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_event() {
        let p =
            peek(br#"{"data":[{"x":1}],"type":"daily","user":{"user_id":"u1","provider":"OURA"}}"#);
        assert_eq!(p.event_type.as_deref(), Some("daily"));
        assert_eq!(p.user_id.as_deref(), Some("u1"));
        assert_eq!(p.shape, BodyShape::Ok);
    }

    #[test]
    fn reauth_uses_new_user() {
        let p = peek(br#"{"type":"user_reauth","old_user":null,"new_user":{"user_id":"new"}}"#);
        assert_eq!(p.user_id.as_deref(), Some("new"));
        assert_eq!(p.shape, BodyShape::Ok);
    }

    #[test]
    fn escaped_type_is_unescaped() {
        let p = peek(br#"{"type":"sl\u0065ep"}"#);
        assert_eq!(p.event_type.as_deref(), Some("sleep"));
        assert_eq!(p.shape, BodyShape::Ok);
    }

    #[test]
    fn verdicts() {
        assert_eq!(peek(b"not json").shape.label(), "invalid_json");
        assert_eq!(peek(b"{\"type\":\"daily\"").shape.label(), "invalid_json");
        assert_eq!(
            peek(b"{\"type\":\"daily\"} x").shape.label(),
            "invalid_json"
        );
        assert_eq!(peek(b"[1,2]").shape.label(), "unexpected_shape");
        assert_eq!(peek(br#"["daily"]"#).shape.label(), "unexpected_shape");
        assert_eq!(peek(b"[1,2] x").shape.label(), "invalid_json");
        assert_eq!(
            peek(br#"{"type":"daily","type":"sleep"}"#).shape.label(),
            "unexpected_shape"
        );
        assert_eq!(
            peek(br#"{"type":"daily","type":"sleep""#).shape.label(),
            "invalid_json"
        );
        assert_eq!(
            peek(b"{\"status\":\"ok\"}").shape.label(),
            "unexpected_shape"
        );
        assert_eq!(peek(b"{\"type\":7}").shape.label(), "unexpected_shape");
        assert_eq!(
            peek(b"{\"type\":\"brand_new\"}").shape.label(),
            "unknown_type"
        );
        assert_eq!(
            peek(b"{\"type\":\"brand_new\"}").event_type.as_deref(),
            Some("brand_new")
        );
        // A user that is not an object does not hide the type.
        let p = peek(br#"{"type":"deauth","user":5}"#);
        assert_eq!((p.shape, p.user_id), (BodyShape::Ok, None));
    }

    #[test]
    fn nul_characters_are_fine() {
        let p = peek(br#"{"type":"sleep","note":"a\u0000b"}"#);
        assert_eq!(p.shape, BodyShape::Ok);
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = peek(&body);
        }
    }
}
