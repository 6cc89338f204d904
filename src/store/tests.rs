//! The mapping from Terra's model to rows and samples, table by table (pure, no database).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::convert::digest_key;
use super::samples::Samples;
use super::{activity, athlete, body, daily, menstruation, nutrition, sleep, SAMPLE_KINDS};
use crate::model::{Activity, Event};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn first_activity(json: &str) -> Activity {
    match Event::from_slice(json.as_bytes()).unwrap() {
        Event::Activity(mut e) => e.data.remove(0),
        other => panic!("not an activity: {other:?}"),
    }
}

fn wrap(ty: &str, record: &str) -> String {
    format!(r#"{{"type":"{ty}","user":{{"user_id":"u1"}},"data":[{record}]}}"#)
}

/// Every sample as (kind, ts, value, value2), series after series.
fn flat(s: &Samples) -> Vec<(&'static str, String, Option<f64>, Option<f64>)> {
    s.series
        .iter()
        .flat_map(|x| {
            (0..x.ts.len()).map(move |i| {
                let v2 = x.value2.get(i).copied().flatten();
                (x.kind, x.ts[i].to_rfc3339(), x.value[i], v2)
            })
        })
        .collect()
}

fn kinds(s: &Samples) -> Vec<&'static str> {
    flat(s).into_iter().map(|x| x.0).collect()
}

#[test]
fn activity_columns_come_from_the_right_fields() {
    let a = first_activity(&wrap(
        "activity",
        r#"{"metadata":{"name":"Ride","summary_id":"s1","type":1,"upload_type":2,
            "start_time":"2026-07-01T07:00:00+01:00","end_time":"2026-07-01T08:00:00+01:00"},
           "active_durations_data":{"activity_seconds":3300},
           "calories_data":{"total_burned_calories":700.5,"net_activity_calories":600},
           "distance_data":{"summary":{"distance_meters":30000.5,"steps":12.0}},
           "heart_rate_data":{"summary":{"avg_hr_bpm":140.5,"max_hr_bpm":171}},
           "power_data":{"avg_watts":201.5},
           "movement_data":{"avg_speed_meters_per_second":8.3},
           "data_enrichment":{"strain_score":12.5}}"#,
    ));
    let (key, row) = activity::map(&a, "{}");
    assert_eq!(key, "s1");
    assert_eq!(row.start_time, Some(utc("2026-07-01T06:00:00Z")));
    assert_eq!(row.end_time, Some(utc("2026-07-01T07:00:00Z")));
    assert_eq!(row.summary_id.as_deref(), Some("s1"));
    assert_eq!(row.day, NaiveDate::from_ymd_opt(2026, 7, 1));
    assert_eq!(row.name.as_deref(), Some("Ride"));
    assert_eq!(row.activity_type, Some(1));
    assert_eq!(row.activity_type_name, Some("Biking"));
    assert_eq!(row.upload_type, Some(2));
    assert_eq!(row.active_seconds, Some(3300.0));
    assert_eq!(row.calories, Some(700.5));
    assert_eq!(row.distance_meters, Some(30000.5));
    assert_eq!(row.steps, Some(12));
    assert_eq!(row.avg_hr_bpm, Some(140.5));
    assert_eq!(row.max_hr_bpm, Some(171.0));
    assert_eq!(row.avg_watts, Some(201.5));
    assert_eq!(row.avg_speed_meters_per_second, Some(8.3));
    assert_eq!(row.strain_score, Some(12.5));
}

#[test]
fn empty_activity_maps_to_nulls_with_a_fallback_key() {
    let a = first_activity(&wrap("activity", "{}"));
    let (key, row) = activity::map(&a, "{}");
    assert_eq!(key, digest_key("{}"));
    assert_eq!(row.calories, None);
    assert_eq!(row.activity_type_name, None);
    assert!(activity::samples(&a).is_empty());
}

