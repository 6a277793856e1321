//! The SQLite backend: one writer thread with group commit, a few reader threads, WAL mode and
//! `synchronous=FULL` so that a committed batch survives a power cut.
//!
//! The writer takes every job waiting in its queue (up to [`MAX_BATCH`]), runs them in one
//! `BEGIN IMMEDIATE` transaction, commits once, then completes each job with the commit's
//! outcome. A job that fails or panics keeps none of its changes and touches none of the
//! others' (see `run_batch` for how, without a savepoint per job in the usual case). Batches
//! form by themselves under load: while one commit fsyncs, the next requests queue up.
//!
//! The writer's connection goes through the `wal_vfs` module, which hands each commit's WAL
//! frames to the OS in one write instead of two per frame.
//!
//! Checkpoints (copying the WAL back into the database file, with its own fsync) run on a
//! separate thread so that the writer's commits never wait for them; the writer checkpoints
//! itself only as a safety net when the WAL grows past [`WRITER_CHECKPOINT_PAGES`]. Short
//! reads of the request path ([`super::Store::read_now`]) run on the calling thread over a
//! per-thread connection, longer ones on the reader threads; in WAL mode neither waits for
//! the writer. A thread's one-query lookups share one read snapshot while it is current (see
//! [`SqliteBackend::lookup_inline`]): nothing committed in this process since, and younger than
//! [`HELD_SNAPSHOT_MAX_AGE`] for changes another process writes.

mod allocator;
mod wal_vfs;

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value as Sqlite, ValueRef};
use rusqlite::{Connection, OpenFlags, PrepFlags, Statement, ToSql, TransactionBehavior};

use super::{Backend, ReadJob, Row, SqlArg, SqlValue, StoreError, Tx, WriteJob};

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
/// The longest a worker's lookups share one read snapshot while this process commits nothing:
/// how late a lookup may see a change written by another process (a CLI command).
pub const HELD_SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(5);

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_limits_and_outbox.sql")),
    (3, include_str!("0003_delivery.sql")),
    (4, include_str!("0004_right_order_hashes.sql")),
    (5, include_str!("0005_sub_order_lines_index.sql")),
    (6, include_str!("0006_lianbei_orders.sql")),
    (7, include_str!("0007_right_order_status_check.sql")),
    (8, include_str!("0008_deliveries_pending_order.sql")),
    (9, include_str!("0009_database_identity.sql")),
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
    /// Batches the writer has committed; a held lookup snapshot older than the last one is
    /// given up (see [`SqliteBackend::lookup_inline`]).
    commits: Arc<AtomicU64>,
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
}

impl ToSql for SqlArg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            SqlArg::Null => ToSqlOutput::Owned(Sqlite::Null),
            SqlArg::Int(v) => ToSqlOutput::Owned(Sqlite::Integer(v)),
            SqlArg::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
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

/// The prepared statements of a connection owned by one thread (the writer, a reader, a runtime
/// worker's inline reader), found by the address and length of their SQL text and confirmed by
/// comparing it: nearly all SQL is `'static` text, so the lookup hashes two words. rusqlite's
/// cache hashes the whole text and moves the statement out of its LRU list and back on every
/// use, which was about 8 % of the writer's instructions per pay notice (callgrind).
struct ThreadStatements<'c> {
    conn: &'c Connection,
    by_text: RefCell<HashMap<TextKey, (Box<str>, Statement<'c>)>>,
}

/// The address and length of a statement's SQL text.
type TextKey = (usize, usize);

/// Dynamic SQL (text built per call) never hits; past this many entries the cache starts over
/// rather than grow.
const THREAD_STATEMENTS_MAX: usize = 256;

impl<'c> ThreadStatements<'c> {
    fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            by_text: RefCell::new(HashMap::new()),
        }
    }

    fn connection(&self) -> &Connection {
        self.conn
    }

    /// Runs `use_it` on the prepared form of `sql`, prepared on first use.
    fn with<T>(
        &self,
        sql: &str,
        use_it: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let key = (sql.as_ptr() as usize, sql.len());
        let mut by_text = self.by_text.borrow_mut();
        let hit = by_text.get(&key).is_some_and(|(text, _)| **text == *sql);
        if !hit {
            // PERSISTENT, as rusqlite's cache does: a long-lived statement taken from the
            // connection's lookaside memory leaves too little of it to the statements' runs.
            let statement = self
                .conn
                .prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
            if by_text.len() >= THREAD_STATEMENTS_MAX {
                by_text.clear();
            }
            by_text.insert(key, (sql.into(), statement));
        }
        let (_, statement) = by_text.get_mut(&key).expect("inserted above");
        use_it(statement)
    }
}

