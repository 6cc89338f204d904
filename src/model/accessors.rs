//! Convenience accessors the storage layer needs, so it never has to touch JSON.

use super::prelude::*;

/// Splits a comma-separated scope list (`"ACTIVITY_EXPORT,HEALTH_EXPORT"`, possibly empty).
fn split_scopes(s: Option<&str>) -> impl Iterator<Item = &str> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl TerraUser {
    /// The granted scopes, split on commas (empty when absent, null or `""`).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        split_scopes(self.scopes.as_deref())
    }
}

impl PermissionChangeEvent {
    /// Scopes newly granted, split on commas.
    pub fn scopes_added(&self) -> impl Iterator<Item = &str> {
        split_scopes(self.scopes_added.as_deref())
    }

    /// Scopes removed, split on commas.
    pub fn scopes_removed(&self) -> impl Iterator<Item = &str> {
        split_scopes(self.scopes_removed.as_deref())
    }
}

impl AuthEvent {
    /// True for a successful authentication (`status` other than `"error"`).
    pub fn is_success(&self) -> bool {
        self.status.as_deref() != Some("error")
    }
}

/// Implements the metadata accessors shared by the six data types.
macro_rules! record_accessors {
    ($($t:ident),*) => {$(
        impl $t {
            /// `metadata.start_time`, as sent.
            pub fn start_time(&self) -> Option<&Timestamp> {
                self.metadata.as_ref()?.start_time.as_ref()
            }

            /// `metadata.end_time`, as sent.
            pub fn end_time(&self) -> Option<&Timestamp> {
                self.metadata.as_ref()?.end_time.as_ref()
            }

            /// The record's calendar day: the first 10 characters of `metadata.start_time`
            /// (never a converted instant; the next day for `T24:00:00`, see
            /// [`Timestamp::day`]). The key of day-keyed records.
            pub fn day(&self) -> Option<std::borrow::Cow<'_, str>> {
                self.start_time()?.day()
            }
        }
    )*};
}

record_accessors!(Activity, Body, Daily, Menstruation, Nutrition, Sleep);

impl Activity {
    /// `metadata.summary_id`: the deduplication key of an activity.
    pub fn summary_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.summary_id.as_deref()
    }
}

impl Sleep {
    /// `metadata.summary_id`: the deduplication key of a sleep session (when the provider gives one).
    pub fn summary_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.summary_id.as_deref()
    }
}
