"""The cluster's job store: PostgreSQL through psycopg 3, one connection shared under a lock.

The jobs table has every column of the SQLite store (read from store.sqlite, so a column added
there comes here too) and the cluster's own: the node that holds a job, its fencing epoch, what
a person wants of it, and when it was dispatched; the nodes table holds each node's lease.
Only store.open_store imports this module, and only when the settings name PostgreSQL.
"""
import logging
import sqlite3
import threading
from contextlib import closing

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from store import sqlite as sqlite_store
from store.base import KeptChangesStore, StoreError, StoreWriteError

log = logging.getLogger(__name__)

# SQLite's declared types, as PostgreSQL spells them.
TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea"}
# The cluster's own columns of jobs: who holds the job, the fencing epoch (+1 on each claim, so
# a node that lost its job can no longer write it), what a person wants, when it was dispatched,
# and the job's own rate limits.
CLUSTER_COLUMNS = {
    "node": "text",
    "epoch": "integer NOT NULL DEFAULT 0",
    "desired": "text NOT NULL DEFAULT 'run'",
    "dispatched_at": "timestamptz",
    # A job's own rate limits as a person set them ({"download": bytes/s, "upload": ...}, 0: none);
    # NULL: never set. Embedded mode keeps them in libtorrent's resume data, which is per node.
    "rate_limits": "text",
}
DESIRED = ("run", "paused", "remove", "remove_files")
UNFINISHED = ("queued", "fetching_metadata", "downloading")  # jobs.model.RUNNING's values
# States whose torrent stays in its node's session without a download task (a seeding, paused,
# failed or stalled job): a node restores them at start, and with shared storage another node
# adopts them from a node that went offline.
RESIDENT = ("completed", "paused", "failed", "stalled")
INSERT_CHUNK = 1000  # jobs per INSERT of insert_new: 22 parameters each, PostgreSQL takes 65,535 at most
SCHEMA_LOCK = 0x68617368  # "hash": two processes opening a new database make its schema in turn
# Connection defaults a URL may override: a database that is down or cut off makes a write
# fail in seconds (and the change wait), not hang the thread that changes a job.
CONNECTION_DEFAULTS = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "10",
                       "keepalives_interval": "5", "keepalives_count": "3", "tcp_user_timeout": "15000",
                       "application_name": "hashdrop"}
BUMP_NUMBER = ("INSERT INTO counters (name, value) VALUES ('job_number', %s) "
               "ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)")


def sqlite_columns():
    """Every column of the SQLite store's jobs table as {name: PostgreSQL definition}, in order.

    Read from an in-memory database made with store.sqlite's own SCHEMA and ADDED_COLUMNS, so
    the types, NOT NULLs and defaults are SQLite's own, not a copy that could drift.
    """
    with closing(sqlite3.connect(":memory:")) as database:
        database.executescript(sqlite_store.SCHEMA)
        for name, definition in sqlite_store.ADDED_COLUMNS.items():
            database.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
        rows = database.execute("PRAGMA table_info(jobs)").fetchall()
    columns = {}
    for _, name, declared, not_null, default, primary_key in rows:
        if declared.upper() not in TYPES:
            raise StoreError(f"store.postgres has no PostgreSQL type for SQLite's {declared} (jobs.{name})")
        definition = TYPES[declared.upper()] + (" PRIMARY KEY" if primary_key else "")
        definition += " NOT NULL" if not_null and not primary_key else ""
        definition += f" DEFAULT {default}" if default is not None else ""
        columns[name] = definition
    unknown = set(sqlite_store.COLUMNS) - set(columns)
    if unknown:
        raise StoreError(f"store.sqlite.COLUMNS names columns its schema lacks: {sorted(unknown)}")
    return columns


