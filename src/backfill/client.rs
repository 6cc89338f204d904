//! A client for Terra's REST API: the data endpoints (`GET /activity`, `/body`, `/daily`, …, one
//! request per window) and any other `GET` ([`TerraClient::get`], e.g. the user listing of
//! `terra-sink reconcile`), with retries on 429 and transient failures, and both of Terra's
//! error shapes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, DATE, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::plan::{DataType, Window};

/// Terra's production API (the `servers` entry of its OpenAPI description).
pub const DEFAULT_BASE_URL: &str = "https://access.tryterra.co/api/v2";

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt before a window is given up.
    pub max_retries: u32,
    /// First backoff; each retry doubles it.
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts (also caps a `Retry-After`).
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (1-based) when the server gave no `Retry-After`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Where and as whom to call Terra.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base URL, e.g. [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// `dev-id` header.
    pub dev_id: String,
    /// `x-api-key` header.
    pub api_key: SecretString,
    /// Deadline for one request, response body included.
    pub request_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
}

/// What Terra answered for one window.
#[derive(Debug)]
pub enum Answer {
    /// The records, inline.
    Data(Fetched),
    /// Terra accepted the request but will send the data to the webhook destination instead.
    Acknowledged {
        /// The `reference` the webhook deliveries will carry (`terra-reference`).
        reference: Option<String>,
        /// Terra's message, if any.
        message: Option<String>,
    },
}

/// Records fetched inline, already re-shaped as a webhook event body.
#[derive(Debug)]
pub struct Fetched {
    /// `{"type":…,"user":…,"data":[…]}`, each record's JSON text exactly as Terra sent it.
    pub body: Vec<u8>,
    /// Number of records in `data`.
    pub records: usize,
    /// Terra's clock when it answered (the `Date` header), in Unix milliseconds.
    pub answered_at_ms: Option<i64>,
}

/// Why a window could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 or 403: nothing else will work either.
    #[error("Terra rejected the credentials (HTTP {status}: {message}); check TERRA_DEV_ID and TERRA_API_KEY")]
    Auth {
        /// HTTP status.
        status: u16,
        /// Terra's explanation.
        message: String,
    },
    /// Another 4xx: this request is wrong (bad user id, bad date…); retrying cannot help.
    #[error("Terra refused the request (HTTP {status}: {message})")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Terra's explanation.
        message: String,
    },
    /// 429, 5xx or network failures that outlasted every retry.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A 2xx answer that is neither data nor an acknowledgement.
    #[error("unexpected answer from Terra: {0}")]
    InvalidResponse(String),
    /// The client could not be built (bad header value, TLS set-up…).
    #[error("{0}")]
    Setup(String),
}

impl ApiError {
    /// True when the whole backfill must stop (credentials), not just this window.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Auth { .. } | Self::Setup(_))
    }
}

/// Decides when a request may be sent: Terra counts every request's days against the user, so
/// every attempt (a retry too) is asked for before it is sent and reported when it has ended.
pub trait Pacer {
    /// Why an attempt may not be sent (stopping, or the pacer's own bookkeeping failed).
    type Error;

