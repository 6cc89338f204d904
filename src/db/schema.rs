//! Which of the embedded migrations the database has applied, for start-up and `migrate` to
//! report.

use std::fmt;

use sqlx::PgPool;

use super::MIGRATOR;

/// The database's migration state compared with the migrations embedded in this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Embedded migrations the database has applied.
    pub applied: usize,
    /// Embedded migrations in this binary.
    pub embedded: usize,
    /// The newest applied migration: version and description.
    pub newest_applied: Option<(i64, String)>,
    /// Embedded migrations not applied yet: version and description, oldest first.
    pub pending: Vec<(i64, String)>,
    /// Versions the database has applied that this binary does not know (a newer binary ran).
    pub unknown: usize,
}

impl MigrationState {
    /// Compares the versions a database has applied with the embedded ones.
    pub fn from_applied(applied_versions: &[i64]) -> Self {
        let mut embedded: Vec<(i64, String)> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        embedded.sort();
        let (done, pending): (Vec<_>, Vec<_>) = embedded
            .iter()
            .cloned()
            .partition(|(v, _)| applied_versions.contains(v));
        let unknown = applied_versions
            .iter()
            .filter(|v| !embedded.iter().any(|(e, _)| e == *v))
            .count();
        Self {
            applied: done.len(),
            embedded: embedded.len(),
            newest_applied: done.last().cloned(),
            pending,
            unknown,
        }
    }

    /// True when nothing is left to apply.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} migrations applied",
            self.applied, self.embedded
        )?;
        if let Some((version, description)) = &self.newest_applied {
            write!(f, " (newest {version} {description})")?;
        }
        if !self.pending.is_empty() {
            let pending: Vec<String> = self
                .pending
                .iter()
                .map(|(v, d)| format!("{v} {d}"))
                .collect();
            write!(f, "; pending: {}", pending.join(", "))?;
        }
        if self.unknown > 0 {
            write!(
                f,
                "; {} applied migration(s) are newer than this binary",
                self.unknown
            )?;
        }
        Ok(())
    }
}

/// Reads the applied migrations from sqlx's bookkeeping table (none when it does not exist).
pub async fn migration_state(pool: &PgPool) -> Result<MigrationState, sqlx::Error> {
    // sqlx's own table, not part of our schema, so this query is not macro-checked.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .or_else(|e| match e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(vec![]),
                other => Err(other),
            })?;
    Ok(MigrationState::from_applied(&applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_described_plainly() {
        let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        let current = MigrationState::from_applied(&all);
        assert!(current.is_current());
        assert_eq!(current.applied, current.embedded);
        assert!(!current.to_string().contains("pending"), "{current}");

        let none = MigrationState::from_applied(&[]);
        assert_eq!(none.applied, 0);
        assert_eq!(none.pending.len(), none.embedded);
        assert!(none.to_string().starts_with("0 of "), "{none}");
        assert!(none.to_string().contains("pending: "), "{none}");

        let mut ahead = all.clone();
        ahead.push(99_999_999_999_999);
        let ahead = MigrationState::from_applied(&ahead);
        assert!(ahead.is_current());
        assert!(
            ahead.to_string().contains("newer than this binary"),
            "{ahead}"
        );
    }
}
