//! The webhook event envelope: one enum dispatched on the body's `type`.
//!
//! Dispatch peeks `type` with a tiny borrowed struct (everything else is skipped with
//! `IgnoredAny`, no allocation), then decodes the matching envelope from the same bytes. Serde's
//! internally tagged enums would instead buffer the whole payload into an intermediate tree.
//! The fast path decodes without path tracking; only when it fails is the body decoded again
//! through `serde_path_to_error` to name the failing JSON path.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use super::prelude::*;
use super::{DecodeError, Model};

terra_struct! {
    /// Terra's periodic health check of the destination (`type: healthcheck`).
    HealthcheckEvent {
        /// Event type discriminator, as sent by Terra.
        r#type: String = "type",
        /// Event status, as sent by Terra.
        status: String = "status",
        /// When Terra created the health check.
        creation_timestamp: Timestamp = "creation_timestamp",
        /// Change in webhook volume compared with the previous period, in percent.
        trend_percentage: f64 = "trend_percentage",
        /// Number of webhooks Terra sent in the last hour.
        sent_webhooks_last_hour: Integer = "sent_webhooks_last_hour",
        /// Human-readable message.
        message: String = "message",
    }
}

terra_struct! {
    /// Data is being fetched asynchronously from the provider (`type: processing`).
    ProcessingEvent {
        /// Event type discriminator, as sent by Terra.
        r#type: String = "type",
        /// Event status, as sent by Terra.
        status: String = "status",
        /// Human-readable message.
        message: String = "message",
        /// User the data is being fetched for.
        user: TerraUser = "user",
        /// Seconds after which the data can safely be requested.
        retry_after_seconds: Integer = "retry_after_seconds",
        /// Reference tying the eventual data payloads back to the request.
        reference: String = "reference",
    }
}

terra_struct! {
    /// An asynchronous request hit the provider's rate limit and will be retried (`type: rate_limit_hit`).
    RateLimitHitEvent {
        /// Event type discriminator, as sent by Terra.
        r#type: String = "type",
        /// Event status, as sent by Terra.
        status: String = "status",
        /// Human-readable message.
        message: String = "message",
        /// User whose request was rate limited.
        user: TerraUser = "user",
        /// Start of the requested period.
        start_date: Timestamp = "start_date",
        /// End of the requested period.
        end_date: Timestamp = "end_date",
        /// When Terra will retry.
        retrying_at: Timestamp = "retrying_at",
        /// Reference tying the eventual data payloads back to the request.
        reference: String = "reference",
    }
}

terra_struct! {
    /// A Google Fit user has no data source linked: all their data will be empty (`type: google_no_datasource`).
    GoogleNoDatasourceEvent {
        /// Event type discriminator, as sent by Terra.
        r#type: String = "type",
        /// Event status, as sent by Terra.
        status: String = "status",
        /// Human-readable message.
        message: String = "message",
        /// The affected user.
        user: TerraUser = "user",
    }
}

