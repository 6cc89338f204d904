//! `terra.athlete`: the user's profile (Terra `athlete` event, its `athlete` object), one row
//! per user.

use chrono::NaiveDate;
use serde_json::Value;
use sqlx::PgConnection;

use super::table::{column, CommonColumns, Record, RecordTable, WrittenKey};
use super::text::{self, PgText};
use crate::model::Timestamp;

/// The typed columns of a `terra.athlete` row, read from the event's raw `athlete` object.
#[derive(Debug, Clone, PartialEq)]
pub struct AthleteRow {
    /// `athlete.first_name`.
    pub first_name: Option<PgText>,
    /// `athlete.last_name`.
    pub last_name: Option<PgText>,
    /// `athlete.sex`.
    pub sex: Option<PgText>,
    /// `athlete.gender`.
    pub gender: Option<PgText>,
    /// `athlete.date_of_birth` (its date part).
    pub date_of_birth: Option<NaiveDate>,
    /// `athlete.age`.
    pub age: Option<i32>,
    /// `athlete.email`.
    pub email: Option<PgText>,
    /// `athlete.city`.
    pub city: Option<PgText>,
    /// `athlete.state`.
    pub state: Option<PgText>,
    /// `athlete.country`.
    pub country: Option<PgText>,
}

/// The profile's key: one row per user, so the record key is empty.
pub fn key() -> PgText {
    PgText::default()
}

/// Maps the `athlete` object of an athlete event (fields of another type are `None`).
pub fn map(a: &Value) -> AthleteRow {
    let text = |k: &str| text::opt(a.get(k).and_then(Value::as_str));
    AthleteRow {
        first_name: text("first_name"),
        last_name: text("last_name"),
        sex: text("sex"),
        gender: text("gender"),
        date_of_birth: a
            .get("date_of_birth")
            .and_then(Value::as_str)
            .and_then(|d| Timestamp::new(d).date()),
        age: a
            .get("age")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_f64().map(f64::round).map(|f| f as i64))
            })
            .and_then(|v| i32::try_from(v).ok()),
        email: text("email"),
        city: text("city"),
        state: text("state"),
        country: text("country"),
    }
}

impl RecordTable for AthleteRow {
    const NAME: &'static str = "athlete";
    const HAS_SAMPLES: bool = false;

    async fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> Result<Vec<WrittenKey>, sqlx::Error> {
        let c = CommonColumns::of(rows);
        sqlx::query_as!(
            WrittenKey,
            r#"
            INSERT INTO terra.athlete AS t
                (user_id, provider, first_name, last_name, sex, gender, date_of_birth, age,
                 email, city, state, country, data, ordering_ts, event_id)
            SELECT u.user_id, u.provider, u.first_name, u.last_name, u.sex, u.gender,
                   u.date_of_birth, u.age, u.email, u.city, u.state, u.country, u.data::jsonb,
                   u.ordering_ts, u.event_id
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                        $7::date[], $8::int4[], $9::text[], $10::text[], $11::text[],
                        $12::text[], $13::text[], $14::int8[], $15::int8[])
                AS u(user_id, provider, first_name, last_name, sex, gender, date_of_birth, age,
                     email, city, state, country, data, ordering_ts, event_id)
            ON CONFLICT (user_id) DO UPDATE SET
                provider = EXCLUDED.provider,
                first_name = EXCLUDED.first_name,
                last_name = EXCLUDED.last_name,
                sex = EXCLUDED.sex,
                gender = EXCLUDED.gender,
                date_of_birth = EXCLUDED.date_of_birth,
                age = EXCLUDED.age,
                email = EXCLUDED.email,
                city = EXCLUDED.city,
                state = EXCLUDED.state,
                country = EXCLUDED.country,
                data = EXCLUDED.data,
                ordering_ts = EXCLUDED.ordering_ts,
                event_id = EXCLUDED.event_id,
                updated_at = now()
            WHERE terra.is_newer(EXCLUDED.ordering_ts, t.ordering_ts)
            RETURNING t.user_id, ''::text AS "record_key!"
            "#,
            &c.user_id as &[&str],
            &c.provider as &[Option<&str>],
            &column(rows, |r| r.first_name.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.last_name.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.sex.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.gender.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.date_of_birth) as &[Option<NaiveDate>],
            &column(rows, |r| r.age) as &[Option<i32>],
            &column(rows, |r| r.email.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.city.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.state.as_deref()) as &[Option<&str>],
            &column(rows, |r| r.country.as_deref()) as &[Option<&str>],
            &c.data as &[&str],
            &c.ordering_ts as &[Option<i64>],
            &c.event_id,
        )
        .fetch_all(conn)
        .await
    }
}
