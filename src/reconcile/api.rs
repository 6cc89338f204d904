//! The user endpoints of Terra's REST API: `GET /subscriptions` (every user of the developer,
//! page by page) and `GET /userInfo` (one user), through the backfill's [`TerraClient`].

use serde::Deserialize;
use tokio::sync::watch;

use super::plan::TerraUser;
use crate::backfill::{About, ApiError, FetchError, Pacer, Stage, TerraClient};
use crate::store::PgText;

/// Most pages a listing follows: far beyond any developer's users, so a server that keeps
/// answering `next` cannot keep the run going for ever.
const MAX_PAGES: u32 = 100_000;

/// Every user Terra lists.
#[derive(Debug, Default)]
pub struct Listing {
    /// The users, in Terra's order (repeats possible across pages).
    pub users: Vec<TerraUser>,
    /// Terra's clock when it answered the first page, in Unix milliseconds.
    pub answered_at_ms: Option<i64>,
    /// Pages fetched.
    pub pages: u32,
}

/// Lists every user, following Terra's pages (`page`, `per_page`, `data.next`) until there is no
/// next one; a server that ignores `page` and answers `{"users": […]}` gives them all at once.
pub async fn list_users<P: Pacer>(
    client: &TerraClient,
    per_page: u32,
    pacer: &mut P,
    stage: &Stage,
) -> Result<Listing, FetchError<P::Error>> {
    let per_page = per_page.max(1).to_string();
    let mut listing = Listing::default();
    let mut page: u32 = 0;
    loop {
        let number = page.to_string();
        let query = [("page", number.as_str()), ("per_page", per_page.as_str())];
        let (answer, at) = client
            .get(
                "subscriptions",
                &query,
                About::default(),
                pacer,
                |body, at| Ok((parse_page(body)?, at)),
            )
            .await?;
        listing.pages += 1;
        listing.answered_at_ms = listing.answered_at_ms.or(at);
        listing.users.extend(answer.users);
        if let Some(max) = answer.max_page {
            stage.set_steps(u64::from(max) + 1);
        }
        stage.advance(&format!("{} users", listing.users.len()));
        if !stage.visible() {
            tracing::info!(
                page,
                users = listing.users.len(),
                "listed a page of Terra's users"
            );
        }
        match answer.next {
            Some(next) if next > page && listing.pages < MAX_PAGES => page = next,
            _ => return Ok(listing),
        }
    }
}

/// Whether Terra still has a user, by `GET /userInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Terra answered with the user.
    Present,
    /// Terra answered 404.
    Gone,
}

/// Asks Terra about one user.
pub async fn user_info<P: Pacer>(
    client: &TerraClient,
    user_id: &str,
    pacer: &mut P,
) -> Result<Presence, FetchError<P::Error>> {
    let about = About {
        user_id: Some(user_id),
        ..About::default()
    };
    let query = [("user_id", user_id)];
    let answer = client
        .get("userInfo", &query, about, pacer, |body, _| {
            parse_user_info(user_id, body)
        })
        .await;
    match answer {
        Err(FetchError::Api(ApiError::Rejected { status: 404, .. })) => Ok(Presence::Gone),
        other => other,
    }
}

/// One user as Terra's API describes it (`TerraUser` in its OpenAPI description).
#[derive(Deserialize)]
struct RawUser {
    user_id: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(default)]
    scopes: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

impl From<RawUser> for TerraUser {
    fn from(u: RawUser) -> Self {
        let text = |s: Option<String>| s.filter(|s| !s.is_empty()).map(|s| stored(&s));
        Self {
            user_id: stored(&u.user_id),
            provider: text(u.provider),
            reference_id: text(u.reference_id),
            scopes: u
                .scopes
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(stored)
                .collect(),
            active: u.active.unwrap_or(true),
        }
    }
}

fn stored(s: &str) -> String {
    PgText::new(s).into_string()
}

/// The two shapes of a `/subscriptions` answer.
#[derive(Deserialize)]
struct RawListing {
    #[serde(default)]
    users: Option<Vec<RawUser>>,
    #[serde(default)]
    data: Option<RawPage>,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    next: Option<u32>,
    #[serde(default)]
    max_page: Option<u32>,
    results: Vec<RawUser>,
}

