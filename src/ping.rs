//! Ping mode: downloading the payload an `s3_payload` delivery points at.
//!
//! The URL is pre-signed and expires within minutes, so downloads are bounded (time, size) and
//! only `https` unless configured otherwise.

use std::time::Duration;

/// Limits of a ping-mode download.
#[derive(Debug, Clone)]
pub struct PingConfig {
    /// Whole-download deadline.
    pub timeout: Duration,
    /// Largest accepted payload in bytes.
    pub max_bytes: usize,
    /// Also fetch `http://` URLs (tests and local fakes only).
    pub allow_http: bool,
}

impl Default for PingConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_bytes: 512 * 1024 * 1024,
            allow_http: false,
        }
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one we fetch (scheme, syntax): retrying cannot help.
    #[error("refusing to fetch url: {0}")]
    Refused(String),
    /// The server did not answer in time.
    #[error("download timed out after {0:?}")]
    Timeout(Duration),
    /// The payload exceeds the limit: retrying cannot help.
    #[error("payload exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The server answered with an error status.
    #[error("server answered {0}")]
    Status(u16),
    /// The connection failed.
    #[error("download failed: {0}")]
    Transport(String),
}

impl FetchError {
    /// True when a later attempt may succeed (while the URL is still valid).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused(_) | Self::TooLarge(_) => false,
            // 4xx means the URL is expired or wrong, except throttling and timeouts.
            Self::Status(code) => *code >= 500 || *code == 408 || *code == 429,
            Self::Timeout(_) | Self::Transport(_) => true,
        }
    }

    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Timeout(_) => "timeout",
            Self::TooLarge(_) => "too_large",
            Self::Status(_) => "status",
            Self::Transport(_) => "transport",
        }
    }
}

/// Downloads `url` within the configured limits.
pub async fn fetch(
    client: &reqwest::Client,
    config: &PingConfig,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Refused("not a URL".into()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        other => {
            return Err(FetchError::Refused(format!(
                "scheme {other} is not allowed"
            )))
        }
    }
    let download = async {
        let mut response = client.get(parsed).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > config.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(config.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > config.max_bytes {
                return Err(FetchError::TooLarge(config.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(config.timeout, download)
        .await
        .map_err(|_| FetchError::Timeout(config.timeout))?
}

fn transport(e: reqwest::Error) -> FetchError {
    // reqwest's messages can include the URL, whose query string is a credential: drop it.
    FetchError::Transport(e.without_url().to_string())
}
