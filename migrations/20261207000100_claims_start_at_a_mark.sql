-- A claim walks the queue index from a start the worker gives instead of from its first entry.
--
-- The index keeps an entry for every delivery processed since the oldest transaction still
-- open began: until then PostgreSQL may neither remove them nor mark them dead, and each claim
-- visited all of them (and their heap rows) again. One transaction left open for a minute at
-- 1,000 deliveries/s made the typed rows fall seconds behind, more with every minute.
-- Workers now find the queue's head now and then (terra.claim_start) and claim from a little
-- before it, so only that walk, not every claim, pays for the entries an open transaction keeps.

CREATE FUNCTION terra.claim_batch(max_count integer, max_bytes bigint, max_scan integer,
                                  from_at timestamptz)
RETURNS TABLE (id bigint, body bytea, ordering_ts bigint, attempts integer,
               received_at timestamptz, terra_reference text, trace_id text)
LANGUAGE sql ROWS 100
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
    WITH horizon AS MATERIALIZED (
        SELECT q.next_attempt_at, q.id
        FROM terra.deliveries q
        WHERE q.status IN ('pending', 'failed') AND q.next_attempt_at <= now()
          AND q.next_attempt_at >= from_at
        ORDER BY q.next_attempt_at, q.id
        OFFSET greatest(max_scan - 1, 0) LIMIT 1
    ), locked AS MATERIALIZED (
        SELECT d.id, d.next_attempt_at, d.body_size, d.received_at, d.ordering_ts, d.attempts,
               d.terra_reference, d.trace_id
        FROM terra.deliveries d
        WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
          AND d.next_attempt_at >= from_at
          AND (d.next_attempt_at, d.id)
              <= (coalesce((SELECT h.next_attempt_at FROM horizon h), 'infinity'),
                  coalesce((SELECT h.id FROM horizon h), 9223372036854775807))
          AND (d.user_id IS NULL OR terra.try_lock_user(d.user_id))
        ORDER BY d.next_attempt_at, d.id
        LIMIT max_count
        FOR NO KEY UPDATE SKIP LOCKED
    ), sized AS (
        SELECT l.*, sum(l.body_size) OVER (ORDER BY l.next_attempt_at, l.id) - l.body_size AS before
        FROM locked l
    )
    SELECT s.id, coalesce(b.body, k.body), s.ordering_ts, s.attempts, s.received_at,
           s.terra_reference, s.trace_id
    FROM sized s
    LEFT JOIN terra.delivery_bodies b ON b.delivery_id = s.id AND b.received_at = s.received_at
    LEFT JOIN terra.delivery_bodies_kept k ON k.delivery_id = s.id
    WHERE s.before = 0 OR s.before + s.body_size <= max_bytes
    ORDER BY s.next_attempt_at, s.id
$$;

COMMENT ON FUNCTION terra.claim_batch(integer, bigint, integer, timestamptz) IS
    'Locks up to max_count deliveries due at or after from_at in queue order, skipping rows other transactions hold and deliveries of users another claim holds (terra.try_lock_user; only the first max_scan due deliveries are looked at), and returns those whose bodies fit in max_bytes together (at least one), with their bodies.';

-- The whole queue, as before: one definition of a claim.
CREATE OR REPLACE FUNCTION terra.claim_batch(max_count integer, max_bytes bigint, max_scan integer)
RETURNS TABLE (id bigint, body bytea, ordering_ts bigint, attempts integer,
               received_at timestamptz, terra_reference text, trace_id text)
LANGUAGE sql ROWS 100
AS $$
    SELECT * FROM terra.claim_batch(max_count, max_bytes, max_scan, '-infinity')
$$;

-- Where claims may start: a margin before the first due delivery (or before now when none is
-- due). Deliveries that become due later are due from a later time, except a delivery whose
-- transaction began more than the margin before this call and committed after it; a worker's
-- next look at the head finds it.
CREATE FUNCTION terra.claim_start(margin interval) RETURNS timestamptz
LANGUAGE sql STABLE
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
AS $$
    SELECT coalesce(
        (SELECT q.next_attempt_at
         FROM terra.deliveries q
         WHERE q.status IN ('pending', 'failed') AND q.next_attempt_at <= now()
         ORDER BY q.next_attempt_at, q.id
         LIMIT 1),
        now()) - margin
$$;

COMMENT ON FUNCTION terra.claim_start(interval) IS
    'The time claims may start walking the queue from: margin before its first due delivery, or before now when none is due.';
