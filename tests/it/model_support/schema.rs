//! Navigating the vendored JSON Schemas: `$ref` resolution (relative files and `#/$defs`),
//! `allOf` property merging and `anyOf`-with-null unwrapping.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The vendored schemas by file name.
pub struct Schemas {
    pub files: BTreeMap<String, Value>,
}

impl Schemas {
    pub fn load() -> Self {
        Schemas {
            files: super::load_schemas(),
        }
    }

    /// Resolves a `$ref` made from within `file`: returns the target's file and schema.
    pub fn resolve<'a>(&'a self, file: &'a str, reference: &str) -> (&'a str, &'a Value) {
        if let Some(pointer) = reference.strip_prefix('#') {
            let root = &self.files[file];
            let target = root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{file}: unresolved {reference}"));
            (file, target)
        } else {
            let (name, schema) = self
                .files
                .get_key_value(reference)
                .unwrap_or_else(|| panic!("{file}: unresolved {reference}"));
            (name.as_str(), schema)
        }
    }

    /// The properties of an object schema, including those of its `allOf` bases.
    pub fn properties(&self, file: &str, schema: &Value) -> Map<String, Value> {
        let mut props = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for base in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = base.get("$ref").and_then(Value::as_str) {
                let (bfile, b) = self.resolve(file, r);
                for (k, v) in self.properties(bfile, b) {
                    props.entry(k).or_insert(v);
                }
            }
        }
        props
    }

    /// The required keys of an object schema.
    pub fn required(&self, schema: &Value) -> Vec<String> {
        schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }
}

/// The alternatives of `anyOf` that are not `{type: null}`.
pub fn non_null_alternatives(schema: &Value) -> Vec<&Value> {
    match schema.get("anyOf").and_then(Value::as_array) {
        Some(alts) => alts
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .collect(),
        None => vec![schema],
    }
}

/// The six data types and the envelope schemas, as Terra names them.
pub const DATA_TYPES: [&str; 6] = [
    "Activity.yaml",
    "Body.yaml",
    "Daily.yaml",
    "Menstruation.yaml",
    "Nutrition.yaml",
    "Sleep.yaml",
];
