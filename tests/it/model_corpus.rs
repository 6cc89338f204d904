//! Lossless round trip on a seeded corpus of a few thousand events generated from the vendored
//! JSON Schemas: every webhook event type, every property reachable from the six data types,
//! with unknown extra fields at every depth, integers sent as floats, nulls and absent fields,
//! codes not yet known, and timestamps with and without offsets.
//!
//! Comparison is of JSON values modulo (a) null vs absent object keys and (b) number
//! representation (compared as f64, so `7902` == `7902.0`). Besides equality, no key defined
//! by the schema may end up in a model's `extra` map: a field the model forgot would round-trip
//! through `extra`, so this is what makes the test fail on schema drift.
//!
//! Reproduce a failure with `MODEL_CORPUS_SEED=<seed> cargo test --test model_corpus`.

use std::collections::BTreeSet;

use crate::model_support::schema::{Schemas, DATA_TYPES};
use crate::model_support::{first_difference, normalise};
use serde_json::{json, Map, Value};
use terra_sink::model::Event;

/// SplitMix64: tiny, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const UNKNOWN_PREFIX: &str = "x_unknown_";

struct Gen<'a> {
    schemas: &'a Schemas,
    rng: Rng,
    unknown_injected: usize,
    /// `File.yaml#property` for every property generated with a non-null value.
    seen_props: BTreeSet<String>,
}

