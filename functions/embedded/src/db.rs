//! The SQLite file every embedded adapter shares: opening it, its settings, its versioned schema,
//! and running calls on it without blocking the async runtime.
//!
//! One [`Database`] is shared by every embedded adapter: the subscription store, the delivery
//! log, the delivery queue and the health store each own tables here (steps of the schema in
//! `db/schema.rs`), so a log write that touches the webhooks' counters is one transaction. It
//! holds one write connection, owned by a writer thread that commits the calls waiting for it as
//! one group ([`Database::write`]), and `READERS` read-only connections that reads use directly
//! ([`Database::read`]).
//!
//! Here: opening, the connections' settings and the group-commit engine. Beside it:
//! `db/schema.rs` (the migration steps and running them) and `db/error.rs` ([`DbError`] and what a
//! rusqlite error means: retryable or not).
//!
//! Must not depend on the AWS SDK or the Lambda runtime, nor on any port of `webhooks-core`:
//! mapping failures to a port's error type is each adapter's job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

mod error;
mod schema;

pub use error::DbError;
pub(crate) use error::{Failure, classify};
use schema::{MIGRATIONS, migrate};

/// How long a statement waits for a lock held by another connection to the same file (another
/// process, such as a second `local` or the `sqlite3` shell) before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many write calls one commit may carry at most (group commit). More are left for the next
/// commit, so one burst cannot hold every caller's answer back for long.
const MAX_GROUP: usize = 1024;

/// Bulk write calls ([`Database::write_bulk`]) one group may carry.
const BULK_PER_GROUP: usize = 2;

/// See `configure`.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Read connections kept open; a read takes a free one (or waits for one briefly).
const READERS: usize = 4;

/// The embedded database: one SQLite file in WAL mode, `synchronous=FULL`, schema migrated to the
/// latest version on open. Cheap to clone; clones share the connections and the writer.
///
/// ## Writes: one writer thread, group commit
/// Every write call ([`Database::write`]) is sent to one thread that owns the write connection.
/// The thread takes every call waiting for it (up to [`MAX_GROUP`]), runs them one after another
/// inside **one** transaction, each in its own savepoint — a call that fails is rolled back to its
/// savepoint and changes nothing, the others keep their changes — then commits once (one `fsync`
/// of the WAL for the whole group) and only then answers each caller. So a write is durable
/// before its caller hears `Ok`, exactly as with one transaction per call, but a busy service
/// pays one `fsync` per group instead of one per write, and no call waits on a mutex or a
/// blocking-pool hand-off. If the commit itself fails, every call of the group gets the error
/// (and nothing of the group was written).
///
/// ## Reads: a few read connections, on the caller's thread
/// [`Database::read`] runs on one of [`READERS`] read-only connections, directly on the calling
/// thread: in WAL mode a reader never waits for the writer (it reads the last commit), and the
/// reads here are index lookups of a few rows that take microseconds, less than handing them to
/// another thread would. A read started after a write was answered sees that write.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    writer: std::sync::mpsc::Sender<Box<dyn WriteJob>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// Bumped by every write that changes how a webhook is delivered to (see
    /// `SqliteStore::get_for_delivery`'s cache).
    webhooks_epoch: std::sync::atomic::AtomicU64,
    path: PathBuf,
    /// The data key webhook secrets and header values are sealed with (`crate::secret_key`),
    /// read once here so no delivery reads a file.
    sealing_key: Arc<webhooks_core::sealing::DataKey>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// A write call waiting for the writer thread: `run` it inside the group's transaction, then
/// `complete` it with the outcome of the commit.
trait WriteJob: Send {
    /// Runs the call on the connection; `false` when it failed (its savepoint is rolled back).
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Answers the caller: with the call's result when the group committed, otherwise with the
    /// commit's error (and a call that succeeded is then reported as failed: nothing was kept).
    fn complete(self: Box<Self>, commit: Result<(), &DbError>);
    fn mode(&self) -> Mode;
    /// Whether the call runs in its own savepoint (see [`Database::write_without_savepoint`]).
    fn guarded(&self) -> bool;
}

