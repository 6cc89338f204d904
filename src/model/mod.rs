//! Typed Terra models: every webhook event and every field of the six data types, decoded
//! losslessly and forward-compatibly.
//!
//! Entry point: [`Event::from_slice`] on the raw webhook body. The six data types
//! ([`Activity`], [`Body`], [`Daily`], [`Menstruation`], [`Nutrition`], [`Sleep`]) and all their
//! sub-objects, the open codes and the webhook envelopes are generated into `generated/` from
//! Terra's JSON Schemas (vendored in `schemas/terra/`) by `tools/gen_model.py`, so field names
//! are Terra's own (`MET_data`, `duration_REM_sleep_state_seconds`…); the other files here are
//! written by hand.
//!
//! Decoding rules, because Terra's data is messy and no record may be lost over it:
//! - every object keeps keys it does not know in `extra` and writes them back on encode;
//! - nearly every field is an `Option` (absent and `null` are both `None`, never zero);
//! - `number` fields are `f64`; `integer` fields are [`Integer`] (accepts `7902.0`, keeps `7902.5`);
//! - enumerations are open codes ([`ActivityType`], [`UploadType`], [`SleepLevel`]…) that keep
//!   unknown values and name the known ones (activity type 0 is "In Vehicle");
//! - times are [`Timestamp`]s: the original string, parsed on demand; the day of a day-keyed
//!   record is the first 10 characters of `metadata.start_time` ([`Timestamp::day`]);
//! - errors are one [`DecodeError`] carrying the failing JSON path.
//!
//! Pure code: no I/O, no database, no async.

#![warn(missing_docs)]

#[macro_use]
#[doc(hidden)]
pub mod macros;

mod accessors;
mod error;
mod event;
mod generated;
mod number;
mod time;

pub use error::DecodeError;
pub use event::*;
pub use generated::*;
pub use macros::{Extra, Model, Shape};
pub use number::Integer;
pub use time::Timestamp;

/// Contribution of each named factor to a Terra score (`RecordFloat` in Terra's schemas).
pub type Contributors = std::collections::BTreeMap<String, Option<f64>>;

/// What the generated files need in scope.
mod prelude {
    pub(crate) use super::generated::*;
    pub(crate) use super::{Contributors, Integer, Timestamp};
    pub(crate) use serde_json::Value;
}
