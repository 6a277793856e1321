//! Persistence: one [`Store`] handle over interchangeable SQL backends.
//!
//! Business code is written once, as synchronous functions over [`Tx`] (portable SQL with `?`
//! placeholders, integers for booleans and epoch-millisecond times), and run inside a
//! transaction by [`Store::write`] or [`Store::read`]. The backend decides how: the SQLite one
//! funnels writes through one writer thread that commits concurrent jobs together (group commit:
//! a failed job's changes undone alone, one fsync per batch, each caller answered only after the batch
//! is on disk) while reads run on a pool of WAL reader connections and never wait for writers.
//! The PostgreSQL one (several nodes over one database) runs jobs on writer threads at READ
//! COMMITTED, with entity rows locked by [`Tx::lock_row`], and reruns a job that lost a race.
//! Integrity rules (uniqueness of idempotency keys, ICCIDs, outer order ids; allowed status
//! values) are database constraints, so they hold whatever the number of writers.

pub mod postgres;
pub mod sqlite;

pub use sqlite::release_thread_snapshots;

use std::sync::Arc;

use tokio::sync::oneshot;

/// A value read from SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
}

/// A value bound to a statement. Text is borrowed from the caller: the single SQLite writer
/// thread, which every write goes through, used to copy each text argument into a `String`
/// of its own (about fifteen per pay notice) only to bind and drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlArg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What can be bound as a [`SqlArg`] (see [`crate::args!`]).
pub trait ToSqlArg {
    fn to_sql_arg(&self) -> SqlArg<'_>;
}

impl ToSqlArg for i64 {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        SqlArg::Int(*self)
    }
}
impl ToSqlArg for u32 {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        SqlArg::Int(i64::from(*self))
    }
}
impl ToSqlArg for bool {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        SqlArg::Int(i64::from(*self))
    }
}
impl ToSqlArg for str {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        SqlArg::Text(self)
    }
}
impl ToSqlArg for String {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        SqlArg::Text(self)
    }
}
impl<T: ToSqlArg + ?Sized> ToSqlArg for &T {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        (**self).to_sql_arg()
    }
}
impl<T: ToSqlArg> ToSqlArg for Option<T> {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        self.as_ref().map_or(SqlArg::Null, ToSqlArg::to_sql_arg)
    }
}

/// Builds a `&[SqlArg]` argument list; each value is borrowed, so a temporary (`id.to_string()`)
/// lives to the end of the statement the list is used in.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::ToSqlArg::to_sql_arg(&$v)),*][..] };
}

