//! The SQLite backend: one writer thread with group commit, a few reader threads, WAL mode and
//! `synchronous=FULL` so that a committed batch survives a power cut.
//!
//! The writer takes every job waiting in its queue (up to [`MAX_BATCH`]), runs each in its own
//! savepoint inside one `BEGIN IMMEDIATE` transaction, commits once, then completes each job
//! with the commit's outcome. A job that fails or panics is rolled back to its savepoint
//! without touching the others. Batches form by themselves under load: while one commit
//! fsyncs, the next requests queue up.
//!
//! Checkpoints (copying the WAL back into the database file, with its own fsync) run on a
//! separate thread so that the writer's commits never wait for them; the writer checkpoints
//! itself only as a safety net when the WAL grows past [`WRITER_CHECKPOINT_PAGES`]. Short
//! reads of the request path ([`super::Store::read_now`]) run on the calling thread over a
//! per-thread connection, longer ones on the reader threads; in WAL mode neither waits for
//! the writer.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value as Sqlite, ValueRef};
use rusqlite::{Connection, ToSql};

use super::{Backend, ReadJob, Row, SqlValue, StoreError, Tx, WriteJob};

/// The most jobs one commit carries; bounds the latency a batch adds to its first job.
pub const MAX_BATCH: usize = 256;
const READERS: usize = 4;
/// Page cache of the writer, in KiB: the hot index pages of large tables stay in memory.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Page cache of each reader connection, in KiB (there is one per reader thread and one per
/// runtime worker thread, so this is kept modest for the memory budget).
const READER_CACHE_KIB: i64 = 8 * 1024;
/// WAL size at which the writer checkpoints by itself (the checkpoint thread fell behind).
pub const WRITER_CHECKPOINT_PAGES: i64 = 20_000;
/// Pause between background checkpoints while commits keep coming.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_limits_and_outbox.sql")),
    (3, include_str!("0003_delivery.sql")),
    (4, include_str!("0004_right_order_hashes.sql")),
    (5, include_str!("0005_sub_order_lines_index.sql")),
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
    /// Identifies this database to the per-thread inline reader connections; they are dropped
    /// once the backend is gone.
    token: Arc<()>,
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
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

/// Turns off SQLite's global allocation statistics, once, before the library initialises:
/// they take a process-wide mutex on every allocation, which the writer and the readers of the
/// request path then fight over. Nothing here reads those statistics.
fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection is opened by this process
        // (the Once runs first in `connect`); if the library was initialised already it returns
        // SQLITE_MISUSE and changes nothing, which is harmless.
        unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0);
        }
    });
}

fn connect(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    configure_library();
    let conn = Connection::open(path).map_err(map_err)?;
    // temp_store=MEMORY keeps the statement journal of each job's savepoint in memory: on
    // disk it costs a write per page a job first touches, which dominated the writer.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; \
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-{cache_kib};"
    ))
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
        let writer_conn = connect(&path, WRITER_CACHE_KIB)?;
        migrate(&writer_conn)?;
        writer_conn
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES};"
            ))
            .map_err(map_err)?;
        let checkpoint_conn = connect(&path, 1024)?;
        let (commits_tx, commits_rx) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoint_conn, commits_rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (write_tx, write_rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer_conn, write_rx, commits_tx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = connect(&path, READER_CACHE_KIB)?;
            let rx = Arc::clone(&read_rx);
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || run_reader(conn, rx))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        Ok(Self {
            path,
            token: Arc::new(()),
            writer: write_tx,
            readers: read_tx,
        })
    }
}

impl Backend for SqliteBackend {
    fn submit_write(&self, job: WriteJob) -> Result<(), StoreError> {
        self.writer.send(job).map_err(|_| closed())
    }

    fn submit_read(&self, job: ReadJob) -> Result<(), StoreError> {
        self.readers.send(job).map_err(|_| closed())
    }

    fn read_inline(&self, job: ReadJob) -> Result<(), StoreError> {
        INLINE_READERS.with(|cell| {
            let mut conns = cell.borrow_mut();
            let key = Arc::as_ptr(&self.token) as usize;
            let found = conns
                .iter()
                .position(|(token, k, _)| *k == key && token.strong_count() > 0);
            let index = match found {
                Some(i) => i,
                None => {
                    conns.retain(|(token, _, _)| token.strong_count() > 0);
                    let conn = connect(&self.path, READER_CACHE_KIB)?;
                    conns.push((Arc::downgrade(&self.token), key, conn));
                    conns.len() - 1
                }
            };
            run_read(&conns[index].2, job);
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

thread_local! {
    /// This thread's read connections, one per open database (usually one).
    static INLINE_READERS: RefCell<Vec<(Weak<()>, usize, Connection)>> = const { RefCell::new(Vec::new()) };
}

fn closed() -> StoreError {
    StoreError::Backend("database threads have stopped".into())
}

/// Runs `sql` through the statement cache: the savepoint statements run once per job, and
/// parsing them each time showed in the writer's profile.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_writer(conn: Connection, jobs: Receiver<WriteJob>, commits: SyncSender<()>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec_cached(&conn, "BEGIN IMMEDIATE") {
            let err = map_err(e);
            for job in batch {
                job.finish(Err(err.clone()));
            }
            continue;
        }
        let mut ran = Vec::with_capacity(batch.len());
        for mut job in batch {
            if let Err(e) = exec_cached(&conn, "SAVEPOINT job") {
                job.finish(Err(map_err(e)));
                continue;
            }
            let keep = catch_unwind(AssertUnwindSafe(|| job.run(&mut SqliteTx(&conn))));
            let step = if matches!(keep, Ok(true)) {
                exec_cached(&conn, "RELEASE job")
            } else {
                exec_cached(&conn, "ROLLBACK TO job")
                    .and_then(|_| exec_cached(&conn, "RELEASE job"))
            };
            if let Err(e) = step {
                tracing::error!(error = %e, "savepoint step failed");
            }
            match keep {
                Ok(_) => ran.push(job),
                Err(_) => job.finish(Err(StoreError::Backend("write job panicked".into()))),
            }
        }
        let commit = exec_cached(&conn, "COMMIT").map_err(map_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in ran {
            job.finish(commit.clone());
        }
        // Wakes the checkpoint thread; a full slot means it already has a wake-up pending.
        let _ = commits.try_send(());
    }
}

/// Copies committed WAL frames into the database file while commits come in, pausing between
/// rounds so that one checkpoint (and its fsync) serves many commits. PASSIVE never blocks the
/// writer or the readers. Stops when the writer does.
fn run_checkpointer(conn: Connection, commits: Receiver<()>) {
    while commits.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
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
        run_read(&conn, job);
    }
}

/// Runs one read job in its own snapshot.
fn run_read(conn: &Connection, job: ReadJob) {
    if exec_cached(conn, "BEGIN").is_err() {
        job(&mut FailedTx(StoreError::Backend(
            "cannot begin read".into(),
        )));
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut SqliteTx(conn))));
    let _ = exec_cached(conn, "COMMIT");
}
