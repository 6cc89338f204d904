//! Helpers shared by the model integration tests (tests/model_*.rs).
//!
//! Everything is read from the repository (schemas/terra/), never from ../shared.

pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The vendored schema directory.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/terra")
}

/// All vendored schemas, by file name (`Activity.yaml`), converted to JSON values.
pub fn load_schemas() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(schema_dir()).expect("schemas/terra exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).expect("readable schema");
            let value: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, value);
        }
    }
    assert!(
        out.len() > 100,
        "expected the vendored schemas, found {}",
        out.len()
    );
    out
}

/// The official example bodies extracted from the OpenAPI bundle: (file stem, raw bytes).
pub fn load_examples() -> Vec<(String, Vec<u8>)> {
    let dir = schema_dir().join("webhook-examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("webhook-examples exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((stem, std::fs::read(&path).expect("readable example")));
        }
    }
    out.sort();
    out
}

/// Normalises a JSON value for round-trip comparison:
/// - object keys whose value is `null` are dropped (null and absent mean the same to Terra);
/// - every number becomes an f64 (`7902` and `7902.0` are the same value).
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Number(n) => {
            let f = n.as_f64().expect("finite JSON number");
            Value::from(f)
        }
        other => other.clone(),
    }
}

/// Finds the first difference between two JSON values, as a path (for readable failures).
pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => {
                        if let Some(d) = first_difference(l, r, &p) {
                            return Some(d);
                        }
                    }
                    (l, r) => return Some(format!("{p}: {l:?} vs {r:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}
