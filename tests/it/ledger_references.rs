//! Every typed and lifecycle record names the ledger row it came from (`event_id`), and users,
//! chunks and downloads name theirs. No foreign key keeps these: statement triggers
//! (`terra.ledger_rows_must_exist`, `terra.ledger_rows_must_be_unreferenced`) and, for columns
//! set now and then, row triggers (`terra.ledger_row_must_exist`). These tests hold them to
//! what the foreign keys promised, concurrent writers included.

use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::eventually;

async fn ledger_row(pool: &PgPool, key: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO terra.deliveries (dedupe_key, received_at, body_sha256, body_size, shape, status)
         VALUES ($1, now(), '\\x00', 1, 'ok', 'done') RETURNING id",
    )
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

const REFER: &str = "INSERT INTO terra.auth_attempts (event_id, event_type, received_at)
                     VALUES ($1, 'auth', now())";

/// A ping's download, naming the ledger row of its ping ($2).
const DOWNLOAD: &str =
    "INSERT INTO terra.deliveries (dedupe_key, body_sha256, body_size, shape, parent_id)
                        VALUES ($1, '\\x00', 1, 'ok', $2)";

async fn count(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(pool).await.unwrap()
}

/// The SQLSTATE of a failed statement.
fn code(result: Result<impl std::fmt::Debug, sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

async fn connect(pool: &PgPool) -> (PgConnection, i32) {
    let mut conn = pool.acquire().await.unwrap().detach();
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (conn, pid)
}

/// Waits until backend `waiter` waits for a lock `holder` holds.
async fn blocked_by(pool: &PgPool, waiter: i32, holder: i32) {
    eventually("a lock wait", || async {
        sqlx::query_scalar::<_, bool>("SELECT $2 = ANY (pg_blocking_pids($1))")
            .bind(waiter)
            .bind(holder)
            .fetch_one(pool)
            .await
            .unwrap()
    })
    .await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_row_naming_a_missing_ledger_row_is_refused(pool: PgPool) {
    let id = ledger_row(&pool, "a").await;
    let missing = id + 1000;
    let insert = sqlx::query(REFER).bind(missing).execute(&pool).await;
    assert_eq!(code(insert), "23503");
    sqlx::query(REFER).bind(id).execute(&pool).await.unwrap();

    let moved = sqlx::query("UPDATE terra.auth_attempts SET event_id = $1")
        .bind(missing)
        .execute(&pool)
        .await;
    assert_eq!(code(moved), "23503");
    // An update that keeps event_id finds its ledger row again.
    sqlx::query("UPDATE terra.auth_attempts SET reason = 'checked'")
        .execute(&pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_referenced_ledger_row_cannot_be_removed(pool: PgPool) {
    let (kept, free) = (
        ledger_row(&pool, "kept").await,
        ledger_row(&pool, "free").await,
    );
    sqlx::query(REFER).bind(kept).execute(&pool).await.unwrap();

    let delete = sqlx::query("DELETE FROM terra.deliveries WHERE id = ANY ($1)")
        .bind(vec![kept, free])
        .execute(&pool)
        .await;
    assert_eq!(code(delete), "23503");
    assert_eq!(
        code(
            sqlx::query("TRUNCATE terra.deliveries CASCADE")
                .execute(&pool)
                .await
        ),
        "23503"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.deliveries").await,
        2
    );

    // Another isolation level could not see rows committed after its snapshot: refused.
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let delete = sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
        .bind(free)
        .execute(&mut *tx)
        .await;
    assert_eq!(code(delete), "0A000");
    tx.rollback().await.unwrap();

    // Once nothing points at them, both go.
    sqlx::query("DELETE FROM terra.auth_attempts")
        .execute(&pool)
        .await
        .unwrap();
    let removed = sqlx::query("DELETE FROM terra.deliveries WHERE id = ANY ($1)")
        .bind(vec![kept, free])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(removed.rows_affected(), 2);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_removal_waits_for_a_writer_naming_the_row_then_fails(pool: PgPool) {
    let id = ledger_row(&pool, "a").await;
    let (mut writer, writer_pid) = connect(&pool).await;
    let (mut remover, remover_pid) = connect(&pool).await;
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    sqlx::query(REFER)
        .bind(id)
        .execute(&mut writer)
        .await
        .unwrap();

    let removal = tokio::spawn(async move {
        let result = sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
            .bind(id)
            .execute(&mut remover)
            .await;
        code(result)
    });
    blocked_by(&pool, remover_pid, writer_pid).await;
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    assert_eq!(removal.await.unwrap(), "23503");
    let referenced = "SELECT count(*) FROM terra.auth_attempts a
                      JOIN terra.deliveries d ON d.id = a.event_id";
    assert_eq!(count(&pool, referenced).await, 1);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_writer_naming_a_row_being_removed_waits_then_fails(pool: PgPool) {
    let id = ledger_row(&pool, "a").await;
    let (mut writer, writer_pid) = connect(&pool).await;
    let (mut remover, remover_pid) = connect(&pool).await;
    sqlx::query("BEGIN").execute(&mut remover).await.unwrap();
    sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
        .bind(id)
        .execute(&mut remover)
        .await
        .unwrap();

    let write =
        tokio::spawn(async move { code(sqlx::query(REFER).bind(id).execute(&mut writer).await) });
    blocked_by(&pool, writer_pid, remover_pid).await;
    sqlx::query("COMMIT").execute(&mut remover).await.unwrap();
    assert_eq!(write.await.unwrap(), "23503");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.auth_attempts").await,
        0
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_reference_to_the_ledger_is_kept_by_rule(pool: PgPool) {
    // No foreign key to the ledger is left; every reference is listed, with both its
    // triggers. A new table with an event_id that forgets them would hold dangling provenance.
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT conrelid::regclass::text FROM pg_constraint
         WHERE contype = 'f' AND confrelid = 'terra.deliveries'::regclass",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    let unlisted: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'terra'
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'event_id'
                            AND a.atttypid = 'bigint'::regtype
         WHERE c.relkind = 'r'
           AND NOT EXISTS (SELECT 1 FROM terra.ledger_references() r
                           WHERE r.tab = c.oid AND r.col = 'event_id')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(unlisted.is_empty(), "{unlisted:?}");

    // Each reference has an insert and an update check: the record tables' pair of statement
    // triggers, or a pair of row triggers on its column.
    let half_checked: Vec<String> = sqlx::query_scalar(
        "SELECT r.tab::text || '.' || r.col
         FROM terra.ledger_references() r
         WHERE (SELECT count(*) FROM pg_trigger t
                WHERE t.tgrelid = r.tab
                  AND (t.tgfoid = 'terra.ledger_rows_must_exist()'::regprocedure
                       OR (t.tgfoid = 'terra.ledger_row_must_exist()'::regprocedure
                           AND split_part(encode(t.tgargs, 'escape'), '\\000', 1) = r.col))) <> 2
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(half_checked.is_empty(), "{half_checked:?}");

    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT tab::text || '.' || col || ' ' || on_delete FROM terra.ledger_references()
         WHERE tab::text IN ('terra.users', 'terra.large_request_chunks', 'terra.deliveries',
                             'terra.delivery_bodies_kept')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            "terra.deliveries.parent_id restrict",
            "terra.delivery_bodies_kept.delivery_id cascade",
            "terra.large_request_chunks.delivery_id restrict",
            "terra.users.event_id restrict",
            "terra.users.status_event_id set null",
        ]
    );
    let checked = "SELECT count(*) FROM terra.ledger_referencing_tables()";
    assert_eq!(count(&pool, checked).await, 16);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn references_set_now_and_then_are_checked_when_set(pool: PgPool) {
    let id = ledger_row(&pool, "a").await;
    let missing = id + 1000;
    let user = "INSERT INTO terra.users (user_id, event_id) VALUES ($1, $2)";
    let refused = sqlx::query(user)
        .bind("u1")
        .bind(missing)
        .execute(&pool)
        .await;
    assert_eq!(code(refused), "23503");
    sqlx::query(user)
        .bind("u1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let moved = sqlx::query("UPDATE terra.users SET status_event_id = $1")
        .bind(missing)
        .execute(&pool)
        .await;
    assert_eq!(code(moved), "23503");
    let download = sqlx::query(DOWNLOAD).bind("s3:x").bind(missing);
    assert_eq!(code(download.execute(&pool).await), "23503");
    sqlx::query("INSERT INTO terra.large_requests (reference) VALUES ('r')")
        .execute(&pool)
        .await
        .unwrap();
    let chunk = "INSERT INTO terra.large_request_chunks (reference, delivery_id, received_at)
                 VALUES ('r', $1, now())";
    assert_eq!(
        code(sqlx::query(chunk).bind(missing).execute(&pool).await),
        "23503"
    );

    // Named by a user, a chunk and a download, the row stays.
    let chunked = ledger_row(&pool, "b").await;
    sqlx::query(chunk)
        .bind(chunked)
        .execute(&pool)
        .await
        .unwrap();
    let parent = ledger_row(&pool, "c").await;
    let download = sqlx::query(DOWNLOAD).bind("s3:c").bind(parent);
    download.execute(&pool).await.unwrap();
    for named in [id, chunked, parent] {
        let delete = sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
            .bind(named)
            .execute(&pool)
            .await;
        assert_eq!(code(delete), "23503", "ledger row {named}");
    }

    // A user's status event may go: the user forgets it, as ON DELETE SET NULL did.
    let status = ledger_row(&pool, "status").await;
    sqlx::query("UPDATE terra.users SET status_event_id = $1")
        .bind(status)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
        .bind(status)
        .execute(&pool)
        .await
        .unwrap();
    let cleared =
        "SELECT count(*) FROM terra.users WHERE status_event_id IS NULL AND event_id IS NOT NULL";
    assert_eq!(count(&pool, cleared).await, 1);
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_kept_body_names_its_ledger_row_and_goes_with_it(pool: PgPool) {
    let keep = "INSERT INTO terra.delivery_bodies_kept (delivery_id, received_at, body)
                VALUES ($1, now(), '\\x7b7d')";
    let id = ledger_row(&pool, "a").await;
    let refused = sqlx::query(keep).bind(id + 1000).execute(&pool).await;
    assert_eq!(code(refused), "23503");
    sqlx::query(keep).bind(id).execute(&pool).await.unwrap();
    let other = ledger_row(&pool, "b").await;
    sqlx::query(keep).bind(other).execute(&pool).await.unwrap();

    sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let kept = "SELECT array_agg(delivery_id ORDER BY delivery_id) FROM terra.delivery_bodies_kept";
    let left: Vec<i64> = sqlx::query_scalar(kept).fetch_one(&pool).await.unwrap();
    assert_eq!(left, [other]);
    sqlx::query("TRUNCATE terra.deliveries")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM terra.delivery_bodies_kept").await,
        0
    );
}

/// The definitions of the functions `terra.compile_ledger_guards()` writes.
async fn compiled_guards(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT pg_get_functiondef(f) FROM unnest(ARRAY[
             'terra.ledger_rows_must_be_unreferenced()'::regprocedure,
             'terra.prune_ledger(timestamptz, integer)'::regprocedure]) AS f",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_compiled_ledger_guards_cover_every_reference(pool: PgPool) {
    // A migration that adds a reference and forgets to recompile leaves them stale.
    let migrated = compiled_guards(&pool).await;
    let compile = "SELECT terra.compile_ledger_guards()";
    sqlx::query(compile).execute(&pool).await.unwrap();
    assert_eq!(
        compiled_guards(&pool).await,
        migrated,
        "stale after migrations"
    );
    // Their plans last a session: no plan of theirs may scan a table that has grown since.
    let scanning: Vec<String> = sqlx::query_scalar(
        "SELECT proname::text FROM pg_proc
         WHERE oid IN ('terra.ledger_rows_must_be_unreferenced()'::regprocedure,
                       'terra.prune_ledger(timestamptz, integer)'::regprocedure)
           AND NOT coalesce(proconfig, '{}') @> '{enable_seqscan=off,jit=off}'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(scanning.is_empty(), "{scanning:?}");

    // A table that joins the rule is covered once they are recompiled.
    for statement in [
        "CREATE TABLE terra.extra (event_id bigint)",
        "CREATE TRIGGER ledger_rows_exist_on_insert AFTER INSERT ON terra.extra
         REFERENCING NEW TABLE AS new_rows
         FOR EACH STATEMENT EXECUTE FUNCTION terra.ledger_rows_must_exist()",
        compile,
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    assert_ne!(compiled_guards(&pool).await, migrated);
    let (named, free) = (
        ledger_row(&pool, "named").await,
        ledger_row(&pool, "free").await,
    );
    sqlx::query("INSERT INTO terra.extra VALUES ($1)")
        .bind(named)
        .execute(&pool)
        .await
        .unwrap();
    let delete = sqlx::query("DELETE FROM terra.deliveries WHERE id = $1")
        .bind(named)
        .execute(&pool)
        .await;
    assert_eq!(code(delete), "23503");
    let prune = "SELECT removed FROM terra.prune_ledger(now() + interval '1 day', 10)";
    assert_eq!(count(&pool, &format!("SELECT ({prune})::bigint")).await, 1);
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM terra.deliveries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [named], "{free} pruned, {named} kept");
}
