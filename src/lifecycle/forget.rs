//! Erasure of people (`terra-sink forget`): every row of their Terra user ids, in every table,
//! deleted in one transaction, leaving a tombstone in `terra.users` (the id, status
//! `forgotten`, the time). The SQL is `terra.forget_users`; the rule that keeps later
//! deliveries out is the tombstone's `data_deleted_at`, which only a newer `auth` clears.

use sqlx::PgPool;

use crate::store::PgText;

/// Who to forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetRequest {
    /// Terra user ids.
    pub user_ids: Vec<String>,
    /// The app's own ids (`reference_id`): every user id connected under them.
    pub reference_ids: Vec<String>,
}

/// What `forget` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// Every user id erased: the ones named, those of the reference ids, and ids linked to
    /// them by `user_reauth`.
    pub user_ids: Vec<String>,
    /// Rows deleted across all tables.
    pub rows_deleted: i64,
}

/// Erases the people of `request` in one transaction and returns what it erased.
pub async fn forget(pool: &PgPool, request: &ForgetRequest) -> Result<Forgotten, sqlx::Error> {
    let stored = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .map(|id| PgText::new(id).as_str().to_owned())
            .collect()
    };
    let (user_ids, reference_ids) = (stored(&request.user_ids), stored(&request.reference_ids));
    let mut tx = pool.begin().await?;
    let targets = sqlx::query_scalar!(
        r#"SELECT terra.person_user_ids($1, $2) AS "ids!""#,
        &user_ids,
        &reference_ids
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows_deleted = sqlx::query_scalar!(
        r#"SELECT terra.forget_users($1, $2) AS "n!""#,
        &targets,
        &reference_ids
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Forgotten {
        user_ids: targets,
        rows_deleted,
    })
}