/// One answer of `/subscriptions`.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Its users.
    pub users: Vec<TerraUser>,
    /// The next page's number, if there is one.
    pub next: Option<u32>,
    /// The last page's number, when Terra gave it.
    pub max_page: Option<u32>,
}

/// Parses a `/subscriptions` answer: `{"users": […]}` (everything) or
/// `{"data": {"next", "max_page", "results": […]}}` (one page).
pub fn parse_page(body: &[u8]) -> Result<Page, ApiError> {
    let raw: RawListing = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidResponse(format!("not a list of users: {e}")))?;
    let convert = |users: Vec<RawUser>| users.into_iter().map(TerraUser::from).collect();
    match (raw.data, raw.users) {
        (Some(page), _) => Ok(Page {
            users: convert(page.results),
            next: page.next,
            max_page: page.max_page,
        }),
        (None, Some(users)) => Ok(Page {
            users: convert(users),
            next: None,
            max_page: None,
        }),
        (None, None) => Err(ApiError::InvalidResponse(
            "neither users nor data.results in the list of users".into(),
        )),
    }
}

#[derive(Deserialize)]
struct RawUserInfo {
    #[serde(default)]
    user: Option<RawUser>,
}

/// Parses a 2xx `/userInfo` answer about `user_id` (stored form): the user is present when the
/// answer carries it.
pub fn parse_user_info(user_id: &str, body: &[u8]) -> Result<Presence, ApiError> {
    let raw: RawUserInfo = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidResponse(format!("not a user: {e}")))?;
    match raw.user {
        Some(user) if stored(&user.user_id) == user_id => Ok(Presence::Present),
        Some(_) => Err(ApiError::InvalidResponse(
            "the answer is about another user".into(),
        )),
        None => Err(ApiError::InvalidResponse("the answer has no user".into())),
    }
}

/// The run is stopping.
#[derive(Debug, thiserror::Error)]
#[error("stopping")]
pub struct Stopping;

/// Lets every attempt through until a stop is asked for (the user endpoints do not count
/// against the backfill's day budget).
pub struct UntilStopped(pub watch::Receiver<bool>);

impl Pacer for UntilStopped {
    type Error = Stopping;

    async fn before_attempt(&mut self) -> Result<(), Stopping> {
        if *self.0.borrow() {
            Err(Stopping)
        } else {
            Ok(())
        }
    }

    async fn after_attempt(&mut self) -> Result<(), Stopping> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpaged_answer_lists_everyone() {
        let body = br#"{"status":"success","users":[
            {"user_id":"u1","provider":"GARMIN","reference_id":"ref-1","scopes":"activity:read, sleep:read","active":true},
            {"user_id":"u2","provider":"OURA","reference_id":null,"scopes":null,"active":null}]}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(page.next, None);
        assert_eq!(page.users.len(), 2);
        let u1 = &page.users[0];
        assert_eq!(u1.reference_id.as_deref(), Some("ref-1"));
        assert_eq!(u1.scopes, ["activity:read", "sleep:read"]);
        let u2 = &page.users[1];
        assert_eq!((u2.reference_id.clone(), u2.active), (None, true));
        assert!(u2.scopes.is_empty());
    }

    #[test]
    fn a_paged_answer_says_what_comes_next() {
        let body = br#"{"data":{"next":1,"max_page":2,"results":[{"user_id":"u1","provider":"FITBIT","active":false}]}}"#;
        let page = parse_page(body).unwrap();
        assert_eq!((page.next, page.max_page), (Some(1), Some(2)));
        assert!(!page.users[0].active);
        let last = parse_page(br#"{"data":{"next":null,"max_page":2,"results":[]}}"#).unwrap();
        assert_eq!(last.next, None);
    }

    #[test]
    fn other_answers_are_errors_not_empty_lists() {
        assert!(parse_page(b"{}").is_err());
        assert!(parse_page(b"[]").is_err());
        assert!(parse_page(br#"{"users":[{"provider":"GARMIN"}]}"#).is_err());
    }

    #[test]
    fn user_info_answers() {
        let body = br#"{"user":{"user_id":"u1","provider":"GARMIN"},"status":"success","is_authenticated":true}"#;
        assert_eq!(parse_user_info("u1", body).unwrap(), Presence::Present);
        assert!(parse_user_info("u2", body).is_err());
        assert!(parse_user_info("u1", br#"{"status":"error"}"#).is_err());
    }
}
