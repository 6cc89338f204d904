-- Erasure of a person: `terra-sink forget` deletes every row of their Terra user ids and leaves
-- a tombstone, the terra.users row with nothing but the id, status 'forgotten' and the time.
-- The tombstone's data_deleted_at keeps later deliveries (Terra's retries, late chunks,
-- backfills) from being stored, until a newer auth reconnects the id.
ALTER TABLE terra.users ADD COLUMN forgotten_at timestamptz;

ALTER TABLE terra.users DROP CONSTRAINT users_status_check;
ALTER TABLE terra.users ADD CONSTRAINT users_status_check CHECK (status IN
    ('connected', 'deauthenticated', 'access_revoked', 'connection_error', 'replaced',
     'forgotten'));

COMMENT ON COLUMN terra.users.forgotten_at IS
    'When `terra-sink forget` erased this user: the row is a tombstone (status forgotten) until a newer auth.';
COMMENT ON COLUMN terra.users.status IS
    'connected | deauthenticated (deauth) | access_revoked | connection_error (user must reconnect) | replaced (user_reauth; see replaced_by) | forgotten (erased by terra-sink forget). Set by the newest lifecycle event (status_ordering_ts).';

-- Every Terra user id of the people named: the ids given, the ids of the reference ids given,
-- and every id linked to those by user_reauth (either way).
CREATE FUNCTION terra.person_user_ids(user_ids text[], reference_ids text[]) RETURNS text[]
    LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE seeds AS (
        SELECT unnest(user_ids) AS user_id
        UNION
        SELECT user_id FROM terra.users WHERE reference_id = ANY (reference_ids)
    ), ids(user_id) AS (
        SELECT user_id FROM seeds
        UNION
        SELECT CASE WHEN u.replaced_by = ids.user_id THEN u.user_id ELSE u.replaced_by END
        FROM terra.users u
        JOIN ids ON u.replaced_by = ids.user_id
                 OR (u.user_id = ids.user_id AND u.replaced_by IS NOT NULL)
    )
    SELECT coalesce(array_agg(user_id ORDER BY user_id), '{}') FROM ids
$$;

-- Deletes every row of `targets` (all ids of the people: see terra.person_user_ids) and of
-- `reference_ids` in the caller's transaction, and turns their terra.users rows into
-- tombstones. Locks are taken as the workers take them, ledger rows first, then users in id
-- order, so forgetting never deadlocks with processing. Returns the rows deleted.
CREATE FUNCTION terra.forget_users(targets text[], reference_ids text[]) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    refs text[];
    doomed bigint[];
    t text;
    n bigint;
    total bigint := 0;
BEGIN
    PERFORM 1 FROM terra.deliveries WHERE user_id = ANY (targets) ORDER BY id FOR UPDATE;
    INSERT INTO terra.users AS u (user_id)
    SELECT x FROM unnest(targets) AS x ORDER BY x
    ON CONFLICT (user_id) DO UPDATE SET updated_at = u.updated_at;

    -- Reference ids go too when named, or when no other user still holds them.
    SELECT coalesce(array_agg(DISTINCT r), '{}') INTO refs FROM (
        SELECT unnest(reference_ids) AS r
        UNION
        SELECT u.reference_id FROM terra.users u
        WHERE u.user_id = ANY (targets) AND u.reference_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM terra.users o
                          WHERE o.reference_id = u.reference_id
                            AND NOT o.user_id = ANY (targets))
    ) AS named;

    FOREACH t IN ARRAY terra.user_record_tables() || ARRAY['sample_series', 'athlete',
                                                          'backfill_windows',
                                                          'backfill_requests'] LOOP
        EXECUTE format('DELETE FROM terra.%I WHERE user_id = ANY ($1)', t) USING targets;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    DELETE FROM terra.lab_reports WHERE reference_id = ANY (refs);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM terra.auth_attempts WHERE reference_id = ANY (refs);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    -- The ledger: their deliveries, ping downloads of those, and the pings they came from.
    SELECT coalesce(array_agg(DISTINCT id), '{}') INTO doomed FROM (
        SELECT d.id FROM terra.deliveries d WHERE d.user_id = ANY (targets)
        UNION
        SELECT c.id FROM terra.deliveries c JOIN terra.deliveries d ON c.parent_id = d.id
        WHERE d.user_id = ANY (targets)
        UNION
        SELECT d.parent_id FROM terra.deliveries d
        WHERE d.user_id = ANY (targets) AND d.parent_id IS NOT NULL
    ) AS ledger;
    DELETE FROM terra.large_request_chunks
    WHERE delivery_id = ANY (doomed)
       OR reference IN (SELECT reference FROM terra.large_requests WHERE user_id = ANY (targets));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM terra.large_requests WHERE user_id = ANY (targets);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    UPDATE terra.users SET event_id = NULL WHERE event_id = ANY (doomed);
    DELETE FROM terra.auth_attempts WHERE event_id = ANY (doomed);
    DELETE FROM terra.lab_reports WHERE event_id = ANY (doomed);
    -- Bodies go with their rows (ON DELETE CASCADE).
    DELETE FROM terra.deliveries WHERE id = ANY (doomed);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    UPDATE terra.users SET
        provider = NULL, reference_id = NULL, scopes = '{}', active = false,
        status = 'forgotten', replaced_by = NULL, status_reason = NULL,
        last_webhook_update = NULL, event_id = NULL, status_event_id = NULL,
        status_ordering_ts = (extract(epoch FROM now()) * 1000)::bigint,
        data_deleted_at = now(), forgotten_at = now(), created_at = now(), updated_at = now()
    WHERE user_id = ANY (targets);
    RETURN total;
END
$$;
