-- Typed storage (issue 4): one table per Terra data type, one row per record, plus one long
-- table of time-series samples and views for the common questions.
--
-- Conventions shared by every table below (they are repeated in the COMMENTs):
-- * `record_key` is the natural key of the record for its user (see each table); a copy of a
--   record replaces the stored row when its `ordering_ts` is >= the stored one or when either
--   is missing; an older copy arriving late changes nothing.
-- * `data` is the whole record exactly as Terra sent it (one element of the body's `data`
--   array), with two documented exceptions: a `\u0000` escape becomes `\ufffd` (jsonb cannot
--   hold U+0000; the ledger keeps the raw bytes), and Terra-computed `data_enrichment` values
--   that a later copy sends as null/absent are carried over from the stored copy.
-- * Times: a Terra timestamp with an offset is stored as that instant; one WITHOUT an offset is
--   the user's local wall-clock time, stored as if it were UTC (the original string stays in
--   `data`). A date-only value is stored as midnight UTC.
-- * `day` columns are the first 10 characters of `metadata.start_time`: the user's local
--   calendar day as Terra wrote it, never converted to another zone.

-- The upsert keeps Terra-computed scores that a later copy no longer carries: returns
-- `new_data` with every non-null top-level key of the old `data_enrichment` object that the new
-- copy has null or absent.
CREATE FUNCTION terra.keep_enrichment(new_data jsonb, old_data jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN jsonb_typeof(new_data) IS DISTINCT FROM 'object'
             OR jsonb_typeof(old_data -> 'data_enrichment') IS DISTINCT FROM 'object'
             OR coalesce(jsonb_typeof(new_data -> 'data_enrichment'), 'null')
                NOT IN ('object', 'null')
            THEN new_data
        ELSE (
            SELECT CASE
                WHEN kept.v IS NULL THEN new_data
                ELSE jsonb_set(
                    new_data, '{data_enrichment}',
                    CASE WHEN jsonb_typeof(new_data -> 'data_enrichment') = 'object'
                         THEN new_data -> 'data_enrichment' ELSE '{}'::jsonb END || kept.v)
            END
            FROM (
                SELECT jsonb_object_agg(o.key, o.value) AS v
                FROM jsonb_each(old_data -> 'data_enrichment') AS o
                WHERE jsonb_typeof(o.value) <> 'null'
                  AND coalesce(jsonb_typeof(new_data -> 'data_enrichment' -> o.key), 'null') = 'null'
            ) AS kept
        )
    END
$$;

COMMENT ON FUNCTION terra.keep_enrichment(jsonb, jsonb) IS
    'Carries non-null data_enrichment values of the stored record into a newer copy that has them null or absent (Terra may compute scores after the first delivery).';

-- ---------------------------------------------------------------------------------------------
-- activity
CREATE TABLE terra.activity (
    user_id                     text        NOT NULL,
    record_key                  text        NOT NULL,
    provider                    text,
    summary_id                  text,
    start_time                  timestamptz,
    end_time                    timestamptz,
    day                         date,
    name                        text,
    activity_type               integer,
    activity_type_name          text,
    upload_type                 integer,
    active_seconds              double precision,
    calories                    double precision,
    distance_meters             double precision,
    steps                       bigint,
    avg_hr_bpm                  double precision,
    max_hr_bpm                  double precision,
    avg_watts                   double precision,
    avg_speed_meters_per_second double precision,
    strain_score                double precision,
    data                        jsonb       NOT NULL,
    ordering_ts                 bigint,
    event_id                    bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX activity_user_start_idx ON terra.activity (user_id, start_time);
CREATE INDEX activity_event_id_idx ON terra.activity (event_id);

-- ---------------------------------------------------------------------------------------------
-- sleep
CREATE TABLE terra.sleep (
    user_id          text        NOT NULL,
    record_key       text        NOT NULL,
    provider         text,
    summary_id       text,
    start_time       timestamptz,
    end_time         timestamptz,
    wake_day         date,
    is_nap           boolean,
    upload_type      integer,
    asleep_seconds   double precision,
    deep_seconds     double precision,
    light_seconds    double precision,
    rem_seconds      double precision,
    awake_seconds    double precision,
    in_bed_seconds   double precision,
    sleep_efficiency double precision,
    avg_hr_bpm       double precision,
    avg_hrv_rmssd    double precision,
    sleep_score      double precision,
    readiness_score  double precision,
    data             jsonb       NOT NULL,
    ordering_ts      bigint,
    event_id         bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX sleep_user_start_idx ON terra.sleep (user_id, start_time);
CREATE INDEX sleep_event_id_idx ON terra.sleep (event_id);

-- ---------------------------------------------------------------------------------------------
-- daily
CREATE TABLE terra.daily (
    user_id               text        NOT NULL,
    record_key            text        NOT NULL,
    provider              text,
    day                   date,
    start_time            timestamptz,
    end_time              timestamptz,
    upload_type           integer,
    steps                 bigint,
    distance_meters       double precision,
    floors_climbed        bigint,
    total_burned_calories double precision,
    active_calories       double precision,
    active_seconds        double precision,
    avg_hr_bpm            double precision,
    max_hr_bpm            double precision,
    resting_hr_bpm        double precision,
    avg_stress_level      double precision,
    total_stress_score    double precision,
    data                  jsonb       NOT NULL,
    ordering_ts           bigint,
    event_id              bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX daily_user_day_idx ON terra.daily (user_id, day);
CREATE INDEX daily_event_id_idx ON terra.daily (event_id);

-- ---------------------------------------------------------------------------------------------
-- body
CREATE TABLE terra.body (
    user_id                     text        NOT NULL,
    record_key                  text        NOT NULL,
    provider                    text,
    day                         date,
    start_time                  timestamptz,
    end_time                    timestamptz,
    weight_kg                   double precision,
    bmi                         double precision,
    bodyfat_percentage          double precision,
    resting_hr_bpm              double precision,
    avg_saturation_percentage   double precision,
    avg_blood_glucose_mg_per_dl double precision,
    data                        jsonb       NOT NULL,
    ordering_ts                 bigint,
    event_id                    bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX body_user_day_idx ON terra.body (user_id, day);
CREATE INDEX body_event_id_idx ON terra.body (event_id);

-- ---------------------------------------------------------------------------------------------
-- nutrition
CREATE TABLE terra.nutrition (
    user_id         text        NOT NULL,
    record_key      text        NOT NULL,
    provider        text,
    day             date,
    start_time      timestamptz,
    end_time        timestamptz,
    calories        double precision,
    protein_g       double precision,
    carbohydrates_g double precision,
    fat_g           double precision,
    water_ml        double precision,
    data            jsonb       NOT NULL,
    ordering_ts     bigint,
    event_id        bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX nutrition_user_day_idx ON terra.nutrition (user_id, day);
CREATE INDEX nutrition_event_id_idx ON terra.nutrition (event_id);

-- ---------------------------------------------------------------------------------------------
-- menstruation
CREATE TABLE terra.menstruation (
    user_id            text        NOT NULL,
    record_key         text        NOT NULL,
    provider           text,
    day                date,
    start_time         timestamptz,
    end_time           timestamptz,
    period_length_days integer,
    cycle_length_days  integer,
    day_in_cycle       integer,
    current_phase      integer,
    current_phase_name text,
    period_start_date  date,
    is_predicted_cycle boolean,
    data               jsonb       NOT NULL,
    ordering_ts        bigint,
    event_id           bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);
CREATE INDEX menstruation_user_day_idx ON terra.menstruation (user_id, day);
CREATE INDEX menstruation_event_id_idx ON terra.menstruation (event_id);

-- ---------------------------------------------------------------------------------------------
-- athlete
CREATE TABLE terra.athlete (
    user_id       text        NOT NULL PRIMARY KEY,
    provider      text,
    start_time    timestamptz,
    end_time      timestamptz,
    first_name    text,
    last_name     text,
    sex           text,
    gender        text,
    date_of_birth date,
    age           integer,
    email         text,
    city          text,
    state         text,
    country       text,
    data          jsonb       NOT NULL,
    ordering_ts   bigint,
    event_id      bigint      NOT NULL REFERENCES terra.deliveries (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX athlete_event_id_idx ON terra.athlete (event_id);

-- ---------------------------------------------------------------------------------------------
-- samples: every *_samples array, one row per sample.
CREATE TABLE terra.samples (
    user_id    text             NOT NULL,
    source     text             NOT NULL,
    record_key text             NOT NULL,
    kind       text             NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision,
    value2     double precision,
    CONSTRAINT samples_source_check
        CHECK (source IN ('activity', 'sleep', 'daily', 'body', 'nutrition', 'menstruation'))
);
-- Reading: a user's samples of one kind over a time range.
CREATE INDEX samples_user_kind_ts_idx ON terra.samples (user_id, kind, ts);
-- Writing: the samples of one record, deleted when the record is replaced.
CREATE INDEX samples_record_idx ON terra.samples (user_id, source, record_key);

-- What each sample kind is and where it comes from in Terra's JSON.
CREATE TABLE terra.sample_kinds (
    kind        text PRIMARY KEY,
    unit        text NOT NULL,
    value2      text,
    terra_paths text NOT NULL,
    description text NOT NULL
);

INSERT INTO terra.sample_kinds (kind, unit, value2, terra_paths, description) VALUES
    ('heart_rate', 'bpm', NULL,
     'heart_rate_data.detailed.hr_samples[].bpm (activity, daily, sleep); heart_data.heart_rate_data.detailed.hr_samples[].bpm (body)',
     'Heart rate.'),
    ('hrv_rmssd', 'ms', NULL,
     'heart_rate_data.detailed.hrv_samples_rmssd[].hrv_rmssd (activity, daily, sleep; body under heart_data)',
     'Heart rate variability, RMSSD.'),
    ('hrv_sdnn', 'ms', NULL,
     'heart_rate_data.detailed.hrv_samples_sdnn[].hrv_sdnn (activity, daily, sleep; body under heart_data)',
     'Heart rate variability, SDNN.'),
    ('rr_interval', 'ms', 'hr_bpm',
     'heart_data.rr_interval_samples[].rr_interval_ms, .hr_bpm (body)',
     'Beat-to-beat (RR) interval; value2 is the heart rate the device derived from it.'),
    ('pulse_wave_velocity', 'm/s', NULL,
     'heart_data.pulse_wave_velocity_samples[].pulse_wave_velocity_meters_per_second (body)',
     'Pulse wave velocity.'),
    ('steps', 'steps (cumulative)', NULL,
     'distance_data.detailed.step_samples[].steps (activity, daily)',
     'Steps since the start of the record (cumulative, as Terra sends them).'),
    ('distance', 'm (cumulative)', NULL,
     'distance_data.detailed.distance_samples[].distance_meters (activity, daily)',
     'Distance since the start of the record (cumulative).'),
    ('floors_climbed', 'floors (cumulative)', NULL,
     'distance_data.detailed.floors_climbed_samples[].floors_climbed (activity, daily)',
     'Floors climbed since the start of the record (cumulative).'),
    ('elevation', 'm', NULL,
     'distance_data.detailed.elevation_samples[].elev_meters (activity, daily)',
     'Altitude above sea level.'),
    ('calories', 'kcal', NULL,
     'calories_data.calorie_samples[].calories (activity, daily)',
     'Calories burned, as the provider samples them.'),
    ('power', 'W', NULL,
     'power_data.power_samples[].watts (activity)',
     'Power output.'),
    ('speed', 'm/s', NULL,
     'movement_data.speed_samples[].speed_meters_per_second (activity)',
     'Speed.'),
    ('cadence', 'rpm', NULL,
     'movement_data.cadence_samples[].cadence_rpm (activity)',
     'Cadence.'),
    ('torque', 'N·m', NULL,
     'movement_data.torque_samples[].torque_newton_meters (activity)',
     'Torque.'),
    ('position', 'degrees latitude', 'degrees longitude',
     'position_data.position_samples[].coords_lat_lng_deg[0], [1] (activity)',
     'GPS position: value is the latitude, value2 the longitude.'),
    ('oxygen_saturation', '%', NULL,
     'oxygen_data.saturation_samples[].percentage (activity, daily, body); respiration_data.oxygen_saturation_data.samples[].percentage (sleep)',
     'Oxygen saturation (SpO2 or SmO2).'),
    ('vo2max', 'ml/min/kg', NULL,
     'oxygen_data.vo2_samples[].vo2max_ml_per_min_per_kg (activity, daily, body)',
     'VO2max.'),
    ('met', 'MET', NULL,
     'MET_data.MET_samples[].level (activity, daily)',
     'Metabolic equivalent of task.'),
    ('activity_level', 'ActivityLevel code', NULL,
     'active_durations_data.activity_levels_samples[].activity_level (activity, daily)',
     'Activity intensity code (0 unknown, 1 rest, 2 inactive, 3 low, 4 medium, 5 high).'),
    ('stress', 'level', NULL,
     'stress_data.samples[].level (daily)',
     'Stress level.'),
    ('body_battery', 'level', NULL,
     'stress_data.body_battery_samples[].level (daily)',
     'Body battery energy level.'),
    ('sleep_stage', 'SleepLevel code', NULL,
     'sleep_durations_data.hypnogram_samples[].level (sleep)',
     'Sleep stage from this time on (0 unknown, 1 awake, 2 sleeping, 3 out of bed, 4 light, 5 deep, 6 REM).'),
    ('breathing_rate', 'breaths/min', NULL,
     'respiration_data.breaths_data.samples[].breaths_per_min (sleep)',
     'Breathing rate.'),
    ('snoring', 's', NULL,
     'respiration_data.snoring_data.samples[].duration_seconds (sleep)',
     'Duration of a snoring episode.'),
    ('glucose', 'mg/dL', NULL,
     'glucose_data.blood_glucose_samples[].blood_glucose_mg_per_dL (body)',
     'Blood glucose.'),
    ('glucose_detailed', 'mg/dL', NULL,
     'glucose_data.detailed_blood_glucose_samples[].blood_glucose_mg_per_dL (body)',
     'Blood glucose, high-frequency (continuous monitor) series.'),
    ('ketone', 'mg/dL', NULL,
     'ketone_data.ketone_samples[].ketone_mg_per_dL (body)',
     'Ketones.'),
    ('blood_pressure', 'mmHg systolic', 'mmHg diastolic',
     'blood_pressure_data.blood_pressure_samples[].systolic_bp, .diastolic_bp (body)',
     'Blood pressure: value is systolic, value2 diastolic.'),
    ('body_temperature', '°C', NULL,
     'temperature_data.body_temperature_samples[].temperature_celsius (body)',
     'Body temperature.'),
    ('skin_temperature', '°C', NULL,
     'temperature_data.skin_temperature_samples[].temperature_celsius (body)',
     'Skin temperature.'),
    ('ambient_temperature', '°C', NULL,
     'temperature_data.ambient_temperature_samples[].temperature_celsius (body)',
     'Ambient temperature.'),
    ('hydration', 'kg', NULL,
     'hydration_data.hydration_amount_samples[].hydration_kg (body)',
     'Body hydration.'),
    ('weight', 'kg', NULL,
     'measurements_data.measurements[].weight_kg at .measurement_time (body)',
     'Weight measurement.'),
    ('bmi', 'kg/m²', NULL,
     'measurements_data.measurements[].BMI at .measurement_time (body)',
     'BMI measurement.'),
    ('bodyfat_percentage', '%', NULL,
     'measurements_data.measurements[].bodyfat_percentage at .measurement_time (body)',
     'Body fat measurement.'),
    ('drink', 'drink_unit of the sample', NULL,
     'drink_samples[].drink_volume (nutrition)',
     'A drink; the unit code is in data (drink_samples[].drink_unit).'),
    ('menstruation_flow', 'MenstruationFlow code', NULL,
     'menstruation_data.menstruation_flow[].flow (menstruation)',
     'Menstrual flow code (0 unknown, 1 none, 2 light, 3 medium, 4 heavy, 5 had).');

-- Large records (hours of 1 Hz samples) compress far faster with lz4 than with pglz.
DO $$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOREACH t IN ARRAY ARRAY['activity', 'sleep', 'daily', 'body', 'nutrition',
                                 'menstruation', 'athlete'] LOOP
            EXECUTE format('ALTER TABLE terra.%I ALTER COLUMN data SET COMPRESSION lz4', t);
        END LOOP;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Sample views, one per family. Filter them by user_id and ts: they read
-- terra.samples through samples_user_kind_ts_idx.
CREATE VIEW terra.heart_rate_samples AS
    SELECT user_id, ts, value AS bpm, source, record_key
    FROM terra.samples WHERE kind = 'heart_rate';

CREATE VIEW terra.hrv_samples AS
    SELECT user_id, ts, CASE kind WHEN 'hrv_rmssd' THEN 'rmssd' ELSE 'sdnn' END AS method,
           value AS hrv_ms, source, record_key
    FROM terra.samples WHERE kind IN ('hrv_rmssd', 'hrv_sdnn');

CREATE VIEW terra.position_samples AS
    SELECT user_id, ts, value AS lat, value2 AS lng, source, record_key
    FROM terra.samples WHERE kind = 'position';

CREATE VIEW terra.sleep_stage_samples AS
    SELECT user_id, ts, value::integer AS level,
           CASE value::integer
               WHEN 0 THEN 'unknown' WHEN 1 THEN 'awake' WHEN 2 THEN 'sleeping'
               WHEN 3 THEN 'out_of_bed' WHEN 4 THEN 'light' WHEN 5 THEN 'deep' WHEN 6 THEN 'rem'
           END AS stage,
           source, record_key
    FROM terra.samples WHERE kind = 'sleep_stage';

CREATE VIEW terra.oxygen_saturation_samples AS
    SELECT user_id, ts, value AS percentage, source, record_key
    FROM terra.samples WHERE kind = 'oxygen_saturation';

CREATE VIEW terra.glucose_samples AS
    SELECT user_id, ts, value AS mg_per_dl, kind = 'glucose_detailed' AS detailed, source, record_key
    FROM terra.samples WHERE kind IN ('glucose', 'glucose_detailed');

CREATE VIEW terra.stress_samples AS
    SELECT user_id, ts, value AS level, source, record_key
    FROM terra.samples WHERE kind = 'stress';

CREATE VIEW terra.temperature_samples AS
    SELECT user_id, ts, left(kind, -length('_temperature')) AS site, value AS celsius,
           source, record_key
    FROM terra.samples
    WHERE kind IN ('body_temperature', 'skin_temperature', 'ambient_temperature');

CREATE VIEW terra.weight_samples AS
    SELECT user_id, ts, value AS weight_kg, source, record_key
    FROM terra.samples WHERE kind = 'weight';

CREATE VIEW terra.blood_pressure_samples AS
    SELECT user_id, ts, value AS systolic_mmhg, value2 AS diastolic_mmhg, source, record_key
    FROM terra.samples WHERE kind = 'blood_pressure';

-- ---------------------------------------------------------------------------------------------
-- Views for the common questions.
CREATE VIEW terra.workouts AS
    SELECT user_id, provider, record_key, summary_id, day, start_time, end_time,
           extract(epoch FROM end_time - start_time)::double precision AS duration_seconds,
           name, activity_type, activity_type_name, upload_type, active_seconds, calories,
           distance_meters, distance_meters / 1000.0 AS distance_km, steps, avg_hr_bpm,
           max_hr_bpm, avg_watts, avg_speed_meters_per_second, strain_score, updated_at
    FROM terra.activity;

CREATE VIEW terra.sleep_sessions AS
    SELECT user_id, provider, record_key, summary_id, wake_day, start_time, end_time, is_nap,
           extract(epoch FROM end_time - start_time)::double precision AS duration_seconds,
           asleep_seconds / 3600.0 AS asleep_hours, asleep_seconds, deep_seconds, light_seconds,
           rem_seconds, awake_seconds, in_bed_seconds, sleep_efficiency, avg_hr_bpm,
           avg_hrv_rmssd, sleep_score, readiness_score, updated_at
    FROM terra.sleep;

CREATE VIEW terra.daily_summary AS
    WITH days AS (
        SELECT user_id, day FROM terra.daily WHERE day IS NOT NULL
        UNION SELECT user_id, day FROM terra.body WHERE day IS NOT NULL
        UNION SELECT user_id, day FROM terra.nutrition WHERE day IS NOT NULL
        UNION SELECT user_id, day FROM terra.activity WHERE day IS NOT NULL
        UNION SELECT user_id, wake_day FROM terra.sleep WHERE wake_day IS NOT NULL
    )
    SELECT d.user_id, d.day,
           dl.steps, dl.distance_meters, dl.floors_climbed, dl.total_burned_calories,
           dl.active_calories, dl.active_seconds, dl.avg_hr_bpm,
           coalesce(dl.resting_hr_bpm, b.resting_hr_bpm) AS resting_hr_bpm,
           dl.avg_stress_level,
           sl.sleep_sessions, sl.asleep_seconds, sl.sleep_score,
           w.workouts, w.workout_seconds, w.workout_calories, w.workout_distance_meters,
           b.weight_kg, b.bodyfat_percentage,
           n.calories AS calories_eaten, n.protein_g, n.carbohydrates_g, n.fat_g, n.water_ml
    FROM days d
    LEFT JOIN terra.daily dl ON dl.user_id = d.user_id AND dl.day = d.day
    LEFT JOIN terra.body b ON b.user_id = d.user_id AND b.day = d.day
    LEFT JOIN terra.nutrition n ON n.user_id = d.user_id AND n.day = d.day
    LEFT JOIN LATERAL (
        SELECT count(*) AS sleep_sessions, sum(s.asleep_seconds) AS asleep_seconds,
               max(s.sleep_score) AS sleep_score
        FROM terra.sleep s
        WHERE s.user_id = d.user_id AND s.wake_day = d.day AND s.is_nap IS NOT TRUE
    ) sl ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS workouts, sum(a.active_seconds) AS workout_seconds,
               sum(a.calories) AS workout_calories,
               sum(a.distance_meters) AS workout_distance_meters
        FROM terra.activity a
        WHERE a.user_id = d.user_id AND a.day = d.day
    ) w ON true;

-- ---------------------------------------------------------------------------------------------
-- Comments: every table and typed column names the Terra JSON path it comes from.
COMMENT ON TABLE terra.activity IS
    'One row per workout (Terra `activity` data[] item), keyed per user by metadata.summary_id; without one, by ''start_time:'' || metadata.start_time; without either, by ''sha256:'' || hex digest of the record''s JSON text.';
COMMENT ON TABLE terra.sleep IS
    'One row per sleep session (Terra `sleep` data[] item), keyed per user by metadata.summary_id; without one, by ''start_time:'' || metadata.start_time; without either, by ''sha256:'' || hex digest of the record''s JSON text.';
COMMENT ON TABLE terra.daily IS
    'One row per user and day (Terra `daily` data[] item): a cumulative snapshot of the day, each newer copy replaces the row (never added up).';
COMMENT ON TABLE terra.body IS
    'One row per user and day (Terra `body` data[] item); a newer copy replaces the row.';
COMMENT ON TABLE terra.nutrition IS
    'One row per user and day (Terra `nutrition` data[] item); a newer copy replaces the row.';
COMMENT ON TABLE terra.menstruation IS
    'One row per user and day (Terra `menstruation` data[] item); a newer copy replaces the row.';
COMMENT ON TABLE terra.athlete IS
    'The user''s profile (Terra `athlete` event, its `athlete` object); one row per user.';
COMMENT ON TABLE terra.samples IS
    'Every sample of the *_samples arrays of the stored records, one row each; replaced together with its record. Samples without a usable timestamp or value stay only in the record''s data. See terra.sample_kinds for each kind''s unit and Terra path.';
COMMENT ON TABLE terra.sample_kinds IS
    'Reference: the sample kinds of terra.samples, their units and the Terra JSON paths they come from.';

-- Columns every record table shares (the DO block keeps these identical across tables).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['activity', 'sleep', 'daily', 'body', 'nutrition',
                             'menstruation', 'athlete'] LOOP
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.user_id IS 'user.user_id of the event envelope.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.provider IS 'user.provider of the event envelope (GARMIN, OURA, …).'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.data IS 'The whole record as Terra sent it (lossless), except: a \u0000 escape becomes \ufffd (jsonb cannot hold U+0000; terra.deliveries.body keeps the raw bytes), and non-null data_enrichment values of an earlier copy are kept where the newer copy has them null or absent.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.ordering_ts IS 'x-terra-ordering-timestamp (ms) of the delivery that wrote this row; a copy replaces the row when its value is >= this one, or when either is missing.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.event_id IS 'The ledger row (terra.deliveries.id) whose body wrote this row.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.created_at IS 'When the record was first stored.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.updated_at IS 'When the record was last replaced by a copy.'$c$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['activity', 'sleep', 'daily', 'body', 'nutrition', 'menstruation'] LOOP
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.start_time IS 'metadata.start_time. Without a UTC offset it is the local wall-clock time stored as if UTC; a date alone is midnight UTC. The original string stays in data.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.end_time IS 'metadata.end_time. Without a UTC offset it is the local wall-clock time stored as if UTC; a date alone is midnight UTC. The original string stays in data.'$c$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['daily', 'body', 'nutrition', 'menstruation'] LOOP
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.record_key IS 'Natural key for the user: the day as text (first 10 characters of metadata.start_time); ''sha256:'' || hex digest of the record''s JSON text when it has no start time.'$c$, t);
        EXECUTE format($c$COMMENT ON COLUMN terra.%I.day IS 'First 10 characters of metadata.start_time: the local calendar day as Terra wrote it (never converted to another zone); NULL when absent.'$c$, t);
    END LOOP;
END
$$;

COMMENT ON COLUMN terra.athlete.start_time IS 'Always NULL: a profile has no time span (kept so every table has the same basic columns).';
COMMENT ON COLUMN terra.athlete.end_time IS 'Always NULL: a profile has no time span (kept so every table has the same basic columns).';

COMMENT ON COLUMN terra.activity.record_key IS 'Natural key for the user: metadata.summary_id; else ''start_time:'' || metadata.start_time; else ''sha256:'' || hex digest of the record''s JSON text.';
COMMENT ON COLUMN terra.activity.summary_id IS 'metadata.summary_id (unique per user).';
COMMENT ON COLUMN terra.activity.day IS 'First 10 characters of metadata.start_time: the local calendar day the workout started.';
COMMENT ON COLUMN terra.activity.name IS 'metadata.name.';
COMMENT ON COLUMN terra.activity.activity_type IS 'metadata.type (Terra ActivityType code; 8 = Running).';
COMMENT ON COLUMN terra.activity.activity_type_name IS 'Terra''s title for metadata.type (e.g. Running); NULL for a code not yet known.';
COMMENT ON COLUMN terra.activity.upload_type IS 'metadata.upload_type (Terra UploadType code).';
COMMENT ON COLUMN terra.activity.active_seconds IS 'active_durations_data.activity_seconds.';
COMMENT ON COLUMN terra.activity.calories IS 'calories_data.total_burned_calories (total burned, kcal).';
COMMENT ON COLUMN terra.activity.distance_meters IS 'distance_data.summary.distance_meters.';
COMMENT ON COLUMN terra.activity.steps IS 'distance_data.summary.steps (a fractional value is rounded; the exact one stays in data).';
COMMENT ON COLUMN terra.activity.avg_hr_bpm IS 'heart_rate_data.summary.avg_hr_bpm.';
COMMENT ON COLUMN terra.activity.max_hr_bpm IS 'heart_rate_data.summary.max_hr_bpm.';
COMMENT ON COLUMN terra.activity.avg_watts IS 'power_data.avg_watts.';
COMMENT ON COLUMN terra.activity.avg_speed_meters_per_second IS 'movement_data.avg_speed_meters_per_second.';
COMMENT ON COLUMN terra.activity.strain_score IS 'data_enrichment.strain_score (Terra-computed; a later copy with null keeps the stored value).';

COMMENT ON COLUMN terra.sleep.record_key IS 'Natural key for the user: metadata.summary_id; else ''start_time:'' || metadata.start_time (many providers send no summary_id); else ''sha256:'' || hex digest of the record''s JSON text.';
COMMENT ON COLUMN terra.sleep.summary_id IS 'metadata.summary_id (absent for some providers).';
COMMENT ON COLUMN terra.sleep.wake_day IS 'First 10 characters of metadata.end_time (else of start_time): the local calendar day the session ended.';
COMMENT ON COLUMN terra.sleep.is_nap IS 'metadata.is_nap.';
COMMENT ON COLUMN terra.sleep.upload_type IS 'metadata.upload_type (Terra SleepUploadType code).';
COMMENT ON COLUMN terra.sleep.asleep_seconds IS 'sleep_durations_data.asleep.duration_asleep_state_seconds.';
COMMENT ON COLUMN terra.sleep.deep_seconds IS 'sleep_durations_data.asleep.duration_deep_sleep_state_seconds.';
COMMENT ON COLUMN terra.sleep.light_seconds IS 'sleep_durations_data.asleep.duration_light_sleep_state_seconds.';
COMMENT ON COLUMN terra.sleep.rem_seconds IS 'sleep_durations_data.asleep.duration_REM_sleep_state_seconds.';
COMMENT ON COLUMN terra.sleep.awake_seconds IS 'sleep_durations_data.awake.duration_awake_state_seconds.';
COMMENT ON COLUMN terra.sleep.in_bed_seconds IS 'sleep_durations_data.other.duration_in_bed_seconds.';
COMMENT ON COLUMN terra.sleep.sleep_efficiency IS 'sleep_durations_data.sleep_efficiency (percent).';
COMMENT ON COLUMN terra.sleep.avg_hr_bpm IS 'heart_rate_data.summary.avg_hr_bpm.';
COMMENT ON COLUMN terra.sleep.avg_hrv_rmssd IS 'heart_rate_data.summary.avg_hrv_rmssd.';
COMMENT ON COLUMN terra.sleep.sleep_score IS 'data_enrichment.sleep_score (Terra-computed; a later copy with null keeps the stored value).';
COMMENT ON COLUMN terra.sleep.readiness_score IS 'data_enrichment.readiness_score (Terra-computed; a later copy with null keeps the stored value).';

COMMENT ON COLUMN terra.daily.upload_type IS 'metadata.upload_type (Terra UploadType code).';
COMMENT ON COLUMN terra.daily.steps IS 'distance_data.steps (a fractional value is rounded; the exact one stays in data).';
COMMENT ON COLUMN terra.daily.distance_meters IS 'distance_data.distance_meters.';
COMMENT ON COLUMN terra.daily.floors_climbed IS 'distance_data.floors_climbed (a fractional value is rounded).';
COMMENT ON COLUMN terra.daily.total_burned_calories IS 'calories_data.total_burned_calories (kcal, BMR included).';
COMMENT ON COLUMN terra.daily.active_calories IS 'calories_data.net_activity_calories (kcal, BMR excluded).';
COMMENT ON COLUMN terra.daily.active_seconds IS 'active_durations_data.activity_seconds.';
COMMENT ON COLUMN terra.daily.avg_hr_bpm IS 'heart_rate_data.summary.avg_hr_bpm.';
COMMENT ON COLUMN terra.daily.max_hr_bpm IS 'heart_rate_data.summary.max_hr_bpm.';
COMMENT ON COLUMN terra.daily.resting_hr_bpm IS 'heart_rate_data.summary.resting_hr_bpm.';
COMMENT ON COLUMN terra.daily.avg_stress_level IS 'stress_data.avg_stress_level.';
COMMENT ON COLUMN terra.daily.total_stress_score IS 'data_enrichment.total_stress_score (Terra-computed; a later copy with null keeps the stored value).';

COMMENT ON COLUMN terra.body.weight_kg IS 'measurements_data.day_avg_weight_kg; else the latest measurements_data.measurements[].weight_kg of the day (by measurement_time).';
COMMENT ON COLUMN terra.body.bmi IS 'measurements_data.day_avg_bmi; else the latest measurements_data.measurements[].BMI of the day.';
COMMENT ON COLUMN terra.body.bodyfat_percentage IS 'measurements_data.day_avg_bodyfat_percentage; else the latest measurements_data.measurements[].bodyfat_percentage of the day.';
COMMENT ON COLUMN terra.body.resting_hr_bpm IS 'heart_data.heart_rate_data.summary.resting_hr_bpm.';
COMMENT ON COLUMN terra.body.avg_saturation_percentage IS 'oxygen_data.avg_saturation_percentage.';
COMMENT ON COLUMN terra.body.avg_blood_glucose_mg_per_dl IS 'glucose_data.day_avg_blood_glucose_mg_per_dL (else the lower-case day_avg_blood_glucose_mg_per_dl variant).';

COMMENT ON COLUMN terra.nutrition.calories IS 'summary.macros.calories (kcal eaten).';
COMMENT ON COLUMN terra.nutrition.protein_g IS 'summary.macros.protein_g.';
COMMENT ON COLUMN terra.nutrition.carbohydrates_g IS 'summary.macros.carbohydrates_g.';
COMMENT ON COLUMN terra.nutrition.fat_g IS 'summary.macros.fat_g.';
COMMENT ON COLUMN terra.nutrition.water_ml IS 'summary.water_ml.';

COMMENT ON COLUMN terra.menstruation.period_length_days IS 'menstruation_data.period_length_days.';
COMMENT ON COLUMN terra.menstruation.cycle_length_days IS 'menstruation_data.cycle_length_days.';
COMMENT ON COLUMN terra.menstruation.day_in_cycle IS 'menstruation_data.day_in_cycle.';
COMMENT ON COLUMN terra.menstruation.current_phase IS 'menstruation_data.current_phase (Terra MenstruationInterval code; 1 = Period).';
COMMENT ON COLUMN terra.menstruation.current_phase_name IS 'Terra''s title for menstruation_data.current_phase; NULL for a code not yet known.';
COMMENT ON COLUMN terra.menstruation.period_start_date IS 'menstruation_data.period_start_date (its date part).';
COMMENT ON COLUMN terra.menstruation.is_predicted_cycle IS 'menstruation_data.is_predicted_cycle.';

COMMENT ON COLUMN terra.athlete.first_name IS 'athlete.first_name.';
COMMENT ON COLUMN terra.athlete.last_name IS 'athlete.last_name.';
COMMENT ON COLUMN terra.athlete.sex IS 'athlete.sex.';
COMMENT ON COLUMN terra.athlete.gender IS 'athlete.gender.';
COMMENT ON COLUMN terra.athlete.date_of_birth IS 'athlete.date_of_birth (its date part; NULL when not a date).';
COMMENT ON COLUMN terra.athlete.age IS 'athlete.age.';
COMMENT ON COLUMN terra.athlete.email IS 'athlete.email.';
COMMENT ON COLUMN terra.athlete.city IS 'athlete.city.';
COMMENT ON COLUMN terra.athlete.state IS 'athlete.state.';
COMMENT ON COLUMN terra.athlete.country IS 'athlete.country.';

COMMENT ON COLUMN terra.samples.user_id IS 'user.user_id of the record.';
COMMENT ON COLUMN terra.samples.source IS 'Table of the record the sample belongs to: activity, sleep, daily, body, nutrition or menstruation.';
COMMENT ON COLUMN terra.samples.record_key IS 'record_key of the record (in the table named by source).';
COMMENT ON COLUMN terra.samples.kind IS 'What was measured; see terra.sample_kinds for the unit and the Terra path.';
COMMENT ON COLUMN terra.samples.ts IS 'The sample''s timestamp (measurement_time for body measurements). Without a UTC offset it is the local wall-clock time stored as if UTC; the original string stays in the record''s data.';
COMMENT ON COLUMN terra.samples.value IS 'The measured value, in the unit of terra.sample_kinds.unit (latitude for positions, systolic for blood pressure).';
COMMENT ON COLUMN terra.samples.value2 IS 'Second value for two-valued kinds (longitude for positions, diastolic for blood pressure, hr_bpm for RR intervals); NULL otherwise.';

COMMENT ON VIEW terra.heart_rate_samples IS 'Heart-rate samples of every source (activity, daily, sleep, body).';
COMMENT ON VIEW terra.hrv_samples IS 'Heart-rate variability samples (RMSSD and SDNN).';
COMMENT ON VIEW terra.position_samples IS 'GPS positions of workouts.';
COMMENT ON VIEW terra.sleep_stage_samples IS 'Hypnogram: the sleep stage from each ts on.';
COMMENT ON VIEW terra.oxygen_saturation_samples IS 'Oxygen saturation samples.';
COMMENT ON VIEW terra.glucose_samples IS 'Blood glucose samples.';
COMMENT ON VIEW terra.stress_samples IS 'Stress level samples.';
COMMENT ON VIEW terra.temperature_samples IS 'Body, skin and ambient temperature samples.';
COMMENT ON VIEW terra.weight_samples IS 'Individual weight measurements.';
COMMENT ON VIEW terra.blood_pressure_samples IS 'Blood pressure samples.';
COMMENT ON VIEW terra.workouts IS 'Workouts with their duration and the main summary figures.';
COMMENT ON VIEW terra.sleep_sessions IS 'Sleep sessions with durations; wake_day is the local day the session ended.';
COMMENT ON VIEW terra.daily_summary IS 'One row per user and local day: daily totals, main sleep ending that day, workouts started that day, body and nutrition.';