/// One Terra webhook body, typed by its `type`.
///
/// A body whose `type` is not listed here, or that has no `type` at all, decodes to
/// [`Event::Unknown`] with its raw JSON: it is never an error, so new Terra event types reach
/// storage untouched. Only malformed JSON, a non-object body, a non-string `type` or a listed
/// type whose content does not fit its schema is a [`DecodeError`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `activity`: completed workouts.
    Activity(ActivityEvent),
    /// `body`: body metrics for a day.
    Body(BodyEvent),
    /// `daily`: running daily totals.
    Daily(DailyEvent),
    /// `menstruation`: cycle data for a day.
    Menstruation(MenstruationEvent),
    /// `nutrition`: meals and intake for a day.
    Nutrition(NutritionEvent),
    /// `sleep`: sleep sessions.
    Sleep(SleepEvent),
    /// `athlete`: the user's profile (kept as raw JSON inside a typed envelope).
    Athlete(AthleteEvent),
    /// `auth`: successful authentication, or the legacy error form (`status: "error"`).
    Auth(AuthEvent),
    /// `auth_cancelled`: failed or cancelled authentication.
    AuthCancelled(AuthCancelledEvent),
    /// `deauth`: the user disconnected.
    Deauth(DeauthEvent),
    /// `user_reauth`: the user re-authenticated; `old_user` is replaced by `new_user`.
    UserReauth(UserReauthEvent),
    /// `access_revoked`: access revoked from the provider side.
    AccessRevoked(AccessRevokedEvent),
    /// `connection_error`: the provider rejected Terra's credentials.
    ConnectionError(ConnectionErrorEvent),
    /// `permission_change`: granted scopes changed.
    PermissionChange(PermissionChangeEvent),
    /// `large_request_processing`: a large historical request was accepted.
    LargeRequestProcessing(LargeRequestProcessingEvent),
    /// `large_request_sending`: the chunks of a large request are being sent.
    LargeRequestSending(LargeRequestSendingEvent),
    /// `s3_payload`: the payload is too large and must be downloaded from `url`.
    S3Payload(S3PayloadEvent),
    /// `planned_workout`: planned workouts (raw JSON items in a typed envelope).
    PlannedWorkout(PlannedWorkoutEvent),
    /// `hormone`: hormone samples (raw JSON items in a typed envelope).
    Hormone(HormoneEvent),
    /// `health_observation`: health observations (raw JSON items in a typed envelope).
    HealthObservation(HealthObservationEvent),
    /// `lab_report.completed`: a lab report was processed (raw JSON `data`).
    LabReportCompleted(LabReportCompletedEvent),
    /// `lab_report.failed`: a lab report terminally failed (raw JSON `data`).
    LabReportFailed(LabReportFailedEvent),
    /// `healthcheck`: Terra checking the destination.
    Healthcheck(HealthcheckEvent),
    /// `processing`: data is being fetched asynchronously.
    Processing(ProcessingEvent),
    /// `rate_limit_hit`: a request was rate limited and will be retried.
    RateLimitHit(RateLimitHitEvent),
    /// `google_no_datasource`: a Google Fit user has no data source.
    GoogleNoDatasource(GoogleNoDatasourceEvent),
    /// Any other `type` (or none): the raw body, untouched.
    Unknown {
        /// The body's `type`, when it had one.
        type_name: Option<String>,
        /// The whole body.
        raw: Value,
    },
}

/// Calls `$m!(…)` with every typed variant name, so per-variant matches are written once.
macro_rules! typed_variants {
    ($m:ident) => {
        $m!(
            Activity,
            Body,
            Daily,
            Menstruation,
            Nutrition,
            Sleep,
            Athlete,
            Auth,
            AuthCancelled,
            Deauth,
            UserReauth,
            AccessRevoked,
            ConnectionError,
            PermissionChange,
            LargeRequestProcessing,
            LargeRequestSending,
            S3Payload,
            PlannedWorkout,
            Hormone,
            HealthObservation,
            LabReportCompleted,
            LabReportFailed,
            Healthcheck,
            Processing,
            RateLimitHit,
            GoogleNoDatasource
        )
    };
}

/// Just the `type` of a body, borrowed when possible. Only a JSON object is accepted.
///
/// Terra puts `type` first, so the visitor stops as soon as it has a string `type` (reporting
/// a private "found" error that the caller recognises): the rest of the body is then scanned
/// only once, by the typed decoder. Before `type`, values are skipped with `IgnoredAny`
/// (validated, never allocated). A later duplicate `type` key is therefore ignored for dispatch.
struct PeekVisitor<'s, 'de> {
    slot: &'s mut Option<Cow<'de, str>>,
}

