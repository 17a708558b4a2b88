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
from store.base import StoreError
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

    def node(self, name, host, concurrency=2, save_path=None, **settings):
        node = Node(self.celery, name, host, self.root, {**self.settings, **settings}, concurrency, save_path)
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
        try:
            return self.database.row(info_hash)
        except StoreError:  # the connection died with a PostgreSQL restart: the next one is new
            return self.database.row(info_hash)

    def wait_for(self, info_hash, state, timeout=60):
        wait_until(lambda: (self.row(info_hash) or {}).get("state") == state, timeout,
                   f"job {info_hash} never reached {state}: {self.row(info_hash)}\nlive: "
                   f"{[live.read(self.redis, [node.name]).get(info_hash) for node in self.nodes]}\n{self.logs()}")
        return self.row(info_hash)

    def logs(self):
        return "\n".join(f"--- {node.name}\n{node.log()[-3000:]}" for node in self.nodes)

    def close(self):
        try:
            for node in self.nodes:
                node.stop()
        finally:
            self.database.close()
            self.redis.close()
        for node in self.nodes:  # a failing command, loop or task logs a traceback
            assert "Traceback" not in node.log(), f"{node.name} logged an error:\n{node.log()[-4000:]}"


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


def command(cluster, node, name, **arguments):
    """Broadcast a control command to one node as the web app does; (replies, seconds it took)."""
    started = time.monotonic()
    replies = cluster.celery.control.broadcast(name, arguments=arguments, destination=[node.name], reply=True,
                                               timeout=1, limit=1)
    return replies, time.monotonic() - started


def live_state(cluster, node, info_hash):
    return live.read(cluster.redis, [node.name]).get(info_hash, {}).get("state")


def test_pause_resume_and_remove_reach_the_node_that_holds_the_job(cluster, seed_new):
    slow, other = seed_new(8 * MiB, upload_limit=MiB), seed_new({"a.bin": MiB, "b/c.bin": MiB}, upload_limit=MiB)
    node = cluster.node("dl1", NODE_HOSTS[0], concurrency=2)
    slow_hash, other_hash = cluster.queue(slow, other)
    cluster.wait_for(slow_hash, "downloading")
    trips = sorted(command(cluster, node, "hashdrop_jobs")[1] for _ in range(20))  # measured, not asserted
    print(f"control round trip to a busy node: p50 {trips[10] * 1000:.1f} ms, max {trips[-1] * 1000:.1f} ms")
    # Only the desired state is written here: the row's state changes only if the node acted.
    cluster.database.set_desired(slow_hash, "paused")
    replies, seconds = command(cluster, node, "hashdrop_pause", info_hash=slow_hash)
    assert replies == [{node.name: {"ok": True, "held": True}}]
    print(f"pause round trip: {seconds * 1000:.1f} ms")
    cluster.wait_for(slow_hash, "paused", timeout=5)
    wait_until(lambda: live_state(cluster, node, slow_hash) == "paused", 5, "the live view never said paused")
    wait_until(lambda: node.log().count("succeeded") >= 1, 5, f"the paused job kept its slot:\n{node.log()}")

    cluster.database.set_desired(slow_hash, "run")  # resume: as the web app does, queued for a slot
    cluster.database.update(slow_hash, state="queued")
    replies, _ = command(cluster, node, "hashdrop_resume", info_hash=slow_hash)
    assert replies == [{node.name: {"ok": True, "held": True}}]
    cluster.celery.send_task("hashdrop.download", (slow_hash,), queue=celery_app.direct_queue(node.name))

    cluster.wait_for(other_hash, "completed")
    check_files(other, node.save_path)
    cluster.database.set_desired(other_hash, "remove_files")
    replies, _ = command(cluster, node, "hashdrop_remove", info_hash=other_hash, delete_files=True)
    assert replies == [{node.name: {"ok": True, "held": True}}]
    wait_until(lambda: cluster.row(other_hash) is None, 5, "the removed job's row stayed")
    wait_until(lambda: not (node.save_path / other.name).exists(), 5, "the removed job's files stayed")

    row = cluster.wait_for(slow_hash, "completed")
    assert (row["node"], row["epoch"]) == (node.name, 2)  # resumed on the node with its files
    check_files(slow, node.save_path)


