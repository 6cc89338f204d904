-- The compiled removal functions keep their plans for a whole session, and a pooled connection
-- lives long. A plan made while a record table was small stays after it has grown: the
-- removal trigger's probe, a join of the table with the removed rows, could then read the
-- whole table once per removed row (seconds per batch after 50,000 rows were added).
-- Here every statement reads each reference only through its index and only for the rows at
-- hand, so no plan shape can grow with a table:
--   * the trigger collects the removed ids in an array and looks each reference up with
--     `= ANY (ids)`, with no join to reorder;
--   * the prune's anti-joins also bound each reference to the batch's id range, so even a
--     plan that reads a reference apart from the ledger rows reads only that range;
--   * sequential scans are off in both (every reference has an index: a test holds that); hash
--     and merge joins are allowed again, since every input they could take is bounded;
--   * JIT is off in both: the cost that disables a sequential scan, where one is the only way
--     (the one-row terra.ledger_prune_state), made PostgreSQL compile such a statement
--     with JIT, taking tens of milliseconds.
CREATE OR REPLACE FUNCTION terra.compile_ledger_guards() RETURNS void
LANGUAGE plpgsql AS $compile$
DECLARE
    no_op         constant text := 'NULL';
    no_probe      constant text := 'SELECT NULL::text AS t WHERE false';
    probe         constant text := 'SELECT %3$L::text AS t WHERE EXISTS ';
    in_batch      constant text :=
        'NOT EXISTS (SELECT 1 FROM %1$s r WHERE r.%2$I = d.id AND r.%2$I > from_id AND r.%2$I <= to_id)';
    and_then      constant text := E'\n      AND ';
    clear_gone    text := terra.ledger_reference_statements('set null',
                      'UPDATE %1$s SET %2$I = NULL WHERE %2$I = ANY (ids)');
    clear_all     text := terra.ledger_reference_statements('set null',
                      'UPDATE %1$s SET %2$I = NULL WHERE %2$I IS NOT NULL');
    cascade_gone  text := terra.ledger_reference_statements('cascade',
                      'DELETE FROM %1$s WHERE %2$I = ANY (ids)');
    cascade_all   text := terra.ledger_reference_statements('cascade', 'DELETE FROM %1$s');
    probe_gone    text := terra.ledger_reference_statements('restrict',
                      probe || '(SELECT 1 FROM %1$s r WHERE r.%2$I = ANY (ids))',
                      E'\n        UNION ALL ');
    probe_all     text := terra.ledger_reference_statements('restrict',
                      probe || '(SELECT 1 FROM %1$s r WHERE r.%2$I IS NOT NULL)',
                      E'\n        UNION ALL ');
    unreferenced  text := coalesce(concat_ws(and_then,
                      terra.ledger_reference_statements('restrict', in_batch, and_then),
                      terra.ledger_reference_statements('set null', in_batch, and_then)), 'true');
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION terra.ledger_rows_must_be_unreferenced() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $body$
-- Written by terra.compile_ledger_guards() from terra.ledger_references().
DECLARE
    ids         bigint[];
    referencing text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT id FROM gone);
        IF cardinality(ids) = 0 THEN
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
$f$, coalesce(clear_gone, no_op), coalesce(cascade_gone, no_op), coalesce(probe_gone, no_probe),
     coalesce(clear_all, no_op), coalesce(cascade_all, no_op), coalesce(probe_all, no_probe));

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION terra.prune_ledger(cutoff timestamptz, batch_size integer,
                                              OUT examined integer, OUT removed integer)
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $body$
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
$f$, unreferenced);
END
$compile$;
COMMENT ON FUNCTION terra.compile_ledger_guards() IS
    'Rewrites terra.ledger_rows_must_be_unreferenced() and terra.prune_ledger() as static SQL from terra.ledger_references(), each reference read by its index for the rows at hand only; run it after adding a reference to the ledger.';

SELECT terra.compile_ledger_guards();
