-- Every batch records, for each user it names, when that user's newest delivery arrived.
-- That update leaves the indexed event_id alone unless the delivery changes what the row says
-- of the user (terra.users is touched once per batch per user, and lookups of a user that
-- has to step over a dead index entry for every earlier touch get slower with each batch):
-- so it can be a HOT update, for which the free space below leaves room in each page.
ALTER TABLE terra.users SET (fillfactor = 70);

COMMENT ON COLUMN terra.users.event_id IS
    'The ledger row (terra.deliveries.id) that last changed provider, reference_id, scopes or status: the user''s first delivery, a lifecycle event, or data carrying a new provider or reference_id.';
COMMENT ON COLUMN terra.users.last_webhook_update IS
    'When the newest delivery naming this user was received.';
