//! Coverage: walks the vendored schemas from the six data types (and every webhook envelope)
//! and fails if any schema property has no field in the Rust model, or if the model has a key
//! the schema does not define (a typo would silently send real data to `extra`).

use crate::model_support::schema::{non_null_alternatives, Schemas, DATA_TYPES};
use serde_json::Value;
use terra_sink::model::*;

struct Walk<'a> {
    schemas: &'a Schemas,
    problems: Vec<String>,
    checked: usize,
    /// Envelopes may keep nested content (athlete, lab reports…) as raw JSON.
    allow_raw: bool,
    /// Whether model keys absent from the schema are problems (not for envelopes that merge
    /// the legacy auth error form).
    strict_reverse: bool,
}

impl Walk<'_> {
    fn object(&mut self, file: &str, schema: &Value, shape: Shape, path: &str) {
        let props = self.schemas.properties(file, schema);
        let Shape::Object(fields) = shape else {
            if !self.allow_raw {
                self.problems.push(format!(
                    "{path}: schema {file} is an object, model is {shape:?}"
                ));
            }
            return;
        };
        for (key, prop) in &props {
            self.checked += 1;
            let here = format!("{path}.{key}");
            match fields.iter().find(|(k, _)| k == key) {
                None => self
                    .problems
                    .push(format!("{here}: no model field for {file}#{key}")),
                Some((_, inner)) => self.value(file, prop, inner(), &here),
            }
        }
        if self.strict_reverse {
            for (k, _) in fields.iter() {
                if !props.contains_key(*k) {
                    self.problems
                        .push(format!("{path}.{k}: model key not in schema {file}"));
                }
            }
        }
    }

    fn value(&mut self, file: &str, schema: &Value, shape: Shape, path: &str) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (f, target) = self.schemas.resolve(file, r);
            return self.value(f, target, shape, path);
        }
        if schema.get("anyOf").is_some() {
            for alt in non_null_alternatives(schema) {
                self.value(file, alt, shape, path);
            }
            return;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("array") => match shape {
                Shape::Array(inner) => {
                    if let Some(items) = schema.get("items") {
                        self.value(file, items, inner(), &format!("{path}[]"));
                    }
                }
                Shape::Leaf if self.allow_raw => {}
                other => self
                    .problems
                    .push(format!("{path}: schema array, model {other:?}")),
            },
            _ if schema
                .get("properties")
                .and_then(Value::as_object)
                .is_some_and(|p| !p.is_empty()) =>
            {
                self.object(file, schema, shape, path)
            }
            _ => {
                if !matches!(shape, Shape::Leaf) {
                    self.problems
                        .push(format!("{path}: schema scalar, model {shape:?}"));
                }
            }
        }
    }
}

#[test]
fn every_schema_property_of_the_six_data_types_has_a_model_field() {
    let schemas = Schemas::load();
    let shapes = [
        Activity::shape(),
        Body::shape(),
        Daily::shape(),
        Menstruation::shape(),
        Nutrition::shape(),
        Sleep::shape(),
    ];
    let mut walk = Walk {
        schemas: &schemas,
        problems: vec![],
        checked: 0,
        allow_raw: false,
        strict_reverse: true,
    };
    for (file, shape) in DATA_TYPES.iter().zip(shapes) {
        let (f, schema) = schemas.resolve(file, file);
        walk.object(f, schema, shape, file.trim_end_matches(".yaml"));
    }
    assert!(walk.problems.is_empty(), "{}", walk.problems.join("\n"));
    // 550+ distinct properties; counted per path, so shared sub-objects count once per parent.
    assert!(
        walk.checked > 700,
        "walked only {} properties",
        walk.checked
    );
}

#[test]
fn every_envelope_property_has_a_model_field() {
    let schemas = Schemas::load();
    let cases: [(&str, Shape); 22] = [
        ("ActivityEvent.yaml", ActivityEvent::shape()),
        ("BodyEvent.yaml", BodyEvent::shape()),
        ("DailyEvent.yaml", DailyEvent::shape()),
        ("MenstruationEvent.yaml", MenstruationEvent::shape()),
        ("NutritionEvent.yaml", NutritionEvent::shape()),
        ("SleepEvent.yaml", SleepEvent::shape()),
        ("AthleteEvent.yaml", AthleteEvent::shape()),
        ("AuthSuccessEvent.yaml", AuthEvent::shape()),
        ("AuthErrorEvent.yaml", AuthCancelledEvent::shape()),
        ("DeauthEvent.yaml", DeauthEvent::shape()),
        ("UserReauthEvent.yaml", UserReauthEvent::shape()),
        ("AccessRevokedEvent.yaml", AccessRevokedEvent::shape()),
        ("ConnectionErrorEvent.yaml", ConnectionErrorEvent::shape()),
        ("PermissionChangeEvent.yaml", PermissionChangeEvent::shape()),
        (
            "LargeRequestProcessingEvent.yaml",
            LargeRequestProcessingEvent::shape(),
        ),
        (
            "LargeRequestSendingEvent.yaml",
            LargeRequestSendingEvent::shape(),
        ),
        ("S3PayloadEvent.yaml", S3PayloadEvent::shape()),
        ("PlannedWorkoutEvent.yaml", PlannedWorkoutEvent::shape()),
        ("HormoneEvent.yaml", HormoneEvent::shape()),
        (
            "HealthObservationEvent.yaml",
            HealthObservationEvent::shape(),
        ),
        (
            "LabReportCompletedEvent.yaml",
            LabReportCompletedEvent::shape(),
        ),
        ("LabReportFailedEvent.yaml", LabReportFailedEvent::shape()),
    ];
    // Every event in Terra's union is covered.
    let union = &schemas.files["WebhookEventType.yaml"]["oneOf"];
    let listed: Vec<&str> = union
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["$ref"].as_str().unwrap())
        .collect();
    for file in &listed {
        assert!(
            cases.iter().any(|(f, _)| f == file),
            "no envelope for {file}"
        );
    }
    let mut walk = Walk {
        schemas: &schemas,
        problems: vec![],
        checked: 0,
        allow_raw: true,
        strict_reverse: false,
    };
    for (file, shape) in cases {
        let (f, schema) = schemas.resolve(file, file);
        walk.object(f, schema, shape, file.trim_end_matches(".yaml"));
    }
    assert!(walk.problems.is_empty(), "{}", walk.problems.join("\n"));
}

#[test]
fn the_coverage_walk_detects_a_forgotten_field() {
    // Simulate schema drift: Terra adds a property to a nested sample object.
    let mut schemas = Schemas::load();
    let sample = schemas.files.get_mut("HeartRateDataSample.yaml").unwrap();
    sample["properties"]["new_terra_field"] = serde_json::json!({"type": "number"});
    let mut walk = Walk {
        schemas: &schemas,
        problems: vec![],
        checked: 0,
        allow_raw: false,
        strict_reverse: true,
    };
    let (f, schema) = schemas.resolve("Activity.yaml", "Activity.yaml");
    walk.object(f, schema, Activity::shape(), "Activity");
    assert!(
        walk.problems
            .iter()
            .any(|p| p.contains("heart_rate_data.detailed.hr_samples[].new_terra_field")),
        "{:?}",
        walk.problems
    );
}
