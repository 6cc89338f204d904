-- A ledger row's body goes with it through one statement-level trigger instead of a foreign
-- key. The key cost twice per delivery: on insert a lookup and row lock of the ledger row (the
-- body is only ever written by the statement that creates that row, so it cannot dangle), and
-- on delete a cascade that probed the index of every day partition, since the key carries no
-- received_at. The trigger deletes by (delivery_id, received_at), so each removed row reads
-- only its own day's partition, or none once that day has been dropped.

ALTER TABLE terra.delivery_bodies DROP CONSTRAINT delivery_bodies_delivery_id_fkey;

-- The planner knows neither how few rows are gone nor which days they are from; left alone it
-- hashes every partition. A nested loop over the gone rows lets it prune to one partition per
-- row at run time and find the body by its primary key.
CREATE FUNCTION terra.delete_bodies_of_deleted_deliveries() RETURNS trigger
LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off
AS $$
BEGIN
    DELETE FROM terra.delivery_bodies b
    USING gone g
    WHERE b.delivery_id = g.id AND b.received_at = g.received_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_delete_bodies
AFTER DELETE ON terra.deliveries
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION terra.delete_bodies_of_deleted_deliveries();

COMMENT ON TABLE terra.delivery_bodies IS
    'Raw body of each ledger row, byte for byte, partitioned by the UTC day it was received; deleted with its ledger row (trigger deliveries_delete_bodies); `terra-sink prune` drops partitions older than the retention period.';
