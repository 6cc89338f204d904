//! `terra-sink send`: signs a JSON body exactly as Terra does and POSTs it to a webhook URL, to
//! make a first delivery or to check that a deployment verifies signatures.

use std::time::Duration;

use secrecy::SecretString;

use crate::signature;

/// Built-in sample bodies, one per Terra event type (`samples/<type>.json`). Where Terra publishes
/// an example webhook (schemas/terra/webhook-examples) the sample is that example.
pub const SAMPLES: &[(&str, &str)] = &[
    (
        "access_revoked",
        include_str!("../samples/access_revoked.json"),
    ),
    ("activity", include_str!("../samples/activity.json")),
    ("athlete", include_str!("../samples/athlete.json")),
    ("auth", include_str!("../samples/auth.json")),
    (
        "auth_cancelled",
        include_str!("../samples/auth_cancelled.json"),
    ),
    ("body", include_str!("../samples/body.json")),
    (
        "connection_error",
        include_str!("../samples/connection_error.json"),
    ),
    ("daily", include_str!("../samples/daily.json")),
    ("deauth", include_str!("../samples/deauth.json")),
    (
        "google_no_datasource",
        include_str!("../samples/google_no_datasource.json"),
    ),
    (
        "health_observation",
        include_str!("../samples/health_observation.json"),
    ),
    ("healthcheck", include_str!("../samples/healthcheck.json")),
    ("hormone", include_str!("../samples/hormone.json")),
    (
        "lab_report.completed",
        include_str!("../samples/lab_report.completed.json"),
    ),
    (
        "lab_report.failed",
        include_str!("../samples/lab_report.failed.json"),
    ),
    (
        "large_request_processing",
        include_str!("../samples/large_request_processing.json"),
    ),
    (
        "large_request_sending",
        include_str!("../samples/large_request_sending.json"),
    ),
    ("menstruation", include_str!("../samples/menstruation.json")),
    ("nutrition", include_str!("../samples/nutrition.json")),
    (
        "permission_change",
        include_str!("../samples/permission_change.json"),
    ),
    (
        "planned_workout",
        include_str!("../samples/planned_workout.json"),
    ),
    ("processing", include_str!("../samples/processing.json")),
    (
        "rate_limit_hit",
        include_str!("../samples/rate_limit_hit.json"),
    ),
    ("s3_payload", include_str!("../samples/s3_payload.json")),
    ("sleep", include_str!("../samples/sleep.json")),
    ("user_reauth", include_str!("../samples/user_reauth.json")),
];

/// The default target: a locally running terra-sink (scripts/run.sh listens on loopback).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/webhooks/terra";

/// The built-in sample body of an event type, if there is one.
pub fn sample(event_type: &str) -> Option<&'static str> {
    SAMPLES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, body)| *body)
}

/// The names accepted by `--sample`.
pub fn sample_names() -> impl Iterator<Item = &'static str> {
    SAMPLES.iter().map(|(name, _)| *name)
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Status text (`OK`, `Unauthorized`…).
    pub reason: String,
    /// The response body, as text.
    pub body: String,
}

impl Reply {
    /// True for a 2xx answer.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Prints the receiver's answer (status line, then body); an answer other than 2xx is an error.
pub fn report(reply: &Reply) -> Result<(), String> {
    println!("HTTP {} {}", reply.status, reply.reason);
    println!("{}", reply.body);
    if reply.accepted() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", reply.status))
    }
}

/// Why a delivery could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request did not get an answer.
    #[error("cannot POST to {url}: {reason}")]
    Transport {
        /// Where it was sent.
        url: String,
        /// Why it failed.
        reason: String,
    },
}

/// A delivery to send.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Webhook URL.
    pub url: &'a str,
    /// Signing secret.
    pub secret: &'a SecretString,
    /// The exact body bytes (signed and sent as they are).
    pub body: &'a [u8],
    /// `x-terra-trace-id`, if any.
    pub trace_id: Option<&'a str>,
    /// `x-terra-ordering-timestamp` (Unix milliseconds), if any.
    pub ordering_timestamp: Option<i64>,
    /// `terra-reference`, if any.
    pub terra_reference: Option<&'a str>,
    /// Signature timestamp (Unix seconds); Terra uses the current time.
    pub timestamp: i64,
}

/// Signs the body with `terra-signature: t=<t>,v1=<HMAC-SHA256 of "<t>.<body>">` and POSTs it
/// with Terra's headers.
pub async fn send(delivery: &Outgoing<'_>) -> Result<Reply, SendError> {
    let transport = |e: reqwest::Error| SendError::Transport {
        url: delivery.url.to_owned(),
        reason: e.without_url().to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("terra-sink-send/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(transport)?;
    let header = signature::sign(delivery.secret, delivery.timestamp, delivery.body);
    let mut request = client
        .post(delivery.url)
        .header("content-type", "application/json")
        .header("terra-signature", header)
        .body(delivery.body.to_vec());
    if let Some(trace) = delivery.trace_id {
        request = request.header("x-terra-trace-id", trace);
    }
    if let Some(ordering) = delivery.ordering_timestamp {
        request = request.header("x-terra-ordering-timestamp", ordering.to_string());
    }
    if let Some(reference) = delivery.terra_reference {
        request = request.header("terra-reference", reference);
    }
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let body = response.text().await.map_err(transport)?;
    Ok(Reply {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_owned(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;

    #[test]
    fn every_sample_decodes_to_its_typed_event() {
        for (name, body) in SAMPLES {
            let event =
                Event::from_slice(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                !matches!(event, Event::Unknown { .. }),
                "{name} decodes as Unknown"
            );
            assert_eq!(event.type_name(), Some(*name), "{name}");
            let mut unknown = Vec::new();
            event.for_each_unknown(&mut |k, _| unknown.push(k.to_owned()));
            assert!(
                unknown.is_empty(),
                "{name}: fields outside the schema: {unknown:?}"
            );
        }
    }

    #[test]
    fn every_known_event_type_has_a_sample() {
        for ty in crate::model::EVENT_TYPES {
            assert!(sample(ty).is_some(), "no sample for {ty}");
        }
        assert_eq!(SAMPLES.len(), crate::model::EVENT_TYPES.len());
        assert!(sample("nope").is_none());
    }
}