    /// Waits until the next attempt may be sent.
    fn before_attempt(
        &mut self,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;

    /// The attempt has ended (answered, failed or timed out): Terra has seen it by now.
    fn after_attempt(
        &mut self,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// Why [`TerraClient::fetch`] returned without an answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E> {
    /// Terra (or the network) failed.
    #[error(transparent)]
    Api(ApiError),
    /// The pacer refused an attempt.
    #[error(transparent)]
    Paced(E),
}

/// The outcome of one attempt.
enum Attempt<T> {
    /// An answer (or a failure retrying cannot fix).
    Done(Result<T, ApiError>),
    /// A failure worth another attempt, after `retry_after` when the server said so.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
}

impl<T> Attempt<T> {
    fn retry(why: String, retry_after: Option<Duration>) -> Self {
        Self::Retry { why, retry_after }
    }
}

/// What a request is about, for the log line of a retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct About<'a> {
    /// The user asked about, if one.
    pub user_id: Option<&'a str>,
    /// The data type asked for, if one.
    pub data_type: Option<DataType>,
    /// The days asked for, if any.
    pub window: Option<Window>,
}

/// The Terra REST client.
#[derive(Debug, Clone)]
pub struct TerraClient {
    http: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
}

impl TerraClient {
    /// Builds a client sending `dev-id` and `x-api-key` on every request.
    pub fn new(config: &ClientConfig) -> Result<Self, ApiError> {
        let mut headers = HeaderMap::new();
        let dev_id = HeaderValue::from_str(config.dev_id.trim())
            .map_err(|_| ApiError::Setup("TERRA_DEV_ID is not a valid header value".into()))?;
        let mut key = HeaderValue::from_str(config.api_key.expose_secret().trim())
            .map_err(|_| ApiError::Setup("TERRA_API_KEY is not a valid header value".into()))?;
        // Keeps the key out of reqwest's Debug output and HTTP/2 header compression tables.
        key.set_sensitive(true);
        headers.insert("dev-id", dev_id);
        headers.insert("x-api-key", key);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("terra-sink/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| ApiError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            retry: config.retry.clone(),
        })
    }

    /// Fetches one window of one data type for one user, inline (`to_webhook=false`), retrying
    /// 429 (after `Retry-After`), 5xx and network failures with backoff. Every attempt, retries
    /// included, is sent only when `pacer` allows it and reported to it when it ends.
    pub async fn fetch<P: Pacer>(
        &self,
        data_type: DataType,
        user_id: &str,
        window: Window,
        with_samples: bool,
        pacer: &mut P,
    ) -> Result<Answer, FetchError<P::Error>> {
        let (start, end) = (window.start.to_string(), window.end.to_string());
        let query = [
            ("user_id", user_id),
            ("start_date", start.as_str()),
            ("end_date", end.as_str()),
            ("to_webhook", "false"),
            ("with_samples", if with_samples { "true" } else { "false" }),
        ];
        let about = About {
            user_id: Some(user_id),
            data_type: Some(data_type),
            window: Some(window),
        };
        self.get(data_type.as_str(), &query, about, pacer, |body, at| {
            parse_answer(data_type, user_id, body, at)
        })
        .await
    }

