-- Ledger rows that no stored row comes from any more (superseded versions, applied lifecycle
-- events, ping payloads whose download is stored) are removed after the dedupe window, oldest
-- first, in bounded batches that resume where the last one stopped.

-- Every foreign key to terra.deliveries gets an index, so that deleting a ledger row checks
-- its references by index instead of scanning each table.
CREATE INDEX users_event_id_idx ON terra.users (event_id);
CREATE INDEX users_status_event_id_idx ON terra.users (status_event_id);
CREATE INDEX large_request_chunks_delivery_id_idx ON terra.large_request_chunks (delivery_id);
CREATE INDEX planned_workouts_event_id_idx ON terra.planned_workouts (event_id);
CREATE INDEX hormone_samples_event_id_idx ON terra.hormone_samples (event_id);
CREATE INDEX health_observations_event_id_idx ON terra.health_observations (event_id);
CREATE INDEX lab_reports_event_id_idx ON terra.lab_reports (event_id);

-- How far the ledger has been examined: every row with a lower id was either removed or is
-- still referenced (or was not processed) when it was examined, and is not looked at again.
CREATE TABLE terra.ledger_prune_state (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    examined_to bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO terra.ledger_prune_state DEFAULT VALUES;
COMMENT ON TABLE terra.ledger_prune_state IS
    'terra.prune_ledger: ledger rows with id <= examined_to have been examined once.';

-- The references that keep a ledger row: every foreign key to it except the owned bodies
-- (ON DELETE CASCADE). Read from the catalog, so a table added later is covered.
CREATE FUNCTION terra.ledger_unreferenced_condition() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(
               format('NOT EXISTS (SELECT 1 FROM %s r WHERE r.%I = d.id)',
                      c.conrelid::regclass, a.attname),
               ' AND ' ORDER BY c.conrelid::regclass::text, a.attname),
           'true')
    FROM pg_constraint c
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.contype = 'f' AND c.confrelid = 'terra.deliveries'::regclass
      AND c.confdeltype <> 'c' AND c.conparentid = 0
$$;

-- One batch: examines up to batch_size rows past the watermark, in id order, stopping at the
-- first received at or after the cutoff; removes those that are processed and unreferenced.
CREATE FUNCTION terra.prune_ledger(cutoff timestamptz, batch_size integer,
                                   OUT examined integer, OUT removed integer)
LANGUAGE plpgsql AS $$
DECLARE
    from_id bigint;
    to_id   bigint;
BEGIN
    removed := 0;
    SELECT examined_to INTO from_id FROM terra.ledger_prune_state FOR UPDATE;
    SELECT count(*), max(id) INTO examined, to_id
    FROM (SELECT id, bool_and(received_at < cutoff) OVER (ORDER BY id) AS due
          FROM (SELECT id, received_at FROM terra.deliveries
                WHERE id > from_id ORDER BY id LIMIT batch_size) s) w
    WHERE due;
    IF examined = 0 THEN
        RETURN;
    END IF;
    EXECUTE format('DELETE FROM terra.deliveries d WHERE d.id > $1 AND d.id <= $2
                    AND d.status = %L AND %s', 'done', terra.ledger_unreferenced_condition())
        USING from_id, to_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    UPDATE terra.ledger_prune_state SET examined_to = to_id, updated_at = now();
END
$$;
