-- A batch asks, for each of its users, whether their data goes elsewhere (re-keyed by
-- user_reauth) or nowhere (deleted by the delete policy). Almost no user is either, so a
-- partial index of just those answers with a probe of a nearly empty index instead of a walk
-- over every user of the batch. Neither column is touched when a delivery only refreshes a
-- user, so those updates stay HOT.
CREATE INDEX users_redirected_idx ON terra.users (user_id)
    WHERE replaced_by IS NOT NULL OR data_deleted_at IS NOT NULL;
