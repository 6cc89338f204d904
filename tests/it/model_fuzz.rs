//! Decoding never panics, whatever the bytes: arbitrary bytes, mutated official examples, and
//! arbitrary JSON documents carrying each known `type` (so the typed decoders see garbage).

use proptest::prelude::*;
use serde_json::Value;
use terra_sink::model::Event;

/// Every documented type plus one Terra has not invented yet.
fn types() -> Vec<&'static str> {
    let mut types = terra_sink::model::EVENT_TYPES.to_vec();
    types.push("something_new");
    types
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::from),
        Just(Value::from("2026-07-01T07:04:11.000000+01:00")),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,10}",
                    Just("data".to_owned()),
                    Just("metadata".to_owned()),
                    Just("user".to_owned()),
                    Just("user_id".to_owned()),
                    Just("start_time".to_owned()),
                    Just("heart_rate_data".to_owned()),
                    Just("hr_samples".to_owned()),
                    Just("type".to_owned()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Event::from_slice(&bytes);
    }

    #[test]
    fn arbitrary_json_with_each_type_never_panics(ty in prop::sample::select(types()), body in arb_json(), data in arb_json()) {
        let mut obj = match body { Value::Object(m) => m, other => { let mut m = serde_json::Map::new(); m.insert("x".into(), other); m } };
        obj.insert("type".into(), Value::from(ty));
        obj.insert("data".into(), data);
        let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
        if let Ok(ev) = Event::from_slice(&bytes) {
            // Whatever decodes also re-encodes.
            prop_assert!(ev.to_value().is_ok());
        }
    }

    #[test]
    fn mutated_official_examples_never_panic(pick in 0usize..19, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let examples = crate::model_support::load_examples();
        let mut bytes = examples[pick % examples.len()].1.clone();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        let _ = Event::from_slice(&bytes);
    }
}
