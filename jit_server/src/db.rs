//! The database: one code path for SQLite (default, a file in the data directory) and
//! PostgreSQL (`database = "postgres://…"`, several replicas), through sqlx's Any driver with
//! portable SQL (`$N` parameters, BIGINT/TEXT only, RETURNING, ON CONFLICT).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};

/// Migrations, applied in order; the schema records the highest applied.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_ticket.sql")),
    (3, include_str!("../migrations/0003_mfa.sql")),
    (4, include_str!("../migrations/0004_sgrant_index.sql")),
    (5, include_str!("../migrations/0005_sgrant_weight.sql")),
];

/// An open database.
#[derive(Clone)]
pub struct Db {
    /// Every transaction and write.
    pub pool: AnyPool,
    /// Single reads outside transactions (long-poll re-reads, token and host-key lookups): on
    /// SQLite several WAL readers beside the one writer, so waiting hosts never queue behind
    /// approvals; on PostgreSQL the same pool.
    pub read: AnyPool,
    pub postgres: bool,
    pub url: String,
    /// This process's name in its NOTIFY payloads (random, per `Db::open`): its own listener
    /// skips them, since the API layer has already woken this replica's polls.
    pub replica: String,
}

impl Db {
    pub async fn open(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres && !url.starts_with("sqlite://") {
            return Err(Error::bad("database must be sqlite://… or postgres://…"));
        }
        // SQLite has one writer: one connection serializes every transaction in this process
        // (no SQLITE_BUSY from read-then-write upgrades); other processes wait on busy_timeout.
        let max = if postgres { 16 } else { 1 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(url)
            .await
            .map_err(|e| Error::internal(format!("database {}: {e}", redact(url))))?;
        let read = if postgres {
            pool.clone()
        } else {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
            AnyPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await
                .map_err(|e| Error::internal(format!("database {}: {e}", redact(url))))?
        };
        Ok(Db {
            pool,
            read,
            postgres,
            url: url.to_string(),
            replica: crate::util::new_id("rep")?,
        })
    }

    /// Creates or updates the schema: every pending migration, each in its own transaction.
    /// On PostgreSQL the whole run holds a session advisory lock, so replicas starting together
    /// (or an `init` racing a `serve`) migrate one after the other: the second re-reads the
    /// version under the lock and finds nothing left to do. SQLite serves one replica and
    /// serializes writers on the file.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let r = migrate_on(&mut conn).await;
        if self.postgres {
            // Also released when the session ends, should this fail.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        r
    }

    /// A transaction that writes. On SQLite it takes the write lock at BEGIN (IMMEDIATE): a
    /// deferred transaction that read first and writes later fails at once with "database is
    /// locked" when another process (`jit-server host add` beside `serve`) wrote in between,
    /// without waiting on the busy timeout; an immediate one waits for the lock instead.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        if self.postgres {
            Ok(self.pool.begin().await?)
        } else {
            Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
        }
    }

    /// 0 when no schema exists.
    pub async fn schema_version(&self) -> Result<i64> {
        let r = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&self.pool)
            .await;
        match r {
            Ok(row) => Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0)),
            Err(_) => Ok(0),
        }
    }

    /// Refuses to serve on a schema other than the one this binary knows.
    pub async fn check_schema(&self) -> Result<()> {
        let v = self.schema_version().await?;
        let want = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if v != want {
            return Err(Error::internal(format!(
                "database schema version {v}, this jit-server needs {want}"
            )));
        }
        Ok(())
    }

    /// Wakes the long-polls of `hosts` on every replica (PostgreSQL; SQLite's one replica wakes
    /// its own in the API layer), after the change committed. Only a hint: pollers also re-read
    /// on a timer, so a lost notification delays by at most that timer, and a failure here
    /// (even PostgreSQL's notification queue being full) never undoes or fails the change, which
    /// is why it is not sent inside the changing transaction. NOTIFY gives its transaction an
    /// id, so its commit would wait for a WAL flush of its own before this replica's hosts are
    /// woken; a hint needs no durability, so that commit is asynchronous (`synchronous_commit`
    /// off for this one statement's transaction). The payload names the sending replica and the
    /// hosts, so a change to one host does not make every waiting host re-read.
    pub async fn notify_hosts(&self, hosts: &[String]) {
        if self.postgres && !hosts.is_empty() {
            let _ = sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), pg_notify('jit_change', $1)",
            )
            .bind(notify_payload(&self.replica, hosts))
            .execute(&self.pool)
            .await;
        }
    }
}

