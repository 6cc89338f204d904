-- What removing ledger rows runs is compiled from terra.ledger_references() into static SQL.
-- The prune's DELETE and the removal trigger were built with format() and run by EXECUTE,
-- which plans a 16-way anti-join and a 15-way probe anew on every batch: about a third of a
-- warm batch of 1,000 ledger rows with nothing referencing them. Static SQL in PL/pgSQL is
-- planned once per session, so a prune's batches after its first reuse the plans.
--
-- Both run with hash and merge joins off. Then each removed row probes each reference's index
-- (nested loops), where the planner, costing from table sizes, chose hash anti-joins that read
-- the whole of the larger record tables on every batch: a batch's cost grew with the typed
-- store (the delete of a warm batch over 230,000 deliveries' records: 47 ms that way, 14 ms
-- by the indexes).
--
-- terra.compile_ledger_guards() writes the two functions from the references listed at the
-- time it runs: a migration that adds a reference to the ledger calls it again (a test fails
-- while the compiled functions differ from what it would write now).
--
-- The kept bodies' cascading foreign key, the last one to the ledger, becomes a reference like
-- the others with 'cascade' as its removal action: the trigger deletes the kept bodies of all
-- removed rows in one statement, where the key ran one query per removed row.

ALTER TABLE terra.delivery_bodies_kept DROP CONSTRAINT delivery_bodies_kept_delivery_id_fkey;
CREATE TRIGGER ledger_row_exists_delivery_id_on_insert AFTER INSERT ON terra.delivery_bodies_kept
FOR EACH ROW WHEN (NEW.delivery_id IS NOT NULL)
EXECUTE FUNCTION terra.ledger_row_must_exist('delivery_id', 'cascade');
CREATE TRIGGER ledger_row_exists_delivery_id_on_update AFTER UPDATE ON terra.delivery_bodies_kept
FOR EACH ROW WHEN (NEW.delivery_id IS NOT NULL AND NEW.delivery_id IS DISTINCT FROM OLD.delivery_id)
EXECUTE FUNCTION terra.ledger_row_must_exist('delivery_id', 'cascade');

-- The prune keeps a ledger row while anything but its own kept body points at it.
CREATE OR REPLACE FUNCTION terra.ledger_unreferenced_condition() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(format('NOT EXISTS (SELECT 1 FROM %s r WHERE r.%I = d.id)', tab, col),
                               E'\n      AND ' ORDER BY tab::text, col),
                    'true')
    FROM terra.ledger_references()
    WHERE on_delete <> 'cascade'
$$;

-- One statement per reference with the given removal action, each from template (format
-- arguments: table, column, and 'table.column' to name it); NULL when there is none.
CREATE FUNCTION terra.ledger_reference_statements(action text, template text,
                                                  separator text DEFAULT E';\n        ')
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format(template, tab, col, tab::text || '.' || col), separator
                      ORDER BY tab::text, col)
    FROM terra.ledger_references()
    WHERE on_delete = action
$$;

CREATE FUNCTION terra.compile_ledger_guards() RETURNS void
LANGUAGE plpgsql AS $compile$
DECLARE
    no_op         constant text := 'NULL';
    probe         constant text := 'SELECT %3$L::text AS t WHERE EXISTS ';
    clear_gone    text := terra.ledger_reference_statements('set null',
                      'UPDATE %1$s r SET %2$I = NULL FROM gone g WHERE r.%2$I = g.id');
    clear_all     text := terra.ledger_reference_statements('set null',
                      'UPDATE %1$s SET %2$I = NULL WHERE %2$I IS NOT NULL');
    cascade_gone  text := terra.ledger_reference_statements('cascade',
                      'DELETE FROM %1$s r USING gone g WHERE r.%2$I = g.id');
    cascade_all   text := terra.ledger_reference_statements('cascade', 'DELETE FROM %1$s');
    probe_gone    text := terra.ledger_reference_statements('restrict',
                      probe || '(SELECT 1 FROM %1$s r JOIN gone g ON r.%2$I = g.id)',
                      E'\n        UNION ALL ');
    probe_all     text := terra.ledger_reference_statements('restrict',
                      probe || '(SELECT 1 FROM %1$s r WHERE r.%2$I IS NOT NULL)',
                      E'\n        UNION ALL ');
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION terra.ledger_rows_must_be_unreferenced() RETURNS trigger
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $body$
-- Written by terra.compile_ledger_guards() from terra.ledger_references().
DECLARE
    referencing text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM gone) THEN
            RETURN NULL;
        END IF;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ledger rows can only be removed under READ COMMITTED'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Later snapshots could not see rows that point at them.';
    END IF;
    IF TG_OP = 'DELETE' THEN
        %s;
        %s;
        SELECT t INTO referencing FROM (
        %s
        ) probe LIMIT 1;
    ELSE
        %s;
        %s;
        SELECT t INTO referencing FROM (
        %s
        ) probe LIMIT 1;
    END IF;
    IF referencing IS NOT NULL THEN
        RAISE EXCEPTION 'update or delete on table "deliveries" violates the ledger reference from "%%"',
                referencing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Rows of that table still point at removed ledger rows.';
    END IF;
    RETURN NULL;
END
$body$
$f$, coalesce(clear_gone, no_op), coalesce(cascade_gone, no_op),
     coalesce(probe_gone, 'SELECT NULL::text AS t WHERE false'),
     coalesce(clear_all, no_op), coalesce(cascade_all, no_op),
     coalesce(probe_all, 'SELECT NULL::text AS t WHERE false'));

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION terra.prune_ledger(cutoff timestamptz, batch_size integer,
                                              OUT examined integer, OUT removed integer)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $body$
-- Written by terra.compile_ledger_guards() from terra.ledger_references().
DECLARE
    from_id bigint;
    to_id   bigint;
BEGIN
    removed := 0;
    SELECT examined_to INTO from_id FROM terra.ledger_prune_state FOR UPDATE;
    SELECT count(*), max(id) INTO examined, to_id
    FROM (SELECT id, bool_and(received_at < cutoff) OVER (ORDER BY id) AS due
          FROM (SELECT id, received_at FROM terra.deliveries
                WHERE id > from_id ORDER BY id LIMIT batch_size) s) w
    WHERE due;
    IF examined = 0 THEN
        RETURN;
    END IF;
    DELETE FROM terra.deliveries d
    WHERE d.id > from_id AND d.id <= to_id AND d.status = 'done'
      AND %s;
    GET DIAGNOSTICS removed = ROW_COUNT;
    UPDATE terra.ledger_prune_state SET examined_to = to_id, updated_at = now();
END
$body$
$f$, terra.ledger_unreferenced_condition());
END
$compile$;
COMMENT ON FUNCTION terra.compile_ledger_guards() IS
    'Rewrites terra.ledger_rows_must_be_unreferenced() and terra.prune_ledger() as static SQL from terra.ledger_references(); run it after adding a reference to the ledger.';

SELECT terra.compile_ledger_guards();
