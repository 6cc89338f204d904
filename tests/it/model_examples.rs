//! The official example body of every webhook in Terra's OpenAPI bundle: lossless round trip,
//! and assertions on real decoded values from each sub-object (not just "it parsed").

use crate::model_support::{first_difference, load_examples, normalise};
use serde_json::Value;
use terra_sink::model::*;

/// An official example, decoded.
fn decoded_example(name: &str) -> Event {
    let (_, bytes) = load_examples()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("example {name} is vendored"));
    Event::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_official_example_round_trips_losslessly() {
    let examples = load_examples();
    assert_eq!(
        examples.len(),
        19,
        "one body per example in the bundle's webhooks section"
    );
    for (name, bytes) in examples {
        let event = Event::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !matches!(event, Event::Unknown { .. }),
            "{name} must decode to a typed variant"
        );
        let mut unknown = Vec::new();
        event.for_each_unknown(&mut |k, _| unknown.push(k.to_owned()));
        assert!(
            unknown.is_empty(),
            "{name}: schema fields landed in extra: {unknown:?}"
        );
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let encoded = event.to_value().unwrap();
        let (a, b) = (normalise(&original), normalise(&encoded));
        assert!(a == b, "{name}: {:?}", first_difference(&a, &b, ""));
    }
}

const GARMIN_USER: &str = "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad";

fn check_user(u: &TerraUser) {
    assert_eq!(u.user_id, GARMIN_USER);
    assert_eq!(u.provider.as_deref(), Some("GARMIN"));
    assert_eq!(u.reference_id.as_deref(), Some("your-user-123"));
    assert_eq!(
        u.scopes().collect::<Vec<_>>(),
        ["ACTIVITY_EXPORT", "HEALTH_EXPORT"]
    );
}

