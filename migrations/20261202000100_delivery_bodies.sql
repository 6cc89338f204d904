-- Raw bodies move out of terra.deliveries into terra.delivery_bodies, partitioned by the UTC day
-- they were received. Retention then drops whole partitions: no DELETE of millions of rows, no
-- bloat, no long locks, the same cost whatever the ledger's size. The metadata row stays in
-- terra.deliveries, and with it the unique dedupe key (a partitioned table could only keep it
-- unique together with the partition key), the sha256, the size and the status.

CREATE TABLE terra.delivery_bodies (
    delivery_id bigint      NOT NULL REFERENCES terra.deliveries (id) ON DELETE CASCADE,
    -- Equal to terra.deliveries.received_at: the partition key, and part of every lookup so
    -- that a lookup reads one partition.
    received_at timestamptz NOT NULL,
    body        bytea       NOT NULL,
    PRIMARY KEY (delivery_id, received_at)
) PARTITION BY RANGE (received_at);

COMMENT ON TABLE terra.delivery_bodies IS
    'Raw body of each ledger row, byte for byte, partitioned by the UTC day it was received; `terra-sink prune` drops partitions older than the retention period.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE terra.delivery_bodies ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END
$$;

-- No DEFAULT partition: it would forbid DETACH ... CONCURRENTLY, the form of detaching that
-- does not block inserts. Partitions are created two weeks ahead instead (at migration, at
-- every start of `serve` and hourly).

-- Bodies of deliveries that were not processed (pending, failed, parked) when their partition
-- was dropped: they are still needed to process or reprocess them.
CREATE TABLE terra.delivery_bodies_kept (
    delivery_id bigint      PRIMARY KEY REFERENCES terra.deliveries (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    body        bytea       NOT NULL
);

COMMENT ON TABLE terra.delivery_bodies_kept IS
    'Bodies kept past their partition because the delivery was not processed when it was dropped.';

-- Finds the unprocessed deliveries of a day at once when its partition is dropped.
CREATE INDEX deliveries_unfinished_idx ON terra.deliveries (received_at) WHERE status <> 'done';

-- The partitions and their bounds, read back from the catalog.
CREATE VIEW terra.body_partitions AS
SELECT c.relname::text AS name,
       bounds[1]::timestamptz AS starts,
       bounds[2]::timestamptz AS ends,
       -- An interrupted DETACH ... CONCURRENTLY, finished by the next prune.
       i.inhdetachpending AS detaching
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                $re$FROM \('([^']+)'\) TO \('([^']+)'\)$re$) AS bounds
WHERE i.inhparent = 'terra.delivery_bodies'::regclass;

COMMENT ON VIEW terra.body_partitions IS
    'The day (or, for bodies older than the partitioned layout, month) partitions of terra.delivery_bodies.';

-- Creates and attaches the partition [starts, ends) unless one starts there. ATTACH takes a
-- lock that does not block inserts, unlike CREATE TABLE ... PARTITION OF.
CREATE FUNCTION terra.add_body_partition(starts timestamptz, ends timestamptz) RETURNS boolean
    LANGUAGE plpgsql
AS $$
DECLARE
    part text := 'delivery_bodies_' || to_char(starts AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass('terra.' || quote_ident(part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE terra.%I (LIKE terra.delivery_bodies INCLUDING ALL)', part);
    EXECUTE format('ALTER TABLE terra.delivery_bodies ATTACH PARTITION terra.%I '
                   'FOR VALUES FROM (%L) TO (%L)', part, starts, ends);
    RETURN true;
END
$$;

-- Daily partitions from today (UTC) through `days_ahead` days from now; returns how many it made.
CREATE FUNCTION terra.ensure_body_partitions(days_ahead integer) RETURNS integer
    LANGUAGE plpgsql
AS $$
DECLARE
    today timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    made integer := 0;
    d integer;
BEGIN
    -- Replicas doing upkeep at the same time take turns.
    PERFORM pg_advisory_xact_lock(hashtext('terra.delivery_bodies'));
    FOR d IN 0 .. days_ahead LOOP
        IF NOT EXISTS (SELECT 1 FROM terra.body_partitions p
                       WHERE p.starts <= today + make_interval(days => d)
                         AND p.ends > today + make_interval(days => d))
           AND terra.add_body_partition(today + make_interval(days => d),
                                        today + make_interval(days => d + 1)) THEN
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$$;

-- Copies the bodies of the unprocessed deliveries (pending, failed, parked) of partition `part`
-- ([starts, ends), attached or detached) to terra.delivery_bodies_kept; returns how many.
-- Pruning runs it before and after detaching, so a delivery requeued meanwhile keeps its body.
CREATE FUNCTION terra.keep_unprocessed_bodies(part text, starts timestamptz, ends timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        INSERT INTO terra.delivery_bodies_kept (delivery_id, received_at, body)
        SELECT b.delivery_id, b.received_at, b.body FROM terra.%I b
        WHERE b.delivery_id IN (SELECT id FROM terra.deliveries
                                WHERE status <> 'done' AND received_at >= $1 AND received_at < $2)
        ON CONFLICT (delivery_id) DO NOTHING $q$, part) USING starts, ends;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The existing bodies: one partition per month before today, then days.
DO $$
DECLARE
    today timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    m timestamptz;
BEGIN
    SELECT date_trunc('month', min(received_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' INTO m
    FROM terra.deliveries WHERE received_at < today;
    WHILE m IS NOT NULL AND m < today LOOP
        PERFORM terra.add_body_partition(m, least(m + interval '1 month', today));
        m := m + interval '1 month';
    END LOOP;
END
$$;
SELECT terra.ensure_body_partitions(14);

INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
SELECT id, received_at, body FROM terra.deliveries;

-- The dropped column's space is reclaimed as rows are rewritten (or at once by VACUUM FULL).
ALTER TABLE terra.deliveries DROP COLUMN body;
