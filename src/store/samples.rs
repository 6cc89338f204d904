//! Time-series samples: each record's `*_samples` arrays become series (one per kind, in the
//! order Terra sent them), stored as one `terra.sample_series` row each and read through the
//! `terra.samples` view and its per-family views.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::convert::opt_utc;
use super::text::PgText;
use crate::model::{
    ActiveDurationsData, DistanceDataDetailed, HeartRateData, METData, OxygenData,
    TemperatureSample, Timestamp,
};

/// The samples of one kind of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `terra.sample_kinds.kind`.
    pub kind: &'static str,
    /// Each sample's time.
    pub ts: Vec<DateTime<Utc>>,
    /// Each sample's value (`None` only in two-valued kinds).
    pub value: Vec<Option<f64>>,
    /// Each sample's second value; empty for one-valued kinds.
    pub value2: Vec<Option<f64>>,
}

impl Series {
    fn is_paired(&self) -> bool {
        !self.value2.is_empty()
    }

    fn bounds(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let min = self.ts.iter().min().copied().unwrap_or_default();
        let max = self.ts.iter().max().copied().unwrap_or_default();
        (min, max)
    }
}

/// The samples of one record, grouped into series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// One entry per kind that has at least one sample.
    pub series: Vec<Series>,
    /// Samples left out because they have no usable timestamp or no value (they stay in `data`).
    pub skipped: u64,
}

impl Samples {
    /// Number of samples to write.
    pub fn len(&self) -> usize {
        self.series.iter().map(|s| s.ts.len()).sum()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series of `kind`, created on first use.
    fn series_mut(&mut self, kind: &'static str) -> &mut Series {
        // A record has at most a few dozen kinds: a scan is cheaper than a map.
        let at = match self.series.iter().position(|s| s.kind == kind) {
            Some(at) => at,
            None => {
                self.series.push(Series {
                    kind,
                    ts: Vec::new(),
                    value: Vec::new(),
                    value2: Vec::new(),
                });
                self.series.len() - 1
            }
        };
        &mut self.series[at]
    }

    /// Adds a one-valued sample (or counts it as skipped).
    pub fn push(&mut self, kind: &'static str, ts: Option<&Timestamp>, value: Option<f64>) {
        match (opt_utc(ts), value) {
            (Some(ts), Some(value)) => {
                let series = self.series_mut(kind);
                series.ts.push(ts);
                series.value.push(Some(value));
            }
            _ => self.skipped += 1,
        }
    }

    /// Adds a two-valued sample (or counts it as skipped when it has neither value).
    pub fn push_pair(
        &mut self,
        kind: &'static str,
        ts: Option<&Timestamp>,
        value: Option<f64>,
        value2: Option<f64>,
    ) {
        match opt_utc(ts) {
            Some(ts) if value.is_some() || value2.is_some() => {
                let series = self.series_mut(kind);
                series.ts.push(ts);
                series.value.push(value);
                series.value2.push(value2);
            }
            _ => self.skipped += 1,
        }
    }

    /// Adds every item of an optional sample list.
    pub fn each<T>(
        &mut self,
        kind: &'static str,
        items: Option<&Vec<T>>,
        f: impl Fn(&T) -> (Option<&Timestamp>, Option<f64>),
    ) {
        for item in items.into_iter().flatten() {
            let (ts, v) = f(item);
            self.push(kind, ts, v);
        }
    }

    /// Adds every item of an optional two-valued sample list.
    pub fn each_pair<T>(
        &mut self,
        kind: &'static str,
        items: Option<&Vec<T>>,
        f: impl Fn(&T) -> (Option<&Timestamp>, Option<f64>, Option<f64>),
    ) {
        for item in items.into_iter().flatten() {
            let (ts, v, v2) = f(item);
            self.push_pair(kind, ts, v, v2);
        }
    }
}

/// Series that several record types share.
impl Samples {
    /// `heart_rate_data.detailed`: heart rate and heart-rate variability.
    pub fn heart_rate(&mut self, hr: Option<&HeartRateData>) {
        let detailed = hr.and_then(|h| h.detailed.as_ref());
        self.each(
            "heart_rate",
            detailed.and_then(|d| d.hr_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.bpm),
        );
        self.each(
            "hrv_rmssd",
            detailed.and_then(|d| d.hrv_samples_rmssd.as_ref()),
            |s| (s.timestamp.as_ref(), s.hrv_rmssd),
        );
        self.each(
            "hrv_sdnn",
            detailed.and_then(|d| d.hrv_samples_sdnn.as_ref()),
            |s| (s.timestamp.as_ref(), s.hrv_sdnn),
        );
    }

