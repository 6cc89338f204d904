//! The group-commit writer's database connections: kept from one group to the next while
//! deliveries keep coming, and closed, never handed back to the pool, when dropped inside a
//! group's transaction.
//!
//! sqlx checks a connection with a round trip each time the pool lends it and each time it
//! comes back. At ordinary rates a group holds one delivery, and those two round trips on top of
//! the group's own three (`BEGIN`, the insert, `COMMIT`) cost about a quarter of the CPU an
//! acknowledgement takes, in the database and in the service alike.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Executor, PgConnection, Postgres};
use tokio::time::Instant;

/// The connection one group writes through.
pub(super) struct Conn {
    conn: PoolConnection<Postgres>,
    in_transaction: bool,
}

impl Conn {
    /// Wraps a connection just taken from the pool.
    pub(super) fn new(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn,
            in_transaction: false,
        }
    }

    /// Opens the group's transaction.
    pub(super) async fn begin(&mut self) -> Result<(), sqlx::Error> {
        // Set first: a `BEGIN` whose answer never came may still have opened one.
        self.in_transaction = true;
        self.conn.execute("BEGIN").await?;
        Ok(())
    }

    /// Commits the group's transaction.
    pub(super) async fn commit(&mut self) -> Result<(), sqlx::Error> {
        self.conn.execute("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropped inside its transaction (an error, or a deadline that cancelled the write):
        // closing the connection rolls the transaction back, where the pool would lend it out
        // still open.
        if self.in_transaction {
            self.conn.close_on_drop();
        }
    }
}

/// The bodies of a group from which its connection's buffers are shrunk before it is kept:
/// above what a full group of typical deliveries carries (512 of about 5 KB), so that steady
/// traffic keeps reusing its buffers and only a large delivery's are given back.
const SHRINK_BUFFERS_FROM: usize = 4 << 20;

/// Connections between two groups, each with when its last group ended.
pub(super) struct Kept {
    conns: Mutex<Vec<(Conn, Instant)>>,
    /// How long a connection may go unused before it goes back to the pool.
    linger: Duration,
    /// Most connections kept at once.
    max: usize,
}

impl Kept {
    /// Keeps up to `max` connections, each for `linger` after its last group.
    pub(super) fn new(linger: Duration, max: usize) -> Self {
        Self {
            conns: Mutex::default(),
            linger,
            max,
        }
    }

    /// How long a connection may go unused before it goes back to the pool.
    pub(super) fn linger(&self) -> Duration {
        self.linger
    }

    /// The connection used last, if one is kept.
    pub(super) fn take(&self) -> Option<Conn> {
        self.lock().pop().map(|(conn, _)| conn)
    }

    /// Keeps the connection of a group that is over, whose bodies came to `carried` bytes.
    /// With a zero linger, or `max` kept already, it goes back to the pool instead; one still
    /// in a transaction is dropped, and so closed.
    pub(super) fn keep(&self, mut conn: Conn, carried: usize) {
        if conn.in_transaction || self.linger.is_zero() {
            return;
        }
        // The connection's buffers grew to the group's message and would stay that size for
        // as long as traffic keeps the connection here.
        if carried >= SHRINK_BUFFERS_FROM {
            conn.shrink_buffers();
        }
        let mut kept = self.lock();
        if kept.len() < self.max {
            kept.push((conn, Instant::now()));
        }
    }

    /// Whether a connection is kept, or may be once the groups being written (if any) end.
    pub(super) fn may_hold(&self, groups_in_flight: bool) -> bool {
        !self.linger.is_zero() && self.max > 0 && (groups_in_flight || !self.lock().is_empty())
    }

    /// Gives the connections unused for `linger` back to the pool.
    pub(super) fn release_unused(&self) {
        let now = Instant::now();
        let unused: Vec<(Conn, Instant)> = {
            let mut kept = self.lock();
            let (unused, used) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|(_, since)| now.duration_since(*since) >= self.linger);
            *kept = used;
            unused
        };
        drop(unused);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Conn, Instant)>> {
        // The list stays consistent whatever panicked while holding it.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
