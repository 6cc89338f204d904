-- Connections lifecycle (issue 5): who is connected, what happened to each connection, large
-- historical requests, ping-mode downloads, and the event types kept as raw records.

-- One row per Terra user id (one wearable connection), kept current from every event that
-- carries a user.
CREATE TABLE terra.users (
    user_id             text        PRIMARY KEY,
    provider            text,
    -- The customer's own id for the end user, set when the widget session was created.
    reference_id        text,
    -- Granted scopes, split from Terra's comma-separated string.
    scopes              text[]      NOT NULL DEFAULT '{}',
    active              boolean     NOT NULL DEFAULT true,
    status              text        NOT NULL DEFAULT 'connected',
    -- When status = 'replaced': the user id that replaced this one (user_reauth).
    replaced_by         text,
    status_reason       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- When terra-sink last received a delivery for this user.
    last_webhook_update timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The ledger row that last changed this user.
    event_id            bigint      REFERENCES terra.deliveries (id),
    CONSTRAINT users_status_check CHECK (status IN
        ('connected', 'deauthenticated', 'access_revoked', 'connection_error', 'replaced'))
);
CREATE INDEX users_reference_id_idx ON terra.users (reference_id);
COMMENT ON TABLE terra.users IS
    'One row per Terra user_id (a wearable connection): auth creates it, data for an unseen user creates it, deauth/access_revoked/connection_error/user_reauth change its status.';
COMMENT ON COLUMN terra.users.status IS
    'connected | deauthenticated (deauth) | access_revoked | connection_error (user must reconnect) | replaced (user_reauth; see replaced_by)';

-- Failed or cancelled connection attempts: auth_cancelled, and the legacy auth with status "error".
CREATE TABLE terra.auth_attempts (
    event_id     bigint      PRIMARY KEY REFERENCES terra.deliveries (id),
    event_type   text        NOT NULL,
    reference_id text,
    reason       text,
    flow_id      text,
    message      text,
    received_at  timestamptz NOT NULL
);
CREATE INDEX auth_attempts_reference_id_idx ON terra.auth_attempts (reference_id);
COMMENT ON TABLE terra.auth_attempts IS
    'Connection attempts that produced no user: auth_cancelled, and the legacy auth event with status "error".';

