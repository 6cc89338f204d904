-- Backfill (issue 6): one row per (user, data type, window) that `terra-sink backfill` asked
-- Terra's REST API for, so an interrupted or partly failed backfill continues where it stopped.
-- The data itself goes through the ledger (terra.deliveries, source = 'backfill') like a webhook.
CREATE TABLE terra.backfill_windows (
    user_id         text        NOT NULL,
    -- activity, body, daily, menstruation, nutrition or sleep.
    data_type       text        NOT NULL,
    start_date      date        NOT NULL,
    -- Exclusive, as Terra's end_date.
    end_date        date        NOT NULL,
    -- done: the answer is in the ledger (or had no records); acknowledged: Terra sends the data
    -- to the webhook instead (terra_reference); failed: retried by the next run.
    status          text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    records         integer,
    delivery_id     bigint,
    terra_reference text,
    last_error      text,
    first_tried_at  timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT backfill_windows_pkey PRIMARY KEY (user_id, data_type, start_date, end_date),
    CONSTRAINT backfill_windows_range_check CHECK (end_date > start_date),
    CONSTRAINT backfill_windows_status_check CHECK (status IN ('done', 'acknowledged', 'failed'))
);

COMMENT ON TABLE terra.backfill_windows IS
    'Progress of terra-sink backfill: each (user, data type, [start_date, end_date)) window requested from Terra''s REST API and its outcome.';
