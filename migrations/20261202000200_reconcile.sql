-- `terra-sink reconcile` compares terra.users with the users Terra's REST API lists. A user held
-- as connected that Terra no longer lists gets status 'missing_at_terra' (its data is kept);
-- it follows the same ordering rule as lifecycle events (status_ordering_ts is Terra's clock
-- when it answered), so a newer auth still brings it back and an older event cannot.
ALTER TABLE terra.users DROP CONSTRAINT users_status_check;
ALTER TABLE terra.users ADD CONSTRAINT users_status_check CHECK (status IN
    ('connected', 'deauthenticated', 'access_revoked', 'connection_error', 'replaced',
     'forgotten', 'missing_at_terra'));

ALTER TABLE terra.users ADD COLUMN reconciled_at timestamptz;

COMMENT ON COLUMN terra.users.status IS
    'connected | deauthenticated (deauth) | access_revoked | connection_error (user must reconnect) | replaced (user_reauth; see replaced_by) | forgotten (erased by terra-sink forget) | missing_at_terra (terra-sink reconcile: Terra no longer lists it; data kept). Set by the newest lifecycle event or reconcile (status_ordering_ts).';
COMMENT ON COLUMN terra.users.reconciled_at IS
    'When terra-sink reconcile last created this user, marked it missing_at_terra or found it listed again; NULL if it never changed it.';
