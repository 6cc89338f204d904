-- The `event_id` of every record table (typed and lifecycle) points at the ledger row it came
-- from. A foreign key checks that pointer one row at a time: removing one ledger row ran one
-- check per referencing table, each a query of its own, and they were most of what pruning the
-- ledger cost. Here the same rule is checked once per statement over all its rows,
-- with the same locks a foreign key takes:
--   * inserting or updating rows locks the ledger rows they name (FOR KEY SHARE, as a foreign
--     key's check does) and fails if one is missing; a ledger row being removed
--     meanwhile makes that lock wait, then find nothing;
--   * removing ledger rows fails if any table with the trigger still points at one of them,
--     read after the removal took its row locks;
--   * TRUNCATE of the ledger fails while such a table holds rows.
-- Both fail with SQLSTATE 23503 (foreign_key_violation), as the foreign keys did. The checks
-- need READ COMMITTED, where every statement sees what committed before it; every statement of
-- terra-sink runs so.
--
-- A table that points at the ledger by event_id joins the rule with the two triggers below;
-- the removal check and the prune's own condition find those tables by their triggers.
-- terra.users keeps its foreign keys: each batch updates its users in place without changing
-- event_id, which a foreign key skips at no cost and a statement trigger would capture and
-- check on every update.

CREATE FUNCTION terra.ledger_rows_must_exist() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids     bigint[];
    locked  bigint;
    missing bigint;
BEGIN
    -- An update checks every row it wrote, not only those whose event_id changed: nearly every
    -- update of these tables comes from a newer delivery, which changes it, and comparing with
    -- the old rows would mean capturing them too.
    SELECT array_agg(DISTINCT n.event_id) INTO ids FROM new_rows n WHERE n.event_id IS NOT NULL;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO locked
    FROM (SELECT 1 FROM terra.deliveries d WHERE d.id = ANY (ids) FOR KEY SHARE OF d) l;
    IF locked < cardinality(ids) THEN
        SELECT min(i) INTO missing
        FROM unnest(ids) AS i
        WHERE NOT EXISTS (SELECT 1 FROM terra.deliveries d WHERE d.id = i);
        RAISE EXCEPTION 'insert or update on table "%.%" violates its ledger reference',
                TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (event_id)=(%s) is not present in table "deliveries".',
                                  missing);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION terra.ledger_rows_must_exist() IS
    'Statement trigger: every event_id a statement wrote names a terra.deliveries row, locked FOR KEY SHARE as a foreign key would.';

-- The tables whose event_id the statement triggers check.
CREATE FUNCTION terra.ledger_referencing_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT t.tgrelid::regclass
    FROM pg_trigger t
    WHERE t.tgfoid = 'terra.ledger_rows_must_exist()'::regprocedure
$$;

CREATE FUNCTION terra.ledger_rows_must_be_unreferenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    probe       text;
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
    SELECT string_agg(
               CASE WHEN TG_OP = 'DELETE'
                    THEN format('SELECT %L::text AS t WHERE EXISTS (SELECT 1 FROM %s r JOIN gone g ON r.event_id = g.id)', r, r)
                    ELSE format('SELECT %L::text AS t WHERE EXISTS (SELECT 1 FROM %s r WHERE r.event_id IS NOT NULL)', r, r)
               END, ' UNION ALL ')
    INTO probe
    FROM terra.ledger_referencing_tables() AS r;
    IF probe IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE probe || ' LIMIT 1' INTO referencing;
    IF referencing IS NOT NULL THEN
        RAISE EXCEPTION 'update or delete on table "deliveries" violates the ledger reference from table "%"',
                referencing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Rows of that table still point at removed ledger rows by event_id.';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION terra.ledger_rows_must_be_unreferenced() IS
    'Statement trigger on terra.deliveries: no table of terra.ledger_referencing_tables() points at a removed ledger row.';

-- Each table: its foreign key gives way to the two statement triggers.
DO $$
DECLARE
    t regclass;
    c name;
BEGIN
    FOR t, c IN
        SELECT con.conrelid::regclass, con.conname
        FROM pg_constraint con
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
        WHERE con.contype = 'f' AND con.confrelid = 'terra.deliveries'::regclass
          AND con.confdeltype = 'a' AND a.attname = 'event_id'
          AND con.conrelid::regclass::text NOT IN ('terra.deliveries', 'terra.users')
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', t, c);
        EXECUTE format('CREATE TRIGGER ledger_rows_exist_on_insert AFTER INSERT ON %s
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION terra.ledger_rows_must_exist()', t);
        EXECUTE format('CREATE TRIGGER ledger_rows_exist_on_update AFTER UPDATE ON %s
                        REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION terra.ledger_rows_must_exist()', t);
        EXECUTE format('COMMENT ON COLUMN %s.event_id IS %L', t,
                       concat_ws(' ', col_description(t, (SELECT attnum FROM pg_attribute
                                                          WHERE attrelid = t AND attname = 'event_id')),
                                 'Checked per statement by terra.ledger_rows_must_exist, not by a foreign key.'));
    END LOOP;
END
$$;

CREATE TRIGGER deliveries_keep_referenced
AFTER DELETE ON terra.deliveries
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION terra.ledger_rows_must_be_unreferenced();

CREATE TRIGGER deliveries_truncate_keeps_referenced
AFTER TRUNCATE ON terra.deliveries
FOR EACH STATEMENT EXECUTE FUNCTION terra.ledger_rows_must_be_unreferenced();

-- The prune keeps a ledger row while anything points at it: the remaining foreign keys (but
-- the owned kept bodies, ON DELETE CASCADE) and the tables above.
CREATE OR REPLACE FUNCTION terra.ledger_unreferenced_condition() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(format('NOT EXISTS (SELECT 1 FROM %s r WHERE r.%I = d.id)', t, col),
                               ' AND ' ORDER BY t::text, col),
                    'true')
    FROM (SELECT c.conrelid::regclass AS t, a.attname AS col
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          WHERE c.contype = 'f' AND c.confrelid = 'terra.deliveries'::regclass
            AND c.confdeltype <> 'c' AND c.conparentid = 0
          UNION
          SELECT r, 'event_id'::name FROM terra.ledger_referencing_tables() AS r) refs
$$;