struct SqliteTx<'s, 'c>(&'s ThreadStatements<'c>);

impl Tx for SqliteTx<'_, '_> {
    fn execute(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<u64, StoreError> {
        let n = self
            .0
            .with(sql, |stmt| {
                stmt.execute(rusqlite::params_from_iter(args.iter()))
            })
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn insert_returning_id(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<i64, StoreError> {
        self.execute(sql, args)?;
        Ok(self.0.connection().last_insert_rowid())
    }

    fn query(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Row>, StoreError> {
        self.0
            .with(sql, |stmt| {
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(match row.get_ref(i)? {
                            ValueRef::Null => SqlValue::Null,
                            ValueRef::Integer(v) => SqlValue::Int(v),
                            ValueRef::Real(v) => SqlValue::Int(v as i64),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                SqlValue::Text(std::str::from_utf8(t).map_or_else(
                                    |_| String::from_utf8_lossy(t).into_owned(),
                                    str::to_owned,
                                ))
                            }
                        });
                    }
                    out.push(Row(values));
                }
                Ok(out)
            })
            .map_err(map_err)
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
        allocator::install();
    });
}

fn connect(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    configure_library();
    retry_while_busy(|| configure(Connection::open(path).map_err(map_err)?, cache_kib))
}

/// How long opening a database keeps retrying while another process holds it.
const OPEN_BUSY_LIMIT: Duration = Duration::from_secs(10);

/// Runs `open` again while it fails with `SQLITE_BUSY`, for up to [`OPEN_BUSY_LIMIT`].
///
/// The busy timeout does not cover every lock SQLite meets while a file is opened: where waiting
/// could deadlock (a statement whose read must become a write, as `CREATE TABLE IF NOT EXISTS`
/// does, or a WAL recovery) it answers `SQLITE_BUSY` at once. Several processes opening a new
/// file together under load (a server and CLI commands started by one script) met that; each
/// attempt starts over on a fresh connection, so nothing half-done is kept. SQLite's text for
/// the code is fixed ("database is locked"), and only `map_err` produces these messages.
fn retry_while_busy<T>(open: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = Instant::now() + OPEN_BUSY_LIMIT;
    loop {
        match open() {
            Err(StoreError::Backend(msg))
                if msg.contains("database is locked") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5 + rand::random::<u64>() % 20));
            }
            other => return other,
        }
    }
}

/// The writer's connection: its WAL writes go through [`wal_vfs`], which hands each batch's
/// frames to the OS in one call.
fn connect_writer(path: &Path) -> Result<Connection, StoreError> {
    configure_library();
    wal_vfs::register()
        .map_err(|rc| StoreError::Backend(format!("cannot register the WAL VFS: code {rc}")))?;
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), wal_vfs::NAME)
        .map_err(map_err)?;
    configure(conn, WRITER_CACHE_KIB)
}

fn configure(conn: Connection, cache_kib: i64) -> Result<Connection, StoreError> {
    // temp_store=MEMORY keeps statement and savepoint journals in memory: on disk they cost a
    // write per page a statement or job first touches, which dominated the writer.
    // busy_timeout first: switching a new file to WAL takes a lock another process opening it
    // at the same moment may hold.
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-{cache_kib};"
    ))
    .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    apply_migrations(conn, MIGRATIONS)
}

/// Applies those of `migrations` that `conn`'s database has not had yet.
///
/// Each migration is looked up inside the write transaction that applies it: two processes
/// opening a new database at once (a server and a CLI command) take turns on SQLite's write
/// lock, and the second then finds the migration done instead of failing on its tables.
fn apply_migrations(conn: &Connection, migrations: &[(i64, &str)]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(map_err)?;
    let newest: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    let known = migrations.last().map_or(0, |(version, _)| *version);
    if newest > known {
        return Err(StoreError::Backend(super::newer_schema(newest, known)));
    }
    for (version, sql) in migrations {
        // Rolled back when dropped without a commit (a failed migration).
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let done = tx
            .query_row(
                "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get::<_, i64>(0),
            )
            .map_err(map_err)?
            > 0;
        if !done {
            tx.execute_batch(&format!(
                "{sql}; INSERT INTO schema_migrations VALUES ({version}, strftime('%s','now'));"
            ))
            .map_err(map_err)?;
        }
        tx.commit().map_err(map_err)?;
    }
    Ok(())
}

