-- The ledger: every authenticated Terra delivery, exactly as received, committed before the
-- webhook is answered. Everything else in the `terra` schema is derived from it.
CREATE SCHEMA IF NOT EXISTS terra;

CREATE TABLE terra.deliveries (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'trace:<x-terra-trace-id>' or, without a trace id, 'sha256:<hex of the body>'.
    dedupe_key        text        NOT NULL,
    -- Where the body came from: a webhook delivery today; ping-mode downloads and backfills later.
    source            text        NOT NULL DEFAULT 'webhook',
    received_at       timestamptz NOT NULL DEFAULT now(),
    -- The `t` of the signature header.
    signed_at         timestamptz,
    -- Read from the body when it reveals them; NULL otherwise.
    event_type        text,
    user_id           text,
    -- Terra's headers: x-terra-trace-id, terra-reference, x-terra-ordering-timestamp (ms).
    trace_id          text,
    terra_reference   text,
    ordering_ts       bigint,
    -- The raw body bytes, so a delivery can be re-verified and replayed byte for byte
    -- (jsonb would reorder keys and reject \u0000).
    body              bytea       NOT NULL,
    body_sha256       bytea       NOT NULL,
    body_size         integer     NOT NULL,
    -- What a first look at the body found: ok, invalid_json, unexpected_shape or unknown_type.
    shape             text        NOT NULL,
    shape_error       text,
    -- Redeliveries of the same delivery are counted here instead of stored again.
    duplicates        integer     NOT NULL DEFAULT 0,
    last_duplicate_at timestamptz,
    -- Processing into typed tables: pending -> done, or failed (retried later) -> parked.
    status            text        NOT NULL DEFAULT 'pending',
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    processed_at      timestamptz,
    CONSTRAINT deliveries_dedupe_key_key UNIQUE (dedupe_key),
    CONSTRAINT deliveries_shape_check
        CHECK (shape IN ('ok', 'invalid_json', 'unexpected_shape', 'unknown_type')),
    CONSTRAINT deliveries_status_check
        CHECK (status IN ('pending', 'done', 'failed', 'parked'))
);

COMMENT ON TABLE terra.deliveries IS
    'Ledger of every authenticated Terra delivery, raw body included; written before the webhook is acknowledged.';

CREATE INDEX deliveries_received_at_idx ON terra.deliveries (received_at);
CREATE INDEX deliveries_user_id_idx ON terra.deliveries (user_id, received_at);
CREATE INDEX deliveries_terra_reference_idx ON terra.deliveries (terra_reference)
    WHERE terra_reference IS NOT NULL;
-- The workers' queue: only unfinished rows are indexed, so it stays small.
CREATE INDEX deliveries_queue_idx ON terra.deliveries (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');

-- Bodies are large JSON: lz4 compresses them far faster than the default pglz, which keeps
-- multi-megabyte inserts quick. Servers built without lz4 keep the default.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE terra.deliveries ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END
$$;
