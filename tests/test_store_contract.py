"""The JobStore contract, run against SQLite and PostgreSQL alike: every method, numbers never given
twice, save_many all or none, every column kept as given. Then PostgreSQL's own: a database stopped
mid-run, the schema that follows store.sqlite's columns, and the cluster's claim, fence and lease."""
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

import store.sqlite
from helpers import HASH_A, HASH_B, HASH_C
from store import StoreError, StoreWriteError
from store.sqlite import SQLiteJobStore

POSTGRES = pytest.param("postgres", marks=pytest.mark.cluster)


@pytest.fixture(params=["sqlite", POSTGRES])
def open_store(request, tmp_path):
    """open() -> a new store on the test's own database; opening again is a restart. All closed after."""
    if request.param == "sqlite":
        def make():
            return SQLiteJobStore(str(tmp_path / "hashdrop.sqlite3"))
    else:
        url = request.getfixturevalue("pg_database")

        def make():
            from store.postgres import PostgresJobStore
            return PostgresJobStore(url)
    opened = []

    def open_():
        opened.append(make())
        return opened[-1]

    yield open_
    for job_store in opened:
        job_store.close()


def declared_columns():
    """{column: SQLite's declared type} of the SQLite store's jobs table, made as it makes it."""
    with closing(sqlite3.connect(":memory:")) as database:
        database.executescript(store.sqlite.SCHEMA)
        for name, definition in store.sqlite.ADDED_COLUMNS.items():
            database.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
        return {row[1]: row[2] for row in database.execute("PRAGMA table_info(jobs)")}


def every_column_record(info_hash, number):
    """A record with a value that is not the default in every column of store.sqlite.COLUMNS,
    those added later by others too (by their declared type)."""
    samples = {"TEXT": lambda name: f"{name} of {info_hash[:6]} ü ✓", "INTEGER": lambda name: 2**40 + len(name),
               "REAL": lambda name: 0.25 + len(name), "BLOB": lambda name: bytes(range(256)) + name.encode()}
    types = declared_columns()
    record = {name: samples[types[name].upper()](name) for name in store.sqlite.COLUMNS}
    record.update(info_hash=info_hash, number=number, added_at=f"2026-01-0{number}T10:00:00+00:00")
    return record


def job(info_hash, number, **fields):
    """A small record as jobs.model.Job.record() makes one."""
    return {"info_hash": info_hash, "v1_hash": info_hash, "name": None, "added_at": f"2026-01-0{number}T10:00:00",
            "state": "queued", "save_path": "/srv/media", "category": "", "sequential": 0, "number": number,
            "labels": "[]", "source": "api", "seeding_stopped": 0, "seed_limits": "{}", **fields}


def stored(job_store):
    """{info_hash: row} of everything the store holds."""
    return {row["info_hash"]: row for row in job_store.load()}


def test_a_record_keeps_every_column_as_given(open_store):
    job_store = open_store()
    records = [every_column_record(HASH_B, 2), every_column_record(HASH_A, 1)]
    job_store.save_many(records)
    for loaded in (job_store.load(), open_store().load()):  # and after a restart
        assert [row["info_hash"] for row in loaded] == [HASH_A, HASH_B]  # oldest first
        for row, record in zip(loaded, reversed(records)):
            assert {name: row[name] for name in store.sqlite.COLUMNS} == record
            assert row["uploaded_bytes"] == 0


def test_jobs_of_one_moment_load_in_the_order_they_were_saved(open_store):
    job_store = open_store()
    job_store.save_many([job(HASH_C, 1), job(HASH_A, 1)])
    job_store.save_many([job(HASH_B, 1)])
    assert [row["info_hash"] for row in job_store.load()] == [HASH_C, HASH_A, HASH_B]


def test_update_upload_totals_and_delete(open_store):
    job_store = open_store()
    job_store.save_many([job(HASH_A, 1), job(HASH_B, 2), job(HASH_C, 3)])
    job_store.update(HASH_A, state="paused", error="stopped by hand", queue_rank=1.5, torrent=b"d4:infoe")
    job_store.save_upload_totals([(123456789012, HASH_A), (7, HASH_B)])
    job_store.delete(HASH_C)
    job_store.update(HASH_C, state="paused")  # a change to a removed job changes nothing
    rows = stored(open_store())
    assert set(rows) == {HASH_A, HASH_B}
    assert (rows[HASH_A]["state"], rows[HASH_A]["error"], rows[HASH_A]["queue_rank"]) == ("paused", "stopped by hand", 1.5)
    assert bytes(rows[HASH_A]["torrent"]) == b"d4:infoe" and rows[HASH_A]["save_path"] == "/srv/media"
    assert (rows[HASH_A]["uploaded_bytes"], rows[HASH_B]["uploaded_bytes"]) == (123456789012, 7)
    assert rows[HASH_B]["state"] == "queued" and job_store.unsaved_problem() is None


