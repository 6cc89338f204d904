-- One row per request `terra-sink backfill` sends to Terra's REST API (retries included), so the
-- per-user day budget (Terra counts every day each request covers) holds across runs: a new run
-- counts what earlier runs sent within the budget's period.
CREATE TABLE terra.backfill_requests (
    id          bigserial   PRIMARY KEY,
    user_id     text        NOT NULL,
    data_type   text        NOT NULL,
    start_date  date        NOT NULL,
    -- Exclusive, as Terra's end_date; end_date - start_date is what Terra counts.
    end_date    date        NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    -- The latest moment Terra can have received the request: the client's deadline while it is
    -- in flight (or when the process died before its end was recorded), then when it ended.
    counted_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CONSTRAINT backfill_requests_range_check CHECK (end_date > start_date)
);

CREATE INDEX backfill_requests_user_idx ON terra.backfill_requests (user_id, counted_at);

COMMENT ON TABLE terra.backfill_requests IS
    'Requests terra-sink backfill sent to Terra''s REST API, for the per-user day budget across runs.';
COMMENT ON COLUMN terra.backfill_requests.counted_at IS
    'Latest time Terra can have received the request: its end, or the client deadline when no end was recorded.';