#[test]
fn activity_samples_cover_every_series() {
    let a = first_activity(&wrap(
        "activity",
        r#"{"heart_rate_data":{"detailed":{
                "hr_samples":[{"timestamp":"2026-07-01T07:00:00+01:00","bpm":120},
                              {"timestamp":"2026-07-01T07:00:01+01:00","bpm":null},
                              {"bpm":121},
                              {"timestamp":"2026-07-01T07:00:02","bpm":122}],
                "hrv_samples_rmssd":[{"timestamp":"2026-07-01T07:00:00Z","hrv_rmssd":40}]}},
            "power_data":{"power_samples":[{"timestamp":"2026-07-01T07:00:00Z","watts":250}]},
            "movement_data":{"speed_samples":[{"timestamp":"2026-07-01T07:00:00Z","speed_meters_per_second":3.5}],
                             "cadence_samples":[{"timestamp":"2026-07-01T07:00:00Z","cadence_rpm":90}]},
            "distance_data":{"detailed":{"distance_samples":[{"timestamp":"2026-07-01T07:00:00Z","distance_meters":10}],
                                         "elevation_samples":[{"timestamp":"2026-07-01T07:00:00Z","elev_meters":55}]}},
            "position_data":{"position_samples":[
                {"timestamp":"2026-07-01T07:00:00Z","coords_lat_lng_deg":[51.5,-0.12]},
                {"timestamp":"2026-07-01T07:00:01Z","coords_lat_lng_deg":[null,null]},
                {"timestamp":"2026-07-01T07:00:02Z","coords_lat_lng_deg":[51.6]}]}}"#,
    ));
    let s = activity::samples(&a);
    let got = flat(&s);
    let t0 = "2026-07-01T07:00:00+00:00".to_owned();
    assert_eq!(
        got,
        vec![
            (
                "heart_rate",
                "2026-07-01T06:00:00+00:00".to_owned(),
                Some(120.0),
                None
            ),
            // No offset: wall clock as UTC.
            (
                "heart_rate",
                "2026-07-01T07:00:02+00:00".to_owned(),
                Some(122.0),
                None
            ),
            ("hrv_rmssd", t0.clone(), Some(40.0), None),
            ("distance", t0.clone(), Some(10.0), None),
            ("elevation", t0.clone(), Some(55.0), None),
            ("power", t0.clone(), Some(250.0), None),
            ("speed", t0.clone(), Some(3.5), None),
            ("cadence", t0.clone(), Some(90.0), None),
            ("position", t0, Some(51.5), Some(-0.12)),
            (
                "position",
                "2026-07-01T07:00:02+00:00".to_owned(),
                Some(51.6),
                None
            ),
        ]
    );
    // The null bpm, the sample without a timestamp and the empty position.
    assert_eq!(s.skipped, 3);
}

