"""SQLite job store: the schema, and one connection shared under a lock."""
import os
import sqlite3
import threading

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
"""

# Columns added after the first schema, with their definitions: every database, new or made
# before them, gets them at open.
ADDED_COLUMNS = {"uploaded_bytes": "INTEGER NOT NULL DEFAULT 0"}

COLUMNS = (
    "info_hash", "v1_hash", "v2_hash", "name", "magnet", "torrent", "added_at", "state",
    "error", "save_path", "category", "sequential", "completed_at",
)


class StoreError(Exception):
    """The job database cannot be opened or read."""


class JobStore:
    """Every job hashdrop knows, in a SQLite file in the data dir (WAL mode)."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
            self._db.execute("SELECT count(*) FROM jobs").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"The job database {path} cannot be read ({exc}). "
                "Move it aside to start with an empty job list, or restore it from a backup."
            ) from exc

    def _add_missing_columns(self):
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, definition in ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")

    @classmethod
    def in_dir(cls, data_dir):
        os.makedirs(data_dir, exist_ok=True)
        return cls(os.path.join(data_dir, "hashdrop.sqlite3"))

    def load(self):
        """Return every stored job as a dict, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY added_at, rowid").fetchall()
        return [dict(row) for row in rows]

    def save(self, record):
        """Insert or replace one job (a dict with the COLUMNS keys)."""
        values = [record.get(column) for column in COLUMNS]
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                values,
            )

    def save_many(self, records):
        """Insert several jobs in one transaction."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        self._execute_many(sql, [[r.get(c) for c in COLUMNS] for r in records])

    def update(self, info_hash, **fields):
        """Change some columns of one job."""
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE info_hash = ?",
                [*fields.values(), info_hash],
            )

    def save_upload_totals(self, totals):
        """Record several jobs' uploaded bytes ((bytes, info_hash) pairs) in one transaction."""
        self._execute_many("UPDATE jobs SET uploaded_bytes = ? WHERE info_hash = ?", totals)

    def _execute_many(self, sql, rows):
        """Run one statement for each row, all in one transaction (one fsync)."""
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(sql, rows)

    def delete(self, info_hash):
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE info_hash = ?", (info_hash,))

    def close(self):
        with self._lock:
            self._db.close()


def write_atomically(path, data):
    """Write bytes to path so that a crash leaves either the old or the new file."""
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_all_atomically(files):
    """Write {path: bytes} so that a crash leaves each file old or new; return {path: OSError}.

    Two syncs for all the files rather than two fsyncs each: at shutdown a library of 1,000
    jobs writes 1,000 resume files, and on a hard disk, at several ms a fsync, 2,000 fsyncs
    would outlast the 10 s a shutdown is given.
    """
    failed, written = {}, []
    for path, data in files.items():
        tmp = temporary_name(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            written.append((tmp, path))
        except OSError as exc:
            failed[path] = exc
            remove_quietly(tmp)
    os.sync()  # every new file whole on disk before any name points at it
    for tmp, path in written:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            failed[path] = exc
            remove_quietly(tmp)
    os.sync()
    return failed


def temporary_name(path):
    return f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
