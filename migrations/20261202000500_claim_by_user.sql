-- Claiming a batch takes the due deliveries of users no other batch is writing right now.
--
-- A batch locks the rows of its users in terra.users until it commits, so two batches that
-- share a user run one after the other. With many users nearly every batch shares some, and
-- concurrent workers (in one process or several) ended up writing one at a time. Each claim
-- now also takes a transaction-level advisory lock per user, with a try that never waits, and
-- skips the deliveries of users another batch holds: those stay in the queue, in order, for
-- the batch that holds their user or the next claim after it. The users row locks remain
-- what keeps writes consistent; these locks only steer claims apart, so a hash collision
-- between two user ids costs concurrency, never correctness.
--
-- The scan must visit the queue in its order and stop at the limit: a plan that sorted the
-- backlog would also try the lock of every user in it. A function with its own planner
-- settings keeps the ordered walk of deliveries_queue_idx whatever the statistics say (a
-- freshly filled queue had none, and was sorted). `max_scan` bounds the walk when most of the
-- queue belongs to held users: only the first `max_scan` due deliveries are candidates. It
-- returns what the worker needs of each row, so that the caller does not join the ledger again
-- (a join the planner, told nothing of the function's few rows, did by hashing the ledger).

-- The advisory lock of one user id for this transaction, if no other transaction holds it.
-- Two-key advisory locks live apart from the single-key ones used elsewhere.
CREATE FUNCTION terra.try_lock_user(user_id text) RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT pg_try_advisory_xact_lock(hashtext('terra.users'), hashtext(user_id)) $$;

CREATE FUNCTION terra.claim_due(max_count integer, max_scan integer)
RETURNS TABLE (id bigint, next_attempt_at timestamptz, body_size integer, received_at timestamptz,
               ordering_ts bigint, attempts integer, terra_reference text, trace_id text)
LANGUAGE sql ROWS 100
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
    WITH horizon AS MATERIALIZED (
        SELECT q.next_attempt_at, q.id
        FROM terra.deliveries q
        WHERE q.status IN ('pending', 'failed') AND q.next_attempt_at <= now()
        ORDER BY q.next_attempt_at, q.id
        OFFSET greatest(max_scan - 1, 0) LIMIT 1
    )
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
$$;

COMMENT ON FUNCTION terra.claim_due(integer, integer) IS
    'Locks up to max_count due deliveries in queue order, skipping rows other transactions hold and deliveries of users another claim holds (terra.try_lock_user); only the first max_scan due deliveries are looked at.';
COMMENT ON FUNCTION terra.try_lock_user(text) IS
    'Takes the transaction-level advisory lock of a user id if no other transaction holds it: steers concurrent batches to different users.';
