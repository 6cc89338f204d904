-- Batch-shaped storage.
--
-- 1. The overwrite rule, written once: a copy replaces the stored one when its ordering
--    timestamp is >= the stored one, or when either is missing.
CREATE FUNCTION terra.is_newer(new_ts bigint, stored_ts bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT new_ts IS NULL OR stored_ts IS NULL OR new_ts >= stored_ts
$$;

COMMENT ON FUNCTION terra.is_newer(bigint, bigint) IS
    'The overwrite rule of every record table: a copy with x-terra-ordering-timestamp new_ts replaces the stored one (stored_ts) when new_ts >= stored_ts, or when either is missing.';

-- 2. Samples as series: one row per record and kind, holding that record's samples of that
--    kind as arrays (in the order Terra sent them). A record's samples are a handful of rows
--    instead of one row per sample, which is what keeps writing (and replacing) them cheap.
--    terra.samples becomes a view with the same columns as the table it replaces.
CREATE TABLE terra.sample_series (
    user_id    text               NOT NULL,
    source     text               NOT NULL,
    record_key text               NOT NULL,
    kind       text               NOT NULL,
    min_ts     timestamptz        NOT NULL,
    max_ts     timestamptz        NOT NULL,
    ts         timestamptz[]      NOT NULL,
    value      double precision[] NOT NULL,
    value2     double precision[],
    CONSTRAINT sample_series_pkey PRIMARY KEY (user_id, source, record_key, kind),
    CONSTRAINT sample_series_source_check
        CHECK (source IN ('activity', 'sleep', 'daily', 'body', 'nutrition', 'menstruation')),
    CONSTRAINT sample_series_length_check
        CHECK (cardinality(value) = cardinality(ts)
               AND (value2 IS NULL OR cardinality(value2) = cardinality(ts)))
);
-- Reading: a user's series of one kind (the views' filters on user_id and kind), in time order.
CREATE INDEX sample_series_user_kind_idx ON terra.sample_series (user_id, kind, min_ts);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE terra.sample_series ALTER COLUMN ts SET COMPRESSION lz4;
        ALTER TABLE terra.sample_series ALTER COLUMN value SET COMPRESSION lz4;
        ALTER TABLE terra.sample_series ALTER COLUMN value2 SET COMPRESSION lz4;
    END IF;
END
$$;

INSERT INTO terra.sample_series (user_id, source, record_key, kind, min_ts, max_ts, ts, value, value2)
SELECT user_id, source, record_key, kind, min(ts), max(ts),
       array_agg(ts ORDER BY ts), array_agg(value ORDER BY ts),
       CASE WHEN kind IN ('position', 'rr_interval', 'blood_pressure')
            THEN array_agg(value2 ORDER BY ts) END
FROM terra.samples
GROUP BY user_id, source, record_key, kind;

DROP VIEW terra.heart_rate_samples, terra.hrv_samples, terra.position_samples,
    terra.sleep_stage_samples, terra.oxygen_saturation_samples, terra.glucose_samples,
    terra.stress_samples, terra.temperature_samples, terra.weight_samples,
    terra.blood_pressure_samples;
DROP TABLE terra.samples;

CREATE VIEW terra.samples AS
    SELECT s.user_id, s.source, s.record_key, s.kind, u.ts, u.value, u.value2
    FROM terra.sample_series s
    CROSS JOIN LATERAL unnest(s.ts, s.value, s.value2) AS u (ts, value, value2);

-- Sample views, one per family, as before. Filter them by user_id (and ts): they read
-- terra.sample_series through sample_series_user_kind_idx.
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

COMMENT ON TABLE terra.sample_series IS
    'Every *_samples array of the stored records as series: one row per record (source, user_id, record_key) and kind, replaced together with its record. Read it through terra.samples (one row per sample) or the per-family views. Samples without a usable timestamp or value stay only in the record''s data. See terra.sample_kinds for each kind''s unit and Terra path.';
COMMENT ON COLUMN terra.sample_series.user_id IS 'user.user_id of the record.';
COMMENT ON COLUMN terra.sample_series.source IS 'Table of the record the samples belong to: activity, sleep, daily, body, nutrition or menstruation.';
COMMENT ON COLUMN terra.sample_series.record_key IS 'record_key of the record (in the table named by source).';
COMMENT ON COLUMN terra.sample_series.kind IS 'What was measured; see terra.sample_kinds for the unit and the Terra path.';
COMMENT ON COLUMN terra.sample_series.min_ts IS 'The earliest ts of the series.';
COMMENT ON COLUMN terra.sample_series.max_ts IS 'The latest ts of the series.';
COMMENT ON COLUMN terra.sample_series.ts IS 'Each sample''s timestamp, in the order Terra sent them (measurement_time for body measurements). Without a UTC offset it is the local wall-clock time stored as if UTC; the original string stays in the record''s data.';
COMMENT ON COLUMN terra.sample_series.value IS 'Each sample''s value, in the unit of terra.sample_kinds.unit (latitude for positions, systolic for blood pressure).';
COMMENT ON COLUMN terra.sample_series.value2 IS 'Each sample''s second value for two-valued kinds (longitude for positions, diastolic for blood pressure, hr_bpm for RR intervals); NULL for other kinds.';

