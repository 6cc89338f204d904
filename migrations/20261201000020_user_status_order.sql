-- A user's status follows the newest lifecycle event by x-terra-ordering-timestamp (arrival
-- order when one is missing), under the same rule as records (terra.is_newer): a retried or
-- reordered older event no longer overwrites a newer status. 'replaced' is a status like the
-- others; replaced_by stays once set, so data of the old id keeps following the new one.
ALTER TABLE terra.users
    ADD COLUMN status_ordering_ts bigint,
    ADD COLUMN status_event_id bigint REFERENCES terra.deliveries (id) ON DELETE SET NULL,
    ADD COLUMN data_deleted_at timestamptz;

COMMENT ON COLUMN terra.users.status_ordering_ts IS
    'x-terra-ordering-timestamp (ms) of the lifecycle event that set status; an event replaces the status when terra.is_newer(its timestamp, this one).';
COMMENT ON COLUMN terra.users.status_event_id IS
    'The ledger row (terra.deliveries.id) of the lifecycle event that set status.';
COMMENT ON COLUMN terra.users.data_deleted_at IS
    'When the user''s health data was deleted by the delete policy of deauth/access_revoked; data arriving later is acknowledged and not stored until a newer auth clears it.';
COMMENT ON COLUMN terra.users.status IS
    'connected | deauthenticated (deauth) | access_revoked | connection_error (user must reconnect) | replaced (user_reauth; see replaced_by). Set by the newest lifecycle event (status_ordering_ts).';