impl Gen<'_> {
    fn value(&mut self, file: &str, s: &Value, hint: &str, depth: usize) -> Value {
        if depth > 24 {
            return Value::Null; // some raw-kept schemas (lab reports, observations) recurse
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let (f, target) = self.schemas.resolve(file, r);
            return self.value(f, target, hint, depth);
        }
        if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
            let non_null: Vec<&Value> = alts.iter().filter(|a| a["type"] != "null").collect();
            if non_null.len() < alts.len() && self.rng.chance(0.1) {
                return Value::Null;
            }
            let alt = *self.rng.pick(&non_null);
            return self.value(file, alt, hint, depth);
        }
        if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
            let numeric = alts
                .iter()
                .all(|a| a.get("const").is_some_and(Value::is_number));
            if numeric && self.rng.chance(0.1) {
                // A code Terra has not documented yet, sometimes sent as an integral float.
                let v = 900 + self.rng.below(100) as i64;
                return if self.rng.chance(0.5) {
                    json!(v)
                } else {
                    json!(v as f64)
                };
            }
            let alt = self.rng.pick(alts).clone();
            let v = self.value(file, &alt, hint, depth);
            if numeric && self.rng.chance(0.2) {
                return json!(v.as_f64().unwrap_or(0.0)); // 8 sent as 8.0
            }
            return v;
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(vals) = s.get("enum").and_then(Value::as_array) {
            return self.rng.pick(vals).clone();
        }
        if let Some(props) = s.get("unevaluatedProperties") {
            // RecordFloat: a map of factor name -> number.
            let mut m = Map::new();
            for i in 0..self.rng.below(4) {
                m.insert(
                    format!("factor_{i}"),
                    self.value(file, props, "", depth + 1),
                );
            }
            return Value::Object(m);
        }
        let ty =
            s.get("type")
                .and_then(Value::as_str)
                .unwrap_or(if s.get("properties").is_some() {
                    "object"
                } else {
                    "any"
                });
        match ty {
            "object" => self.object(file, s, depth),
            "array" => {
                if let Some(prefix) = s.get("prefixItems").and_then(Value::as_array) {
                    // Coordinates: each number may be null.
                    return Value::Array(
                        prefix
                            .iter()
                            .map(|p| {
                                if self.rng.chance(0.1) {
                                    Value::Null
                                } else {
                                    self.value(file, p, "", depth + 1)
                                }
                            })
                            .collect(),
                    );
                }
                let items = s.get("items").cloned().unwrap_or(json!({}));
                let n = self.rng.below(4);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(file, &items, hint, depth + 1))
                        .collect(),
                )
            }
            "number" => self.number(),
            "integer" => {
                let v = self.rng.below(20_000) as i64 - 1000;
                if self.rng.chance(0.2) {
                    json!(v as f64) // 7902 sent as 7902.0
                } else if self.rng.chance(0.03) {
                    json!(v as f64 + 0.5) // a fractional "integer": must not lose the record
                } else {
                    json!(v)
                }
            }
            "boolean" => json!(self.rng.chance(0.5)),
            "string" => self.string(hint),
            "null" => Value::Null,
            _ => self.random_json(depth),
        }
    }

    fn number(&mut self) -> Value {
        match self.rng.below(4) {
            0 => json!(self.rng.below(300) as i64),
            1 => json!((self.rng.below(1_000_000) as f64) / 100.0),
            2 => json!(-((self.rng.below(10_000) as f64) / 7.0)),
            _ => json!(self.rng.below(100) as f64), // 72.0
        }
    }

    fn string(&mut self, hint: &str) -> Value {
        let time_like = [
            "time",
            "timestamp",
            "date",
            "_at",
            "day",
            "update",
            "window",
        ]
        .iter()
        .any(|t| hint.contains(t));
        if time_like {
            let (d, h, us) = (
                1 + self.rng.below(28),
                self.rng.below(24),
                self.rng.below(1_000_000),
            );
            let base = format!("2026-07-{d:02}T{h:02}:04:11.{us:06}");
            return json!(match self.rng.below(5) {
                0 => base, // local wall-clock time
                1 => format!("{base}Z"),
                2 => format!("{base}-05:00"),
                3 => format!("2026-07-{d:02}"), // a date
                _ => format!("{base}+01:00"),
            });
        }
        json!(match self.rng.below(6) {
            0 => String::new(),
            1 => "ACTIVITY_EXPORT,HEALTH_EXPORT".to_owned(),
            2 => "Zürich \"quoted\" \\ line\nbreak \u{1F3C3}".to_owned(),
            _ => format!("s{}", self.rng.below(1_000_000)),
        })
    }

    fn random_json(&mut self, depth: usize) -> Value {
        match self.rng.below(if depth > 6 { 4 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.rng.chance(0.5)),
            2 => self.number(),
            3 => self.string(""),
            4 => Value::Array(
                (0..self.rng.below(3))
                    .map(|_| self.random_json(depth + 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for i in 0..self.rng.below(3) {
                    m.insert(format!("k{i}"), self.random_json(depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    fn object(&mut self, file: &str, s: &Value, depth: usize) -> Value {
        let props = self.schemas.properties(file, s);
        let required = self.schemas.required(s);
        let mut out = Map::new();
        for (key, prop) in &props {
            if !required.contains(key) && !self.rng.chance(0.8) {
                continue; // absent
            }
            let v = self.value(file, prop, key, depth + 1);
            if !v.is_null() {
                self.seen_props.insert(format!("{file}#{key}"));
            }
            out.insert(key.clone(), v);
        }
        if self.rng.chance(0.12) {
            let v = self.random_json(depth);
            out.insert(format!("{UNKNOWN_PREFIX}{}", self.unknown_injected), v);
            self.unknown_injected += 1;
        }
        // Terra's key order is not guaranteed: shuffle it.
        let mut entries: Vec<(String, Value)> = out.into_iter().collect();
        for i in (1..entries.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            entries.swap(i, j);
        }
        Value::Object(entries.into_iter().collect())
    }
}

/// Every `File.yaml#property` reachable from the six data types.
fn reachable_props(schemas: &Schemas) -> BTreeSet<String> {
    fn walk(
        schemas: &Schemas,
        file: &str,
        s: &Value,
        out: &mut BTreeSet<String>,
        seen: &mut BTreeSet<String>,
    ) {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let (f, t) = schemas.resolve(file, r);
            if seen.insert(format!("{f}{r}")) {
                walk(schemas, f, t, out, seen);
            }
            return;
        }
        for key in ["anyOf", "oneOf", "prefixItems"] {
            for alt in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                walk(schemas, file, alt, out, seen);
            }
        }
        if let Some(items) = s.get("items") {
            walk(schemas, file, items, out, seen);
        }
        for (k, p) in schemas.properties(file, s) {
            out.insert(format!("{file}#{k}"));
            walk(schemas, file, &p, out, seen);
        }
    }
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for f in DATA_TYPES {
        let (file, s) = schemas.resolve(f, f);
        walk(schemas, file, s, &mut out, &mut seen);
    }
    out
}

#[test]
fn generated_events_round_trip_losslessly() {
    let seed: u64 = std::env::var("MODEL_CORPUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7E44_A5EE);
    let events: usize = 3000;
    let schemas = Schemas::load();
    let union: Vec<String> = schemas.files["WebhookEventType.yaml"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["$ref"].as_str().unwrap().to_owned())
        .collect();
    let mut gen = Gen {
        schemas: &schemas,
        rng: Rng(seed),
        unknown_injected: 0,
        seen_props: BTreeSet::new(),
    };
    let mut unknown_found = 0usize;
    let mut bytes_total = 0usize;
    for i in 0..events {
        // Bias towards the six data types, which carry nearly all the fields.
        let file = if i % 3 == 0 {
            gen.rng.pick(&union).clone()
        } else {
            format!(
                "{}Event.yaml",
                gen.rng.pick(&DATA_TYPES).trim_end_matches(".yaml")
            )
        };
        let (f, s) = schemas.resolve(&file, &file);
        let generated = gen.value(f, s, "", 0);
        let bytes = serde_json::to_vec(&generated).unwrap();
        // Compare against the body as parsed from its bytes, like the real input: serde_json's
        // default float parsing may differ from the generator's in-memory f64 by one ULP.
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        bytes_total += bytes.len();
        let ctx = || {
            format!(
                "seed {seed}, event {i} ({file}): {}",
                String::from_utf8_lossy(&bytes)
            )
        };
        let event = Event::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
        assert_eq!(event.type_name(), original["type"].as_str(), "{}", ctx());
        assert!(!matches!(event, Event::Unknown { .. }), "{}", ctx());

        let mut schema_keys_in_extra = Vec::new();
        event.for_each_unknown(&mut |k, _| {
            if k.starts_with(UNKNOWN_PREFIX) {
                unknown_found += 1;
            } else {
                schema_keys_in_extra.push(k.to_owned());
            }
        });
        assert!(
            schema_keys_in_extra.is_empty(),
            "schema fields the model forgot: {schema_keys_in_extra:?}\n{}",
            ctx()
        );

        let encoded = event.to_value().unwrap();
        let (a, b) = (normalise(&original), normalise(&encoded));
        assert!(a == b, "{:?}\n{}", first_difference(&a, &b, ""), ctx());
    }
    // The corpus really exercised what it claims to.
    assert!(
        gen.unknown_injected > 1000 && unknown_found > 500,
        "{} / {unknown_found}",
        gen.unknown_injected
    );
    assert!(
        bytes_total > 1_000_000,
        "corpus too small: {bytes_total} bytes"
    );
    let missing: Vec<_> = reachable_props(&schemas)
        .difference(&gen.seen_props)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "properties never generated: {missing:?}"
    );
}
