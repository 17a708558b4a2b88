"""The embedded job store: a SQLite file in the data dir, one connection shared under a lock."""
import logging
import os
import shutil
import sqlite3
import threading

from store.base import KeptChangesStore, StoreError, StoreWriteError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    info_hash TEXT PRIMARY KEY,
    v1_hash TEXT,
    v2_hash TEXT,
    name TEXT,
    magnet TEXT,
    torrent BLOB,
    added_at TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    save_path TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    sequential INTEGER NOT NULL DEFAULT 0,
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Columns added after the first schema, with their definitions: every database, new or made
# before them, gets them at open.
ADDED_COLUMNS = {
    "uploaded_bytes": "INTEGER NOT NULL DEFAULT 0",
    "number": "INTEGER",  # NULL in a database made before numbers: the manager gives one at start
    "labels": "TEXT NOT NULL DEFAULT '[]'",
    "source": "TEXT NOT NULL DEFAULT 'form'",
    "seeding_stopped": "INTEGER NOT NULL DEFAULT 0",
    "seed_limits": "TEXT NOT NULL DEFAULT '{}'",
    "queue_rank": "REAL",  # NULL: the job's number is its place
    "moving_to": "TEXT",  # set while a job's files move into the library (jobs.library_move)
}

COLUMNS = (
    "info_hash", "v1_hash", "v2_hash", "name", "magnet", "torrent", "added_at", "state",
    "error", "save_path", "category", "sequential", "completed_at", "number", "labels", "source",
    "seeding_stopped", "seed_limits", "queue_rank", "moving_to",
)
# The highest job number ever given: kept apart from the jobs, so that a removed job's number
# is not given again (clients such as Sonarr remember jobs by it).
BUMP_NUMBER = ("INSERT INTO counters (name, value) VALUES ('job_number', ?) "
               "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)")


class SQLiteJobStore(KeptChangesStore):
    """Every job hashdrop knows, in a SQLite file in the data dir (WAL mode)."""

    def __init__(self, path):
        self.path = self.location = path
        self._lock = threading.Lock()
        self._unsaved = {}  # info_hash -> {column: value} not written yet, or None: delete its row
        self._problem = None  # why the last write failed; None once one succeeds
        try:
            keep_private(path)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
            self._db.execute("SELECT count(*) FROM jobs").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(open_problem(path, exc)) from exc

    def _add_missing_columns(self):
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, definition in ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
        if "number" not in present:
            self._number_old_jobs()

    def _number_old_jobs(self):
        """Number the jobs of a database made before job numbers, oldest first, in one
        transaction: one write per job would be minutes of fsyncs for a long list."""
        rowids = [row[0] for row in self._db.execute("SELECT rowid FROM jobs ORDER BY added_at, rowid")]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE jobs SET number = ? WHERE rowid = ?",
                                 [(number, rowid) for number, rowid in enumerate(rowids, 1)])
            self._db.execute(BUMP_NUMBER, (len(rowids),))

    def load(self):
        """Return every stored job as a dict, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY added_at, rowid").fetchall()
        return [dict(row) for row in rows]

    def last_number(self):
        """The highest job number ever stored, removed jobs' too; 0 when none was."""
        with self._lock:
            row = self._db.execute("SELECT max(coalesce((SELECT value FROM counters WHERE name = "
                                   "'job_number'), 0), coalesce((SELECT max(number) FROM jobs), 0))").fetchone()
        return row[0]

    def save_many(self, records):
        """Insert several jobs in one transaction, after the changes still waiting; raise if it fails."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})"

        def insert():
            self._db.executemany(sql, [[r.get(c) for c in COLUMNS] for r in records])
            self._db.execute(BUMP_NUMBER, (max((r.get("number") or 0 for r in records), default=0),))

        with self._lock:
            self._write_unsaved(insert)
            if self._problem:
                raise StoreWriteError(self._problem)

    def _write_unsaved(self, then=None):
        """Write every waiting change, then run then(), in one transaction (one fsync)."""
        try:
            with self._db:
                self._db.execute("BEGIN")
                for info_hash, fields in self._unsaved.items():
                    if fields is None:
                        self._db.execute("DELETE FROM jobs WHERE info_hash = ?", (info_hash,))
                    elif fields:
                        assignments = ", ".join(f"{name} = ?" for name in fields)
                        self._db.execute(f"UPDATE jobs SET {assignments} WHERE info_hash = ?",
                                         [*fields.values(), info_hash])
                        if fields.get("number"):  # numbered at start: an older database's job
                            self._db.execute(BUMP_NUMBER, (fields["number"],))
                if then is not None:
                    then()
        except sqlite3.Error as exc:
            if self._problem is None:
                log.warning("cannot write the job database %s: %s", self.path, exc)
            self._problem = str(exc)
            return
        if self._problem is not None:
            log.info("the job database %s is written again", self.path)
        self._unsaved.clear()
        self._problem = None

    usual_cause = "A full disk is the usual cause: free some space."

    def _disconnect(self):
        self._db.close()


def keep_private(path):
    """Make the database readable by this user alone, and so its -wal and -shm files, which
    SQLite creates with the database file's mode: the database is made first, with 0600."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):  # those of an older hashdrop were 0644
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


def open_problem(path, exc):
    """Why the job database cannot be opened, and what to do: a damaged file is not a full disk.

    On a full disk, opening a database in WAL mode fails with "disk I/O error" (it cannot make
    its -shm file); telling the person to move a sound job list aside would lose it.
    """
    if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return (f"The job database {path} cannot be read ({exc}). "
                "Move it aside to start with an empty job list, or restore it from a backup.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        free = "an unknown amount"
    return (f"The job database {path} cannot be opened ({exc}); nothing in it was changed. Its disk "
            f"has {free} free: free some space if that is little, else check that hashdrop may "
            f"write to {folder}. Then start hashdrop again.")