    /// `distance_data.detailed`: steps, distance, floors and elevation.
    pub fn distance(&mut self, detailed: Option<&DistanceDataDetailed>) {
        self.each(
            "steps",
            detailed.and_then(|d| d.step_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.steps),
        );
        self.each(
            "distance",
            detailed.and_then(|d| d.distance_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.distance_meters),
        );
        self.each(
            "floors_climbed",
            detailed.and_then(|d| d.floors_climbed_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.floors_climbed),
        );
        self.each(
            "elevation",
            detailed.and_then(|d| d.elevation_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.elev_meters),
        );
    }

    /// `oxygen_data`: saturation and VO2max.
    pub fn oxygen(&mut self, oxygen: Option<&OxygenData>) {
        self.each(
            "oxygen_saturation",
            oxygen.and_then(|o| o.saturation_samples.as_ref()),
            |s| (s.timestamp.as_ref(), s.percentage),
        );
        self.each("vo2max", oxygen.and_then(|o| o.vo2_samples.as_ref()), |s| {
            (s.timestamp.as_ref(), s.vo2max_ml_per_min_per_kg)
        });
    }

    /// `MET_data`.
    pub fn met(&mut self, met: Option<&METData>) {
        self.each("met", met.and_then(|m| m.MET_samples.as_ref()), |s| {
            (s.timestamp.as_ref(), s.level)
        });
    }

    /// `active_durations_data.activity_levels_samples`.
    pub fn activity_levels(&mut self, durations: Option<&ActiveDurationsData>) {
        self.each(
            "activity_level",
            durations.and_then(|d| d.activity_levels_samples.as_ref()),
            |x| (x.timestamp.as_ref(), x.activity_level.map(|l| l.0.as_f64())),
        );
    }

    /// A temperature series.
    pub fn temperature(&mut self, kind: &'static str, samples: Option<&Vec<TemperatureSample>>) {
        self.each(kind, samples, |s| {
            (s.timestamp.as_ref(), s.temperature_celsius)
        });
    }
}

/// The samples of one written record: they replace whatever the record had.
#[derive(Debug)]
pub struct RecordSamples {
    /// `terra.sample_series.source`: the record's table.
    pub source: &'static str,
    /// The record's user.
    pub user_id: PgText,
    /// The record's key.
    pub record_key: PgText,
    /// Its samples (possibly none: the record's old samples are still removed).
    pub samples: std::sync::Arc<Samples>,
}

/// The bound arrays of one multi-row series insert: every series' samples end to end, each
/// series a slice (1-based, inclusive bounds, as PostgreSQL slices arrays).
#[derive(Default)]
struct SeriesColumns<'a> {
    user_id: Vec<&'a str>,
    source: Vec<&'a str>,
    record_key: Vec<&'a str>,
    kind: Vec<&'a str>,
    min_ts: Vec<DateTime<Utc>>,
    max_ts: Vec<DateTime<Utc>>,
    lo: Vec<i32>,
    hi: Vec<i32>,
    pair_lo: Vec<Option<i32>>,
    pair_hi: Vec<Option<i32>>,
    /// Every sample's time.
    ts: Vec<DateTime<Utc>>,
    /// Every one-valued sample's value (never NULL, so slicing is O(1)); 0 for paired series.
    value: Vec<f64>,
    /// Values of the two-valued series only (may hold NULLs).
    pair_value: Vec<Option<f64>>,
    pair_value2: Vec<Option<f64>>,
}

