//! The PostgreSQL backend, for several stateless gateway nodes over one database.
//!
//! Business code stays synchronous: a few writer and reader threads each run one job at a time
//! on a pooled connection, driving sqlx on a shared I/O runtime. Writes run at READ COMMITTED;
//! jobs that change an entity lock its row first ([`Tx::lock_row`], `FOR UPDATE`), so writers
//! of one entity take turns and read each other's results. A job that lost a race on a unique
//! key (another transaction committed the same idempotency key first) or a deadlock is rerun
//! in a fresh transaction, where it sees the winner's row and answers as a replay or refusal. The schema is the SQLite one with BIGINT integers,
//! so the same `?`-placeholder SQL runs on both (placeholders become `$n` here).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{
    Column, Connection, Either, Executor, PgConnection, PgPool, Postgres, Row as _, Statement,
    TypeInfo,
};
use tokio::runtime::{Handle, Runtime};

use super::{Backend, ReadJob, Row, SqlArg, SqlValue, StoreError, Tx, WriteJob};

const WRITERS: usize = 8;
const READERS: usize = 4;
/// Attempts of one write job before its conflict is reported.
const MAX_ATTEMPTS: u32 = 12;
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_limits_and_outbox.sql")),
    (3, include_str!("0003_delivery.sql")),
    (4, include_str!("0004_right_order_hashes.sql")),
    (5, include_str!("0005_sub_order_lines_index.sql")),
    (6, include_str!("0006_lianbei_orders.sql")),
    (7, include_str!("0007_deliveries_pending_order.sql")),
    (8, include_str!("0008_database_identity.sql")),
];
/// How long the first connection may take before the server is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Serialises schema migrations of nodes starting together.
const MIGRATION_LOCK: i64 = 0x746f_7067_6174;

/// One I/O runtime for every PostgreSQL store of the process (tests open many).
fn io_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-io")
            .enable_all()
            .build()
            .expect("the PostgreSQL I/O runtime starts")
    })
}

pub struct PgBackend {
    description: String,
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
}

fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        if code == "40001" || code == "40P01" {
            return StoreError::Conflict(db.message().to_string());
        }
        if code.starts_with("23") {
            return StoreError::Constraint(db.message().to_string());
        }
    }
    StoreError::Backend(e.to_string())
}

/// `?` → `$1`, `$2`, … outside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Hides the password of a URL for logs and `describe`.
/// A database URL as messages show it: the password of `user:password@` and of `?password=`
/// (or `sslpassword=`) masked. The credentials end at the URL's last `@`, not at a `?` before
/// it: a password may hold a raw `?` (the URL then fails to parse, and the message shows it).
fn redact(url: &str) -> String {
    let (start, rest) = match url.find("://") {
        Some(scheme) => url.split_at(scheme + 3),
        None => ("", url),
    };
    let (mut shown, after_credentials) = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at]
                .split_once(':')
                .map_or(&rest[..at], |(user, _)| user);
            let masked = if rest[..at].contains(':') { ":***" } else { "" };
            (format!("{start}{user}{masked}@"), &rest[at + 1..])
        }
        None => (start.to_string(), rest),
    };
    match after_credentials.split_once('?') {
        None => shown.push_str(after_credentials),
        Some((address, query)) => {
            let shown_query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            shown.push_str(address);
            shown.push('?');
            shown.push_str(&shown_query.join("&"));
        }
    }
    shown
}

struct PgTx<'c> {
    handle: &'c Handle,
    conn: &'c mut PoolConnection<Postgres>,
}

