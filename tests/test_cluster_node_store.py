"""The node's store (cluster/node_store.py) against a real PostgreSQL: only this node's resident
jobs are loaded, every write is fenced by the node's epoch, and a fenced-off job is let go."""
import importlib

import pytest

from jobs.model import Job, JobState
from store.base import StoreWriteError

pytest.importorskip("psycopg", reason="the cluster's packages are not installed")
postgres = importlib.import_module("store.postgres")
node_store = importlib.import_module("cluster.node_store")

pytestmark = pytest.mark.cluster
ME, OTHER = "dl1@test", "dl2@test"


def record(info_hash, state="queued", number=1):
    job = Job(info_hash=info_hash, v1_hash=info_hash, v2_hash=None, name=None, magnet=f"magnet:?xt=urn:btih:{info_hash}",
              metainfo=None, save_path="/srv/web", category="", sequential=False, labels=[], source="api",
              state=JobState(state))
    job.number = number
    return job.record()


@pytest.fixture
def database(pg_database):
    database = postgres.PostgresJobStore(pg_database)
    yield database
    database.close()


@pytest.fixture
def fenced():
    return []


@pytest.fixture
def store(database, fenced):
    return node_store.NodeStore(database, ME, on_fenced=fenced.append)


def test_only_this_nodes_resident_jobs_are_loaded(database, store):
    hashes = [c * 40 for c in "abcde"]
    database.save_many([record(h, number=n) for n, h in enumerate(hashes, 1)])
    for h, node, state in zip(hashes, (ME, ME, ME, OTHER, None), ("completed", "paused", "downloading", "paused", "queued")):
        if node:
            database.claim(h, node)
            database.update_fenced(h, node, 1, state=state)
    loaded = store.load()
    assert [row["info_hash"] for row in loaded] == hashes[:2]  # downloading: handed back, not restored
    assert (store.epoch_of(hashes[0]), store.epoch_of(hashes[3])) == (1, None)


def test_writes_are_fenced_and_a_job_taken_over_is_let_go(database, store, fenced):
    info_hash = "a" * 40
    database.save_many([record(info_hash)])
    store.hold(info_hash, database.claim(info_hash, ME))
    store.update(info_hash, state="downloading")
    assert database.row(info_hash)["state"] == "downloading"
    assert database.requeue_jobs_of(ME) == [info_hash]  # the reaper: epoch + 1, no node
    store.update(info_hash, state="completed")
    assert (database.row(info_hash)["state"], fenced, store.epoch_of(info_hash)) == ("queued", [info_hash], None)
    store.update(info_hash, state="failed")  # not held any more: nothing is written, nobody told twice
    assert (database.row(info_hash)["state"], fenced) == ("queued", [info_hash])


def test_a_delete_is_fenced_too(database, store):
    mine, taken = "a" * 40, "b" * 40
    database.save_many([record(mine, number=1), record(taken, number=2)])
    store.hold(taken, database.claim(taken, ME))
    database.requeue_jobs_of(ME)  # the reaper gave it away, and another node took it
    database.claim(taken, OTHER)
    store.hold(mine, database.claim(mine, ME))
    store.delete(mine)
    store.delete(taken)
    assert database.row(mine) is None
    assert database.row(taken)["node"] == OTHER  # another node's row stays


def test_a_node_adds_no_jobs(store):
    with pytest.raises(StoreWriteError, match="a download node adds no jobs"):
        store.save_many([record("a" * 40)])


def test_an_offline_nodes_resident_jobs_are_adopted_in_batches_and_its_writes_fenced(database, store, fenced):
    hashes = [c * 40 for c in "abcdef"]
    database.save_many([record(h, number=n) for n, h in enumerate(hashes, 1)])
    states = ("completed", "paused", "failed", "stalled", "downloading", "completed")
    for h, state in zip(hashes, states):
        store.hold(h, database.claim(h, ME))
        store.update(h, state=state)
    assert database.claim(hashes[5], OTHER) is None  # a claim takes no completed job
    database.renew_node(ME, 60, 1, "/srv", "127.0.0.3:0")
    assert database.adopt_jobs_of(ME, OTHER, 10) == []  # its lease runs: nothing is taken
    database.renew_node(ME, -1, 1, "/srv", "127.0.0.3:0")  # ran out a second ago
    first = database.adopt_jobs_of(ME, OTHER, 3)
    second = database.adopt_jobs_of(ME, OTHER, 3)
    adopted = sorted(row["info_hash"] for row in first + second)
    assert (len(first), adopted) == (3, sorted([*hashes[:4], hashes[5]]))  # resident ones, not the download
    assert {(row["node"], row["epoch"]) for row in first + second} == {(OTHER, 2)}
    assert database.row(hashes[4])["node"] == ME  # the reaper requeues that one (requeue_jobs_of)
    store.update(hashes[0], uploaded_bytes=5)  # the old node, back: fenced off, the job let go
    assert (fenced, database.row(hashes[0])["uploaded_bytes"]) == ([hashes[0]], 0)
