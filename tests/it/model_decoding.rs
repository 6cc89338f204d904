//! The decoding rules, one by one: unknown fields, open codes, numbers, nulls,
//! timestamps, empty data, reauth without old user, scopes, unknown event types, error paths.

use serde_json::{json, Value};
use terra_sink::model::*;

fn decode(v: Value) -> Event {
    Event::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

fn user() -> Value {
    json!({"user_id": "u-1", "provider": "OURA", "scopes": ""})
}

#[test]
fn unknown_fields_are_kept_at_every_depth_and_written_back() {
    let body = json!({
        "type": "activity", "version": "2022-03-16", "user": user(),
        "brand_new_envelope_field": {"a": [1, 2]},
        "data": [{
            "metadata": {"summary_id": "s", "start_time": "2026-07-01T07:00:00+01:00", "type": 8, "upload_type": 1, "future": true},
            "heart_rate_data": {"detailed": {"hr_samples": [
                {"timestamp": "2026-07-01T07:00:01+01:00", "bpm": 140.5, "spo2_hint": 97.5}
            ]}}
        }]
    });
    let event = decode(body.clone());
    let Event::Activity(e) = &event else { panic!() };
    assert_eq!(
        e.extra.get("brand_new_envelope_field"),
        Some(&json!({"a": [1, 2]}))
    );
    let a = &e.data[0];
    assert_eq!(
        a.metadata.as_ref().unwrap().extra.get("future"),
        Some(&json!(true))
    );
    let s = &a
        .heart_rate_data
        .as_ref()
        .unwrap()
        .detailed
        .as_ref()
        .unwrap()
        .hr_samples
        .as_ref()
        .unwrap()[0];
    assert_eq!(s.extra.get("spo2_hint"), Some(&json!(97.5)));
    let mut keys = vec![];
    event.for_each_unknown(&mut |k, _| keys.push(k.to_owned()));
    keys.sort();
    assert_eq!(keys, ["brand_new_envelope_field", "future", "spo2_hint"]);
    assert_eq!(event.to_value().unwrap(), body);
}

#[test]
fn codes_are_open_and_zero_is_a_real_value() {
    assert_eq!(ActivityType::from(0).name(), Some("In Vehicle"));
    assert_eq!(ActivityType::IN_VEHICLE.code(), Some(0));
    let body = json!({"type": "activity", "user": user(), "data": [
        {"metadata": {"type": 0, "upload_type": 6}},
        {"metadata": {"type": 4242, "upload_type": 2.0}},
    ]});
    let Event::Activity(e) = decode(body.clone()) else {
        panic!()
    };
    let m0 = e.data[0].metadata.as_ref().unwrap();
    assert_eq!(m0.r#type, Some(ActivityType::IN_VEHICLE));
    assert_eq!(m0.upload_type.unwrap().name(), Some("Third party upload"));
    let m1 = e.data[1].metadata.as_ref().unwrap();
    let unknown = m1.r#type.unwrap();
    assert_eq!(
        (unknown.code(), unknown.name(), unknown.is_known()),
        (Some(4242), None, false)
    );
    assert_eq!(m1.upload_type, Some(UploadType::MANUAL), "2.0 is code 2");

    // Sleep levels and sleep upload types are their own code lists.
    let body = json!({"type": "sleep", "user": user(), "data": [{
        "metadata": {"upload_type": 2, "start_time": "2026-06-30T23:00:00", "end_time": "2026-07-01T07:00:00"},
        "sleep_durations_data": {"hypnogram_samples": [{"timestamp": "2026-06-30T23:10:00", "level": 6}, {"level": 77}]}
    }]});
    let Event::Sleep(e) = decode(body) else {
        panic!()
    };
    assert_eq!(
        e.data[0]
            .metadata
            .as_ref()
            .unwrap()
            .upload_type
            .unwrap()
            .name(),
        Some("Automatic")
    );
    let h = e.data[0]
        .sleep_durations_data
        .as_ref()
        .unwrap()
        .hypnogram_samples
        .as_ref()
        .unwrap();
    assert_eq!(h[0].level, Some(SleepLevel::REM_SLEEP));
    assert_eq!(h[1].level.unwrap().code(), Some(77));
}

#[test]
fn numbers_may_be_ints_or_floats_and_integers_never_lose_a_record() {
    let body = json!({"type": "daily", "user": user(), "data": [{
        "metadata": {"start_time": "2026-07-01T00:00:00+01:00", "upload_type": 1},
        "distance_data": {"steps": 7902.0, "floors_climbed": 12.5, "distance_meters": 72},
        "heart_rate_data": {"summary": {"avg_hr_bpm": 72.4, "max_hr_bpm": 181}}
    }]});
    let Event::Daily(e) = decode(body.clone()) else {
        panic!()
    };
    let d = e.data[0].distance_data.as_ref().unwrap();
    assert_eq!(d.steps.unwrap().as_i64(), Some(7902));
    assert_eq!(
        d.floors_climbed.unwrap().as_i64(),
        None,
        "fractional integer kept, not rejected"
    );
    assert_eq!(d.floors_climbed.unwrap().as_f64(), 12.5);
    assert_eq!(d.distance_meters, Some(72.0));
    let hr = e.data[0]
        .heart_rate_data
        .as_ref()
        .unwrap()
        .summary
        .as_ref()
        .unwrap();
    assert_eq!((hr.avg_hr_bpm, hr.max_hr_bpm), (Some(72.4), Some(181.0)));
    let out = serde_json::to_value(&e).unwrap();
    assert_eq!(
        out["data"][0]["distance_data"]["floors_climbed"],
        json!(12.5)
    );
    assert_eq!(out["data"][0]["distance_data"]["steps"], json!(7902));
}

#[test]
fn null_and_absent_are_none_never_zero() {
    let body = json!({"type": "body", "user": user(), "data": [{
        "metadata": {"start_time": "2026-07-01T00:00:00+01:00", "end_time": null},
        "measurements_data": {"measurements": [{"weight_kg": null, "BMI": 0}]},
        "glucose_data": null
    }]});
    let Event::Body(e) = decode(body) else {
        panic!()
    };
    let b = &e.data[0];
    assert_eq!(b.metadata.as_ref().unwrap().end_time, None);
    assert!(b.glucose_data.is_none() && b.oxygen_data.is_none());
    let m = &b
        .measurements_data
        .as_ref()
        .unwrap()
        .measurements
        .as_ref()
        .unwrap()[0];
    assert_eq!((m.weight_kg, m.BMI, m.height_cm), (None, Some(0.0), None));
}

#[test]
fn timestamps_keep_the_original_and_the_day_is_never_converted() {
    let body = json!({"type": "daily", "user": user(), "data": [
        {"metadata": {"start_time": "2026-07-01T00:00:00.000000-07:00"}},
        {"metadata": {"start_time": "2026-07-02T00:00:00.000000"}},
    ]});
    let Event::Daily(e) = decode(body.clone()) else {
        panic!()
    };
    let t0 = e.data[0].start_time().unwrap();
    assert_eq!(t0.as_str(), "2026-07-01T00:00:00.000000-07:00");
    assert_eq!(e.data[0].day().as_deref(), Some("2026-07-01"));
    assert_eq!(
        t0.instant().unwrap().to_rfc3339(),
        "2026-07-01T00:00:00-07:00"
    );
    let t1 = e.data[1].start_time().unwrap();
    assert_eq!(
        t1.instant(),
        None,
        "no offset: a wall-clock time, not an instant"
    );
    assert_eq!(t1.local().unwrap().to_string(), "2026-07-02 00:00:00");
    assert_eq!(e.data[1].day().as_deref(), Some("2026-07-02"));
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        body,
        "strings re-encode verbatim"
    );
}

#[test]
fn empty_data_null_old_user_and_scopes() {
    let Event::Nutrition(e) = decode(json!({"type": "nutrition", "user": user(), "data": []}))
    else {
        panic!()
    };
    assert!(e.data.is_empty());
    assert_eq!(e.user.scopes().count(), 0);

    let ev = decode(
        json!({"type": "user_reauth", "status": "warning", "message": "m",
        "new_user": {"user_id": "new", "provider": "OURA", "scopes": "daily, sleep ,"}, "old_user": null}),
    );
    assert_eq!(ev.user_id(), Some("new"));
    let Event::UserReauth(e) = ev else { panic!() };
    assert!(e.old_user.is_none());
    assert_eq!(e.new_user.scopes().collect::<Vec<_>>(), ["daily", "sleep"]);
}

#[test]
fn every_listed_type_dispatches_and_anything_else_is_unknown() {
    let cases = [
        (
            "healthcheck",
            json!({"type": "healthcheck", "status": "success", "trend_percentage": 0.0, "sent_webhooks_last_hour": 10}),
        ),
        (
            "processing",
            json!({"type": "processing", "status": "processing", "retry_after_seconds": 60, "user": user()}),
        ),
        (
            "rate_limit_hit",
            json!({"type": "rate_limit_hit", "status": "warning", "user": user()}),
        ),
        (
            "google_no_datasource",
            json!({"type": "google_no_datasource", "status": "warning", "user": user()}),
        ),
        (
            "planned_workout",
            json!({"type": "planned_workout", "user": user(), "data": [{"steps": []}], "version": "v"}),
        ),
        (
            "hormone",
            json!({"type": "hormone", "user": user(), "data": [{"x": 1}], "version": "v"}),
        ),
        (
            "health_observation",
            json!({"type": "health_observation", "user": user(), "data": [], "version": "v"}),
        ),
        (
            "auth",
            json!({"type": "auth", "status": "error", "message": "User failed to authenticate", "reason": "x", "user": user()}),
        ),
    ];
    for (ty, body) in cases {
        let ev = decode(body.clone());
        assert_eq!(ev.type_name(), Some(ty));
        assert!(!matches!(ev, Event::Unknown { .. }), "{ty}");
        assert_eq!(ev.to_value().unwrap(), body, "{ty}");
    }
    let Event::Auth(a) = decode(cases_auth_error()) else {
        panic!()
    };
    assert!(!a.is_success());
    assert_eq!(a.user.unwrap().user_id, "u-1");

    let future = json!({"type": "brand_new_event", "payload": {"x": 1}});
    let ev = decode(future.clone());
    assert_eq!(
        ev,
        Event::Unknown {
            type_name: Some("brand_new_event".into()),
            raw: future.clone()
        }
    );
    assert_eq!(ev.to_value().unwrap(), future);
    let untyped = json!({"hello": "world"});
    assert_eq!(
        decode(untyped.clone()),
        Event::Unknown {
            type_name: None,
            raw: untyped
        }
    );
}

fn cases_auth_error() -> Value {
    json!({"type": "auth", "status": "error", "message": "User failed to authenticate and has been deleted", "reason": "x", "user": user()})
}

#[test]
fn errors_name_the_json_path() {
    let mut data: Vec<Value> = (0..3)
        .map(|_| json!({"metadata": {"start_time": "2026-07-01T00:00:00Z"}}))
        .collect();
    data.push(json!({"metadata": {"start_time": 20260701}}));
    let body = serde_json::to_vec(&json!({"type": "daily", "user": user(), "data": data})).unwrap();
    let err = Event::from_slice(&body).unwrap_err();
    assert_eq!(err.path, "data[3].metadata.start_time");
    assert!(err.message.contains("invalid type"), "{err}");
    assert!(err.to_string().contains("data[3].metadata.start_time"));

    let err = Event::from_slice(br#"{"type":"sleep","data":[]}"#).unwrap_err();
    assert!(err.message.contains("missing field `user`"), "{err}");

    let err =
        Event::from_slice(br#"{"type":"activity","user":{"provider":"X"},"data":[]}"#).unwrap_err();
    assert_eq!(err.path, "user");
    assert!(err.message.contains("user_id"), "{err}");

    let err = Event::from_slice(br#"{"type": 3}"#).unwrap_err();
    assert_eq!(err.path, "type");
    let err = Event::from_slice(b"[1,2]").unwrap_err();
    assert_eq!(err.path, ".");
    let err =
        Event::from_slice(br#"{"type":"activity","user":{"user_id":"u"},"data":[]} trailing"#)
            .unwrap_err();
    assert!(err.message.contains("trailing"), "{err}");
    assert!(Event::from_slice(b"").is_err());
}
