//! `healthcheck`: GET the health endpoint with the HTTP client the binary already links (the
//! container image needs no curl).

use std::time::Duration;

use anyhow::{bail, Context};

use crate::args::HealthcheckArgs;

/// Succeeds when the service answers its health (or readiness) check with 2xx.
pub async fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let url = args.target();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        // The service is local: a proxy from the environment must not answer for it.
        .no_proxy()
        .build()
        .context("health check failed")?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| e.without_url())
        .with_context(|| format!("health check of {url} failed"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    bail!("unhealthy: {url} answered {status}: {}", body.trim())
}