def test_numbers_are_never_given_twice(open_store):
    job_store = open_store()
    assert job_store.last_number() == 0
    job_store.save_many([job(HASH_A, 1), job(HASH_B, 2), job(HASH_C, 3)])
    job_store.delete(HASH_C)
    job_store.delete(HASH_B)
    assert job_store.last_number() == 3
    assert open_store().last_number() == 3  # removed jobs' numbers, after a restart too
    job_store.save_many([{**job(HASH_B, 4), "number": None}])  # a job stored before numbers...
    job_store.update(HASH_B, number=9)  # ...numbered at start
    job_store.delete(HASH_B)
    assert job_store.last_number() == 9


def test_save_many_keeps_all_or_none(open_store):
    job_store = open_store()
    job_store.save_many([job(HASH_A, 1)])
    with pytest.raises(StoreWriteError):
        job_store.save_many([job(HASH_B, 5), job(HASH_C, 6, state=None)])  # state may not be empty
    assert list(stored(job_store)) == [HASH_A] and job_store.last_number() == 1
    assert job_store.unsaved_problem() is None  # nothing of the refused jobs waits
    job_store.save_many([job(HASH_B, 5)])
    assert list(stored(job_store)) == [HASH_A, HASH_B] and job_store.last_number() == 5


def test_save_many_replaces_a_stored_job_and_fills_defaults(open_store):
    """As SQLite's INSERT OR REPLACE: a new row (its upload total starts again), and a None in a
    column with a default is the default."""
    job_store = open_store()
    job_store.save_many([job(HASH_A, 1)])
    job_store.save_upload_totals([(500, HASH_A)])
    job_store.save_many([job(HASH_A, 1, name="again", category=None, labels=None)])
    row = stored(job_store)[HASH_A]
    assert (row["name"], row["category"], row["labels"], row["uploaded_bytes"]) == ("again", "", "[]", 0)


def test_close_writes_what_waits_and_a_new_store_reads_it(open_store):
    job_store = open_store()
    job_store.save_many([job(HASH_A, 1)])
    job_store.update(HASH_A, completed_at="2026-01-01T11:00:00", state="completed")
    job_store.close()
    assert stored(open_store())[HASH_A]["state"] == "completed"


# PostgreSQL only.

@pytest.fixture
def pg_store(pg_database):
    from store.postgres import PostgresJobStore

    job_store = PostgresJobStore(pg_database)
    yield job_store
    job_store.close()


@pytest.mark.cluster
def test_a_database_stopped_mid_run_keeps_the_changes_until_it_is_back(postgres_server, pg_store):
    pg_store.save_many([job(HASH_A, 1), job(HASH_B, 2), job(HASH_C, 3)])
    postgres_server.stop(remove=False)
    try:
        pg_store.update(HASH_A, state="paused")  # the change happened: it waits, nothing raises
        pg_store.delete(HASH_B)
        pg_store.save_upload_totals([(42, HASH_C)])
        problem = pg_store.unsaved_problem()
        assert problem.startswith(f"The job database {pg_store.location} cannot be written (")
        assert "Changes to 3 jobs wait for the next write that succeeds" in problem
        with pytest.raises(StoreWriteError):  # new jobs are refused, not kept
            pg_store.save_many([job("d" * 40, 4)])
        with pytest.raises(StoreError, match="cannot be read"):
            pg_store.load()
    finally:
        postgres_server.start()
    pg_store.update(HASH_C, name="the next write")
    assert pg_store.unsaved_problem() is None
    rows = stored(pg_store)
    assert set(rows) == {HASH_A, HASH_C} and rows[HASH_A]["state"] == "paused"
    assert (rows[HASH_C]["uploaded_bytes"], rows[HASH_C]["name"]) == (42, "the next write")
    assert pg_store.last_number() == 3


@pytest.mark.cluster
def test_the_location_and_every_message_leave_the_password_out(postgres_server, pg_database):
    from store.postgres import PostgresJobStore

    url = pg_database.replace("postgres@", "postgres:s3cret-word@")  # trust: the password is not checked
    job_store = PostgresJobStore(url)
    try:
        assert job_store.location == pg_database and "s3cret" not in job_store.location
        job_store.save_many([job(HASH_A, 1)])
        postgres_server.stop(remove=False)
        try:
            job_store.update(HASH_A, state="paused")
            assert "s3cret" not in job_store.unsaved_problem()
            with pytest.raises(StoreError) as refused:
                PostgresJobStore(url)
        finally:
            postgres_server.start()
        assert "s3cret" not in str(refused.value)
        assert str(refused.value).startswith(f"The job database {pg_database} cannot be opened (")
    finally:
        job_store.close()