/// One result row, read by column index.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(SqlValue::Int(v)) => Some(*v),
            Some(SqlValue::Text(t)) => t.parse().ok(),
            _ => None,
        }
    }
    pub fn i64(&self, i: usize) -> i64 {
        self.opt_i64(i).unwrap_or_default()
    }
    pub fn bool(&self, i: usize) -> bool {
        self.i64(i) != 0
    }
    pub fn opt_bool(&self, i: usize) -> Option<bool> {
        self.opt_i64(i).map(|v| v != 0)
    }
    pub fn opt_str(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(SqlValue::Text(t)) => Some(t.clone()),
            Some(SqlValue::Int(v)) => Some(v.to_string()),
            _ => None,
        }
    }
    pub fn str(&self, i: usize) -> String {
        self.opt_str(i).unwrap_or_default()
    }
    /// [`Row::str`] that moves a text value out instead of copying it (the column reads as
    /// empty afterwards), for a row read once.
    pub fn take_str(&mut self, i: usize) -> String {
        match self.0.get_mut(i) {
            Some(SqlValue::Text(t)) => std::mem::take(t),
            _ => self.str(i),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness, foreign-key or check constraint refused the change.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The database could not be reached or failed; the message is for the log only.
    #[error("database failure: {0}")]
    Backend(String),
    /// The transaction lost a race with another one (serialization failure, deadlock).
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The job itself reported a failure (its work was rolled back).
    #[error("{0}")]
    Aborted(String),
}

/// Why a database migrated by a newer topgate is not opened: the older binary would write rows
/// the newer schema's rules may not expect, and nothing migrates a database down.
fn newer_schema(found: i64, known: i64) -> String {
    format!(
        "this database's schema is at version {found}, from a newer topgate; this one knows \
         versions up to {known}: run the newer binary (a database is never migrated down)"
    )
}

/// A transaction, as seen by business code.
pub trait Tx {
    /// Runs a statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<u64, StoreError>;
    /// Runs a query; returns all rows.
    fn query(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Row>, StoreError>;

    fn query_opt(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Runs an `INSERT` (without `RETURNING`) into a table whose `id` the database assigns,
    /// and returns that id. By default through `RETURNING id`; SQLite asks its connection
    /// for the last rowid instead, because `RETURNING` made it buffer the row in a temporary
    /// table (about a fifth of a pay notice's writer job).
    fn insert_returning_id(&mut self, sql: &str, args: &[SqlArg<'_>]) -> Result<i64, StoreError> {
        self.query(&format!("{sql} RETURNING id"), args)?
            .first()
            .and_then(|row| row.opt_i64(0))
            .ok_or_else(|| StoreError::Backend("insert returned no id".into()))
    }

    /// Locks the row `table.column = id` until the transaction ends, so that concurrent
    /// writers of one entity (on any node) take turns and each reads the other's result.
    /// Backends whose writes are already serialised need do nothing.
    fn lock_row(&mut self, _table: &str, _column: &str, _id: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Holds a lock named `key` until the transaction ends, so that concurrent writers deciding
    /// about one key (on any node) take turns even while no row of it exists yet, and each
    /// reads the other's result. Backends whose writes are already serialised need do nothing.
    fn lock_key(&mut self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gathers the query planner's statistics anew for those of `tables` that changed much
    /// since they were last gathered, and names them. Backends whose plans do not depend on
    /// gathered statistics do nothing.
    fn refresh_statistics(&mut self, _tables: &[&str]) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// A unit of write work. A backend runs it in a transaction, may run it again in a fresh one
/// when it lost a race ([`WriteWork::retryable`]), and finally hands it the commit's outcome.
pub trait WriteWork: Send {
    /// Runs the work; returns whether its changes should be kept.
    fn run(&mut self, tx: &mut dyn Tx) -> bool;
    /// Whether the last run failed on a conflict that a fresh transaction may not meet.
    fn retryable(&self) -> bool;
    /// Delivers the result, or `commit`'s failure.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

pub type WriteJob = Box<dyn WriteWork>;
pub type ReadJob = Box<dyn FnOnce(&mut dyn Tx) + Send>;

/// The outcome of a write job.
type Outcome<T, R> = Result<Result<T, R>, StoreError>;

/// A job of [`Store::attempt`]. Once it has run, the writer sends the job itself back with its
/// outcome, so that what its closure owns (the request's strings) is freed by the thread that
/// allocated it: a block freed by another thread goes on a list its owner must later collect,
/// which, with the answer's values freed the other way, was about 6 % of a runtime worker's
/// time per pay notice (perf).
struct Work<F, T, R> {
    f: F,
    result: Option<Outcome<T, R>>,
    sender: Option<oneshot::Sender<Returned<F, T, R>>>,
}

/// What a [`Work`] sends back: its outcome, and itself to be dropped by the waiting thread.
type Returned<F, T, R> = (Outcome<T, R>, Box<Work<F, T, R>>);

impl<F, T, R> WriteWork for Work<F, T, R>
where
    F: FnMut(&mut dyn Tx) -> Outcome<T, R> + Send,
    T: Send,
    R: Send,
{
    fn run(&mut self, tx: &mut dyn Tx) -> bool {
        let result = (self.f)(tx);
        let keep = matches!(result, Ok(Ok(_)));
        self.result = Some(result);
        keep
    }

    fn retryable(&self) -> bool {
        matches!(
            self.result,
            Some(Err(StoreError::Constraint(_) | StoreError::Conflict(_)))
        )
    }

    fn finish(mut self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (commit, self.result.take()) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend("write job never ran".into())),
        };
        if let Some(sender) = self.sender.take() {
            let _ = sender.send((result, self));
        }
    }
}

/// What a database backend provides.
pub trait Backend: Send + Sync {
    fn submit_write(&self, job: WriteJob) -> Result<(), StoreError>;
    fn submit_read(&self, job: ReadJob) -> Result<(), StoreError>;
    /// Runs a short read (a point lookup) on the calling thread when the backend can do so
    /// without waiting for writers; the default hands it to the reader pool like any read.
    fn read_inline(&self, job: ReadJob) -> Result<(), StoreError> {
        self.submit_read(job)
    }
    /// Like [`Backend::read_inline`] for a job that runs exactly one query, which is then its
    /// own snapshot: a backend may skip the explicit transaction around it.
    fn lookup_inline(&self, job: ReadJob) -> Result<(), StoreError> {
        self.read_inline(job)
    }
    fn describe(&self) -> String;
    /// Whether several server processes may share this database (then limits live in it too).
    fn shared(&self) -> bool {
        false
    }
    /// Whether its query plans depend on gathered statistics ([`Tx::refresh_statistics`]
    /// does something).
    fn plans_from_statistics(&self) -> bool {
        false
    }
}

/// A cheap-to-clone handle on the configured database.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens the database a URL names: `sqlite://path` (or a bare path) or `postgres://…`,
    /// creating and migrating it as needed. Any other `scheme://` is refused (naming only the
    /// scheme: the rest may hold a password), rather than taken for a file path.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
        {
            Arc::new(postgres::PgBackend::open(url)?)
        } else if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| *s != "sqlite") {
            return Err(StoreError::Backend(format!(
                "unsupported database URL scheme {scheme}://: use sqlite://PATH or postgres://…"
            )));
        } else {
            let path = sqlite::path_from_url(url);
            // SQLite reads an empty name or `:memory:` as a private database of each
            // connection, gone at exit: the writer's changes would be invisible to every reader
            // and lost on restart, behind success answers (an empty TOPGATE_DATABASE_URL, say).
            if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
                return Err(StoreError::Backend(format!(
                    "the database URL {url:?} names no file: use sqlite://PATH or postgres://… \
                     (unset it for the default, {})",
                    crate::config::DEFAULT_DATABASE_URL
                )));
            }
            Arc::new(sqlite::SqliteBackend::open(path)?)
        };
        Ok(Self { backend })
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Whether other server processes may share this database.
    pub fn is_shared(&self) -> bool {
        self.backend.shared()
    }

    /// Whether [`Tx::refresh_statistics`] is worth a write transaction on this database.
    pub fn plans_from_statistics(&self) -> bool {
        self.backend.plans_from_statistics()
    }

    /// Runs `f` in a write transaction and answers once its change is durably committed. An
    /// `Err` from `f` rolls its own changes back and is returned as is.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        let mut f = f;
        match self
            .attempt(move |tx| f(tx).map(Ok::<T, std::convert::Infallible>))
            .await?
        {
            Ok(value) => Ok(value),
            Err(never) => match never {},
        }
    }

    /// Like [`Store::write`] for business steps that may be refused: an `Ok(Err(refusal))`
    /// rolls back everything the step did (a refusal changes nothing) and is returned as is.
    /// `f` may run more than once: a backend with concurrent writers reruns it in a fresh
    /// transaction when it lost a race, so it must not have effects outside `tx`.
    pub async fn attempt<T, R, F>(&self, f: F) -> Result<Result<T, R>, StoreError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<Result<T, R>, StoreError> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.backend.submit_write(Box::new(Work {
            f,
            result: None,
            sender: Some(sender),
        }))?;
        let (outcome, _job) = receiver
            .await
            .map_err(|_| StoreError::Backend("write job was dropped".into()))?;
        outcome
    }

    /// Runs a point lookup in a read-only snapshot, on the calling thread where the backend
    /// allows it (SQLite in WAL mode: readers never wait for the writer). For the per-request
    /// lookups of the hot path, which would otherwise pay two thread hand-offs for a few
    /// microseconds of work; longer reads belong in [`Store::read`].
    pub async fn read_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_read(|backend, job| backend.read_inline(job), f)
            .await
    }

    /// Like [`Store::read_now`] for a lookup of exactly one query (one statement is a snapshot
    /// of its own, so no transaction is opened around it; a second statement fails). The
    /// BEGIN and COMMIT it saves were about 4 % of a lianbei call.
    pub async fn lookup_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_read(|backend, job| backend.lookup_inline(job), f)
            .await
    }

    /// Runs `f` in a read-only snapshot on a reader connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_read(|backend, job| backend.submit_read(job), f)
            .await
    }

    /// Hands `f` to the backend through `submit` and waits for its result.
    async fn run_read<T, F>(
        &self,
        submit: impl FnOnce(&dyn Backend, ReadJob) -> Result<(), StoreError>,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        submit(
            self.backend.as_ref(),
            Box::new(move |tx| {
                let _ = sender.send(f(tx));
            }),
        )?;
        receiver
            .await
            .map_err(|_| StoreError::Backend("read job was dropped".into()))?
    }
}
