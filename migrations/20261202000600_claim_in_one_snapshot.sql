-- The whole claim, bodies included, in one query inside one function.
--
-- terra.claim_due locked deliveries with the function's own snapshot, which a volatile
-- function takes when it runs, after the snapshot of the statement that called it. The caller
-- then read the bodies with its older snapshot, and a delivery committed in between came back
-- without its body (as if retention had removed it). Reading the bodies in the same query as
-- the locks gives both one snapshot: a delivery row and its body are committed together, so
-- a locked delivery always has its body, or had it pruned.
--
-- The planner settings make any plan they steer away from look enormously expensive; the few
-- hundred rows sorted for the byte budget would then cross jit_above_cost, and compiling the
-- query took longer (0.6 s) than running it a hundred times. Hence jit = off.

DROP FUNCTION terra.claim_due(integer, integer);

CREATE FUNCTION terra.claim_batch(max_count integer, max_bytes bigint, max_scan integer)
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
        ORDER BY q.next_attempt_at, q.id
        OFFSET greatest(max_scan - 1, 0) LIMIT 1
    ), locked AS MATERIALIZED (
        SELECT d.id, d.next_attempt_at, d.body_size, d.received_at, d.ordering_ts, d.attempts,
               d.terra_reference, d.trace_id
        FROM terra.deliveries d
        WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
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

COMMENT ON FUNCTION terra.claim_batch(integer, bigint, integer) IS
    'Locks up to max_count due deliveries in queue order, skipping rows other transactions hold and deliveries of users another claim holds (terra.try_lock_user; only the first max_scan due deliveries are looked at), and returns those whose bodies fit in max_bytes together (at least one), with their bodies.';