    /// `GET <base>/<path>?<query>`, its 2xx body turned into a `T` by `parse` (given the body
    /// and Terra's clock when it answered, in Unix milliseconds), with the retries, pacing and
    /// error shapes of [`TerraClient::fetch`].
    pub async fn get<P, T, F>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        about: About<'_>,
        pacer: &mut P,
        parse: F,
    ) -> Result<T, FetchError<P::Error>>
    where
        P: Pacer,
        F: Fn(&[u8], Option<i64>) -> Result<T, ApiError>,
    {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            pacer.before_attempt().await.map_err(FetchError::Paced)?;
            let outcome = self.attempt(&url, query, &parse).await;
            pacer.after_attempt().await.map_err(FetchError::Paced)?;
            let (why, retry_after) = match outcome {
                Attempt::Done(result) => return result.map_err(FetchError::Api),
                Attempt::Retry { why, retry_after } => (why, retry_after),
            };
            self.pause(attempt, retry_after, &why, path, about)
                .await
                .map_err(FetchError::Api)?;
        }
    }

    /// One request and its whole answer.
    async fn attempt<T>(
        &self,
        url: &str,
        query: &[(&str, &str)],
        parse: impl Fn(&[u8], Option<i64>) -> Result<T, ApiError>,
    ) -> Attempt<T> {
        let response = match self.http.get(url).query(query).send().await {
            Ok(response) => response,
            Err(e) => return Attempt::retry(format!("request failed: {}", describe(e)), None),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                let why = format!("reading the answer failed: {}", describe(e));
                return Attempt::retry(why, None);
            }
        };
        let content_type = header_str(&headers, CONTENT_TYPE.as_str());
        if status.is_success() {
            let answered_at_ms = header_str(&headers, DATE.as_str())
                .and_then(parse_http_date)
                .map(|t| t.timestamp_millis());
            return Attempt::Done(parse(&body, answered_at_ms));
        }
        let message = error_message(content_type, &body);
        let status_code = status.as_u16();
        Attempt::Done(Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ApiError::Auth {
                status: status_code,
                message,
            },
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => {
                let after = header_str(&headers, RETRY_AFTER.as_str())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                return Attempt::retry(format!("HTTP {status_code}: {message}"), after);
            }
            _ => ApiError::Rejected {
                status: status_code,
                message,
            },
        }))
    }

    /// Sleeps before the next attempt, or gives up when the retries are spent.
    async fn pause(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        why: &str,
        path: &str,
        about: About<'_>,
    ) -> Result<(), ApiError> {
        if attempt > self.retry.max_retries {
            return Err(ApiError::Exhausted {
                attempts: attempt,
                last: why.to_owned(),
            });
        }
        let delay = retry_after
            .map(|d| d.min(self.retry.max_backoff))
            .unwrap_or_else(|| self.retry.backoff(attempt));
        tracing::warn!(
            endpoint = path,
            user_id = about.user_id,
            data_type = about.data_type.map(DataType::as_str),
            window = about.window.map(tracing::field::display),
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "{why}; retrying"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// A transport error with its causes ("error sending request: … Connection refused"), without
/// the URL (it is ours, and the error is about the connection).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses `Retry-After`: delay seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// An RFC 9457 problem (`application/problem+json`), Terra's current error shape.
#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// Terra's older error shape: `{"status": "error", "message": "…"}`.
#[derive(Deserialize)]
struct StatusMessage {
    message: Option<String>,
}

/// The human-readable explanation in an error answer, whichever shape it has.
pub fn error_message(content_type: Option<&str>, body: &[u8]) -> String {
    let is_problem = content_type.is_some_and(|ct| ct.contains("problem+json"));
    let problem = serde_json::from_slice::<Problem>(body).ok();
    let legacy = serde_json::from_slice::<StatusMessage>(body).ok();
    let from_problem = problem.and_then(|p| match (p.title, p.detail) {
        (Some(t), Some(d)) => Some(format!("{t}: {d}")),
        (t, d) => d.or(t),
    });
    let from_legacy = legacy.and_then(|l| l.message);
    let found = if is_problem {
        from_problem.or(from_legacy)
    } else {
        from_legacy.or(from_problem)
    };
    found.unwrap_or_else(|| {
        // Not JSON we know: a short, single-line excerpt is still better than nothing.
        let text = String::from_utf8_lossy(body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            "no explanation given".to_owned()
        } else {
            text.chars().take(200).collect()
        }
    })
}

/// A 2xx answer: inline data or an acknowledgement.
#[derive(Deserialize)]
struct RestAnswer<'a> {
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    version: Option<&'a RawValue>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The webhook-shaped body a backfill stores: `type` first, like Terra's own deliveries.
#[derive(Serialize)]
struct EventBody<'a> {
    r#type: &'a str,
    user: &'a RawValue,
    data: &'a [&'a RawValue],
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a RawValue>,
}