#[test]
fn activity_example() {
    let Event::Activity(e) = decoded_example("activity") else {
        panic!("activity variant")
    };
    check_user(&e.user);
    assert_eq!(e.version.as_deref(), Some("2022-03-16"));
    assert_eq!(
        e.user
            .last_webhook_update
            .as_ref()
            .unwrap()
            .instant()
            .unwrap()
            .to_rfc3339(),
        "2026-07-01T09:12:33.891+00:00"
    );
    assert_eq!(e.user.active, Some(true));
    let a = &e.data[0];
    assert_eq!(a.summary_id(), Some("123e4567-e89b-12d3-a456-426614174000"));
    assert_eq!(a.day().as_deref(), Some("2026-07-01"));
    let m = a.metadata.as_ref().unwrap();
    assert_eq!(m.name.as_deref(), Some("Morning Run"));
    assert_eq!(m.r#type, Some(ActivityType::RUNNING));
    assert_eq!(m.r#type.unwrap().name(), Some("Running"));
    assert_eq!(m.upload_type, Some(UploadType::AUTOMATIC));
    assert_eq!(
        m.end_time.as_ref().unwrap().as_str(),
        "2026-07-01T07:52:48.000000+01:00"
    );
    let dist = a.distance_data.as_ref().unwrap().summary.as_ref().unwrap();
    assert_eq!(dist.distance_meters, Some(8250.4));
    assert_eq!(dist.steps.unwrap().as_i64(), Some(7902));
    let cal = a.calories_data.as_ref().unwrap();
    assert_eq!(cal.total_burned_calories, Some(512.5));
    assert_eq!(cal.net_activity_calories, Some(431.2));
    assert_eq!(cal.BMR_calories, None, "absent is not zero");
    let hr = a
        .heart_rate_data
        .as_ref()
        .unwrap()
        .summary
        .as_ref()
        .unwrap();
    assert_eq!(hr.avg_hr_bpm, Some(148.2));
    assert_eq!(hr.max_hr_bpm, Some(181.0));
    assert!(a.position_data.is_none());
}

#[test]
fn daily_example() {
    let Event::Daily(e) = decoded_example("daily") else {
        panic!("daily variant")
    };
    check_user(&e.user);
    let d = &e.data[0];
    assert_eq!(d.day().as_deref(), Some("2026-07-01"));
    assert_eq!(
        d.metadata.as_ref().unwrap().upload_type,
        Some(UploadType::UNKNOWN)
    );
    let dist = d.distance_data.as_ref().unwrap();
    assert_eq!(dist.steps.unwrap().as_i64(), Some(11894));
    assert_eq!(dist.distance_meters, Some(9412.7));
    assert_eq!(
        d.calories_data.as_ref().unwrap().total_burned_calories,
        Some(2450.8)
    );
    assert_eq!(
        d.active_durations_data.as_ref().unwrap().activity_seconds,
        Some(5340.0)
    );
}

#[test]
fn sleep_example() {
    let Event::Sleep(e) = decoded_example("sleep") else {
        panic!("sleep variant")
    };
    check_user(&e.user);
    let s = &e.data[0];
    // A sleep that starts the evening before keeps that evening's day.
    assert_eq!(s.day().as_deref(), Some("2026-06-30"));
    let m = s.metadata.as_ref().unwrap();
    assert_eq!(m.is_nap, Some(false));
    // Sleep's upload codes differ from activity's: 1 is Manual here, Automatic there.
    assert_eq!(m.upload_type, Some(SleepUploadType::MANUAL));
    assert_eq!(m.upload_type.unwrap().name(), Some("Manual"));
    assert_eq!(UploadType::from(1).name(), Some("Automatic"));
    let d = s.sleep_durations_data.as_ref().unwrap();
    let asleep = d.asleep.as_ref().unwrap();
    assert_eq!(asleep.duration_asleep_state_seconds, Some(25200.0));
    assert_eq!(asleep.duration_deep_sleep_state_seconds, Some(5400.0));
    assert_eq!(asleep.duration_REM_sleep_state_seconds, Some(5100.0));
    assert_eq!(
        d.awake.as_ref().unwrap().duration_awake_state_seconds,
        Some(1500.0)
    );
    assert_eq!(d.sleep_efficiency, Some(91.5));
}

#[test]
fn body_example() {
    let Event::Body(e) = decoded_example("body") else {
        panic!("body variant")
    };
    check_user(&e.user);
    let b = &e.data[0];
    assert_eq!(b.day().as_deref(), Some("2026-07-01"));
    let m = &b
        .measurements_data
        .as_ref()
        .unwrap()
        .measurements
        .as_ref()
        .unwrap()[0];
    assert_eq!(m.weight_kg, Some(72.4));
    assert_eq!(m.bodyfat_percentage, Some(17.9));
    assert_eq!(m.BMI, Some(22.6));
    assert_eq!(
        m.measurement_time
            .as_ref()
            .unwrap()
            .local()
            .unwrap()
            .to_string(),
        "2026-07-01 07:55:02"
    );
    let hr = b
        .heart_data
        .as_ref()
        .unwrap()
        .heart_rate_data
        .as_ref()
        .unwrap();
    assert_eq!(hr.summary.as_ref().unwrap().resting_hr_bpm, Some(52.0));
}

#[test]
fn menstruation_example() {
    let Event::Menstruation(e) = decoded_example("menstruation") else {
        panic!("menstruation variant")
    };
    check_user(&e.user);
    let m = &e.data[0];
    assert_eq!(m.day().as_deref(), Some("2026-07-01"));
    let d = m.menstruation_data.as_ref().unwrap();
    assert_eq!(
        d.period_start_date.as_ref().unwrap().day().as_deref(),
        Some("2026-06-28")
    );
    assert_eq!(d.day_in_cycle.unwrap().as_i64(), Some(4));
    assert_eq!(d.period_length_days.unwrap().as_i64(), Some(5));
    assert_eq!(d.current_phase, Some(MenstruationInterval::PERIOD));
    assert_eq!(d.is_predicted_cycle, Some(false));
}

#[test]
fn nutrition_example() {
    let Event::Nutrition(e) = decoded_example("nutrition") else {
        panic!("nutrition variant")
    };
    check_user(&e.user);
    let n = &e.data[0];
    assert_eq!(n.day().as_deref(), Some("2026-07-01"));
    let s = n.summary.as_ref().unwrap();
    let macros = s.macros.as_ref().unwrap();
    assert_eq!(macros.calories, Some(2105.0));
    assert_eq!(macros.protein_g, Some(128.4));
    assert_eq!(macros.carbohydrates_g, Some(231.0));
    assert_eq!(macros.fat_g, Some(71.3));
    assert_eq!(s.water_ml, Some(2300.0));
    assert!(s.micros.is_none());
}

#[test]
fn athlete_example() {
    let Event::Athlete(e) = decoded_example("athlete") else {
        panic!("athlete variant")
    };
    check_user(&e.user);
    let a = e.athlete.as_ref().unwrap();
    assert_eq!(a["first_name"], "John");
    assert_eq!(a["date_of_birth"], "1991-04-12");
}

#[test]
fn auth_examples() {
    let Event::Auth(e) = decoded_example("auth-authSuccess") else {
        panic!("auth variant")
    };
    assert!(e.is_success());
    let u = e.user.as_ref().unwrap();
    assert_eq!(u.user_id, GARMIN_USER);
    assert_eq!(u.last_webhook_update, None);
    assert_eq!(
        e.widget_session_id.as_deref(),
        Some("3e982b74-1a94-4d9a-b6a3-f92c6e4d21b5")
    );
    assert_eq!(
        e.message.as_deref(),
        Some("User has successfully authenticated")
    );

    let ev = decoded_example("auth-authCancelled");
    assert_eq!(ev.user_id(), None);
    let Event::AuthCancelled(e) = ev else {
        panic!("auth_cancelled variant")
    };
    assert_eq!(e.status.as_deref(), Some("error"));
    assert_eq!(e.reason.as_deref(), Some("access_denied"));
    assert_eq!(e.reference_id.as_deref(), Some("your-user-123"));
    assert_eq!(
        e.flow_id.as_deref(),
        Some("b2f9c611-52c8-4a63-9082-7e50e2f5a1cd")
    );
}

#[test]
fn user_lifecycle_examples() {
    let ev = decoded_example("deauth");
    assert_eq!(ev.user_id(), Some(GARMIN_USER));
    let Event::Deauth(e) = ev else {
        panic!("deauth variant")
    };
    assert_eq!(e.user.active, Some(false));
    assert_eq!(e.message.as_deref(), Some("User has deauthenticated"));

    let ev = decoded_example("user_reauth");
    assert_eq!(ev.user_id(), Some("9c8b7a65-4321-4fed-a0b9-87c6d5e4f321"));
    let Event::UserReauth(e) = ev else {
        panic!("user_reauth variant")
    };
    assert_eq!(e.old_user.as_ref().unwrap().user_id, GARMIN_USER);
    assert_eq!(e.status.as_deref(), Some("warning"));

    let Event::AccessRevoked(e) = decoded_example("access_revoked") else {
        panic!("access_revoked")
    };
    check_user(&e.user);
    assert_eq!(e.message.as_deref(), Some("User revoked access"));

    let Event::ConnectionError(e) = decoded_example("connection_error") else {
        panic!("connection_error")
    };
    check_user(&e.user);
    assert!(e
        .message
        .as_deref()
        .unwrap()
        .starts_with("Connection degraded"));

    let Event::PermissionChange(e) = decoded_example("permission_change") else {
        panic!("permission_change")
    };
    assert_eq!(e.scopes_added().collect::<Vec<_>>(), ["BODY_EXPORT"]);
    assert_eq!(
        e.scopes_removed().count(),
        0,
        "empty scope string means none"
    );
    assert_eq!(e.user.scopes().count(), 3);
}

#[test]
fn large_request_and_s3_examples() {
    let Event::LargeRequestSending(e) = decoded_example("large_request_sending") else {
        panic!("sending")
    };
    assert_eq!(e.expected_payloads.unwrap().as_i64(), Some(43));
    assert_eq!(
        e.reference.as_deref(),
        Some("d3f1a9c2-6b1e-4f0a-8f21-9e5b2c7a4d10")
    );
    check_user(&e.user);

    let Event::LargeRequestProcessing(e) = decoded_example("large_request_processing") else {
        panic!("processing")
    };
    assert_eq!(e.status.as_deref(), Some("processing"));
    assert_eq!(
        e.reference.as_deref(),
        Some("d3f1a9c2-6b1e-4f0a-8f21-9e5b2c7a4d10")
    );

    let ev = decoded_example("s3_upload");
    assert_eq!(ev.type_name(), Some("s3_payload"));
    let Event::S3Payload(e) = ev else {
        panic!("s3_payload variant")
    };
    assert_eq!(e.expires_in.unwrap().as_i64(), Some(300));
    assert!(e.url.as_deref().unwrap().starts_with("https://"));
}

#[test]
fn lab_report_examples() {
    let Event::LabReportCompleted(e) = decoded_example("lab_report-completed") else {
        panic!("completed")
    };
    assert_eq!(
        e.event_id.as_deref(),
        Some("evt_4a2b8c1d-3f9e-4c0a-8b21-9d6e5f2a1c7b")
    );
    assert_eq!(
        e.occurred_at
            .as_ref()
            .unwrap()
            .instant()
            .unwrap()
            .to_rfc3339(),
        "2026-07-01T09:12:33+00:00"
    );
    assert_eq!(e.upload_id.as_deref(), Some("upl_9d6e5f2a1c7b"));
    assert_eq!(
        e.data.as_ref().unwrap()["results"][0]["measurement"]["numeric"],
        14.2
    );

    let Event::LabReportFailed(e) = decoded_example("lab_report-failed") else {
        panic!("failed")
    };
    assert_eq!(e.data.as_ref().unwrap()["error"]["code"], "file_unreadable");
    assert_eq!(e.upload_id, None);
}
