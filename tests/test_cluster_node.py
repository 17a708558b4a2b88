"""Download nodes (cluster/node.py, tasks.py, control.py, keeper.py): real Celery workers as
subprocesses on 127.0.0.3 and 127.0.0.4, real PostgreSQL and Redis, the loopback tracker and
seeder. The jobs' rows are written here as the web app writes them (PostgresJobStore.save_many,
queued, desired run) and their tasks sent with the Celery app: no web app is needed."""
import importlib
import time

import pytest

import hashes
from cluster_nodes import NODE_HOSTS, Node, cluster_settings
from jobs.model import JobState
from jobs.submit import JobOptions
from swarm import check_files, wait_until

pytest.importorskip("celery", reason="the cluster's packages are not installed")
celery_app = importlib.import_module("cluster.celery_app")
live = importlib.import_module("cluster.live")
postgres = importlib.import_module("store.postgres")

pytestmark = [pytest.mark.cluster, pytest.mark.swarm]
MiB = 1024 * 1024


class Cluster:
    """The test's database and broker, the nodes it started, and helpers to queue jobs."""

    def __init__(self, settings, root, tracker):
        self.settings = settings
        self.root = root
        self.tracker = tracker
        self.celery = celery_app.make_celery(settings)
        self.database = postgres.PostgresJobStore(settings["DATABASE_URL"])
        self.redis = live.connect(settings["BROKER_URL"])
        self.nodes = []
        self._numbers = 0

    def node(self, name, host, concurrency=2, **settings):
        node = Node(self.celery, name, host, self.root, {**self.settings, **settings}, concurrency)
        self.nodes.append(node)
        return node.start()

    def queue(self, *torrents, send=True):
        """Store a queued job per torrent (as the web app does), and send its download task."""
        options = JobOptions(str(self.root / "web-downloads"), "", False, False, [self.tracker.announce_url],
                             [], "api")
        jobs = []
        for torrent in torrents:
            job = options.new_job(hashes.parse_text(torrent.info_hash).targets[0])
            self._numbers += 1
            job.number, job.state = self._numbers, JobState.QUEUED
            jobs.append(job)
        self.database.save_many([job.record() for job in jobs])
        if send:
            for job in jobs:
                self.send(job.info_hash)
        return [job.info_hash for job in jobs]

    def send(self, info_hash, queue="hashdrop.downloads"):
        self.celery.send_task("hashdrop.download", (info_hash,), queue=queue)

    def row(self, info_hash):
        return self.database.row(info_hash)

    def wait_for(self, info_hash, state, timeout=60):
        wait_until(lambda: (self.row(info_hash) or {}).get("state") == state, timeout,
                   f"job {info_hash} never reached {state}: {self.row(info_hash)}\n{self.logs()}")
        return self.row(info_hash)

    def logs(self):
        return "\n".join(f"--- {node.name}\n{node.log()[-3000:]}" for node in self.nodes)

    def close(self):
        for node in self.nodes:
            node.stop()
        for node in self.nodes:  # a failing command, loop or task logs a traceback
            assert "Traceback" not in node.log(), f"{node.name} logged an error:\n{node.log()[-4000:]}"
        self.database.close()
        self.redis.close()


@pytest.fixture
def cluster(redis_server, pg_database, tmp_path, tracker, seeder):
    client = live.connect(redis_server.url)
    client.flushall()  # no task or live view of an earlier test
    client.close()
    cluster = Cluster(cluster_settings(redis_server.url, pg_database), tmp_path, tracker)
    try:
        yield cluster
    finally:
        cluster.close()


def test_jobs_spread_over_two_nodes_and_complete_in_each_nodes_save_path(cluster, seed_new):
    torrents = [seed_new(2 * MiB, upload_limit=MiB) for _ in range(4)]
    first, second = (cluster.node(f"dl{n}", host, concurrency=2) for n, host in enumerate(NODE_HOSTS, 1))
    info_hashes = cluster.queue(*torrents)
    rows = {h: cluster.wait_for(h, "completed") for h in info_hashes}
    by_node = {node.name: [h for h, row in rows.items() if row["node"] == node.name] for node in (first, second)}
    assert sorted(map(len, by_node.values())) == [2, 2], by_node  # 2 slots each, 4 slow jobs: 2 and 2
    for torrent in torrents:
        node = first if rows[torrent.info_hash]["node"] == first.name else second
        check_files(torrent, node.save_path)
        assert rows[torrent.info_hash]["save_path"] == str(node.save_path)
        assert rows[torrent.info_hash]["epoch"] == 1
    views = live.read(cluster.redis, [first.name, second.name])
    wait_until(lambda: all(live.read(cluster.redis, [first.name, second.name]).get(h, {}).get("state")
                           == "completed" for h in info_hashes), 10, f"live views: {views}")


def count_in_logs(cluster, text):
    return sum(node.log().count(text) for node in cluster.nodes)


def test_a_busy_node_does_not_hoard_a_queued_job(cluster, seed_new):
    """One slot per node, three jobs: the third waits in the shared queue, not behind a running
    download, and starts on the node that frees first while the other still downloads."""
    short, long_, third = seed_new(MiB, upload_limit=MiB), seed_new(6 * MiB, upload_limit=MiB), seed_new(MiB)
    for number, host in enumerate(NODE_HOSTS, 1):
        cluster.node(f"dl{number}", host, concurrency=1)
    short_hash, long_hash = cluster.queue(short, long_)
    wait_until(lambda: cluster.row(short_hash)["node"] and cluster.row(long_hash)["node"], 20,
               f"not both claimed:\n{cluster.logs()}")
    assert cluster.row(short_hash)["node"] != cluster.row(long_hash)["node"]
    (third_hash,) = cluster.queue(third)
    wait_until(lambda: cluster.row(third_hash)["node"], 30, f"third never claimed:\n{cluster.logs()}")
    assert cluster.row(long_hash)["state"] != "completed"  # the other node still downloads
    assert cluster.row(third_hash)["node"] == cluster.row(short_hash)["node"]
    for info_hash in (short_hash, long_hash, third_hash):
        cluster.wait_for(info_hash, "completed")


def test_a_duplicate_task_is_a_no_op(cluster, seed_new):
    torrent = seed_new(3 * MiB, upload_limit=MiB)
    for number, host in enumerate(NODE_HOSTS, 1):
        cluster.node(f"dl{number}", host, concurrency=2)
    (info_hash,) = cluster.queue(torrent)
    cluster.send(info_hash)  # the same job's task again, as a redelivery or a double click sends it
    wait_until(lambda: count_in_logs(cluster, f"claim refused for {info_hash}") == 1, 20,
               f"the duplicate was not refused:\n{cluster.logs()}")
    row = cluster.wait_for(info_hash, "completed")
    assert row["epoch"] == 1
    assert count_in_logs(cluster, f"claimed {info_hash}") == 1
    owner = next(node for node in cluster.nodes if node.name == row["node"])
    check_files(torrent, owner.save_path)
    other = next(node for node in cluster.nodes if node is not owner)
    assert not any(other.save_path.glob("*")), "the other node wrote files too"