/// Every event `type` Terra documents; anything else decodes to [`Event::Unknown`].
pub const EVENT_TYPES: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "sleep",
    "auth",
    "auth_cancelled",
    "deauth",
    "user_reauth",
    "access_revoked",
    "connection_error",
    "permission_change",
    "large_request_processing",
    "large_request_sending",
    "s3_payload",
    "planned_workout",
    "hormone",
    "health_observation",
    "lab_report.completed",
    "lab_report.failed",
    "healthcheck",
    "processing",
    "rate_limit_hit",
    "google_no_datasource",
];

/// The private error message that means "`type` found, stop scanning".
const FOUND: &str = "\u{0}terra-sink: type found";

impl<'de> serde::de::Visitor<'de> for PeekVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(super::macros::KeySeed)? {
            if key == "type" {
                *self.slot = map.next_value_seed(TypeSeed)?;
                if self.slot.is_some() {
                    return Err(serde::de::Error::custom(FOUND));
                }
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Finds the body's `type` (or `None` for an object without one).
fn peek_type(bytes: &[u8]) -> Result<Option<Cow<'_, str>>, DecodeError> {
    use serde::Deserializer as _;
    let mut slot = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let res = (&mut de).deserialize_map(PeekVisitor { slot: &mut slot });
    match res {
        Ok(()) => Ok(slot),
        Err(_) if slot.is_some() => Ok(slot),
        Err(fast) => {
            // Report where it failed: the same scan again, with path tracking.
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let mut track = serde_path_to_error::Track::new();
            let mut slot = None;
            let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track)
                .deserialize_map(PeekVisitor { slot: &mut slot });
            let path = match tracked {
                Err(_) => track.path().to_string(),
                Ok(()) => ".".to_owned(),
            };
            Err(DecodeError {
                path,
                message: fast.to_string(),
            })
        }
    }
}

/// A `type` value: a string (borrowed when possible) or null.
struct TypeSeed;

impl<'de> serde::de::DeserializeSeed<'de> for TypeSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the event type as a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes `bytes` as `T`: fast path without path tracking, slow path only to report the path.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(fast) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => Err(DecodeError::from_path_error(e)),
                // The value itself was fine: the fast path failed on trailing characters.
                Ok(_) => Err(DecodeError {
                    path: ".".to_owned(),
                    message: fast.to_string(),
                }),
            }
        }
    }
}

impl Event {
    /// Decodes a webhook body. Never panics; errors name the JSON path that failed.
    pub fn from_slice(bytes: &[u8]) -> Result<Event, DecodeError> {
        let peeked = peek_type(bytes)?;
        let ty = peeked.as_deref();
        let event = Self::decode_as(ty, bytes)?;
        // The variant follows the first `type`, the fields (as serde does) the last one: a body
        // naming two types is ambiguous, and decoding it either way would misfile it.
        if event.decoded_type() != ty {
            return Err(DecodeError {
                path: ".type".to_owned(),
                message: format!(
                    "`type` appears more than once with different values ({:?} and {:?})",
                    ty.unwrap_or("null"),
                    event.decoded_type().unwrap_or("null")
                ),
            });
        }
        Ok(event)
    }

    /// The `type` field as the decoder kept it (for `Unknown`, the raw body's).
    fn decoded_type(&self) -> Option<&str> {
        match self {
            Event::Unknown { raw, .. } => raw.get("type").and_then(Value::as_str),
            typed => typed.type_name(),
        }
    }