impl SqliteBackend {
    pub fn open(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create {dir:?}: {e}")))?;
        }
        let writer_conn = retry_while_busy(|| {
            let conn = connect_writer(&path)?;
            migrate(&conn)?;
            Ok(conn)
        })?;
        writer_conn
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES};"
            ))
            .map_err(map_err)?;
        let checkpoint_conn = connect(&path, 1024)?;
        let (checkpoint_tx, checkpoint_rx) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoint_conn, checkpoint_rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (write_tx, write_rx) = mpsc::channel::<WriteJob>();
        let commits = Arc::new(AtomicU64::new(0));
        let writer_commits = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                raise_writer_priority();
                run_writer(writer_conn, write_rx, &writer_commits, checkpoint_tx)
            })
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
            commits,
            writer: write_tx,
            readers: read_tx,
        })
    }
}

impl Backend for SqliteBackend {
    fn submit_write(&self, job: WriteJob) -> Result<(), StoreError> {
        // A thread busy with writes may not park for a long time; the snapshot its earlier
        // lookups held would keep checkpoints from copying the WAL back meanwhile.
        release_thread_snapshots();
        self.writer.send(job).map_err(|_| closed())
    }

    fn submit_read(&self, job: ReadJob) -> Result<(), StoreError> {
        self.readers.send(job).map_err(|_| closed())
    }

    fn read_inline(&self, job: ReadJob) -> Result<(), StoreError> {
        self.with_inline_reader(|slot| {
            slot.release_snapshot();
            slot.reader
                .with_dependent(|_, statements| run_read(statements, job));
        })
    }

    /// Runs the lookup in the read snapshot this thread holds, or in a new one it then keeps.
    ///
    /// Beginning and ending a read transaction takes and drops SQLite's WAL read lock, an
    /// `fcntl` and a contended mutex each time: about 15 % of the server's time per lianbei
    /// call (perf). So consecutive lookups on one worker share a snapshot for as long as it is
    /// current: the writer has committed nothing since (it counts its commits, and the count
    /// is read before a snapshot starts, so a lookup that starts after a commit was answered
    /// always sees it) and it is younger than [`HELD_SNAPSHOT_MAX_AGE`], which bounds how late
    /// a change made by another process shows. A held snapshot is given up when the worker
    /// parks or submits a write ([`release_thread_snapshots`]), so that a worker idle or busy
    /// with writes never keeps checkpoints from copying the WAL back.
    fn lookup_inline(&self, job: ReadJob) -> Result<(), StoreError> {
        let commits = self.commits.load(Ordering::Acquire);
        self.with_inline_reader(|slot| {
            let current = slot.held.is_some_and(|held| {
                held.commits == commits && held.since.elapsed() < HELD_SNAPSHOT_MAX_AGE
            });
            if !current {
                slot.release_snapshot();
                let began = slot
                    .reader
                    .with_dependent(|_, statements| exec_cached(statements, "BEGIN"));
                if began.is_ok() {
                    slot.held = Some(HeldSnapshot {
                        commits,
                        since: Instant::now(),
                    });
                }
            }
            slot.reader.with_dependent(|conn, statements| {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    job(&mut OneQuery {
                        statements,
                        used: false,
                    })
                }));
                // An error can end the transaction (SQLite rolls it back by itself).
                if conn.is_autocommit() {
                    slot.held = None;
                }
            });
        })
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl SqliteBackend {
    /// Runs `read` on this thread's connection to this database, opened on first use.
    fn with_inline_reader(&self, read: impl FnOnce(&mut InlineSlot)) -> Result<(), StoreError> {
        INLINE_READERS.with(|cell| {
            let mut slots = cell.borrow_mut();
            let key = Arc::as_ptr(&self.token) as usize;
            let found = slots
                .iter()
                .position(|slot| slot.key == key && slot.token.strong_count() > 0);
            let index = match found {
                Some(i) => i,
                None => {
                    slots.retain(|slot| slot.token.strong_count() > 0);
                    let conn = connect(&self.path, READER_CACHE_KIB)?;
                    slots.push(InlineSlot {
                        token: Arc::downgrade(&self.token),
                        key,
                        reader: InlineReader::new(conn, |conn| ThreadStatements::new(conn)),
                        held: None,
                    });
                    slots.len() - 1
                }
            };
            read(&mut slots[index]);
            Ok(())
        })
    }
}

/// Ends every read snapshot this thread's lookups hold: for a runtime worker about to park,
/// and for a thread about to wait for a write.
pub fn release_thread_snapshots() {
    // A worker parking while this thread-local is borrowed cannot happen (lookups do not
    // await), but a failed borrow is simply skipped.
    let _ = INLINE_READERS.try_with(|cell| {
        if let Ok(mut slots) = cell.try_borrow_mut() {
            slots.iter_mut().for_each(InlineSlot::release_snapshot);
        }
    });
}

