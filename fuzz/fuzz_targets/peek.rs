//! `peek` on any body: always a value (never a panic), and consistent with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terra_sink::{peek, BodyShape as Shape};

fuzz_target!(|data: &[u8]| {
    let first = peek(data);
    // A known or unknown type is only reported for a body that is a whole JSON object.
    if matches!(first.shape, Shape::Ok | Shape::UnknownType) {
        assert!(first.event_type.is_some());
        assert_eq!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(&b'{'));
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
    }
    if first.shape.label() == "ok" {
        assert!(terra_sink::model::EVENT_TYPES.contains(&first.event_type.as_deref().unwrap_or("")));
    }
    // The ledger stores the error text: it must be storable as PostgreSQL text.
    assert!(first.shape.error().is_none_or(|e| !e.contains('\0')));
    assert_eq!(peek(data), first, "deterministic");
});