/// `REPLICA|host,host,…` (host names never contain ',' or '|'), or `REPLICA|` for "every host"
/// when the list would not fit a notification (PostgreSQL's limit is 8000 bytes).
pub fn notify_payload(replica: &str, hosts: &[String]) -> String {
    let p = hosts.join(",");
    if p.len() > 7000 {
        format!("{replica}|")
    } else {
        format!("{replica}|{p}")
    }
}

/// What a notification asks of a replica.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Sent by this replica, whose polls were woken already.
    Own,
    All,
    Hosts(Vec<String>),
}

/// Reads a payload of [`notify_payload`] for `replica`. A payload without a sender (a replica
/// of an older version) is a plain host list; empty means every host.
pub fn parse_notify(replica: &str, payload: &str) -> Wake {
    let list = match payload.split_once('|') {
        Some((from, _)) if from == replica => return Wake::Own,
        Some((_, list)) => list,
        None => payload,
    };
    if list.is_empty() {
        Wake::All
    } else {
        Wake::Hosts(list.split(',').map(str::to_string).collect())
    }
}

/// Key of the PostgreSQL advisory lock held while migrating ("jitmigr" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x006a_6974_6d69_6772;

async fn version_on(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    // The table does not exist before the first migration.
    match sqlx::query("SELECT MAX(version) AS v FROM schema_version")
        .fetch_one(&mut *conn)
        .await
    {
        Ok(row) => Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0)),
        Err(_) => Ok(0),
    }
}

async fn migrate_on(conn: &mut sqlx::AnyConnection) -> Result<()> {
    use sqlx::Connection;
    let current = version_on(conn).await?;
    for (v, sql) in MIGRATIONS {
        if *v > current {
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

pub fn get_str(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}

pub fn get_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub fn get_i64(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub fn get_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// SQLite mode serves from one process only: a second `serve` on the same data directory would
/// keep its own wake-ups and could not see the first one's changes promptly. Held for the life
/// of the process.
pub fn single_replica_lock(data: &Path) -> Result<File> {
    let path = data.join("serve.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::conflict(format!(
            "another jit-server serve holds {} (SQLite mode runs one replica; use PostgreSQL for several)",
            path.display()
        )));
    }
    Ok(f)
}

/// Audit ids sort in the order records were written (nanoseconds, then randomness), so records
/// of the same second read back in order.
fn audit_id() -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!(
        "a-{nanos:020}-{}",
        crate::util::hex(&crate::util::random_bytes::<4>()?)
    ))
}

/// Writes one audit record inside the caller's transaction, so no state change commits without
/// its record.
pub async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO audit (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(audit_id()?)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// PostgreSQL: LISTEN for other replicas' changes and wake this replica's long-polls. Reconnects
/// forever; while disconnected, long-polls still re-read on their timer.
pub async fn listen_changes(url: String, state: std::sync::Arc<crate::api::AppState>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut l) => {
                if l.listen("jit_change").await.is_ok() {
                    // Anything missed while reconnecting is covered by one wake now.
                    state.woke();
                    while let Ok(Some(n)) = l.try_recv().await {
                        match parse_notify(&state.db.replica, n.payload()) {
                            Wake::Own => {}
                            Wake::All => state.woke(),
                            Wake::Hosts(hosts) => state.wake_hosts(&hosts),
                        }
                    }
                }
            }
            Err(e) => eprintln!("jit-server: LISTEN connection: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// An audit record in its own transaction, for operator actions that change files rather than
/// rows (key rotation).
pub async fn audit_standalone(db: &Db, at: i64, action: &str, detail: &str) -> Result<()> {
    let mut tx = db.write_tx().await?;
    audit(&mut tx, at, "operator", action, "keys", detail).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_their_sender_and_read_back() {
        let hosts = vec!["web1".to_string(), "db-2.x".to_string()];
        let p = notify_payload("rep-a", &hosts);
        assert_eq!(parse_notify("rep-a", &p), Wake::Own);
        assert_eq!(parse_notify("rep-b", &p), Wake::Hosts(hosts));
        // Too many names for one notification: every host, still with its sender.
        let many: Vec<String> = (0..2000).map(|i| format!("host{i}")).collect();
        let p = notify_payload("rep-a", &many);
        assert_eq!(p, "rep-a|");
        assert_eq!(parse_notify("rep-b", &p), Wake::All);
        assert_eq!(parse_notify("rep-a", &p), Wake::Own);
        // A replica of the earlier version sends a bare list, or nothing for every host.
        assert_eq!(
            parse_notify("rep-b", "web1,web2"),
            Wake::Hosts(vec!["web1".into(), "web2".into()])
        );
        assert_eq!(parse_notify("rep-b", ""), Wake::All);
    }
}
