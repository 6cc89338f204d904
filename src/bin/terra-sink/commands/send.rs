//! `send`: sign a body as Terra does and POST it to a webhook URL.

use anyhow::{anyhow, Context};
use terra_sink::send::{self, Outgoing};

use crate::args::SendArgs;

/// Sends a file or a built-in sample (or lists the samples).
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    if args.list_samples {
        for name in send::sample_names() {
            println!("{name}");
        }
        return Ok(());
    }
    let body = match (&args.file, &args.sample) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, Some(name)) => send::sample(name)
            .ok_or_else(|| {
                let names: Vec<_> = send::sample_names().collect();
                anyhow!("no built-in sample {name:?}; one of: {}", names.join(", "))
            })?
            .as_bytes()
            .to_vec(),
        (None, None) => return Err(anyhow!("give --file or --sample")),
    };
    let secret = args
        .secret
        .as_ref()
        .and_then(|list| list.0.first())
        .ok_or_else(|| {
            anyhow!("the signing secret is not set: set TERRA_SIGNING_SECRET (or --secret)")
        })?;
    let reply = send::send(&Outgoing {
        url: &args.url,
        secret,
        body: &body,
        trace_id: args.trace_id.as_deref(),
        ordering_timestamp: args.ordering_timestamp,
        terra_reference: args.reference.as_deref(),
        timestamp: args.signature_time(chrono::Utc::now().timestamp()),
    })
    .await?;
    send::report(&reply).map_err(|e| anyhow!(e))
}