self_cell::self_cell!(
    /// A worker thread's read connection with its prepared statements, which borrow it.
    struct InlineReader {
        owner: Connection,
        #[not_covariant]
        dependent: ThreadStatements,
    }
);

/// A thread's read connection to one open database, with the snapshot its lookups share.
struct InlineSlot {
    /// Alive while the database's backend is.
    token: Weak<()>,
    key: usize,
    reader: InlineReader,
    held: Option<HeldSnapshot>,
}

/// A read transaction left open for the next lookups of the same thread.
#[derive(Clone, Copy)]
struct HeldSnapshot {
    /// The writer's commit count read before the snapshot began.
    commits: u64,
    since: Instant,
}

impl InlineSlot {
    fn release_snapshot(&mut self) {
        if self.held.take().is_some() {
            self.reader.with_dependent(|conn, statements| {
                if !conn.is_autocommit() {
                    let _ = exec_cached(statements, "COMMIT");
                }
            });
        }
    }
}

thread_local! {
    /// This thread's read connections, one per open database (usually one).
    static INLINE_READERS: RefCell<Vec<InlineSlot>> = const { RefCell::new(Vec::new()) };
}

fn closed() -> StoreError {
    StoreError::Backend("database threads have stopped".into())
}

/// Runs `sql` through the statement cache: the transaction statements run once per batch (and
/// the savepoint ones once per job of a guarded batch); parsing them each time showed in the
/// writer's profile.
fn exec_cached(statements: &ThreadStatements<'_>, sql: &str) -> rusqlite::Result<()> {
    statements.with(sql, |stmt| stmt.execute([])).map(|_| ())
}

/// The writer thread's nice value, when the process may set it (`CAP_SYS_NICE`, or root).
///
/// Every write waits for this one thread, and on a busy machine it waited for a core behind
/// the runtime workers that feed it: 31 % of its time runnable but not running in a pay
/// phase (`/proc/<tid>/schedstat`), each commit and so each batch later. A nice value is a
/// larger share of the CPU, not a strict priority: at real-time priority the writer started
/// every batch at once and batches got so small that throughput fell (BENCHMARKS.md).
const WRITER_NICE: i32 = -10;

/// Gives the calling thread (the writer) [`WRITER_NICE`]; without the privilege it stays as
/// it is.
fn raise_writer_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread; no memory is passed.
        let outcome = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WRITER_NICE)
        };
        if outcome != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "the SQLite writer keeps its scheduling priority"
            );
        }
    }
}

fn run_writer(
    conn: Connection,
    jobs: Receiver<WriteJob>,
    commits: &AtomicU64,
    checkpoints: SyncSender<()>,
) {
    let statements = ThreadStatements::new(&conn);
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&statements, batch, commits);
        // Wakes the checkpoint thread; a full slot means it already has a wake-up pending.
        let _ = checkpoints.try_send(());
    }
}

/// How the jobs of a batch ran in one transaction.
enum BatchRun {
    /// Committed; per job, whether it panicked (and so kept none of its changes).
    Committed(Vec<bool>),
    /// A job failed after changing rows, with no savepoint to undo just its changes by; the
    /// transaction was rolled back.
    Spoiled,
    /// The transaction could not begin or commit, or SQLite rolled it back by itself.
    Failed(StoreError),
}

/// Runs one batch in one transaction, then hands each job the commit's outcome.
///
/// Jobs run back to back without a savepoint each: the savepoint statements and the copy of
/// every page a job first touches into the savepoint's journal were about 6 % of the server's
/// instructions per pay notice (callgrind). A job refused before it wrote anything (the usual
/// case: verdicts come before writes) has nothing to undo, which the connection's change
/// counter tells. Only a job that fails after changing rows spoils the transaction: the batch
/// is then rolled back and run again with a savepoint per job, so that exactly that job's
/// changes are undone. Running a job twice is allowed ([`super::Store::attempt`]): nothing of
/// the first run was committed.
///
/// `commits` counts committed batches; it moves before any job of the batch is answered.
fn run_batch(statements: &ThreadStatements<'_>, mut batch: Vec<WriteJob>, commits: &AtomicU64) {
    let mut run = run_jobs(statements, &mut batch, false);
    if matches!(run, BatchRun::Spoiled) {
        run = run_jobs(statements, &mut batch, true);
    }
    let failure = match run {
        BatchRun::Committed(panicked) => {
            commits.fetch_add(1, Ordering::Release);
            for (job, panicked) in batch.into_iter().zip(panicked) {
                job.finish(if panicked {
                    Err(StoreError::Backend("write job panicked".into()))
                } else {
                    Ok(())
                });
            }
            return;
        }
        BatchRun::Failed(err) => err,
        // A guarded run rolls a failed job back to its savepoint and never spoils the batch.
        BatchRun::Spoiled => StoreError::Backend("batch rolled back".into()),
    };
    for job in batch {
        job.finish(Err(failure.clone()));
    }
}