    /// Decodes `bytes` as the event type `ty`.
    fn decode_as(ty: Option<&str>, bytes: &[u8]) -> Result<Event, DecodeError> {
        Ok(match ty {
            Some("activity") => Event::Activity(decode(bytes)?),
            Some("body") => Event::Body(decode(bytes)?),
            Some("daily") => Event::Daily(decode(bytes)?),
            Some("menstruation") => Event::Menstruation(decode(bytes)?),
            Some("nutrition") => Event::Nutrition(decode(bytes)?),
            Some("sleep") => Event::Sleep(decode(bytes)?),
            Some("athlete") => Event::Athlete(decode(bytes)?),
            Some("auth") => Event::Auth(decode(bytes)?),
            Some("auth_cancelled") => Event::AuthCancelled(decode(bytes)?),
            Some("deauth") => Event::Deauth(decode(bytes)?),
            Some("user_reauth") => Event::UserReauth(decode(bytes)?),
            Some("access_revoked") => Event::AccessRevoked(decode(bytes)?),
            Some("connection_error") => Event::ConnectionError(decode(bytes)?),
            Some("permission_change") => Event::PermissionChange(decode(bytes)?),
            Some("large_request_processing") => Event::LargeRequestProcessing(decode(bytes)?),
            Some("large_request_sending") => Event::LargeRequestSending(decode(bytes)?),
            Some("s3_payload") => Event::S3Payload(decode(bytes)?),
            Some("planned_workout") => Event::PlannedWorkout(decode(bytes)?),
            Some("hormone") => Event::Hormone(decode(bytes)?),
            Some("health_observation") => Event::HealthObservation(decode(bytes)?),
            Some("lab_report.completed") => Event::LabReportCompleted(decode(bytes)?),
            Some("lab_report.failed") => Event::LabReportFailed(decode(bytes)?),
            Some("healthcheck") => Event::Healthcheck(decode(bytes)?),
            Some("processing") => Event::Processing(decode(bytes)?),
            Some("rate_limit_hit") => Event::RateLimitHit(decode(bytes)?),
            Some("google_no_datasource") => Event::GoogleNoDatasource(decode(bytes)?),
            other => Event::Unknown {
                type_name: other.map(str::to_owned),
                raw: decode(bytes)?,
            },
        })
    }

