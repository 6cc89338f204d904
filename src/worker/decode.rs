//! Decoding a claimed batch (pure, CPU-bound: it runs on a blocking thread): each delivery's
//! body becomes the work it asks for.

use crate::ledger::{Claimed, Provenance};
use crate::lifecycle::{self, requests::News, users::Seed};
use crate::model::{Event, S3PayloadEvent, TerraUser};
use crate::store::{self, PgText, Records};

/// One claimed delivery, decoded.
#[derive(Debug)]
pub struct Item {
    /// Where it came from.
    pub origin: Provenance,
    /// Attempts before this one.
    pub attempts: i32,
    /// Its `x-terra-trace-id`, for logs.
    pub trace_id: Option<String>,
    /// What it says about a large request.
    pub news: Option<News>,
    /// What it asks for.
    pub work: Work,
}

/// What a delivery asks of the batch.
#[derive(Debug)]
pub enum Work {
    /// Records for the typed tables, of `user` (none for lab reports).
    Data {
        /// The user the records belong to, as the payload names it.
        user: Option<UserRef>,
        /// The mapped records.
        records: Records,
    },
    /// A lifecycle event, applied in delivery order.
    Lifecycle(Box<Event>),
    /// A ping-mode notice: the payload must be downloaded.
    Ping(Box<S3PayloadEvent>),
    /// Anything else; its user (if any) is created or refreshed.
    Other(Option<UserRef>),
    /// It can never be processed (undecodable, or its body does not match its records).
    Invalid(String),
}

/// A user as a payload names it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRef {
    /// `user_id`.
    pub user_id: PgText,
    /// `provider`.
    pub provider: Option<PgText>,
    /// `reference_id`.
    pub reference_id: Option<PgText>,
    /// `scopes`, split.
    pub scopes: Vec<PgText>,
}

impl UserRef {
    /// The payload's view of `user`.
    pub fn of(user: &TerraUser) -> Self {
        Self {
            user_id: PgText::new(&user.user_id),
            provider: store::text::opt(user.provider.as_deref()),
            reference_id: store::text::opt(user.reference_id.as_deref()),
            scopes: user.scopes().map(PgText::new).collect(),
        }
    }

    /// The seed that creates this user (under `user_id`) if it does not exist yet.
    pub fn seed(&self, user_id: &PgText, origin: &Provenance) -> Seed {
        Seed {
            user_id: user_id.clone(),
            provider: self.provider.clone(),
            reference_id: self.reference_id.clone(),
            scopes: self.scopes.clone(),
            received_at: origin.received_at,
            event_id: origin.delivery_id,
        }
    }
}

impl Item {
    /// The users the item names and whose facts it carries (data and other events).
    pub fn user(&self) -> Option<&UserRef> {
        match &self.work {
            Work::Data { user, .. } | Work::Other(user) => user.as_ref(),
            _ => None,
        }
    }

    /// Seeds for every user a lifecycle event names (created bare when unknown).
    pub fn lifecycle_seeds(&self) -> Vec<Seed> {
        let Work::Lifecycle(event) = &self.work else {
            return Vec::new();
        };
        lifecycle::users_named(event)
            .into_iter()
            .map(|u| Seed {
                user_id: PgText::new(&u.user_id),
                provider: store::text::opt(u.provider.as_deref()),
                reference_id: store::text::opt(u.reference_id.as_deref()),
                scopes: Vec::new(),
                received_at: self.origin.received_at,
                event_id: self.origin.delivery_id,
            })
            .collect()
    }
}

/// Why a delivery whose body retention removed cannot be processed again.
const BODY_REMOVED: &str =
    "raw body removed by retention (terra-sink prune): nothing left to process";

/// Decodes one claimed delivery into its work.
pub fn decode(claimed: Claimed) -> Item {
    let origin = claimed.provenance();
    let (news, work) = match claimed.body.as_deref().map(|b| (b, Event::from_slice(b))) {
        None => (None, Work::Invalid(BODY_REMOVED.to_owned())),
        Some((_, Err(err))) => (None, Work::Invalid(format!("undecodable: {err}"))),
        Some((body, Ok(event))) => {
            let news = lifecycle::large_request_news(&event, &origin);
            (news, classify(event, body, &origin))
        }
    };
    Item {
        origin,
        attempts: claimed.attempts,
        trace_id: claimed.trace_id,
        news,
        work,
    }
}

fn classify(event: Event, body: &[u8], origin: &Provenance) -> Work {
    if let Event::S3Payload(ping) = event {
        return Work::Ping(Box::new(ping));
    }
    if lifecycle::is_lifecycle(&event) {
        return Work::Lifecycle(Box::new(event));
    }
    let user = event.user().map(UserRef::of);
    match store::plan(&event, body, origin) {
        Err(err) => Work::Invalid(err.to_string()),
        Ok(Records::None) => Work::Other(user),
        Ok(records) => Work::Data { user, records },
    }
}