def location_of(url):
    """Where the jobs are kept, for messages to a person: the URL without its password."""
    parts = conninfo_to_dict(url)
    host, port, user = parts.get("host", ""), parts.get("port"), parts.get("user")
    socket_folder = host.startswith("/")
    address = ("" if socket_folder else host) + (f":{port}" if port and not socket_folder else "")
    return (f"postgresql://{user + '@' if user else ''}{address}/{parts.get('dbname', '')}"
            + (f"?host={host}" if socket_folder else ""))


class PostgresJobStore(KeptChangesStore):
    """Every job of the cluster, in PostgreSQL; the same behaviour as store.sqlite.SQLiteJobStore,
    and the statements the download nodes claim, fence and lease with."""

    def __init__(self, url):
        self.location = location_of(url)
        self._conninfo = {**CONNECTION_DEFAULTS, **conninfo_to_dict(url)}
        self._lock = threading.Lock()
        self._connection = None
        self._unsaved = {}  # info_hash -> {column: value} not written yet, or None: delete its row
        self._problem = None  # why the last write failed; None once one succeeds
        self._columns = sqlite_columns()
        try:
            with self._lock:
                self._make_schema()
        except psycopg.Error as exc:
            raise StoreError(f"The job database {self.location} cannot be opened ({one_line(exc)}). Check "
                             "that PostgreSQL runs there, that HASHDROP_DATABASE_URL names it, and that "
                             "its user may create tables; then start hashdrop again.") from exc

    def _connected(self):
        """The one connection (autocommit: every statement outside a transaction block is its own),
        made again after the database went away."""
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(**self._conninfo, autocommit=True, row_factory=dict_row)
        return self._connection

    def _make_schema(self):
        """Create the tables and any missing column, in one transaction under an advisory lock."""
        connection = self._connected()
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            connection.execute("CREATE TABLE IF NOT EXISTS jobs (info_hash text PRIMARY KEY, "
                               "row_order bigint GENERATED ALWAYS AS IDENTITY)")  # SQLite's rowid
            present = {row["column_name"] for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'jobs'")}
            # Only what is missing: an ALTER TABLE locks the table out even when it changes nothing.
            for name, definition in {**self._columns, **CLUSTER_COLUMNS}.items():
                if name not in present:
                    connection.execute(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {name} {definition}")
            connection.execute("CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, value bigint NOT NULL)")
            connection.execute("CREATE TABLE IF NOT EXISTS nodes (name text PRIMARY KEY, lease_until timestamptz, "
                               "slots integer, save_path text, listen text)")

    def _read(self, query, params=()):
        """Run one statement and return its rows; a StoreError saying why when the database fails."""
        with self._lock:
            try:
                return self._connected().execute(query, params).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"The job database {self.location} cannot be read ({one_line(exc)}).") from exc

    def load(self):
        """Return every stored job as a dict, oldest first (the cluster's columns too)."""
        columns = ", ".join([*self._columns, *CLUSTER_COLUMNS])
        return self._read(f"SELECT {columns} FROM jobs ORDER BY added_at, row_order")

    def last_number(self):
        """The highest job number ever stored, removed jobs' too; 0 when none was."""
        rows = self._read("SELECT greatest(coalesce((SELECT value FROM counters WHERE name = 'job_number'), 0), "
                          "coalesce((SELECT max(number) FROM jobs), 0)) AS number")
        return rows[0]["number"]

    def save_many(self, records):
        """Insert several jobs in one transaction, after the changes still waiting; raise if it fails.
        A job already stored is replaced by a new row, as SQLite's INSERT OR REPLACE does."""
        columns = sqlite_store.COLUMNS
        insert = sql.SQL("INSERT INTO jobs ({}) VALUES ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(map(self._value, columns)))

        def replace(connection):
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM jobs WHERE info_hash = ANY(%s)", ([r["info_hash"] for r in records],))
                cursor.executemany(insert, [[storable(r.get(c)) for c in columns] for r in records])
                cursor.execute(BUMP_NUMBER, (max((r.get("number") or 0 for r in records), default=0),))

        with self._lock:
            self._write_unsaved(replace)
            if self._problem:
                raise StoreWriteError(self._problem)

    def _value(self, column):
        """A column's placeholder in save_many: a None in a NOT NULL column with a default becomes
        the default, as SQLite's INSERT OR REPLACE makes it."""
        definition = self._columns[column]
        if " NOT NULL DEFAULT " not in definition:
            return sql.Placeholder()
        return sql.SQL("coalesce({}, {})").format(sql.Placeholder(), sql.SQL(definition.split(" DEFAULT ", 1)[1]))

    def _write_unsaved(self, then=None):
        """Write every waiting change, then run then(connection), in one transaction."""
        try:
            connection = self._connected()
            with connection.transaction():
                for info_hash, fields in self._unsaved.items():
                    self._write_change(connection, info_hash, fields)
                if then is not None:
                    then(connection)
        except psycopg.Error as exc:
            if self._problem is None:
                log.warning("cannot write the job database %s: %s", self.location, one_line(exc))
            self._problem = one_line(exc)
            return
        if self._problem is not None:
            log.info("the job database %s is written again", self.location)
        self._unsaved.clear()
        self._problem = None

    @staticmethod
    def _write_change(connection, info_hash, fields):
        """One waiting change: the row deleted (None), or some of its columns set."""
        if fields is None:
            connection.execute("DELETE FROM jobs WHERE info_hash = %s", (info_hash,))
        elif fields:
            connection.execute(sql.SQL("UPDATE jobs SET {} WHERE info_hash = %s").format(assignments(fields)),
                               [*map(storable, fields.values()), info_hash])
            if fields.get("number"):  # numbered at start: a job stored without a number
                connection.execute(BUMP_NUMBER, (fields["number"],))

    usual_cause = "Check that PostgreSQL runs and can be reached."

    def _disconnect(self):
        if self._connection is not None:
            self._connection.close()

    # The cluster's statements. Each is one statement, so it is atomic on its own; each raises
    # StoreError when the database cannot answer, since its caller must not act as if it had.
    def _change(self, query, params):
        """Run one statement that changes rows (and returns them); return those rows."""
        with self._lock:
            try:
                return self._connected().execute(query, params).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"The job database {self.location} cannot be written ({one_line(exc)}).") from exc

    def claim(self, info_hash, node):
        """Take a queued job for node: its new epoch, or None when it is not to run, not queued (already
        claimed: a duplicate task) or held by another node. Its state becomes fetching_metadata."""
        rows = self._change(
            "UPDATE jobs SET node = %s, epoch = epoch + 1, state = 'fetching_metadata' "
            "WHERE info_hash = %s AND desired = 'run' AND state = 'queued' AND (node IS NULL OR node = %s) "
            "RETURNING epoch", (node, info_hash, node))
        return rows[0]["epoch"] if rows else None

    def update_fenced(self, info_hash, node, epoch, **fields):
        """Change some columns of a job only while node holds it at epoch; whether it did (no fields:
        whether node still holds it). Not kept for later: a node that cannot write must not go on."""
        changes = assignments(fields) if fields else sql.SQL("epoch = epoch")
        query = sql.SQL("UPDATE jobs SET {} WHERE info_hash = %s AND node = %s AND epoch = %s "
                        "RETURNING info_hash").format(changes)
        return bool(self._change(query, [*map(storable, fields.values()), info_hash, node, epoch]))

    def delete_fenced(self, info_hash, node, epoch):
        """Delete a job's row only while node holds it at epoch; whether it did."""
        return bool(self._change("DELETE FROM jobs WHERE info_hash = %s AND node = %s AND epoch = %s "
                                 "RETURNING info_hash", (info_hash, node, epoch)))

    def row(self, info_hash):
        """One job's stored record (the cluster's columns too), or None."""
        columns = ", ".join([*self._columns, *CLUSTER_COLUMNS])
        rows = self._read(f"SELECT {columns} FROM jobs WHERE info_hash = %s", (info_hash,))
        return rows[0] if rows else None

    def rows_of(self, node):
        """Every job node holds, as stored (the cluster's columns too), oldest first."""
        columns = ", ".join([*self._columns, *CLUSTER_COLUMNS])
        return self._read(f"SELECT {columns} FROM jobs WHERE node = %s ORDER BY added_at, row_order", (node,))

    def set_desired(self, info_hash, desired):
        """Record what a person wants of a job (run, paused, remove, remove_files); whether it exists."""
        if desired not in DESIRED:
            raise ValueError(f"desired must be one of {', '.join(DESIRED)}, not {desired!r}")
        return bool(self._change("UPDATE jobs SET desired = %s WHERE info_hash = %s RETURNING info_hash",
                                 (desired, info_hash)))

    def renew_node(self, name, seconds, slots, save_path, listen):
        """Extend (or take) node name's lease by seconds from now, with what it offers; the lease's end."""
        rows = self._change(
            "INSERT INTO nodes (name, lease_until, slots, save_path, listen) "
            "VALUES (%s, now() + make_interval(secs => %s), %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "lease_until = excluded.lease_until, slots = excluded.slots, save_path = excluded.save_path, "
            "listen = excluded.listen RETURNING lease_until", (name, seconds, slots, save_path, listen))
        return rows[0]["lease_until"]

    def expired_nodes(self):
        """The names of the nodes whose lease has run out, by name."""
        return [row["name"] for row in self._read("SELECT name FROM nodes WHERE lease_until < now() ORDER BY name")]

    def requeue_jobs_of(self, node):
        """Give up node's unfinished jobs (queued, fetching metadata, downloading): queued again, held
        by no node, epoch + 1 (fencing the node off them). Their info hashes, to dispatch again."""
        rows = self._change(
            "UPDATE jobs SET state = 'queued', node = NULL, epoch = epoch + 1 "
            "WHERE node = %s AND state = ANY(%s) RETURNING info_hash", (node, list(UNFINISHED)))
        return sorted(row["info_hash"] for row in rows)

    def adopt_jobs_of(self, node, adopter, limit):
        """Move up to limit of node's resident jobs (RESIDENT) to adopter, epoch + 1 (fencing node off
        them), while node's lease has still run out; their rows as row() gives them.
        SKIP LOCKED: two nodes adopting at once take different jobs."""
        columns = ", ".join(f"jobs.{name}" for name in [*self._columns, *CLUSTER_COLUMNS])
        return self._change(
            f"UPDATE jobs SET node = %(adopter)s, epoch = jobs.epoch + 1 FROM (SELECT info_hash FROM jobs "
            "WHERE node = %(node)s AND state = ANY(%(states)s) ORDER BY added_at, row_order LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED) AS taken WHERE jobs.info_hash = taken.info_hash AND jobs.node = %(node)s "
            "AND EXISTS (SELECT 1 FROM nodes WHERE name = %(node)s AND lease_until < now()) "
            f"RETURNING {columns}",
            {"node": node, "adopter": adopter, "states": list(RESIDENT), "limit": limit})

    # The web app's statements (cluster.web): it lists every job for the page, steers one, and
    # dispatches the jobs whose message never reached the broker.
    def listing(self):
        """Every job with the cluster's columns, oldest first, without the .torrent bytes (the page
        shows none of them, and a thousand uploads would make each read megabytes)."""
        columns = ", ".join(name for name in [*self._columns, *CLUSTER_COLUMNS] if name != "torrent")
        return self._read(f"SELECT {columns} FROM jobs ORDER BY added_at, row_order")

    def insert_new(self, records):
        """Insert new jobs (records as Job.record() makes them, plus "desired"), held by no node, in
        one statement (one round trip: a submit waits for it) that also keeps the highest number.
        A job still stored (one being removed) is replaced, without its rate limits, and fenced
        off its node (epoch + 1).
        More than INSERT_CHUNK jobs, or changes still waiting, go in one transaction. All or
        none: StoreWriteError when the database does not take them."""
        chunks = [records[at:at + INSERT_CHUNK] for at in range(0, len(records), INSERT_CHUNK)]

        def insert(connection):
            for chunk in chunks:
                connection.execute(self._insert_statement(len(chunk)),
                                   [storable(r.get(c)) for r in chunk for c in (*sqlite_store.COLUMNS, "desired")])

        with self._lock:
            if len(chunks) > 1 or self._unsaved:
                self._write_unsaved(insert)
                if self._problem:
                    raise StoreWriteError(self._problem)
                return
            try:
                insert(self._connected())
            except psycopg.Error as exc:
                raise StoreWriteError(one_line(exc)) from exc

    def _insert_statement(self, count):
        columns = [*sqlite_store.COLUMNS, "desired"]
        row = sql.SQL("({})").format(sql.SQL(", ").join(
            sql.Placeholder() if column == "desired" else self._value(column) for column in columns))
        replace = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:])
        return sql.SQL(
            "WITH new AS (INSERT INTO jobs ({}) VALUES {} ON CONFLICT (info_hash) DO UPDATE SET {}, node = NULL, "
            "epoch = jobs.epoch + 1, dispatched_at = NULL, uploaded_bytes = DEFAULT, rate_limits = NULL "
            "RETURNING number) "
            "INSERT INTO counters (name, value) SELECT 'job_number', coalesce(max(number), 0) FROM new "
            "ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join([row] * count), replace)

    def change_job(self, info_hash, **fields):
        """Set some columns of one job, whoever holds it (what a person asks: desired, state,
        labels); the job's row as listing() gives it, or None when there is no such job."""
        if fields.get("desired", "run") not in DESIRED:
            raise ValueError(f"desired must be one of {', '.join(DESIRED)}, not {fields['desired']!r}")
        columns = ", ".join(name for name in [*self._columns, *CLUSTER_COLUMNS] if name != "torrent")
        query = sql.SQL("UPDATE jobs SET {} WHERE info_hash = %s RETURNING " + columns).format(assignments(fields))
        rows = self._change(query, [*map(storable, fields.values()), info_hash])
        return rows[0] if rows else None

    def delete_unplaced(self, info_hash):
        """Delete a job no node has claimed; whether it did (False: a node holds it, or it is gone)."""
        return bool(self._change("DELETE FROM jobs WHERE info_hash = %s AND node IS NULL RETURNING info_hash",
                                 (info_hash,)))

    def mark_dispatched(self, sent):
        """Record that the download tasks of these (info_hash, node) pairs are in the broker; not for
        a job whose node changed since undispatched() read it (its task went to the wrong queue, and
        the next round sends it to the right one)."""
        if sent:
            self._change("UPDATE jobs SET dispatched_at = now() FROM unnest(%s::text[], %s::text[]) AS s(h, n) "
                         "WHERE info_hash = s.h AND node IS NOT DISTINCT FROM s.n AND dispatched_at IS NULL "
                         "RETURNING info_hash", ([h for h, _ in sent], [n for _, n in sent]))

    def undispatched(self, limit=1000):
        """(info_hash, node) of queued jobs to run whose message never reached the broker, oldest first."""
        rows = self._read("SELECT info_hash, node FROM jobs WHERE dispatched_at IS NULL AND state = 'queued' "
                          "AND desired = 'run' ORDER BY added_at, row_order LIMIT %s", (limit,))
        return [(row["info_hash"], row["node"]) for row in rows]

    def node_leases(self):
        """{name: whether its lease still runs} for every node that ever took a lease."""
        return {row["name"]: row["alive"] for row in
                self._read("SELECT name, lease_until >= now() AS alive FROM nodes ORDER BY name")}


def assignments(fields):
    """ "a = %s, b = %s" for some columns, each name quoted."""
    return sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields)


def storable(value):
    """A value as PostgreSQL takes it: its text cannot hold NUL, which SQLite's can, and one change
    it refused would keep every later one waiting behind it."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def one_line(exc):
    """A database error as one line (libpq's are several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