/// How a write call is scheduled and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// [`Database::write`].
    Commit,
    /// [`Database::write_answered_before_commit`]: answered as soon as it has run.
    BeforeCommit,
    /// [`Database::write_bulk`]: at most [`BULK_PER_GROUP`] of these per group.
    Bulk,
}

type Answer<T, E> = std::thread::Result<Result<T, E>>;

struct Pending<T, E, F> {
    mode: Mode,
    guarded: bool,
    call: Option<F>,
    result: Option<Answer<T, E>>,
    reply: tokio::sync::oneshot::Sender<Answer<T, E>>,
}

impl<T, E, F> WriteJob for Pending<T, E, F>
where
    F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    fn run(&mut self, conn: &mut Connection) -> bool {
        let Some(call) = self.call.take() else {
            return false;
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(conn)));
        let ok = matches!(result, Ok(Ok(_)));
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, commit: Result<(), &DbError>) {
        let answer = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            // A panic is reported as the panic whatever happened to the group.
            (Err(_), Some(Err(panic))) => Err(panic),
            (Err(e), _) => Ok(Err(DbError::Unavailable(e.to_string()).into())),
            (Ok(()), None) => Ok(Err(
                DbError::Unavailable("write call was not run".into()).into()
            )),
        };
        // The caller may have given up waiting (its future was dropped): nothing to tell.
        let _ = self.reply.send(answer);
    }

    fn mode(&self) -> Mode {
        self.mode
    }

    fn guarded(&self) -> bool {
        self.guarded
    }
}

impl Database {
    /// Opens the database file at `path`, creating it (and its parent directories) and the schema
    /// if missing, and migrating an older schema to the latest one. A file whose schema is newer
    /// than this build is refused rather than touched. Starts the writer thread (it ends when the
    /// last clone is dropped).
    ///
    /// Blocking: call it at start-up, before serving.
    pub fn open(path: &Path) -> Result<Database, DbError> {
        Self::open_with(path, MIGRATIONS)
    }

