//! The SQLite backend: one writer thread with group commit, a few reader threads, WAL mode and
//! `synchronous=FULL` so that a committed batch survives a power cut.
//!
//! The writer takes every job waiting in its queue (up to [`MAX_BATCH`]), runs each in its own
//! savepoint inside one `BEGIN IMMEDIATE` transaction, commits once, then completes each job
//! with the commit's outcome. A job that fails or panics is rolled back to its savepoint
//! without touching the others. Batches form by themselves under load: while one commit
//! fsyncs, the next requests queue up.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, Value as Sqlite, ValueRef};
use rusqlite::{Connection, ToSql};

use super::{Backend, ReadJob, Row, SqlValue, StoreError, Tx, WriteJob};

/// The most jobs one commit carries; bounds the latency a batch adds to its first job.
pub const MAX_BATCH: usize = 256;
const READERS: usize = 4;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_limits_and_outbox.sql")),
    (3, include_str!("0003_delivery.sql")),
];

/// `sqlite://path`, `sqlite:path` or a bare path.
pub fn path_from_url(url: &str) -> PathBuf {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    PathBuf::from(path)
}

pub struct SqliteBackend {
    path: PathBuf,
    writer: Mutex<Sender<WriteJob>>,
    readers: Mutex<Sender<ReadJob>>,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Owned(Sqlite::Null),
            SqlValue::Int(v) => ToSqlOutput::Owned(Sqlite::Integer(*v)),
            SqlValue::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Constraint(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

struct SqliteTx<'c>(&'c Connection);

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, args: &[SqlValue]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(args.iter()))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, args: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(map_err)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Int(v),
                    ValueRef::Real(v) => SqlValue::Int(v as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        SqlValue::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;",
    )
    .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(map_err)?;
    for (version, sql) in MIGRATIONS {
        let done: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get::<_, i64>(0),
            )
            .map_err(map_err)?
            > 0;
        if !done {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql}; INSERT INTO schema_migrations VALUES ({version}, strftime('%s','now')); COMMIT;"
            ))
            .map_err(map_err)?;
        }
    }
    Ok(())
}

impl SqliteBackend {
    pub fn open(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create {dir:?}: {e}")))?;
        }
        let writer_conn = connect(&path)?;
        migrate(&writer_conn)?;
        let (write_tx, write_rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer_conn, write_rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = connect(&path)?;
            let rx = Arc::clone(&read_rx);
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || run_reader(conn, rx))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        Ok(Self {
            path,
            writer: Mutex::new(write_tx),
            readers: Mutex::new(read_tx),
        })
    }
}

impl Backend for SqliteBackend {
    fn submit_write(&self, job: WriteJob) -> Result<(), StoreError> {
        let sender = self.writer.lock().map_err(|_| closed())?.clone();
        sender.send(job).map_err(|_| closed())
    }

    fn submit_read(&self, job: ReadJob) -> Result<(), StoreError> {
        let sender = self.readers.lock().map_err(|_| closed())?.clone();
        sender.send(job).map_err(|_| closed())
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

fn closed() -> StoreError {
    StoreError::Backend("database threads have stopped".into())
}

fn run_writer(conn: Connection, jobs: Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = map_err(e);
            for job in batch {
                job.finish(Err(err.clone()));
            }
            continue;
        }
        let mut ran = Vec::with_capacity(batch.len());
        for mut job in batch {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                job.finish(Err(map_err(e)));
                continue;
            }
            let keep = catch_unwind(AssertUnwindSafe(|| job.run(&mut SqliteTx(&conn))));
            let step = if matches!(keep, Ok(true)) {
                conn.execute_batch("RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = step {
                tracing::error!(error = %e, "savepoint step failed");
            }
            match keep {
                Ok(_) => ran.push(job),
                Err(_) => job.finish(Err(StoreError::Backend("write job panicked".into()))),
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(map_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in ran {
            job.finish(commit.clone());
        }
    }
}

/// Stands in for a transaction that could not begin: every statement fails.
struct FailedTx(StoreError);

impl Tx for FailedTx {
    fn execute(&mut self, _: &str, _: &[SqlValue]) -> Result<u64, StoreError> {
        Err(self.0.clone())
    }
    fn query(&mut self, _: &str, _: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        Err(self.0.clone())
    }
}

fn run_reader(conn: Connection, jobs: Arc<Mutex<Receiver<ReadJob>>>) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if conn.execute_batch("BEGIN").is_err() {
            job(&mut FailedTx(StoreError::Backend(
                "cannot begin read".into(),
            )));
            continue;
        }
        let _ = catch_unwind(AssertUnwindSafe(|| job(&mut SqliteTx(&conn))));
        let _ = conn.execute_batch("COMMIT");
    }
}