impl PgTx<'_> {
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let conn = &mut **self.conn;
        self.handle
            .block_on(sqlx::raw_sql(sql).execute(conn))
            .map(|_| ())
            .map_err(map_err)
    }

    async fn run(
        conn: &mut sqlx::PgConnection,
        sql: &str,
        args: &[SqlArg<'_>],
        fetch: bool,
    ) -> Result<(u64, Vec<Row>), sqlx::Error> {
        let sql = numbered(sql);
        let statement = conn.prepare(&sql).await?;
        let types: Vec<String> = match statement.parameters() {
            Some(Either::Left(types)) => types.iter().map(|t| t.name().to_string()).collect(),
            _ => Vec::new(),
        };
        let mut query = statement.query();
        for (i, value) in args.iter().enumerate() {
            let ty = types.get(i).map(String::as_str).unwrap_or("INT8");
            query = match (*value, ty) {
                (SqlArg::Int(v), "INT4") => query.bind(i32::try_from(v).unwrap_or(i32::MAX)),
                (SqlArg::Int(v), "BOOL") => query.bind(v != 0),
                (SqlArg::Int(v), "TEXT" | "VARCHAR") => query.bind(v.to_string()),
                (SqlArg::Int(v), _) => query.bind(v),
                (SqlArg::Text(t), _) => query.bind(t),
                (SqlArg::Null, "TEXT" | "VARCHAR") => query.bind(None::<String>),
                (SqlArg::Null, "INT4") => query.bind(None::<i32>),
                (SqlArg::Null, _) => query.bind(None::<i64>),
            };
        }
        if fetch {
            let rows = query.fetch_all(&mut *conn).await?;
            Ok((0, rows.iter().map(decode).collect()))
        } else {
            Ok((query.execute(&mut *conn).await?.rows_affected(), Vec::new()))
        }
    }
}

fn decode(row: &PgRow) -> Row {
    let values = row
        .columns()
        .iter()
        .map(|col| {
            let i = col.ordinal();
            let int = |v: Option<i64>| v.map_or(SqlValue::Null, SqlValue::Int);
            match col.type_info().name() {
                "INT8" => int(row.try_get::<Option<i64>, _>(i).ok().flatten()),
                "INT4" => int(row
                    .try_get::<Option<i32>, _>(i)
                    .ok()
                    .flatten()
                    .map(i64::from)),
                "INT2" => int(row
                    .try_get::<Option<i16>, _>(i)
                    .ok()
                    .flatten()
                    .map(i64::from)),
                "BOOL" => int(row
                    .try_get::<Option<bool>, _>(i)
                    .ok()
                    .flatten()
                    .map(i64::from)),
                _ => row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .map_or(SqlValue::Null, SqlValue::Text),
            }
        })
        .collect();
    Row(values)
}