    fn open_with(path: &Path, migrations: &[&str]) -> Result<Database, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                DbError::Unavailable(format!("creating directory {}: {e}", dir.display()))
            })?;
        }
        let sealing_key = Arc::new(crate::secret_key::load_or_create(
            &crate::secret_key::key_path(path),
        )?);
        let context = format!("opening {}", path.display());
        let mut conn = Connection::open(path).map_err(|e| DbError::from_sqlite(&context, &e))?;
        configure(&conn).map_err(|e| DbError::from_sqlite(&context, &e))?;
        migrate(&mut conn, migrations, path)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                reader.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| DbError::from_sqlite(&context, &e))?;
        let (writer, jobs) = std::sync::mpsc::channel::<Box<dyn WriteJob>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(|e| DbError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Database {
            inner: Arc::new(Inner {
                writer,
                readers,
                next_reader: Default::default(),
                webhooks_epoch: Default::default(),
                path: path.to_owned(),
                sealing_key,
            }),
        })
    }

    /// The key the stores on this database seal secrets with (the `secret-key` file beside it).
    pub fn sealing_key(&self) -> &Arc<webhooks_core::sealing::DataKey> {
        &self.inner.sealing_key
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A counter every adapter on this database bumps when it changes a webhook's delivery
    /// settings (shared by all clones, so two stores on one database see each other's changes).
    pub(crate) fn webhooks_epoch(&self) -> &std::sync::atomic::AtomicU64 {
        &self.inner.webhooks_epoch
    }

    /// Runs the write call `f` on the writer thread, inside the current group's transaction and
    /// its own savepoint (see the [type docs](Database)), and answers once the group committed.
    /// `f` must not begin or commit a transaction itself (`conn.savepoint()` nests fine). An
    /// `Err` from `f` rolls back everything `f` did.
    ///
    /// A panic in `f` is resumed on the caller (it is a bug, not a store failure); `f`'s changes
    /// are rolled back first.
    pub(crate) async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(Mode::Commit, true, f).await
    }

    /// Like [`write`](Self::write), without the call's own savepoint: for calls that write only
    /// when every step before succeeded (their only failures are SQLite's), on the hot path —
    /// a savepoint makes SQLite copy each page the call touches before changing it. If such a
    /// call fails anyway with the transaction still open, the whole group's transaction is rolled
    /// back (the other calls of the group that were to commit get an `Unavailable` error and
    /// changed nothing), so a failed call never leaves half its changes behind.
    pub(crate) async fn write_without_savepoint<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(Mode::Commit, false, f).await
    }

    /// Like [`write`](Self::write), for a large write that can wait (the queue's enqueue of a
    /// publish call's deliveries): a group takes at most [`BULK_PER_GROUP`] of these, after
    /// every other call waiting, and leaves the rest for the next groups. So a stream of
    /// publishes cannot fill every commit and starve the worker's receipts and outcomes; the
    /// publishers wait instead (back-pressure), while deliveries go on.
    pub(crate) async fn write_bulk<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(Mode::Bulk, true, f).await
    }

    /// Like [`write`](Self::write), but answered as soon as `f` has run, before the group
    /// commits. Other connections (and [`read`](Self::read)) see `f`'s changes only after the
    /// commit, but no other writer can change what `f` read or wrote before then: the group
    /// holds the database's write lock from `f` to the commit, and later write calls run after
    /// it. The answer is therefore *not* a promise that the change is durable: a failed commit,
    /// a crash or a power cut before the commit loses it. Another call of its group failing
    /// does not: such calls run last in their group, and every call after one of them in its
    /// own savepoint. For the queue's receive, where losing
    /// it only means the message is received again later, and where waiting for the commit
    /// before sending would add a commit's latency to every delivery. Runs without its own
    /// savepoint, as [`write_without_savepoint`](Self::write_without_savepoint) calls do.
    pub(crate) async fn write_answered_before_commit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(Mode::BeforeCommit, false, f).await
    }

    async fn submit<T, E, F>(&self, mode: Mode, guarded: bool, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending {
            mode,
            guarded,
            call: Some(f),
            result: None,
            reply,
        });
        if self.inner.writer.send(job).is_err() {
            return Err(DbError::Unavailable("the database writer has stopped".into()).into());
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(DbError::Unavailable("the database writer has stopped".into()).into()),
        }
    }

    /// Runs the read-only call `f` on a read connection, on this thread (see the
    /// [type docs](Database)). Writing through it fails (the connection is read-only).
    pub(crate) fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
    {
        let readers = &self.inner.readers;
        let start = self
            .inner
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..readers.len() {
            if let Ok(conn) = readers[(start + i) % readers.len()].try_lock() {
                return f(&conn);
            }
        }
        let conn = readers[start % readers.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }
}

/// The writer thread: group commit (see [`Database`]). Ends when every [`Database`] clone is gone.
fn write_loop(mut conn: Connection, jobs: std::sync::mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut group: Vec<Box<dyn WriteJob>> = Vec::new();
    let mut bulk: std::collections::VecDeque<Box<dyn WriteJob>> = Default::default();
    fn sort(
        job: Box<dyn WriteJob>,
        group: &mut Vec<Box<dyn WriteJob>>,
        bulk: &mut std::collections::VecDeque<Box<dyn WriteJob>>,
    ) {
        if job.mode() == Mode::Bulk {
            bulk.push_back(job);
        } else {
            group.push(job);
        }
    }
    let mut open = true;
    while open {
        if group.is_empty() && bulk.is_empty() {
            match jobs.recv() {
                Ok(job) => sort(job, &mut group, &mut bulk),
                Err(_) => break,
            }
        }
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => sort(job, &mut group, &mut bulk),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    open = false; // finish what is queued, then stop
                    break;
                }
            }
        }
        let bulk_now = bulk.len().min(BULK_PER_GROUP);
        group.extend(bulk.drain(..bulk_now));
        run_group(&mut conn, &mut group);
    }
    // Disconnected with bulk calls left: run them too.
    while !bulk.is_empty() {
        let n = bulk.len().min(BULK_PER_GROUP);
        group.extend(bulk.drain(..n));
        run_group(&mut conn, &mut group);
    }
}