/// Turns a 2xx body into an [`Answer`]; pure, so it is tested without a server.
pub fn parse_answer(
    data_type: DataType,
    user_id: &str,
    body: &[u8],
    answered_at_ms: Option<i64>,
) -> Result<Answer, ApiError> {
    let answer: RestAnswer<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidResponse(format!("not the expected JSON object: {e}")))?;
    let Some(data) = answer.data else {
        if answer.reference.is_some() || answer.message.is_some() {
            return Ok(Answer::Acknowledged {
                reference: answer.reference,
                message: answer.message,
            });
        }
        return Err(ApiError::InvalidResponse(
            "neither data nor a reference".into(),
        ));
    };
    // The REST answer carries the user; should it not, the one asked for is the one answered.
    let fallback;
    let user = match answer.user {
        Some(user) if user.get() != "null" => user,
        _ => {
            fallback = RawValue::from_string(serde_json::json!({ "user_id": user_id }).to_string())
                .map_err(|e| ApiError::InvalidResponse(e.to_string()))?;
            &fallback
        }
    };
    let event = EventBody {
        r#type: data_type.as_str(),
        user,
        data: &data,
        version: answer.version.filter(|v| v.get() != "null"),
    };
    let body = serde_json::to_vec(&event).map_err(|e| ApiError::InvalidResponse(e.to_string()))?;
    Ok(Answer::Data(Fetched {
        body,
        records: data.len(),
        answered_at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_errors() {
        let body = br#"{"type":"about:blank","title":"unauthorized","instance":"/activity","detail":"dev-id or x-api-key headers are missing"}"#;
        assert_eq!(
            error_message(Some("application/problem+json"), body),
            "unauthorized: dev-id or x-api-key headers are missing"
        );
        let body = br#"{"type":"about:blank","title":"not found","instance":"/daily"}"#;
        assert_eq!(error_message(Some("application/json"), body), "not found");
    }

    #[test]
    fn status_message_errors() {
        let body = br#"{"status":"error","message":"User not found"}"#;
        assert_eq!(
            error_message(Some("application/json"), body),
            "User not found"
        );
    }

    #[test]
    fn unknown_error_bodies_are_excerpted() {
        assert_eq!(
            error_message(Some("text/html"), b"<h1>Bad\n gateway</h1>"),
            "<h1>Bad gateway</h1>"
        );
        assert_eq!(error_message(None, b""), "no explanation given");
        assert_eq!(error_message(None, &[b'x'; 1000]).len(), 200);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(99), Duration::from_millis(500));
    }

    #[test]
    fn inline_data_becomes_a_webhook_body_with_records_verbatim() {
        let body = br#"{"user":{"user_id":"u1","provider":"GARMIN"},"data":[{"metadata":{"start_time":"2026-07-01T00:00:00+01:00","end_time":"2026-07-02T00:00:00+01:00","upload_type":0},"distance_data":{"steps": 7902.0}}],"type":"daily"}"#;
        let Answer::Data(f) = parse_answer(DataType::Daily, "u1", body, Some(5)).unwrap() else {
            panic!("expected data");
        };
        assert_eq!(f.records, 1);
        assert_eq!(f.answered_at_ms, Some(5));
        let text = String::from_utf8(f.body.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"type":"daily","user":{"user_id":"u1""#),
            "{text}"
        );
        // The record's own text (spacing, 7902.0) is kept byte for byte.
        assert!(text.contains(r#"{"steps": 7902.0}"#), "{text}");
        let event = crate::model::Event::from_slice(&f.body).unwrap();
        assert!(matches!(event, crate::model::Event::Daily(ref e) if e.data.len() == 1));
    }

    #[test]
    fn a_null_type_or_missing_user_still_gives_a_typed_body() {
        let body = br#"{"data":[],"type":null}"#;
        let Answer::Data(f) = parse_answer(DataType::Sleep, "u9", body, None).unwrap() else {
            panic!("expected data");
        };
        assert_eq!(f.records, 0);
        assert_eq!(
            f.body,
            br#"{"type":"sleep","user":{"user_id":"u9"},"data":[]}"#
        );
    }

    #[test]
    fn an_acknowledgement_is_not_empty_data() {
        let body = br#"{"status":"success","type":"activity","reference":"5a3c2540-7139-44c6-8158-f81196e2cf2e","message":"Large request submitted."}"#;
        match parse_answer(DataType::Activity, "u1", body, None).unwrap() {
            Answer::Acknowledged { reference, message } => {
                assert_eq!(
                    reference.as_deref(),
                    Some("5a3c2540-7139-44c6-8158-f81196e2cf2e")
                );
                assert_eq!(message.as_deref(), Some("Large request submitted."));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_answer(DataType::Activity, "u1", b"{}", None).is_err());
        assert!(parse_answer(DataType::Activity, "u1", b"[1]", None).is_err());
    }
}
