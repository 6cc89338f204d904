-- The last foreign keys to the ledger that removing a ledger row paid for, one query per key
-- and row: terra.users (event_id, status_event_id), terra.large_request_chunks (delivery_id)
-- and terra.deliveries itself (parent_id, a ping's download). They were most of what pruning a
-- ledger row still cost. Their removal side joins the statement check of the record tables;
-- their writing side becomes a row trigger that fires only when the column is set to a new
-- ledger row, which is rare for all four (a user's provider changes, a lifecycle event, a
-- chunk, a download). A WHEN clause is evaluated before anything is queued, so the per-batch
-- update of users and the webhook's inserts of ledger rows, which leave these columns alone or
-- NULL, pay nothing, as they paid nothing to the foreign keys.
--
-- The owned kept bodies (terra.delivery_bodies_kept) keep their cascading foreign key.

CREATE FUNCTION terra.ledger_row_must_exist() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- TG_ARGV[0]: the column naming the ledger row; TG_ARGV[1]: what removing that row does.
    named bigint := (to_jsonb(NEW) ->> TG_ARGV[0])::bigint;
BEGIN
    PERFORM 1 FROM terra.deliveries d WHERE d.id = named FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%.%" violates its ledger reference',
                TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (%s)=(%s) is not present in table "deliveries".',
                                  TG_ARGV[0], named);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION terra.ledger_row_must_exist() IS
    'Row trigger, fired by a WHEN clause only when the column TG_ARGV[0] is set: it names a terra.deliveries row, locked FOR KEY SHARE as a foreign key would.';

-- Every reference to the ledger the triggers keep: the record tables' event_id (statement
-- triggers) and the columns above (row triggers), with what removing the ledger row does to
-- them: 'restrict' refuses, 'set null' clears the column.
CREATE FUNCTION terra.ledger_references(OUT tab regclass, OUT col name, OUT on_delete text)
RETURNS SETOF record
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT t.tgrelid::regclass, 'event_id'::name, 'restrict'
    FROM pg_trigger t
    WHERE t.tgfoid = 'terra.ledger_rows_must_exist()'::regprocedure
    UNION
    SELECT DISTINCT t.tgrelid::regclass, a[1]::name, a[2]
    FROM pg_trigger t,
         LATERAL string_to_array(encode(t.tgargs, 'escape'), '\000') AS a
    WHERE t.tgfoid = 'terra.ledger_row_must_exist()'::regprocedure
$$;

CREATE OR REPLACE FUNCTION terra.ledger_referencing_tables() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT tab FROM terra.ledger_references()
$$;

CREATE OR REPLACE FUNCTION terra.ledger_rows_must_be_unreferenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r           record;
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
    -- What ON DELETE SET NULL did.
    FOR r IN SELECT * FROM terra.ledger_references() WHERE on_delete = 'set null' LOOP
        IF TG_OP = 'DELETE' THEN
            EXECUTE format('UPDATE %s r SET %I = NULL FROM gone g WHERE r.%I = g.id',
                           r.tab, r.col, r.col);
        ELSE
            EXECUTE format('UPDATE %s SET %I = NULL WHERE %I IS NOT NULL', r.tab, r.col, r.col);
        END IF;
    END LOOP;
    SELECT string_agg(
               CASE WHEN TG_OP = 'DELETE'
                    THEN format('SELECT %L::text AS t WHERE EXISTS (SELECT 1 FROM %s r JOIN gone g ON r.%I = g.id)',
                                tab::text || '.' || col, tab, col)
                    ELSE format('SELECT %L::text AS t WHERE EXISTS (SELECT 1 FROM %s r WHERE r.%I IS NOT NULL)',
                                tab::text || '.' || col, tab, col)
               END, ' UNION ALL ')
    INTO probe
    FROM terra.ledger_references()
    WHERE on_delete = 'restrict';
    IF probe IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE probe || ' LIMIT 1' INTO referencing;
    IF referencing IS NOT NULL THEN
        RAISE EXCEPTION 'update or delete on table "deliveries" violates the ledger reference from "%"',
                referencing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Rows of that table still point at removed ledger rows.';
    END IF;
    RETURN NULL;
END
$$;

-- Each column: its foreign key gives way to two row triggers, one for inserts and one for
-- updates that change it.
DO $$
DECLARE
    t         regclass;
    c         name;
    on_delete text;
    fk        name;
BEGIN
    FOR t, c, on_delete IN VALUES
        ('terra.users'::regclass, 'event_id'::name, 'restrict'),
        ('terra.users', 'status_event_id', 'set null'),
        ('terra.large_request_chunks', 'delivery_id', 'restrict'),
        ('terra.deliveries', 'parent_id', 'restrict')
    LOOP
        SELECT con.conname INTO STRICT fk
        FROM pg_constraint con
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
        WHERE con.contype = 'f' AND con.confrelid = 'terra.deliveries'::regclass
          AND con.conrelid = t AND a.attname = c;
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', t, fk);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW
                        WHEN (NEW.%I IS NOT NULL)
                        EXECUTE FUNCTION terra.ledger_row_must_exist(%L, %L)',
                       'ledger_row_exists_' || c || '_on_insert', t, c, c, on_delete);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW
                        WHEN (NEW.%I IS NOT NULL AND NEW.%I IS DISTINCT FROM OLD.%I)
                        EXECUTE FUNCTION terra.ledger_row_must_exist(%L, %L)',
                       'ledger_row_exists_' || c || '_on_update', t, c, c, c, c, on_delete);
    END LOOP;
END
$$;

-- The prune keeps a ledger row while anything points at it.
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
          SELECT tab, col FROM terra.ledger_references()) refs
$$;