/// Runs a statement without parameters from the connection's statement cache.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_group(conn: &mut Connection, group: &mut Vec<Box<dyn WriteJob>>) {
    // Calls answered before the commit (receipts) run last: a call that fails after one of them
    // in the same transaction could otherwise roll back what its caller was already told (a
    // receipt undone: the message visible again at once and sent twice). Every call of a group
    // was submitted before the group began, so none depends on another's effect.
    group.sort_by_key(|job| job.mode() == Mode::BeforeCommit);
    let mut waiting: std::collections::VecDeque<Box<dyn WriteJob>> = group.drain(..).collect();
    // Calls whose changes are in the open transaction, and calls that failed (rolled back to
    // their savepoint; they answer with their own error whatever the commit does).
    let mut kept: Vec<Box<dyn WriteJob>> = Vec::with_capacity(waiting.len());
    let mut rejected: Vec<Box<dyn WriteJob>> = Vec::new();
    while !waiting.is_empty() {
        // Whether a call of this transaction was answered already (see above): every later call
        // then runs in its own savepoint, so its failure cannot roll that answer back.
        let mut answered = false;
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            let e = DbError::from_sqlite("beginning a write", &e);
            for job in waiting.drain(..) {
                job.complete(Err(&e));
            }
            break;
        }
        while let Some(mut job) = waiting.pop_front() {
            let guarded = job.guarded() || answered;
            if guarded && let Err(e) = exec(conn, "SAVEPOINT call") {
                job.complete(Err(&DbError::from_sqlite("starting a write call", &e)));
                continue;
            }
            let ok = job.run(conn);
            if conn.is_autocommit() {
                // The call's failure (an I/O error, a full disk) made SQLite roll back the whole
                // transaction: the calls before it lost their changes too. Report them all and
                // go on with a new transaction for the rest.
                let e = DbError::Unavailable("the write transaction was rolled back".into());
                for lost in kept.drain(..).chain(std::iter::once(job)) {
                    lost.complete(Err(&e));
                }
                break;
            }
            if !guarded {
                if ok {
                    if job.mode() == Mode::BeforeCommit {
                        answered = true;
                        job.complete(Ok(()));
                    } else {
                        kept.push(job);
                    }
                } else {
                    // No savepoint to return to: roll the whole transaction back, so that
                    // nothing of the failed call stays; the calls it held are reported lost.
                    let _ = conn.execute_batch("ROLLBACK");
                    let e = DbError::Unavailable(
                        "the write transaction was rolled back (another write call failed)".into(),
                    );
                    for lost in kept.drain(..) {
                        lost.complete(Err(&e));
                    }
                    rejected.push(job);
                    break;
                }
                continue;
            }
            let end = if ok {
                exec(conn, "RELEASE call")
            } else {
                exec(conn, "ROLLBACK TO call").and_then(|()| exec(conn, "RELEASE call"))
            };
            match end {
                Ok(()) if job.mode() == Mode::BeforeCommit && ok => {
                    answered = true;
                    job.complete(Ok(()));
                }
                Ok(()) if job.mode() == Mode::BeforeCommit => job.complete(Ok(())),
                Ok(()) if ok => kept.push(job),
                Ok(()) => rejected.push(job),
                Err(e) => job.complete(Err(&DbError::from_sqlite("ending a write call", &e))),
            }
        }
        if conn.is_autocommit() {
            continue; // rolled back above: begin again for what is still waiting
        }
        let commit = exec(conn, "COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            DbError::from_sqlite("committing", &e)
        });
        for job in kept.drain(..) {
            job.complete(commit.as_ref().map(|_| ()));
        }
    }
    for job in rejected {
        job.complete(Ok(()));
    }
}