fn index(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl<'a> SeriesColumns<'a> {
    fn push(&mut self, record: &'a RecordSamples, series: &'a Series) {
        let n = series.ts.len();
        let (min, max) = series.bounds();
        self.user_id.push(&record.user_id);
        self.source.push(record.source);
        self.record_key.push(&record.record_key);
        self.kind.push(series.kind);
        self.min_ts.push(min);
        self.max_ts.push(max);
        self.lo.push(index(self.ts.len() + 1));
        self.hi.push(index(self.ts.len() + n));
        self.ts.extend_from_slice(&series.ts);
        if series.is_paired() {
            self.pair_lo.push(Some(index(self.pair_value.len() + 1)));
            self.pair_hi.push(Some(index(self.pair_value.len() + n)));
            self.pair_value.extend_from_slice(&series.value);
            self.pair_value2.extend_from_slice(&series.value2);
            self.value.extend(std::iter::repeat_n(0.0, n));
        } else {
            self.pair_lo.push(None);
            self.pair_hi.push(None);
            self.value
                .extend(series.value.iter().map(|v| v.unwrap_or(f64::NAN)));
        }
    }
}

/// Replaces the samples of every record in `records` (each record at most once): deletes the
/// series they had, then writes the new ones in one statement. Call only after the records'
/// upserts wrote, in the same transaction. Returns the number of samples written.
pub async fn replace(
    conn: &mut PgConnection,
    records: &[RecordSamples],
) -> Result<u64, sqlx::Error> {
    if records.is_empty() {
        return Ok(0);
    }
    // Even a first insert deletes: samples left behind by a record deleted by hand must not
    // collide with the new ones. With the primary key this costs one probe per record.
    let users: Vec<&str> = records.iter().map(|r| r.user_id.as_str()).collect();
    let sources: Vec<&str> = records.iter().map(|r| r.source).collect();
    let keys: Vec<&str> = records.iter().map(|r| r.record_key.as_str()).collect();
    sqlx::query!(
        r#"
        DELETE FROM terra.sample_series AS s
        USING UNNEST($1::text[], $2::text[], $3::text[]) AS k(user_id, source, record_key)
        WHERE s.user_id = k.user_id AND s.source = k.source AND s.record_key = k.record_key
        "#,
        &users as &[&str],
        &sources as &[&str],
        &keys as &[&str],
    )
    .execute(&mut *conn)
    .await?;

    let mut c = SeriesColumns::default();
    for record in records {
        for series in &record.samples.series {
            c.push(record, series);
        }
    }
    if c.kind.is_empty() {
        return Ok(0);
    }
    sqlx::query!(
        r#"
        INSERT INTO terra.sample_series
            (user_id, source, record_key, kind, min_ts, max_ts, ts, value, value2)
        SELECT s.user_id, s.source, s.record_key, s.kind, s.min_ts, s.max_ts,
               ($11::timestamptz[])[s.lo:s.hi],
               CASE WHEN s.pair_lo IS NULL THEN ($12::float8[])[s.lo:s.hi]
                    ELSE ($13::float8[])[s.pair_lo:s.pair_hi] END,
               CASE WHEN s.pair_lo IS NOT NULL THEN ($14::float8[])[s.pair_lo:s.pair_hi] END
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::timestamptz[], $7::int4[], $8::int4[], $9::int4[], $10::int4[])
            AS s(user_id, source, record_key, kind, min_ts, max_ts, lo, hi, pair_lo, pair_hi)
        "#,
        &c.user_id as &[&str],
        &c.source as &[&str],
        &c.record_key as &[&str],
        &c.kind as &[&str],
        &c.min_ts,
        &c.max_ts,
        &c.lo,
        &c.hi,
        &c.pair_lo as &[Option<i32>],
        &c.pair_hi as &[Option<i32>],
        &c.ts,
        &c.value,
        &c.pair_value as &[Option<f64>],
        &c.pair_value2 as &[Option<f64>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(c.ts.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_group_into_series_by_kind_in_their_order() {
        let mut s = Samples::default();
        let t = |x: &str| Some(Timestamp::new(x));
        s.push("weight", t("2026-07-01T08:00:00Z").as_ref(), Some(80.0));
        s.push("bmi", t("2026-07-01T08:00:00Z").as_ref(), Some(24.0));
        s.push("weight", t("2026-07-01T07:00:00Z").as_ref(), Some(81.0));
        s.push("weight", None, Some(1.0));
        s.push("weight", t("2026-07-01T09:00:00Z").as_ref(), None);
        s.push_pair(
            "position",
            t("2026-07-01T09:00:00Z").as_ref(),
            None,
            Some(2.0),
        );
        s.push_pair("position", t("2026-07-01T09:00:01Z").as_ref(), None, None);
        assert_eq!(s.skipped, 3);
        assert_eq!(s.len(), 4);
        let kinds: Vec<_> = s.series.iter().map(|x| x.kind).collect();
        assert_eq!(kinds, ["weight", "bmi", "position"]);
        assert_eq!(s.series[0].value, [Some(80.0), Some(81.0)]);
        assert!(!s.series[0].is_paired());
        assert!(s.series[2].is_paired());
        let (min, max) = s.series[0].bounds();
        assert!(min < max);
    }

    #[test]
    fn columns_slice_every_series_end_to_end() {
        let t = |x: &str| Some(Timestamp::new(x));
        let mut a = Samples::default();
        a.push("heart_rate", t("2026-07-01T08:00:00Z").as_ref(), Some(60.0));
        a.push("heart_rate", t("2026-07-01T08:00:01Z").as_ref(), Some(61.0));
        a.push_pair(
            "position",
            t("2026-07-01T08:00:00Z").as_ref(),
            Some(1.0),
            None,
        );
        let record = RecordSamples {
            source: "activity",
            user_id: PgText::new("u"),
            record_key: PgText::new("k"),
            samples: a.into(),
        };
        let mut c = SeriesColumns::default();
        for series in &record.samples.series {
            c.push(&record, series);
        }
        assert_eq!((c.lo.clone(), c.hi.clone()), (vec![1, 3], vec![2, 3]));
        assert_eq!(c.pair_lo, [None, Some(1)]);
        assert_eq!(c.value, [60.0, 61.0, 0.0]);
        assert_eq!(c.pair_value, [Some(1.0)]);
        assert_eq!(c.pair_value2, [None]);
    }
}