@pytest.mark.cluster
def test_the_schema_follows_the_sqlite_columns(pg_database, monkeypatch):
    """A column another change adds to store.sqlite comes to PostgreSQL at the next open, typed."""
    import psycopg

    from store.postgres import PostgresJobStore

    PostgresJobStore(pg_database).close()
    monkeypatch.setitem(store.sqlite.ADDED_COLUMNS, "extra_count", "INTEGER NOT NULL DEFAULT 3")
    monkeypatch.setattr(store.sqlite, "COLUMNS", (*store.sqlite.COLUMNS, "extra_count"))
    job_store = PostgresJobStore(pg_database)
    try:
        job_store.save_many([every_column_record(HASH_A, 1)])
        assert job_store.load()[0]["extra_count"] == 2**40 + len("extra_count")
    finally:
        job_store.close()
    with psycopg.connect(pg_database) as database:
        types = dict(database.execute("SELECT column_name, data_type FROM information_schema.columns "
                                      "WHERE table_name = 'jobs'").fetchall())
    assert {name: types[name] for name in ("number", "queue_rank", "torrent", "labels", "extra_count", "epoch",
                                           "dispatched_at")} == {
        "number": "bigint", "queue_rank": "double precision", "torrent": "bytea", "labels": "text",
        "extra_count": "bigint", "epoch": "integer", "dispatched_at": "timestamp with time zone"}
    assert set(declared_columns()) < set(types)


@pytest.mark.cluster
def test_a_claim_is_taken_once_and_a_stale_epoch_writes_nothing(pg_store):
    pg_store.save_many([job(HASH_A, 1), job(HASH_B, 2)])
    epoch = pg_store.claim(HASH_A, "dl1")
    assert epoch == 1 and stored(pg_store)[HASH_A]["state"] == "fetching_metadata"
    assert pg_store.claim(HASH_A, "dl1") is None  # a redelivered task: no second copy
    assert pg_store.claim(HASH_A, "dl2") is None
    assert pg_store.claim("f" * 40, "dl1") is None  # no such job
    assert pg_store.update_fenced(HASH_A, "dl1", epoch, state="downloading", name="film")
    assert pg_store.update_fenced(HASH_A, "dl1", epoch)  # it still holds the job

    assert pg_store.requeue_jobs_of("dl1") == [HASH_A]  # its lease ran out
    row = stored(pg_store)[HASH_A]
    assert (row["state"], row["node"], row["epoch"], row["name"]) == ("queued", None, 2, "film")
    assert not pg_store.update_fenced(HASH_A, "dl1", epoch, state="completed")  # the old node, back
    assert not pg_store.update_fenced(HASH_A, "dl1", epoch)
    assert stored(pg_store)[HASH_A]["state"] == "queued"
    assert pg_store.claim(HASH_A, "dl2") == 3
    assert not pg_store.update_fenced(HASH_A, "dl1", 3, state="completed")  # the epoch alone is not enough
    assert pg_store.requeue_jobs_of("dl1") == []


@pytest.mark.cluster
def test_only_a_job_that_is_to_run_is_claimed(pg_store):
    pg_store.save_many([job(HASH_A, 1), job(HASH_B, 2, state="completed")])
    assert pg_store.set_desired(HASH_A, "paused")
    assert pg_store.claim(HASH_A, "dl1") is None
    assert pg_store.claim(HASH_B, "dl1") is None  # not queued
    assert pg_store.set_desired(HASH_A, "run")
    assert pg_store.claim(HASH_A, "dl1") == 1
    assert stored(pg_store)[HASH_A]["desired"] == "run"
    assert not pg_store.set_desired("f" * 40, "remove")
    with pytest.raises(ValueError, match="desired must be one of run, paused, remove, remove_files"):
        pg_store.set_desired(HASH_A, "stop")


@pytest.mark.cluster
def test_a_node_held_at_its_own_queue_is_claimed_only_by_it(pg_store):
    """A paused job resumed on the node that has its files: queued, but still that node's."""
    pg_store.save_many([job(HASH_A, 1)])
    epoch = pg_store.claim(HASH_A, "dl1")
    assert pg_store.update_fenced(HASH_A, "dl1", epoch, state="queued")
    assert pg_store.claim(HASH_A, "dl2") is None
    assert pg_store.claim(HASH_A, "dl1") == epoch + 1


@pytest.mark.cluster
def test_node_leases(pg_store, pg_database):
    import psycopg

    before = datetime.now(timezone.utc)
    lease = pg_store.renew_node("dl1", 60, 2, "/srv/media", "127.0.0.3:6881")
    assert before + timedelta(seconds=59) < lease < before + timedelta(seconds=120)
    pg_store.renew_node("dl2", -1, 5, "/srv/other", "127.0.0.4:6881")  # a lease that has run out
    assert pg_store.expired_nodes() == ["dl2"]
    pg_store.renew_node("dl2", 60, 3, "/srv/new", "127.0.0.4:6882")
    assert pg_store.expired_nodes() == []
    with psycopg.connect(pg_database) as database:
        rows = database.execute("SELECT name, slots, save_path, listen FROM nodes ORDER BY name").fetchall()
    assert rows == [("dl1", 2, "/srv/media", "127.0.0.3:6881"), ("dl2", 3, "/srv/new", "127.0.0.4:6882")]