/// Per-connection settings. `busy_timeout` comes first so that switching the journal mode also
/// waits for another process's lock instead of failing at once.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer, and a commit is one append to the log.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL; with synchronous=FULL the rollback
        // journal is still durable, only slower, so we carry on.
        tracing::warn!(journal_mode = %mode, "SQLite could not switch to WAL mode");
    }
    // FULL: the log is synced on every commit, so a write we acknowledged survives a power cut
    // (NORMAL could lose the last commits in WAL mode).
    conn.pragma_update(None, "synchronous", "FULL")?;
    // For the tables later migrations add (queue rows referencing webhooks).
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals (a savepoint's undo data for a statement) in memory, not in a temporary
    // file created and deleted per statement.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // secure_delete=ON: deleted and rewritten rows (a webhook's old sealed secret after a
    // rotation, a deleted webhook) are overwritten with zeros, their freed overflow pages too
    // (FAST would leave those), so they do not linger in free space for whoever copies the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Copy the log back into the database file every ~40 MiB rather than every ~4 MiB: queue
    // rows are written, updated and deleted within seconds, so most of their pages are copied
    // once per checkpoint instead of once per change.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(db: &Database) -> i64 {
        db.read(|conn| conn.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap()
    }

    /// A second, ordinary connection to the file (for test set-up and checks).
    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(BUSY_TIMEOUT).unwrap();
        conn
    }

    fn test_err(e: rusqlite::Error) -> DbError {
        DbError::from_sqlite("test", &e)
    }

    #[tokio::test]
    async fn a_new_file_gets_wal_full_sync_and_the_latest_schema() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/webhooks.db");

        // Act
        let db = Database::open(&path).expect("open");

        // Assert
        assert!(path.exists(), "file created with its parent directories");
        assert_eq!(user_version(&db), MIGRATIONS.len() as i64);
        let (mode, sync, busy, erase) = db
            .write(|conn| {
                let mode: String = conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .map_err(test_err)?;
                let sync: i64 = conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))
                    .map_err(test_err)?;
                let busy: i64 = conn
                    .pragma_query_value(None, "busy_timeout", |r| r.get(0))
                    .map_err(test_err)?;
                let erase: i64 = conn
                    .pragma_query_value(None, "secure_delete", |r| r.get(0))
                    .map_err(test_err)?;
                Ok::<_, DbError>((mode, sync, busy, erase))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL on the writer");
        assert_eq!(busy, BUSY_TIMEOUT.as_millis() as i64);
        assert_eq!(erase, 1, "secure_delete=ON");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_as_unusable() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "these are not the pages you are looking for ".repeat(200),
        )
        .unwrap();

        // Act
        let err = Database::open(&path).expect_err("not a database");

        // Assert
        assert!(matches!(err, DbError::Unusable(_)), "{err:?}");
    }

    async fn insert(db: &Database, n: i64) -> Result<(), DbError> {
        db.write(move |c| {
            c.execute("INSERT INTO t (n) VALUES (?1)", [n])
                .map(|_| ())
                .map_err(test_err)
        })
        .await
    }

    fn numbers(db: &Database) -> Vec<i64> {
        db.read(|c| {
            let mut stmt = c.prepare("SELECT n FROM t ORDER BY n")?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_write_is_seen_by_the_next_read_and_by_every_clone() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        let clone = db.clone();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE) STRICT")
                .map_err(test_err)
        })
        .await
        .unwrap();

        // Act
        insert(&clone, 7).await.unwrap();

        // Assert
        assert_eq!(numbers(&db), vec![7]);
        assert!(format!("{db:?}").contains("db.sqlite"));
        let err = db
            .read(|c| {
                c.execute("INSERT INTO t (n) VALUES (8)", [])
                    .map_err(test_err)
            })
            .expect_err("read connections are read-only");
        assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_a_failing_one_changes_nothing() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE) STRICT")
                .map_err(test_err)
        })
        .await
        .unwrap();
        insert(&db, 0).await.unwrap();

        // Act: 200 writes at once; number 100 inserts two rows and fails on the second (a
        // duplicate), so its first row must not stay either.
        let mut calls = tokio::task::JoinSet::new();
        for n in 1..=200_i64 {
            let db = db.clone();
            calls.spawn(async move {
                if n == 100 {
                    db.write(|c| {
                        c.execute("INSERT INTO t (n) VALUES (100)", [])
                            .map_err(test_err)?;
                        c.execute("INSERT INTO t (n) VALUES (0)", [])
                            .map_err(test_err)
                    })
                    .await
                    .map(|_| ())
                } else {
                    insert(&db, n).await
                }
            });
        }
        let results = calls.join_all().await;

        // Assert
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        let expected: Vec<i64> = (0..=200).filter(|n| *n != 100).collect();
        assert_eq!(numbers(&db), expected);
        // And all of it is in the file, seen by an independent connection.
        let on_disk: i64 = raw(db.path())
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(on_disk, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unguarded_call_failing_halfway_rolls_back_its_group_and_nothing_half_done_stays() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE) STRICT")
                .map_err(test_err)
        })
        .await
        .unwrap();
        insert(&db, 0).await.unwrap();

        // Act: many unguarded calls at once; number 50 inserts a row, then fails (a duplicate)
        let mut calls = tokio::task::JoinSet::new();
        for n in 1..=100_i64 {
            let db = db.clone();
            calls.spawn(async move {
                let result = db
                    .write_without_savepoint(move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n])
                            .map_err(test_err)?;
                        if n == 50 {
                            c.execute("INSERT INTO t (n) VALUES (0)", [])
                                .map_err(test_err)?;
                        }
                        Ok::<_, DbError>(())
                    })
                    .await;
                (n, result)
            });
        }
        let results = calls.join_all().await;

        // Assert: the failed call left nothing; every call that answered Ok is there; the ones
        // rolled back with it answered an error and are not there
        let stored = numbers(&db);
        assert!(!stored.contains(&50));
        for (n, result) in &results {
            assert_eq!(result.is_ok(), stored.contains(n), "call {n}: {result:?}");
        }
        assert!(results.iter().filter(|(_, r)| r.is_ok()).count() >= 1);
        // And the writer goes on
        insert(&db, 1_000).await.unwrap();
        assert!(numbers(&db).contains(&1_000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_answered_before_the_commit_survives_a_later_call_of_its_group_failing() {
        // Arrange: the writer held by a call that waits, while a before-commit call (a receipt)
        // and an unguarded call that fails halfway are queued behind it: they form one group
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE) STRICT")
                .map_err(test_err)
        })
        .await
        .unwrap();
        insert(&db, 0).await.unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = std::sync::mpsc::channel::<()>();
        let holder = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |_| {
                    entered.send(()).ok();
                    hold.recv().map_err(|e| DbError::Unavailable(e.to_string()))
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || inside.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the writer runs the holding call");
        let mut receipt = std::pin::pin!(db.write_answered_before_commit(|c| {
            c.execute("INSERT INTO t (n) VALUES (1)", [])
                .map(|_| ())
                .map_err(test_err)
        }));
        let mut failing = std::pin::pin!(db.write_without_savepoint(|c| {
            c.execute("INSERT INTO t (n) VALUES (2)", [])
                .map_err(test_err)?;
            c.execute("INSERT INTO t (n) VALUES (0)", [])
                .map(|_| ())
                .map_err(test_err)
        }));
        // (one poll each submits both, in this order, while the writer is held)
        let zero = Duration::ZERO;
        assert!(tokio::time::timeout(zero, &mut receipt).await.is_err());
        assert!(tokio::time::timeout(zero, &mut failing).await.is_err());

        // Act
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let (receipt, failing) = tokio::join!(receipt, failing);

        // Assert: the receipt was answered Ok and its change is kept; the failed call left nothing
        assert!(receipt.is_ok(), "{receipt:?}");
        assert!(failing.is_err());
        assert_eq!(numbers(&db), vec![0, 1]);
    }

    #[tokio::test]
    async fn a_panicking_write_is_rolled_back_and_resumed_on_the_caller() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE) STRICT")
                .map_err(test_err)
        })
        .await
        .unwrap();

        // Act
        let db2 = db.clone();
        let panicked = tokio::spawn(async move {
            db2.write(|c| -> Result<(), DbError> {
                c.execute("INSERT INTO t (n) VALUES (1)", []).unwrap();
                panic!("bug in a write call");
            })
            .await
        })
        .await;

        // Assert: the panic reached the caller, the row is gone, the writer still works.
        assert!(panicked.unwrap_err().is_panic());
        insert(&db, 2).await.unwrap();
        assert_eq!(numbers(&db), vec![2]);
    }
}