-- Large historical requests: large_request_processing, large_request_sending (expected_payloads),
-- then that many data deliveries sharing the terra-reference header. Chunks may arrive first.
CREATE TABLE terra.large_requests (
    reference         text        PRIMARY KEY,
    user_id           text,
    expected_payloads integer,
    received_payloads integer     NOT NULL DEFAULT 0,
    first_chunk_at    timestamptz,
    last_chunk_at     timestamptz,
    processing_at     timestamptz,
    announced_at      timestamptz,
    complete          boolean     GENERATED ALWAYS AS
        (expected_payloads IS NOT NULL AND received_payloads >= expected_payloads) STORED,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE terra.large_requests IS
    'One row per terra-reference: expected (from large_request_sending) and received chunk counts; complete when received reaches expected.';

-- Each chunk counted once, however often it is redelivered or reprocessed.
CREATE TABLE terra.large_request_chunks (
    reference   text        NOT NULL REFERENCES terra.large_requests (reference),
    delivery_id bigint      NOT NULL REFERENCES terra.deliveries (id),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (reference, delivery_id)
);

-- Ping mode: a downloaded body is a ledger row of its own, linked to the s3_payload delivery.
ALTER TABLE terra.deliveries ADD COLUMN parent_id bigint REFERENCES terra.deliveries (id);
CREATE UNIQUE INDEX deliveries_parent_id_idx ON terra.deliveries (parent_id) WHERE parent_id IS NOT NULL;
COMMENT ON COLUMN terra.deliveries.parent_id IS
    'For source = ''s3_download'': the s3_payload delivery whose url this body was downloaded from.';

-- Event types kept losslessly as raw records, keyed by user and the record's own id or time.
CREATE TABLE terra.planned_workouts (
    user_id      text        NOT NULL,
    -- planned_workout_id, else details.metadata.id, else workout_id, else the SHA-256 of the item.
    record_key   text        NOT NULL,
    provider     text,
    planned_date text,
    data         jsonb       NOT NULL,
    ordering_ts  bigint,
    event_id     bigint      NOT NULL REFERENCES terra.deliveries (id),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);

CREATE TABLE terra.hormone_samples (
    user_id     text        NOT NULL,
    -- The sample's timestamp as Terra sent it.
    record_key  text        NOT NULL,
    provider    text,
    ts          timestamptz,
    data        jsonb       NOT NULL,
    ordering_ts bigint,
    event_id    bigint      NOT NULL REFERENCES terra.deliveries (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);

CREATE TABLE terra.health_observations (
    user_id     text        NOT NULL,
    -- metadata.summary_id, else metadata.start_time.
    record_key  text        NOT NULL,
    provider    text,
    start_time  timestamptz,
    data        jsonb       NOT NULL,
    ordering_ts bigint,
    event_id    bigint      NOT NULL REFERENCES terra.deliveries (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, record_key)
);

-- Lab reports carry no Terra user: keyed by Terra's own event id.
CREATE TABLE terra.lab_reports (
    terra_event_id text        PRIMARY KEY,
    event_type     text        NOT NULL,
    upload_id      text,
    session_id     text,
    reference_id   text,
    occurred_at    timestamptz,
    data           jsonb       NOT NULL,
    event_id       bigint      NOT NULL REFERENCES terra.deliveries (id),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lab_reports_reference_id_idx ON terra.lab_reports (reference_id);

-- Tables whose rows are one record per (user_id, record_key) with Terra's ordering timestamp;
-- the first six also own rows in terra.samples (source = the table name).
CREATE FUNCTION terra.user_record_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY['activity', 'sleep', 'daily', 'body', 'nutrition', 'menstruation',
                 'planned_workouts', 'hormone_samples', 'health_observations']
$$;

-- user_reauth: moves every row of old_id to new_id in one transaction (the caller's). Where both
-- ids hold the same record, the newest copy wins: the higher ordering timestamp, else the more
-- recently updated row, else the new id's row. The losing copy and its samples are deleted.
CREATE FUNCTION terra.rekey_user(old_id text, new_id text) RETURNS void
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
            DELETE FROM terra.samples AS s
            USING losers
            WHERE s.source = %2$L AND s.user_id = losers.user_id
              AND s.record_key = losers.record_key
        $q$, t, t) USING old_id, new_id;
        EXECUTE format('UPDATE terra.%I SET user_id = $2, updated_at = now() WHERE user_id = $1', t)
            USING old_id, new_id;
    END LOOP;
    UPDATE terra.samples SET user_id = new_id WHERE user_id = old_id;

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
    UPDATE terra.deliveries SET user_id = new_id WHERE user_id = old_id;
END
$$;

-- The "delete" data policy of deauth/access_revoked: every health-data row of the user, in the
-- typed tables and in the ledger (raw bodies of its data deliveries). The user row and the
-- lifecycle deliveries (auth, deauth…) stay as the record of what happened.
CREATE FUNCTION terra.delete_user_data(target text, keep_delivery bigint) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    t text;
    n bigint;
    total bigint := 0;
BEGIN
    FOREACH t IN ARRAY terra.user_record_tables() LOOP
        EXECUTE format('DELETE FROM terra.%I WHERE user_id = $1', t) USING target;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    DELETE FROM terra.samples WHERE user_id = target;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM terra.athlete WHERE user_id = target;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    UPDATE terra.users SET event_id = NULL
    WHERE event_id IN (SELECT id FROM terra.deliveries WHERE user_id = target AND id <> keep_delivery);
    DELETE FROM terra.large_request_chunks
    WHERE delivery_id IN (SELECT id FROM terra.deliveries WHERE user_id = target);
    DELETE FROM terra.deliveries
    WHERE user_id = target AND id <> keep_delivery
      AND event_type IN ('activity', 'athlete', 'body', 'daily', 'menstruation', 'nutrition',
                         'sleep', 'planned_workout', 'hormone', 'health_observation');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END
$$;