/// Runs every job of `batch` in one `BEGIN IMMEDIATE` transaction and commits it; `guarded`
/// gives each job a savepoint, rolled back when the job fails.
fn run_jobs(statements: &ThreadStatements<'_>, batch: &mut [WriteJob], guarded: bool) -> BatchRun {
    let conn = statements.connection();
    if let Err(e) = exec_cached(statements, "BEGIN IMMEDIATE") {
        return BatchRun::Failed(map_err(e));
    }
    let abandon = |err: StoreError| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        BatchRun::Failed(err)
    };
    let mut panicked = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        if guarded {
            if let Err(e) = exec_cached(statements, "SAVEPOINT job") {
                return abandon(map_err(e));
            }
        }
        let changes_before = conn.total_changes();
        let outcome = catch_unwind(AssertUnwindSafe(|| job.run(&mut SqliteTx(statements))));
        let kept = matches!(outcome, Ok(true));
        if guarded {
            let step = if kept {
                exec_cached(statements, "RELEASE job")
            } else {
                exec_cached(statements, "ROLLBACK TO job")
                    .and_then(|_| exec_cached(statements, "RELEASE job"))
            };
            if let Err(e) = step {
                return abandon(map_err(e));
            }
        } else if !kept && conn.total_changes() != changes_before {
            let _ = conn.execute_batch("ROLLBACK");
            return BatchRun::Spoiled;
        }
        // Some failures (a full disk, an I/O error) make SQLite roll the whole transaction
        // back; what follows would otherwise run, and commit, outside any transaction.
        if conn.is_autocommit() {
            return BatchRun::Failed(StoreError::Backend(
                "the database rolled the batch back".into(),
            ));
        }
        panicked.push(outcome.is_err());
    }
    match exec_cached(statements, "COMMIT") {
        Ok(()) => BatchRun::Committed(panicked),
        Err(e) => abandon(map_err(e)),
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

/// The transaction of a one-query lookup: SQLite runs a statement outside an explicit
/// transaction in a snapshot of its own; a second statement, or a write, is refused.
struct OneQuery<'s, 'c> {
    statements: &'s ThreadStatements<'c>,
    used: bool,
}

impl Tx for OneQuery<'_, '_> {
    fn execute(&mut self, _: &str, _: &[SqlArg<'_>]) -> Result<u64, StoreError> {
        Err(StoreError::Backend("a lookup does not write".into()))
    }

    fn insert_returning_id(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<i64, StoreError> {
        self.execute(sql, args).map(|_| 0)
    }

    fn query(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Row>, StoreError> {
        if std::mem::replace(&mut self.used, true) {
            return Err(StoreError::Backend("a lookup runs one query".into()));
        }
        SqliteTx(self.statements).query(sql, args)
    }
}

/// Stands in for a transaction that could not begin: every statement fails.
struct FailedTx(StoreError);

impl Tx for FailedTx {
    fn execute(&mut self, _: &str, _: &[SqlArg<'_>]) -> Result<u64, StoreError> {
        Err(self.0.clone())
    }
    fn query(&mut self, _: &str, _: &[SqlArg<'_>]) -> Result<Vec<Row>, StoreError> {
        Err(self.0.clone())
    }
}

fn run_reader(conn: Connection, jobs: Arc<Mutex<Receiver<ReadJob>>>) {
    let statements = ThreadStatements::new(&conn);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        run_read(&statements, job);
    }
}

/// Runs one read job in its own snapshot.
fn run_read(statements: &ThreadStatements<'_>, job: ReadJob) {
    if exec_cached(statements, "BEGIN").is_err() {
        job(&mut FailedTx(StoreError::Backend(
            "cannot begin read".into(),
        )));
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut SqliteTx(statements))));
    let _ = exec_cached(statements, "COMMIT");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::store::WriteWork;

    /// SQLite's own `SQLITE_BUSY` (a write transaction of another connection while this one
    /// begins one with the busy handler off) is retried until the other lets go; any other
    /// failure is returned at once.
    #[test]
    fn opening_retries_a_busy_database_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.db");
        let holder = connect(&path, 1024).expect("first connection");
        holder.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").expect("released");
        });
        let attempts = std::cell::Cell::new(0);
        let started = Instant::now();
        retry_while_busy(|| {
            attempts.set(attempts.get() + 1);
            let conn = Connection::open(&path).map_err(map_err)?;
            conn.busy_timeout(Duration::ZERO).map_err(map_err)?;
            conn.execute_batch("BEGIN IMMEDIATE; COMMIT")
                .map_err(map_err)
        })
        .expect("opened once the lock is released");
        assert!(attempts.get() > 1, "the first attempt met the lock");
        assert!(started.elapsed() >= Duration::from_millis(250));
        release.join().expect("holder thread");

        let attempts = std::cell::Cell::new(0);
        let refused: Result<(), StoreError> = retry_while_busy(|| {
            attempts.set(attempts.get() + 1);
            Err(StoreError::Backend("no such table: x".into()))
        });
        assert!(refused.is_err());
        assert_eq!(attempts.get(), 1);
    }

    /// How a test job ends after inserting its value.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Ending {
        Keep,
        RefuseBeforeWriting,
        RefuseAfterWriting,
        PanicAfterWriting,
    }

    /// A job's value, how many times it ran, and the outcome it was handed.
    type Report = (i64, u32, Result<(), StoreError>);

    struct InsertJob {
        value: i64,
        ending: Ending,
        runs: u32,
        report: mpsc::Sender<Report>,
    }

    impl WriteWork for InsertJob {
        fn run(&mut self, tx: &mut dyn Tx) -> bool {
            self.runs += 1;
            if self.ending == Ending::RefuseBeforeWriting {
                return false;
            }
            tx.execute("INSERT INTO t (v) VALUES (?)", &[SqlArg::Int(self.value)])
                .expect("insert");
            match self.ending {
                Ending::PanicAfterWriting => panic!("job {} panics", self.value),
                Ending::RefuseAfterWriting => false,
                _ => true,
            }
        }
        fn retryable(&self) -> bool {
            false
        }
        fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
            let _ = self.report.send((self.value, self.runs, commit));
        }
    }

    fn run(endings: &[Ending]) -> (Vec<i64>, Vec<Report>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("t.db"), 1024).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        let (report, reports) = mpsc::channel();
        let batch: Vec<WriteJob> = endings
            .iter()
            .enumerate()
            .map(|(i, ending)| {
                Box::new(InsertJob {
                    value: i as i64,
                    ending: *ending,
                    runs: 0,
                    report: report.clone(),
                }) as WriteJob
            })
            .collect();
        run_batch(&ThreadStatements::new(&conn), batch, &AtomicU64::new(0));
        drop(report);
        let mut stored: Vec<i64> = conn
            .prepare("SELECT v FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        stored.sort_unstable();
        (stored, reports.iter().collect())
    }

    #[test]
    fn a_batch_without_failures_runs_each_job_once_and_keeps_all() {
        let (stored, reports) = run(&[Ending::Keep, Ending::Keep, Ending::Keep]);
        assert_eq!(stored, vec![0, 1, 2]);
        assert!(reports.iter().all(|(_, runs, r)| *runs == 1 && r.is_ok()));
    }

    #[test]
    fn a_refusal_before_any_write_needs_no_second_run() {
        let (stored, reports) = run(&[Ending::Keep, Ending::RefuseBeforeWriting, Ending::Keep]);
        assert_eq!(stored, vec![0, 2]);
        assert!(reports.iter().all(|(_, runs, r)| *runs == 1 && r.is_ok()));
    }

    #[test]
    fn a_job_failing_after_its_writes_loses_them_and_only_them() {
        let endings = [
            Ending::Keep,
            Ending::RefuseAfterWriting,
            Ending::Keep,
            Ending::PanicAfterWriting,
            Ending::Keep,
        ];
        let (stored, reports) = run(&endings);
        assert_eq!(stored, vec![0, 2, 4]);
        for (value, runs, result) in reports {
            // The unguarded run stopped at job 1; the guarded rerun ran every job.
            let expected_runs = if value <= 1 { 2 } else { 1 };
            assert_eq!(runs, expected_runs, "job {value}");
            assert_eq!(result.is_err(), value == 3, "job {value}: {result:?}");
        }
    }

    #[test]
    fn the_lianbei_read_model_is_backfilled_from_existing_orders() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        let before = MIGRATIONS
            .iter()
            .position(|(version, _)| *version == 6)
            .expect("migration 6 exists");
        apply_migrations(&conn, &MIGRATIONS[..before]).expect("migrations 1-5");
        conn.execute_batch(
            "INSERT INTO users (user_id, nick, mobile) VALUES (1, 'seller', NULL), (2, 'buyer nick', '13800000000');
             INSERT INTO items (item_id, seller_id, title, pic_url, price) VALUES (10, 1, 'item ten', 'http://ten', 5), (11, 1, 'item eleven', '', 7);
             INSERT INTO partners (partner_id, name) VALUES (9, 'partner');
             INSERT INTO stores (store_id, partner_id, name) VALUES (3, 9, 'store');
             INSERT INTO trades (tid, seller_id, buyer_id, biz_kind, status, created_at, pay_time, total_fee, payment, source, out_id)
                 VALUES (100, 1, 2, 'LIANBEI', 'WAIT_SELLER_SEND_GOODS', 1000, 2000, 12, 12, 'xpos', 'out-100'),
                        (200, 1, 2, 'GENERIC', 'WAIT_SELLER_SEND_GOODS', 1000, 2000, 5, 5, '', '');
             INSERT INTO sub_orders (oid, tid, item_id, sku_text, price, quantity, payment, status)
                 VALUES (1002, 100, 10, 'later line', 5, 1, 5, 'WAIT_SELLER_SEND_GOODS'),
                        (1001, 100, 11, 'first line', 7, 1, 7, 'WAIT_SELLER_SEND_GOODS'),
                        (2001, 200, 10, '', 5, 1, 5, 'WAIT_SELLER_SEND_GOODS');
             INSERT INTO store_sales (tid, store_id, guider_id, guider_name, operator_id, operator_name)
                 VALUES (100, 3, 'g', 'guider', 'o', 'operator');",
        )
        .expect("orders of the old schema");
        migrate(&conn).expect("the remaining migrations");
        let rows: Vec<(i64, i64, String, String, i64, String, String)> = conn
            .prepare("SELECT tid, partner_id, status, buyer_nick, item_id, sku_text, operator_name FROM lianbei_orders")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })?
                .collect()
            })
            .expect("the read model");
        assert_eq!(
            rows,
            vec![(
                100,
                9,
                "WAIT_SELLER_SEND_GOODS".to_string(),
                "buyer nick".to_string(),
                11,
                "first line".to_string(),
                "operator".to_string()
            )]
        );
    }

    #[test]
    fn an_existing_database_gets_an_identity_of_its_own_when_migrated_and_keeps_it() {
        let instance = |conn: &Connection| -> String {
            conn.query_row("SELECT instance FROM database_identity", [], |r| r.get(0))
                .expect("one identity")
        };
        let conn = Connection::open_in_memory().expect("in-memory database");
        let before = MIGRATIONS
            .iter()
            .position(|(version, _)| *version == 9)
            .expect("migration 9 exists");
        apply_migrations(&conn, &MIGRATIONS[..before]).expect("migrations 1-8");
        migrate(&conn).expect("the remaining migrations");
        let drawn = instance(&conn);
        assert!(
            drawn.len() == 16 && drawn.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{drawn:?}"
        );
        migrate(&conn).expect("nothing left to migrate");
        assert_eq!(instance(&conn), drawn);
        let other = Connection::open_in_memory().expect("in-memory database");
        migrate(&other).expect("a new database");
        assert_ne!(instance(&other), drawn);
    }

    /// A store in a fresh directory (removed when the returned guard drops), and its file.
    fn temp_store(file: &str) -> (tempfile::TempDir, crate::store::Store, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(file);
        let store = crate::store::Store::open(&format!("sqlite://{}", path.display()))
            .expect("store opens");
        (dir, store, path)
    }

    #[tokio::test]
    async fn a_lookup_runs_exactly_one_query_and_no_write() {
        let (_dir, store, _) = temp_store("lookup.db");
        let one = store
            .lookup_now(|tx| tx.query_opt("SELECT 41 + 1", &[]))
            .await
            .expect("one query");
        assert_eq!(one.map(|row| row.i64(0)), Some(42));
        let second = store
            .lookup_now(|tx| {
                tx.query("SELECT 1", &[])?;
                tx.query("SELECT 2", &[])
            })
            .await;
        assert!(matches!(second, Err(StoreError::Backend(_))), "{second:?}");
        let write = store
            .lookup_now(|tx| tx.execute("CREATE TABLE t (x INTEGER)", &[]))
            .await;
        assert!(matches!(write, Err(StoreError::Backend(_))), "{write:?}");
        let insert = store
            .lookup_now(|tx| {
                tx.insert_returning_id("INSERT INTO partners (name) VALUES ('x')", &[])
            })
            .await;
        assert!(matches!(insert, Err(StoreError::Backend(_))), "{insert:?}");
    }

    /// The number of partners a lookup on this thread sees.
    async fn partners_seen(store: &crate::store::Store) -> i64 {
        store
            .lookup_now(|tx| tx.query_opt("SELECT COUNT(*) FROM partners", &[]))
            .await
            .expect("lookup")
            .map_or(-1, |row| row.i64(0))
    }

    #[tokio::test]
    async fn a_lookup_sees_every_commit_answered_before_it_started() {
        let (_dir, store, _) = temp_store("held.db");
        assert_eq!(partners_seen(&store).await, 0);
        for expected in 1..=3 {
            store
                .write(|tx| tx.execute("INSERT INTO partners (name) VALUES ('p')", &[]))
                .await
                .expect("insert");
            // Well within HELD_SNAPSHOT_MAX_AGE: only the commit count can refresh it.
            assert_eq!(partners_seen(&store).await, expected);
        }
    }

    #[tokio::test]
    async fn another_process_change_shows_once_the_held_snapshot_is_too_old() {
        let (_dir, store, path) = temp_store("external.db");
        assert_eq!(partners_seen(&store).await, 0);
        // A connection of its own stands for another process (the CLI): the writer's commit
        // count does not move.
        let other = connect(&path, 1024).expect("second connection");
        other
            .execute_batch("INSERT INTO partners (name) VALUES ('from the CLI')")
            .expect("external insert");
        let seen_at_once = partners_seen(&store).await;
        assert!(seen_at_once == 0 || seen_at_once == 1, "{seen_at_once}");
        std::thread::sleep(HELD_SNAPSHOT_MAX_AGE + Duration::from_millis(5));
        assert_eq!(partners_seen(&store).await, 1);
    }

    #[tokio::test]
    async fn a_thread_parking_or_writing_holds_no_snapshot_that_blocks_checkpoints() {
        let (_dir, store, path) = temp_store("park.db");
        let other = connect(&path, 1024).expect("second connection");
        // Whether a full checkpoint can copy every frame of the WAL back: a reader's snapshot
        // older than the last commit stops it.
        let checkpoint_completes = || {
            other
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok(r.get::<_, i64>(1)? == r.get::<_, i64>(2)?)
                })
                .expect("checkpoint")
        };
        partners_seen(&store).await;
        other
            .execute_batch("INSERT INTO partners (name) VALUES ('after the snapshot')")
            .expect("insert");
        assert!(!checkpoint_completes(), "the lookup holds its snapshot");
        release_thread_snapshots();
        assert!(checkpoint_completes(), "released when the worker parks");
        partners_seen(&store).await;
        other
            .execute_batch("INSERT INTO partners (name) VALUES ('after the second snapshot')")
            .expect("insert");
        assert!(
            !checkpoint_completes(),
            "the next lookup holds a snapshot again"
        );
        store
            .write(|tx| tx.execute("INSERT INTO partners (name) VALUES ('written')", &[]))
            .await
            .expect("write");
        assert!(
            checkpoint_completes(),
            "released when the thread submits a write"
        );
    }

    /// The writer's WAL gathers a transaction's frames into writes of at most 128 KiB (the
    /// default VFS refuses longer ones): a transaction of many more frames must commit whole,
    /// be read by another connection, and survive reopening the database.
    #[tokio::test]
    async fn a_transaction_of_many_frames_commits_whole_through_the_gathered_wal() {
        let (dir, store, path) = temp_store("frames.db");
        let filler = "x".repeat(2000);
        store
            .write(move |tx| {
                for i in 0..2000_i64 {
                    tx.execute(
                        "INSERT INTO partners (name) VALUES (?)",
                        crate::args![format!("{i}-{filler}")],
                    )?;
                }
                Ok(())
            })
            .await
            .expect("a transaction of about a thousand pages commits");
        let count = |conn: &Connection| {
            conn.query_row(
                "SELECT COUNT(*) FROM partners WHERE name LIKE '%-x%'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("count")
        };
        let other = connect(&path, 1024).expect("second connection");
        assert_eq!(count(&other), 2000);
        drop(other);
        drop(store);
        let reopened = connect(&path, 1024).expect("reopened");
        assert_eq!(count(&reopened), 2000);
        drop(dir);
    }
}