def test_a_pause_sent_while_the_node_was_frozen_takes_effect_when_it_thaws(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    node = cluster.node("dl1", NODE_HOSTS[0], concurrency=1)
    (info_hash,) = cluster.queue(torrent)
    cluster.wait_for(info_hash, "downloading")
    node.sigstop()
    try:
        cluster.database.set_desired(info_hash, "paused")
        # A broadcast is a Redis PUBLISH: one sent now would still wait in the frozen node's
        # socket and arrive as it thaws, but one sent while it reconnects (or is down) is lost.
        # Lost is what is tested, so none is sent: only the stored desired state can pause it.
        time.sleep(2 * float(cluster.settings["RECONCILE_SECONDS"]))  # frozen for two reconcile rounds
    finally:
        node.sigcont()
    cluster.wait_for(info_hash, "paused", timeout=5)  # the reconcile, every second in tests
    assert "reconcile: pausing" in node.log()
    wait_until(lambda: live_state(cluster, node, info_hash) == "paused", 5, "the live view never said paused")


def test_sigterm_mid_download_hands_the_job_back_and_the_restarted_node_finishes_it(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    node = cluster.node("dl1", NODE_HOSTS[0], concurrency=2)
    print(f"node start to ping: {node.started_in:.2f} s")
    (info_hash,) = cluster.queue(torrent)
    cluster.wait_for(info_hash, "downloading")
    wait_until(lambda: (live.read(cluster.redis, [node.name]).get(info_hash) or {}).get("downloaded_bytes", 0) > 0,
               10, "no byte came")
    seconds = node.stop()  # SIGTERM; node.stop fails the test if it takes more than 20 s
    print(f"SIGTERM to exit: {seconds:.2f} s")
    row = cluster.row(info_hash)
    assert (row["state"], row["node"], row["epoch"]) == ("queued", node.name, 1)
    assert f"handed {info_hash} back: queued, sent to {node.name}.dq" in node.log()
    node.start()  # the same name, save path and data folder: it takes the task from its own queue
    row = cluster.wait_for(info_hash, "completed")
    assert (row["node"], row["epoch"]) == (node.name, 2)
    check_files(torrent, node.save_path)
    node.stop()
    node.start()  # the completed job is resident: it comes back into the session, seeding
    replies, _ = command(cluster, node, "hashdrop_jobs")
    assert replies[0][node.name][info_hash]["state"] == "completed"
    wait_until(lambda: (live.read(cluster.redis, [node.name]).get(info_hash) or {}).get("seeding"), 10,
               "the restored job does not seed")


def test_a_redis_restart_mid_download_loses_no_job_and_starts_no_duplicate(cluster, seed_new, redis_server):
    torrents = [seed_new(6 * MiB, upload_limit=MiB) for _ in range(2)]
    nodes = [cluster.node(f"dl{number}", host, concurrency=1) for number, host in enumerate(NODE_HOSTS, 1)]
    info_hashes = cluster.queue(*torrents)
    for info_hash in info_hashes:
        cluster.wait_for(info_hash, "downloading")
    redis_server.restart()
    rows = [cluster.wait_for(info_hash, "completed") for info_hash in info_hashes]
    for torrent, row in zip(torrents, rows):
        assert row["epoch"] == 1
        assert count_in_logs(cluster, f"claimed {torrent.info_hash}") == 1
        check_files(torrent, next(node for node in nodes if node.name == row["node"]).save_path)
    # Live progress comes back once the nodes write to the new Redis.
    wait_until(lambda: len(live.read(cluster.redis, [node.name for node in nodes])) == 2, 10,
               "no live view after the restart")


def downloading_on_shared_storage(cluster, torrent):
    """Two nodes sharing one save path, and the torrent downloading on one of them:
    (info hash, the node downloading it, the other node, the shared save path)."""
    shared = cluster.root / "shared-downloads"
    nodes = [cluster.node(f"dl{number}", host, concurrency=1, save_path=shared, SHARED_STORAGE=True)
             for number, host in enumerate(NODE_HOSTS, 1)]
    (info_hash,) = cluster.queue(torrent)
    row = cluster.wait_for(info_hash, "downloading")
    first = next(node for node in nodes if node.name == row["node"])
    second = next(node for node in nodes if node is not first)
    return info_hash, first, second, shared


def test_kill9_with_shared_storage_the_other_node_takes_over_once_the_lease_expires(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    info_hash, first, second, shared = downloading_on_shared_storage(cluster, torrent)
    wait_until(lambda: (live.read(cluster.redis, [first.name]).get(info_hash) or {}).get("downloaded_bytes", 0) > 0,
               10, "no byte came")
    first.kill9()
    wait_until(lambda: cluster.row(info_hash)["node"] == second.name, 30,
               f"the other node never took the job over:\n{cluster.logs()}")
    row = cluster.wait_for(info_hash, "completed")
    assert (row["node"], row["epoch"]) == (second.name, 3)  # 1: first's claim, 2: the reaper, 3: second's
    check_files(torrent, shared)
    assert first.log().count(f"claimed {info_hash}") == 1 and "at epoch 1" in first.log()
    assert second.log().count(f"claimed {info_hash}") == 1 and f"claimed {info_hash} on {second.name} at epoch 3" in second.log()
    assert count_in_logs(cluster, f"{info_hash} queued again for any node") == 1


def test_a_node_frozen_past_its_lease_stops_its_torrents_as_it_thaws_and_drops_the_job_taken_over(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    info_hash, first, second, shared = downloading_on_shared_storage(cluster, torrent)
    first.sigstop()
    try:
        wait_until(lambda: cluster.row(info_hash)["node"] == second.name, 30,
                   f"the other node never took the job over:\n{cluster.logs()}")
    finally:
        first.sigcont()
    # Thawed, it pauses its torrents at once, then finds the job taken and drops it, files kept.
    wait_until(lambda: any(f"job {info_hash}" in line and "dropped" in line for line in first.log().splitlines()),
               15, f"the thawed node kept the job:\n{first.log()[-3000:]}")
    assert f"{first.name} was frozen for" in first.log()
    row = cluster.wait_for(info_hash, "completed")
    assert row["node"] == second.name
    check_files(torrent, shared)
    wait_until(lambda: info_hash not in live.read(cluster.redis, [first.name]), 10, "the thawed node still shows it")
    wait_until(lambda: "holds its lease again: torrents resumed" in first.log(), 10, "the node stayed fenced")


def test_a_task_redelivered_after_the_visibility_timeout_is_a_no_op(cluster, seed_new):
    """On Redis a task unacknowledged for the visibility timeout is delivered again while the
    first still runs; the claim refuses it, so the download runs once."""
    cluster.settings["VISIBILITY_TIMEOUT"] = "2"
    cluster.celery = celery_app.make_celery(cluster.settings)  # the same timeout everywhere
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    for number, host in enumerate(NODE_HOSTS, 1):
        cluster.node(f"dl{number}", host, concurrency=1)
    (info_hash,) = cluster.queue(torrent)
    wait_until(lambda: count_in_logs(cluster, f"claim refused for {info_hash}") >= 1, 30,
               f"no redelivery came:\n{cluster.logs()}")
    row = cluster.wait_for(info_hash, "completed")
    assert row["epoch"] == 1 and count_in_logs(cluster, f"claimed {info_hash}") == 1
    check_files(torrent, next(node for node in cluster.nodes if node.name == row["node"]).save_path)


def test_a_node_that_cannot_renew_its_lease_pauses_its_torrents_until_it_can(cluster, seed_new, postgres_server):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    node = cluster.node("dl1", NODE_HOSTS[0], concurrency=1)
    (info_hash,) = cluster.queue(torrent)
    cluster.wait_for(info_hash, "downloading")
    postgres_server.stop(remove=False)
    try:
        wait_until(lambda: "pauses every torrent" in node.log(), 30, f"no self-fence:\n{node.log()}")
        paused_at = live.read(cluster.redis, [node.name])[info_hash]["downloaded_bytes"]
        wait_until(lambda: live.read(cluster.redis, [node.name])[info_hash]["download_rate"] == 0, 10,
                   "the self-fenced node still downloads")
        assert live.read(cluster.redis, [node.name])[info_hash]["downloaded_bytes"] < torrent.total_size
    finally:
        postgres_server.start()
    wait_until(lambda: "holds its lease again" in node.log(), 30, f"never renewed:\n{node.log()}")
    row = cluster.wait_for(info_hash, "completed")
    assert (row["node"], row["epoch"]) == (node.name, 1)
    assert paused_at < torrent.total_size
    check_files(torrent, node.save_path)


def test_a_remove_with_files_stored_while_the_node_was_down_happens_when_it_is_back(cluster, seed_new):
    torrent = seed_new({"a.bin": MiB, "b/c.bin": MiB})
    node = cluster.node("dl1", NODE_HOSTS[0], concurrency=1)
    (info_hash,) = cluster.queue(torrent)
    cluster.wait_for(info_hash, "completed")
    check_files(torrent, node.save_path)
    node.kill9()
    cluster.database.set_desired(info_hash, "remove_files")  # the broadcast would find nobody
    assert cluster.row(info_hash)["node"] == node.name  # sticky: the job waits for its node
    node.start()  # the completed job comes back resident, and the reconcile removes it
    wait_until(lambda: cluster.row(info_hash) is None, 10, f"the row stayed:\n{node.log()}")
    wait_until(lambda: not (node.save_path / torrent.name).exists(), 10, "the files stayed")
    assert f"reconcile: removing {info_hash} and its files" in node.log()