COMMENT ON VIEW terra.samples IS
    'Every sample of the stored records, one row each (terra.sample_series unnested); replaced together with its record. Filter by user_id and kind (or a per-family view) to read through the index.';
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

-- 3. Re-keying and the delete policy, on series. Neither waits for a ledger row that a worker
--    holds (SKIP LOCKED): a worker holding a delivery waits for the user's row lock, which the
--    caller holds, so waiting here could deadlock. The worker that holds such a delivery
--    handles it under the new state.
CREATE OR REPLACE FUNCTION terra.rekey_user(old_id text, new_id text) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    t text;
BEGIN
    IF old_id = new_id THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY terra.user_record_tables() LOOP
        EXECUTE format($q$
            WITH losers AS (
                DELETE FROM terra.%1$I AS l
                USING terra.%1$I AS w
                WHERE l.user_id IN ($1, $2) AND w.user_id IN ($1, $2)
                  AND l.user_id <> w.user_id AND l.record_key = w.record_key
                  AND CASE
                        WHEN l.ordering_ts IS NOT NULL AND w.ordering_ts IS NOT NULL
                             AND l.ordering_ts <> w.ordering_ts
                            THEN w.ordering_ts > l.ordering_ts
                        WHEN l.updated_at <> w.updated_at THEN w.updated_at > l.updated_at
                        ELSE w.user_id = $2
                      END
                RETURNING l.user_id, l.record_key
            )
            DELETE FROM terra.sample_series AS s
            USING losers
            WHERE s.source = %2$L AND s.user_id = losers.user_id
              AND s.record_key = losers.record_key
        $q$, t, t) USING old_id, new_id;
        EXECUTE format('UPDATE terra.%I SET user_id = $2, updated_at = now() WHERE user_id = $1', t)
            USING old_id, new_id;
    END LOOP;
    UPDATE terra.sample_series SET user_id = new_id WHERE user_id = old_id;

    -- The profile: one per user; the newer one wins.
    DELETE FROM terra.athlete AS l
    USING terra.athlete AS w
    WHERE l.user_id IN (old_id, new_id) AND w.user_id IN (old_id, new_id)
      AND l.user_id <> w.user_id
      AND CASE
            WHEN l.ordering_ts IS NOT NULL AND w.ordering_ts IS NOT NULL
                 AND l.ordering_ts <> w.ordering_ts THEN w.ordering_ts > l.ordering_ts
            WHEN l.updated_at <> w.updated_at THEN w.updated_at > l.updated_at
            ELSE w.user_id = new_id
          END;
    UPDATE terra.athlete SET user_id = new_id, updated_at = now() WHERE user_id = old_id;

    UPDATE terra.large_requests SET user_id = new_id, updated_at = now() WHERE user_id = old_id;
    -- The ledger keeps each body as received; its user_id column follows the user, so that
    -- reprocessing an old delivery writes under the current id.
    UPDATE terra.deliveries SET user_id = new_id
    WHERE id IN (SELECT id FROM terra.deliveries WHERE user_id = old_id
                 FOR NO KEY UPDATE SKIP LOCKED);
END
$$;

CREATE OR REPLACE FUNCTION terra.delete_user_data(target text, keep_delivery bigint) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    t text;
    n bigint;
    total bigint := 0;
    doomed bigint[];
BEGIN
    FOREACH t IN ARRAY terra.user_record_tables() LOOP
        EXECUTE format('DELETE FROM terra.%I WHERE user_id = $1', t) USING target;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    SELECT coalesce(sum(cardinality(ts)), 0) INTO n FROM terra.sample_series WHERE user_id = target;
    DELETE FROM terra.sample_series WHERE user_id = target;
    total := total + n;
    DELETE FROM terra.athlete WHERE user_id = target;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    SELECT coalesce(array_agg(id), '{}') INTO doomed
    FROM (SELECT id FROM terra.deliveries
          WHERE user_id = target AND id <> keep_delivery
            AND event_type IN ('activity', 'athlete', 'body', 'daily', 'menstruation',
                               'nutrition', 'sleep', 'planned_workout', 'hormone',
                               'health_observation')
          FOR UPDATE SKIP LOCKED) AS d;
    UPDATE terra.users SET event_id = NULL WHERE event_id = ANY (doomed);
    DELETE FROM terra.large_request_chunks WHERE delivery_id = ANY (doomed);
    DELETE FROM terra.deliveries WHERE id = ANY (doomed);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END
$$;