impl Tx for PgTx<'_> {
    fn lock_row(&mut self, table: &str, column: &str, id: i64) -> Result<(), StoreError> {
        self.query(
            &format!("SELECT 1 FROM {table} WHERE {column} = ? FOR UPDATE"),
            &[SqlArg::Int(id)],
        )
        .map(|_| ())
    }

    fn lock_key(&mut self, key: &str) -> Result<(), StoreError> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
            &[SqlArg::Text(key)],
        )
        .map(|_| ())
    }

    /// autovacuum's own rule (more than 50 rows plus a tenth of the table changed since the
    /// last `ANALYZE`), applied by the process whose plans need it: autovacuum may be off, and
    /// even when on it looks at a table at most once a minute. Until then a table that was
    /// empty when last analyzed plans as if it still were (the dispatcher's head query then
    /// walks a sink's whole backlog once per candidate). One node analyzes a table at a time;
    /// the others skip it.
    fn refresh_statistics(&mut self, tables: &[&str]) -> Result<Vec<String>, StoreError> {
        let mut analyzed = Vec::new();
        for table in tables {
            let stale = self
                .query_opt(
                    "SELECT s.n_mod_since_analyze > 50 + s.n_live_tup / 10 \
                     AND pg_try_advisory_xact_lock(hashtextextended('topgate analyze ' || ?, 0)) \
                     FROM pg_stat_user_tables s WHERE s.relid = to_regclass(?)",
                    &[SqlArg::Text(table), SqlArg::Text(table)],
                )?
                .is_some_and(|row| row.opt_i64(0) == Some(1));
            if stale {
                self.batch(&format!("ANALYZE \"{}\"", table.replace('"', "\"\"")))?;
                analyzed.push((*table).to_string());
            }
        }
        Ok(analyzed)
    }

    fn execute(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<u64, StoreError> {
        let conn = &mut **self.conn;
        self.handle
            .block_on(Self::run(conn, sql, args, false))
            .map(|(n, _)| n)
            .map_err(map_err)
    }

    fn query(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Row>, StoreError> {
        let conn = &mut **self.conn;
        self.handle
            .block_on(Self::run(conn, sql, args, true))
            .map(|(_, rows)| rows)
            .map_err(map_err)
    }
}

/// The newest migration the database has had (0 for a new one).
async fn newest_migration(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
}

async fn migrate(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = async {
        // Looked up rather than `CREATE TABLE IF NOT EXISTS`, whose "already exists, skipping"
        // notice sqlx logs at info level on every later start and CLI command. The advisory
        // lock keeps the look-up and the creation together.
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            sqlx::raw_sql(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
        }
        for (version, sql) in MIGRATIONS {
            let done: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_one(&mut *conn)
                    .await?;
            if done == 0 {
                sqlx::raw_sql(&format!(
                    "BEGIN; {sql}; INSERT INTO schema_migrations VALUES ({version}, (extract(epoch from now()) * 1000)::bigint); COMMIT;"
                ))
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if result.is_err() {
        // A migration that failed leaves its transaction aborted, and the unlock below would
        // fail with "current transaction is aborted", hiding the cause: end it first.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked.map(|_| ())
}

/// The first connection, made directly: a pool retries a refused connection until its acquire
/// timeout and then reports only "pool timed out", hiding why. Names the server by host and
/// port alone, so no password of the URL can be shown.
async fn connect(options: &PgConnectOptions) -> Result<PgConnection, String> {
    let host = options.get_host();
    let port = options.get_port();
    let server = if host.starts_with('/') {
        format!("{host}/.s.PGSQL.{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let cause = match &e {
                sqlx::Error::Io(io) => io.to_string(),
                sqlx::Error::Database(db) => db.message().to_string(),
                other => other.to_string(),
            };
            Err(format!("cannot connect to PostgreSQL at {server}: {cause}"))
        }
        Err(_) => Err(format!(
            "cannot connect to PostgreSQL at {server}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

impl PgBackend {
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let handle = io_runtime().handle().clone();
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", redact(url))))?;
        // Connecting blocks; do it off any async context the caller may be in.
        let pool = std::thread::scope(|s| {
            s.spawn(|| {
                handle.block_on(async {
                    let mut conn = connect(&options).await?;
                    let newest = newest_migration(&mut conn)
                        .await
                        .map_err(|e| format!("cannot open {}: {e}", redact(url)))?;
                    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
                    if newest > known {
                        return Err(format!(
                            "cannot open {}: {}",
                            redact(url),
                            super::newer_schema(newest, known)
                        ));
                    }
                    migrate(&mut conn)
                        .await
                        .map_err(|e| format!("cannot open {}: {e}", redact(url)))?;
                    let _ = conn.close().await;
                    Ok::<_, String>(
                        PgPoolOptions::new()
                            .max_connections((WRITERS + READERS) as u32)
                            .acquire_timeout(Duration::from_secs(10))
                            .connect_lazy_with(options.clone()),
                    )
                })
            })
            .join()
        })
        .map_err(|_| StoreError::Backend("PostgreSQL setup panicked".into()))?
        .map_err(StoreError::Backend)?;

        let (write_tx, write_rx) = mpsc::channel::<WriteJob>();
        let write_rx = Arc::new(Mutex::new(write_rx));
        for i in 0..WRITERS {
            let (pool, handle, rx) = (pool.clone(), handle.clone(), Arc::clone(&write_rx));
            std::thread::Builder::new()
                .name(format!("pg-writer-{i}"))
                .spawn(move || run_writer(&handle, &pool, &rx))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let (pool, handle, rx) = (pool.clone(), handle.clone(), Arc::clone(&read_rx));
            std::thread::Builder::new()
                .name(format!("pg-reader-{i}"))
                .spawn(move || run_reader(&handle, &pool, &rx))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        Ok(Self {
            description: redact(url),
            writer: write_tx,
            readers: read_tx,
        })
    }
}

fn closed() -> StoreError {
    StoreError::Backend("database threads have stopped".into())
}

impl Backend for PgBackend {
    fn submit_write(&self, job: WriteJob) -> Result<(), StoreError> {
        self.writer.send(job).map_err(|_| closed())
    }

    fn submit_read(&self, job: ReadJob) -> Result<(), StoreError> {
        self.readers.send(job).map_err(|_| closed())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn plans_from_statistics(&self) -> bool {
        true
    }
}

fn next<T>(jobs: &Mutex<Receiver<T>>) -> Option<T> {
    jobs.lock().ok()?.recv().ok()
}

fn run_writer(handle: &Handle, pool: &PgPool, jobs: &Mutex<Receiver<WriteJob>>) {
    // Pooled connections return to the pool on a task of the I/O runtime when dropped.
    let _context = handle.enter();
    while let Some(mut job) = next(jobs) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = match handle.block_on(pool.acquire()) {
                Ok(conn) => conn,
                Err(e) => {
                    job.finish(Err(map_err(e)));
                    break;
                }
            };
            let mut tx = PgTx {
                handle,
                conn: &mut conn,
            };
            if let Err(e) = tx.batch("BEGIN") {
                job.finish(Err(e));
                break;
            }
            let keep = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx)));
            let commit = match keep {
                Ok(true) => tx.batch("COMMIT"),
                Ok(false) => tx.batch("ROLLBACK"),
                Err(_) => {
                    let _ = tx.batch("ROLLBACK");
                    Err(StoreError::Backend("write job panicked".into()))
                }
            };
            let lost_race = job.retryable() || matches!(commit, Err(StoreError::Conflict(_)));
            if lost_race && attempt < MAX_ATTEMPTS && keep.is_ok() {
                let _ = tx.batch("ROLLBACK");
                drop(conn);
                let jitter = u64::from(rand::random::<u8>() % 8);
                std::thread::sleep(Duration::from_millis(u64::from(attempt) * 2 + jitter));
                continue;
            }
            job.finish(commit);
            break;
        }
    }
}

fn run_reader(handle: &Handle, pool: &PgPool, jobs: &Mutex<Receiver<ReadJob>>) {
    let _context = handle.enter();
    while let Some(job) = next(jobs) {
        let mut conn = match handle.block_on(pool.acquire()) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(error = %e, "no PostgreSQL connection for a read");
                continue;
            }
        };
        let mut tx = PgTx {
            handle,
            conn: &mut conn,
        };
        if tx
            .batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .is_err()
        {
            continue;
        }
        let _ = catch_unwind(AssertUnwindSafe(|| job(&mut tx)));
        let _ = tx.batch("COMMIT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            numbered("SELECT ? , '?' FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT $1 , '?' FROM t WHERE a = $2 AND b IN ($3, $4)"
        );
    }

    #[test]
    fn a_password_holding_a_question_mark_is_redacted_whole() {
        assert_eq!(
            redact("postgres://postgres:s3cr?et@127.0.0.1:5432/x"),
            "postgres://postgres:***@127.0.0.1:5432/x"
        );
    }

    #[test]
    fn passwords_in_the_query_are_redacted() {
        assert_eq!(
            redact("postgres://u@h:5432/db?sslmode=require&password=sekrit&sslpassword=x"),
            "postgres://u@h:5432/db?sslmode=require&password=***&sslpassword=***"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