#[test]
fn sleep_columns_and_samples() {
    let e = Event::from_slice(
        wrap(
            "sleep",
            r#"{"metadata":{"start_time":"2026-06-30T23:12:00+01:00","end_time":"2026-07-01T07:02:00+01:00","is_nap":false,"upload_type":2},
                "sleep_durations_data":{"asleep":{"duration_asleep_state_seconds":25200,"duration_deep_sleep_state_seconds":5400,
                    "duration_light_sleep_state_seconds":14700,"duration_REM_sleep_state_seconds":5100},
                    "awake":{"duration_awake_state_seconds":1500},"other":{"duration_in_bed_seconds":28200},"sleep_efficiency":91.5,
                    "hypnogram_samples":[{"timestamp":"2026-06-30T23:12:00+01:00","level":1},{"timestamp":"2026-06-30T23:30:00+01:00","level":5}]},
                "heart_rate_data":{"summary":{"avg_hr_bpm":55.5,"avg_hrv_rmssd":48}},
                "respiration_data":{"breaths_data":{"samples":[{"timestamp":"2026-06-30T23:30:00+01:00","breaths_per_min":14}]}},
                "data_enrichment":{"sleep_score":81,"readiness_score":77}}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let Event::Sleep(e) = e else { panic!() };
    let s = &e.data[0];
    let (key, row) = sleep::map(s, "{}");
    assert_eq!(key, "start_time:2026-06-30T23:12:00+01:00");
    assert_eq!(row.summary_id.as_deref(), None);
    assert_eq!(row.wake_day, NaiveDate::from_ymd_opt(2026, 7, 1));
    assert_eq!(row.is_nap, Some(false));
    assert_eq!(row.upload_type, Some(2));
    assert_eq!(row.asleep_seconds, Some(25200.0));
    assert_eq!(row.deep_seconds, Some(5400.0));
    assert_eq!(row.light_seconds, Some(14700.0));
    assert_eq!(row.rem_seconds, Some(5100.0));
    assert_eq!(row.awake_seconds, Some(1500.0));
    assert_eq!(row.in_bed_seconds, Some(28200.0));
    assert_eq!(row.sleep_efficiency, Some(91.5));
    assert_eq!(row.avg_hr_bpm, Some(55.5));
    assert_eq!(row.avg_hrv_rmssd, Some(48.0));
    assert_eq!(row.sleep_score, Some(81.0));
    assert_eq!(row.readiness_score, Some(77.0));
    let samples = flat(&sleep::samples(s));
    let kinds: Vec<_> = samples.iter().map(|x| (x.0, x.2)).collect();
    assert_eq!(
        kinds,
        [
            ("sleep_stage", Some(1.0)),
            ("sleep_stage", Some(5.0)),
            ("breathing_rate", Some(14.0))
        ]
    );
}

#[test]
fn daily_records_map_their_columns() {
    let Event::Daily(e) = Event::from_slice(
        wrap(
            "daily",
            r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00","end_time":"2026-07-02T00:00:00+01:00","upload_type":1},
                "distance_data":{"steps":11894,"distance_meters":9412.7,"floors_climbed":12},
                "calories_data":{"total_burned_calories":2450.8,"net_activity_calories":600.5},
                "active_durations_data":{"activity_seconds":5340},
                "heart_rate_data":{"summary":{"avg_hr_bpm":70,"max_hr_bpm":160,"resting_hr_bpm":52}},
                "stress_data":{"avg_stress_level":31,"samples":[{"timestamp":"2026-07-01T10:00:00+01:00","level":40}]},
                "data_enrichment":{"total_stress_score":45.5}}"#,
        )
        .as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    let d = &e.data[0];
    let (key, row) = daily::map(d, "{}");
    assert_eq!(key, "2026-07-01");
    assert_eq!(row.day, NaiveDate::from_ymd_opt(2026, 7, 1));
    assert_eq!(row.upload_type, Some(1));
    assert_eq!(row.steps, Some(11894));
    assert_eq!(row.distance_meters, Some(9412.7));
    assert_eq!(row.floors_climbed, Some(12));
    assert_eq!(row.total_burned_calories, Some(2450.8));
    assert_eq!(row.active_calories, Some(600.5));
    assert_eq!(row.active_seconds, Some(5340.0));
    assert_eq!(row.avg_hr_bpm, Some(70.0));
    assert_eq!(row.max_hr_bpm, Some(160.0));
    assert_eq!(row.resting_hr_bpm, Some(52.0));
    assert_eq!(row.avg_stress_level, Some(31.0));
    assert_eq!(row.total_stress_score, Some(45.5));
    assert_eq!(kinds(&daily::samples(d)), ["stress"]);
}

#[test]
fn body_records_map_their_columns() {
    let Event::Body(e) = Event::from_slice(
        wrap(
            "body",
            r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                "measurements_data":{"measurements":[
                    {"measurement_time":"2026-07-01T19:00:00+01:00","weight_kg":72.9},
                    {"measurement_time":"2026-07-01T07:55:02+01:00","weight_kg":72.4,"bodyfat_percentage":17.9,"BMI":22.6}]},
                "glucose_data":{"day_avg_blood_glucose_mg_per_dL":96.5,
                    "blood_glucose_samples":[{"timestamp":"2026-07-01T08:00:00+01:00","blood_glucose_mg_per_dL":101}]},
                "oxygen_data":{"avg_saturation_percentage":97.5},
                "blood_pressure_data":{"blood_pressure_samples":[{"timestamp":"2026-07-01T08:00:00+01:00","systolic_bp":121,"diastolic_bp":79}]},
                "heart_data":{"heart_rate_data":{"summary":{"resting_hr_bpm":52}}}}"#,
        )
        .as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    let b = &e.data[0];
    let (_, row) = body::map(b, "{}");
    // The latest measurement by time, not by array position.
    assert_eq!(row.weight_kg, Some(72.9));
    assert_eq!(row.bmi, Some(22.6));
    assert_eq!(row.bodyfat_percentage, Some(17.9));
    assert_eq!(row.resting_hr_bpm, Some(52.0));
    assert_eq!(row.avg_saturation_percentage, Some(97.5));
    assert_eq!(row.avg_blood_glucose_mg_per_dl, Some(96.5));
    let s = flat(&body::samples(b));
    assert_eq!(
        s.iter().map(|x| x.0).collect::<Vec<_>>(),
        [
            "glucose",
            "blood_pressure",
            "weight",
            "weight",
            "bmi",
            "bodyfat_percentage"
        ]
    );
    assert_eq!((s[1].2, s[1].3), (Some(121.0), Some(79.0)));
}

#[test]
fn menstruation_records_map_their_columns() {
    let Event::Menstruation(e) = Event::from_slice(
        wrap(
            "menstruation",
            r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                "menstruation_data":{"period_start_date":"2026-06-28","day_in_cycle":4,"period_length_days":5,
                    "cycle_length_days":28,"current_phase":1,"is_predicted_cycle":false}}"#,
        )
        .as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    let (_, row) = menstruation::map(&e.data[0], "{}");
    assert_eq!(row.period_length_days, Some(5));
    assert_eq!(row.cycle_length_days, Some(28));
    assert_eq!(row.day_in_cycle, Some(4));
    assert_eq!(row.current_phase, Some(1));
    assert_eq!(row.current_phase_name, Some("Period"));
    assert_eq!(row.period_start_date, NaiveDate::from_ymd_opt(2026, 6, 28));
    assert_eq!(row.is_predicted_cycle, Some(false));
}

#[test]
fn nutrition_records_map_their_columns() {
    let Event::Nutrition(e) = Event::from_slice(
        wrap(
            "nutrition",
            r#"{"metadata":{"start_time":"2026-07-01T00:00:00+01:00"},
                "summary":{"macros":{"calories":2105,"protein_g":128.4,"carbohydrates_g":231,"fat_g":71.3},"water_ml":2300}}"#,
        )
        .as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    let (key, row) = nutrition::map(&e.data[0], "{}");
    assert_eq!(key, "2026-07-01");
    assert_eq!(row.calories, Some(2105.0));
    assert_eq!(row.protein_g, Some(128.4));
    assert_eq!(row.carbohydrates_g, Some(231.0));
    assert_eq!(row.fat_g, Some(71.3));
    assert_eq!(row.water_ml, Some(2300.0));
}

#[test]
fn athlete_fields() {
    let v: Value = serde_json::from_str(
        r#"{"first_name":"John","last_name":"Smith","sex":"male","date_of_birth":"1991-04-12",
            "age":35,"email":"j@example.com","city":"SF","state":"CA","country":"US","gender":7}"#,
    )
    .unwrap();
    let row = athlete::map(&v);
    assert_eq!(row.first_name.as_deref(), Some("John"));
    assert_eq!(row.last_name.as_deref(), Some("Smith"));
    assert_eq!(row.sex.as_deref(), Some("male"));
    assert_eq!(row.gender.as_deref(), None, "not a string");
    assert_eq!(row.date_of_birth, NaiveDate::from_ymd_opt(1991, 4, 12));
    assert_eq!(row.age, Some(35));
    assert_eq!(row.email.as_deref(), Some("j@example.com"));
    assert_eq!(row.city.as_deref(), Some("SF"));
    assert_eq!(row.state.as_deref(), Some("CA"));
    assert_eq!(row.country.as_deref(), Some("US"));
    assert_eq!(athlete::map(&Value::Null).first_name.as_deref(), None);
}

#[test]
fn sample_kind_list_is_complete_and_unique() {
    let mut kinds = SAMPLE_KINDS.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), SAMPLE_KINDS.len());
}