    /// The event's `type` as Terra sent it (`None` only for an unknown body without `type`).
    pub fn type_name(&self) -> Option<&str> {
        macro_rules! ty {
            ($($v:ident),*) => {
                match self {
                    $( Event::$v(e) => e.r#type.as_deref(), )*
                    Event::Unknown { type_name, .. } => type_name.as_deref(),
                }
            };
        }
        typed_variants!(ty)
    }

    /// The Terra user the event is about. For `user_reauth` this is the *new* user; events
    /// without a user (`auth_cancelled`, `s3_payload`, lab reports, unknown) give `None`.
    pub fn user(&self) -> Option<&TerraUser> {
        match self {
            Event::Activity(e) => Some(&e.user),
            Event::Body(e) => Some(&e.user),
            Event::Daily(e) => Some(&e.user),
            Event::Menstruation(e) => Some(&e.user),
            Event::Nutrition(e) => Some(&e.user),
            Event::Sleep(e) => Some(&e.user),
            Event::Athlete(e) => Some(&e.user),
            Event::Auth(e) => e.user.as_ref(),
            Event::Deauth(e) => Some(&e.user),
            Event::UserReauth(e) => Some(&e.new_user),
            Event::AccessRevoked(e) => Some(&e.user),
            Event::ConnectionError(e) => Some(&e.user),
            Event::PermissionChange(e) => Some(&e.user),
            Event::LargeRequestProcessing(e) => Some(&e.user),
            Event::LargeRequestSending(e) => Some(&e.user),
            Event::PlannedWorkout(e) => Some(&e.user),
            Event::Hormone(e) => Some(&e.user),
            Event::HealthObservation(e) => Some(&e.user),
            Event::Processing(e) => e.user.as_ref(),
            Event::RateLimitHit(e) => e.user.as_ref(),
            Event::GoogleNoDatasource(e) => e.user.as_ref(),
            Event::AuthCancelled(_)
            | Event::S3Payload(_)
            | Event::LabReportCompleted(_)
            | Event::LabReportFailed(_)
            | Event::Healthcheck(_)
            | Event::Unknown { .. } => None,
        }
    }

    /// The Terra `user_id` the event is about (see [`user`](Self::user)).
    pub fn user_id(&self) -> Option<&str> {
        self.user().map(|u| u.user_id.as_str())
    }

    /// The event's `status`, when it has one.
    pub fn status(&self) -> Option<&str> {
        macro_rules! st {
            ($($v:ident),*) => {
                match self {
                    $( Event::$v(e) => e.status.as_deref(), )*
                    Event::LabReportCompleted(_) | Event::LabReportFailed(_) => None,
                    Event::Unknown { raw, .. } => raw.get("status").and_then(Value::as_str),
                }
            };
        }
        st!(
            Activity,
            Body,
            Daily,
            Menstruation,
            Nutrition,
            Sleep,
            Athlete,
            Auth,
            AuthCancelled,
            Deauth,
            UserReauth,
            AccessRevoked,
            ConnectionError,
            PermissionChange,
            LargeRequestProcessing,
            LargeRequestSending,
            S3Payload,
            PlannedWorkout,
            Hormone,
            HealthObservation,
            Healthcheck,
            Processing,
            RateLimitHit,
            GoogleNoDatasource
        )
    }

    /// Calls `f` with every key the model did not know, anywhere in the event (not for
    /// `Unknown` events, which are raw in full). Useful to count schema drift.
    pub fn for_each_unknown(&self, f: &mut dyn FnMut(&str, &Value)) {
        macro_rules! walk {
            ($($v:ident),*) => {
                match self {
                    $( Event::$v(e) => e.for_each_unknown(f), )*
                    Event::Unknown { .. } => {}
                }
            };
        }
        typed_variants!(walk)
    }

    /// Re-encodes the event as JSON (lossless: unknown keys are written back).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

impl std::str::FromStr for Event {
    type Err = DecodeError;

    /// Decodes a webhook body held in a string.
    fn from_str(s: &str) -> Result<Event, DecodeError> {
        Event::from_slice(s.as_bytes())
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        macro_rules! ser {
            ($($v:ident),*) => {
                match self {
                    $( Event::$v(e) => e.serialize(s), )*
                    Event::Unknown { raw, .. } => raw.serialize(s),
                }
            };
        }
        typed_variants!(ser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_type_has_its_own_variant() {
        for ty in EVENT_TYPES {
            // The smallest body of each type; decoding may fail on missing required fields,
            // but it must never fall through to `Unknown`.
            let body = format!(
                r#"{{"type":"{ty}","user":{{"user_id":"u"}},"new_user":{{"user_id":"u"}},"data":[]}}"#
            );
            match Event::from_slice(body.as_bytes()) {
                Ok(Event::Unknown { .. }) => panic!("{ty} decodes to Unknown"),
                Ok(event) => assert_eq!(event.type_name(), Some(*ty)),
                Err(e) => panic!("{ty}: {e}"),
            }
        }
        let unknown = Event::from_slice(br#"{"type":"brand_new"}"#).unwrap();
        assert!(matches!(unknown, Event::Unknown { .. }));
    }

    #[test]
    fn a_body_naming_two_types_is_an_error_not_a_misfiled_event() {
        // Found by fuzzing: decoded as a healthcheck whose `type` said otherwise, so it
        // re-encoded as a different event.
        for body in [
            r#"{"type":"healthcheck","status":"success","type":"heis_extern"}"#,
            r#"{"type":"daily","user":{"user_id":"u"},"data":[],"type":"sleep"}"#,
            r#"{"type":"brand_new","type":"other_new"}"#,
        ] {
            let err = Event::from_slice(body.as_bytes()).unwrap_err();
            assert_eq!(err.path, ".type", "{body}");
            assert!(err.message.contains("more than once"), "{err}");
        }
        // The same type twice, or a null before it, is not ambiguous.
        for body in [
            r#"{"type":"healthcheck","type":"healthcheck"}"#,
            r#"{"type":null,"type":"brand_new"}"#,
        ] {
            assert!(Event::from_slice(body.as_bytes()).is_ok(), "{body}");
        }
    }
}
