"""The whole cluster end to end: the web app (`python app.py`, cluster mode) and two download
nodes (Celery workers on 127.0.0.3 and 127.0.0.4), real PostgreSQL and Redis, the loopback
tracker and seeder. Everything a person does goes through the web app's API and page."""
import importlib
import urllib.request

import pytest
from transmission_rpc import Client

from cluster_app import ClusterApp
from cluster_nodes import NODE_HOSTS, Node, cluster_settings
from swarm import check_files, wait_until

pytest.importorskip("celery", reason="the cluster's packages are not installed")
celery_app = importlib.import_module("cluster.celery_app")
live = importlib.import_module("cluster.live")

pytestmark = [pytest.mark.cluster, pytest.mark.swarm]
MiB = 1024 * 1024


class Cluster:
    """The web app and the nodes of one test, and the calls a person makes."""

    def __init__(self, settings, root, tracker):
        self.settings, self.root = settings, root
        self.celery = celery_app.make_celery(settings)
        self.app = ClusterApp(root / "web", tracker, settings).start()
        self.nodes = {}

    def start_nodes(self, concurrency=2, save_path=None, **settings):
        for number, host in enumerate(NODE_HOSTS, 1):
            node = Node(self.celery, f"dl{number}", host, self.root, {**self.settings, **settings}, concurrency,
                        save_path)
            self.nodes[node.name] = node.start()
        return list(self.nodes.values())

    def submit(self, *torrents):
        answer = self.app.request("POST", "/api/jobs", {"hashes": [t.info_hash for t in torrents]})
        assert len(answer["started"]) == len(torrents), answer
        return [job["info_hash"] for job in answer["started"]]

    def jobs(self):
        return {job["info_hash"]: job for job in self.app.get("/api/jobs")}

    def wait_for(self, info_hash, predicate, what, timeout=60):
        return wait_until(lambda: (lambda job: job if job and predicate(job) else None)(self.jobs().get(info_hash)),
                          timeout, f"{info_hash} never {what}: {self.jobs().get(info_hash)}\n{self.logs()}")

    def on_node(self, name):
        """What the node itself holds now, asked through `celery inspect hashdrop_jobs`."""
        replies = self.celery.control.broadcast("hashdrop_jobs", destination=[name], reply=True, timeout=2)
        assert replies, f"{name} did not answer hashdrop_jobs"
        return replies[0][name]

    def live_view(self, name):
        """{info_hash: view} the node published last (cluster.live): what its session holds."""
        client = live.connect(self.settings["BROKER_URL"])
        try:
            return live.read(client, [name])
        finally:
            client.close()

    def logs(self):
        return "\n".join(f"--- {name}\n{node.log()[-3000:]}" for name, node in self.nodes.items())

    def close(self):
        self.app.stop()
        self.app.log.close()
        for node in self.nodes.values():
            node.stop()
        for name, node in self.nodes.items():
            assert "Traceback" not in node.log(), f"{name} logged an error:\n{node.log()[-4000:]}"
        web_log = (self.root / "web" / "server.log").read_text(errors="replace")
        assert "Traceback" not in web_log, web_log[-4000:]


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


def test_jobs_submitted_to_the_web_app_spread_over_both_nodes_and_complete(cluster, seed_new):
    torrents = [seed_new(3 * MiB, upload_limit=MiB) for _ in range(4)]
    first, second = cluster.start_nodes(concurrency=2)
    info_hashes = cluster.submit(*torrents)
    # Live progress from the nodes while they download, with the node on the page.
    moving = wait_until(lambda: next((job for job in cluster.jobs().values() if job["state"] == "downloading"
                                      and 0 < job["progress"] < 1 and job["node"]), None), 30,
                        f"no job showed live progress:\n{cluster.logs()}")
    assert moving["node"] in cluster.nodes and not moving["offline"] and moving["peers"] >= 1
    assert f"on {moving['node']}" in cluster.app.page()
    done = {h: cluster.wait_for(h, lambda job: job["state"] == "completed", "completed") for h in info_hashes}
    by_node = {name: sorted(h for h, job in done.items() if job["node"] == name) for name in cluster.nodes}
    assert sorted(map(len, by_node.values())) == [2, 2], by_node  # 2 slots each, 4 slow jobs: 2 and 2
    for torrent in torrents:
        check_files(torrent, cluster.nodes[done[torrent.info_hash]["node"]].save_path)
    page = cluster.app.page()
    assert all(f"on {name}" in page for name in cluster.nodes)
    assert cluster.app.get("/api/status")["nodes"] == {first.name: True, second.name: True}


def test_pause_resume_and_remove_through_the_api_reach_the_node(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB // 2)
    cluster.start_nodes(concurrency=1)
    (info_hash,) = cluster.submit(torrent)
    job = cluster.wait_for(info_hash, lambda job: job["state"] == "downloading" and job["progress"] > 0,
                           "downloaded")
    owner = cluster.nodes[job["node"]]
    # The command is answered before the API answers: the node has paused it by then.
    assert cluster.app.request("POST", f"/api/jobs/{info_hash}/pause")["state"] == "paused"
    assert cluster.on_node(owner.name)[info_hash]["state"] == "paused"
    resumed = cluster.app.request("POST", f"/api/jobs/{info_hash}/resume")
    assert (resumed["state"], resumed["node"]) == ("queued", owner.name)
    cluster.wait_for(info_hash, lambda job: job["state"] == "downloading", "went on downloading")
    assert cluster.on_node(owner.name)[info_hash]["state"] == "downloading"  # on the node that has its files
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.app.port}/api/jobs/{info_hash}?delete_files=true",
                                     method="DELETE", headers={"X-Hashdrop": "1"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    assert info_hash not in cluster.jobs()
    wait_until(lambda: info_hash not in cluster.on_node(owner.name) and not any(owner.save_path.iterdir()), 10,
               f"the node kept the job or its files:\n{cluster.logs()}")
    other = next(node for node in cluster.nodes.values() if node is not owner)
    assert not other.save_path.exists() or not any(other.save_path.iterdir())


def test_a_pause_sent_while_the_node_was_frozen_takes_effect_once_it_is_back(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB // 2)
    cluster.start_nodes(concurrency=1)
    (info_hash,) = cluster.submit(torrent)
    job = cluster.wait_for(info_hash, lambda job: job["state"] == "downloading", "started downloading")
    owner = cluster.nodes[job["node"]]
    owner.sigstop()  # it cannot answer: the API answers after the command's timeout, from the database
    try:
        assert cluster.app.request("POST", f"/api/jobs/{info_hash}/pause")["state"] == "paused"
    finally:
        owner.sigcont()
    # Back, it applies the pause: the broadcast if it was still buffered, else its reconcile.
    wait_until(lambda: cluster.on_node(owner.name)[info_hash]["state"] == "paused", 15,
               f"the node never applied the pause:\n{cluster.logs()}")
    assert cluster.jobs()[info_hash]["state"] == "paused"


def _seeding_on_one_node(cluster, torrent, save_path=None, **settings):
    """Start both nodes, submit the torrent, wait until it seeds: (job, its node, the other)."""
    cluster.start_nodes(concurrency=1, save_path=save_path, **settings)
    (info_hash,) = cluster.submit(torrent)
    job = cluster.wait_for(info_hash, lambda job: job["state"] == "completed" and job["seeding"], "seeded")
    owner = cluster.nodes[job["node"]]
    other = next(node for node in cluster.nodes.values() if node is not owner)
    return job, owner, other


def test_kill9_with_shared_storage_another_node_adopts_the_seeding_job_from_the_files(cluster, seed_new):
    torrent = seed_new(4 * MiB)
    shared = cluster.root / "shared-downloads"
    job, owner, other = _seeding_on_one_node(cluster, torrent, shared, SHARED_STORAGE=True)
    info_hash, path = job["info_hash"], shared / torrent.name
    written_at = path.stat().st_mtime_ns
    owner.kill9()
    adopted = cluster.wait_for(info_hash, lambda job: job["node"] == other.name and not job["offline"], "adopted")
    assert adopted["state"] == "completed"
    # On the adopting node: in its session, the files checked (its resume data was the old
    # node's), seeding; not downloading again, and no download slot held.
    on_other = wait_until(lambda: (lambda view: view if view and view["has_metadata"] and not view["checking"]
                                   else None)(cluster.live_view(other.name).get(info_hash)), 30,
                          f"{other.name} never had the job checked in its session:\n{cluster.logs()}")
    assert on_other["state"] == "completed" and on_other["seeding"] and on_other["progress"] == 1.0
    assert f"{info_hash} (completed) adopted by {other.name}" in other.log()
    assert "claimed" not in other.log().split(f"adopted by {other.name}")[1]  # no download task for it
    check_files(torrent, shared)
    assert path.stat().st_mtime_ns == written_at  # checked, not written again
    # The old node comes back: the job stays where it is, its files untouched.
    owner.start()
    assert info_hash not in cluster.on_node(owner.name)
    assert cluster.on_node(other.name)[info_hash]["state"] == "completed"
    shown = cluster.jobs()[info_hash]
    assert (shown["node"], shown["state"], shown["offline"]) == (other.name, "completed", False)
    check_files(torrent, shared)
    assert path.stat().st_mtime_ns == written_at


def test_kill9_without_shared_storage_the_seeding_job_waits_offline_for_its_node(cluster, seed_new):
    torrent = seed_new(MiB)
    job, owner, other = _seeding_on_one_node(cluster, torrent)
    info_hash = job["info_hash"]
    owner.kill9()
    offline = cluster.wait_for(info_hash, lambda job: job["offline"], "shown offline", timeout=30)
    assert (offline["node"], offline["state"]) == (owner.name, "completed")
    owner.start()  # it restores the job: seeding again where its files are
    back = cluster.wait_for(info_hash, lambda job: not job["offline"], "back online", timeout=30)
    assert (back["node"], back["state"]) == (owner.name, "completed")
    assert cluster.on_node(owner.name)[info_hash]["state"] == "completed"
    assert info_hash not in cluster.on_node(other.name) and "adopted" not in other.log()
    check_files(torrent, owner.save_path)


def _rpc(cluster):
    return Client(host="127.0.0.1", port=cluster.app.port, timeout=15)


def _file_matches(torrent, save_path):
    try:
        check_files(torrent, save_path)
    except AssertionError:
        return False
    return True


def test_torrent_set_limits_and_verify_through_the_rpc_reach_the_node_that_seeds(cluster, seed_new):
    torrent = seed_new({"film.mkv": 4 * MiB, "film.nfo": 500})
    job, owner, _ = _seeding_on_one_node(cluster, torrent)
    info_hash, rpc = job["info_hash"], _rpc(cluster)
    # A rate limit: stored, shown by torrent-get, and on the node's torrent at once.
    rpc.change_torrent(info_hash, download_limited=True, download_limit=300, upload_limited=True, upload_limit=200)
    shown = rpc.get_torrent(info_hash)
    assert (shown.download_limited, shown.download_limit, shown.upload_limited, shown.upload_limit) == \
        (True, 300, True, 200)
    on_node = cluster.on_node(owner.name)[info_hash]
    assert (on_node["download_limit"], on_node["upload_limit"]) == (300_000, 200_000)
    rpc.change_torrent(info_hash, download_limited=False)  # off again; the upload limit stays
    assert (cluster.on_node(owner.name)[info_hash]["download_limit"], rpc.get_torrent(info_hash).download_limited) \
        == (0, False)
    # Verify: the node checks the files again, finds the damage and fetches it from the seed.
    damaged = owner.save_path / torrent.name / "film.mkv"
    with open(damaged, "r+b") as f:
        f.seek(MiB + 5)
        f.write(b"\x00" * 4096)
    rpc.verify_torrent(info_hash)
    cluster.wait_for(info_hash, lambda job: job["state"] == "completed" and not job["checking"]
                     and _file_matches(torrent, owner.save_path), "repaired")
    check_files(torrent, owner.save_path)
    # Sonarr's seeding limits after adding: ratio 0 of its own stops the seeding on the node.
    rpc.change_torrent(info_hash, seed_ratio_mode=1, seed_ratio_limit=0.0, seed_idle_mode=2)
    stopped = cluster.wait_for(info_hash, lambda job: not job["seeding"], "stopped seeding")
    assert stopped["state"] == "completed"
    assert wait_until(lambda: cluster.live_view(owner.name)[info_hash]["seeding"] is False, 10,
                      "the node still seeds")
    shown = rpc.get_torrent(info_hash)
    # (Its status may say "check pending" rather than "stopped": a check done between two
    # status updates leaves the verify marked asked, in embedded mode too.)
    assert (shown.seed_ratio_mode.value, shown.seed_ratio_limit, shown.seed_idle_mode.value, shown.is_finished) == \
        (1, 0.0, 2, True)


def test_limits_set_before_a_node_holds_the_job_apply_as_a_node_claims_it(cluster, seed_new):
    torrent = seed_new(2 * MiB)
    rpc = _rpc(cluster)
    (info_hash,) = [job["info_hash"] for job in cluster.app.request(
        "POST", "/api/jobs", {"hashes": [torrent.info_hash], "paused": True})["started"]]
    rpc.change_torrent(info_hash, seed_ratio_mode=1, seed_ratio_limit=0.0, download_limited=True,
                       download_limit=5000)
    shown = rpc.get_torrent(info_hash)
    assert (shown.seed_ratio_mode.value, shown.download_limited, shown.download_limit) == (1, True, 5000)
    rpc.verify_torrent(info_hash)  # nothing on disk to check yet: done, as for a job with no metadata
    rpc.reannounce_torrent(info_hash)
    cluster.start_nodes(concurrency=1)
    rpc.start_torrent(info_hash)
    done = cluster.wait_for(info_hash, lambda job: job["state"] == "completed" and not job["seeding"],
                            "completed, and stopped seeding at ratio 0")
    check_files(torrent, cluster.nodes[done["node"]].save_path)
    assert cluster.on_node(done["node"])[info_hash]["download_limit"] == 5_000_000


def test_limits_set_while_the_node_was_down_apply_once_it_is_back(cluster, seed_new):
    torrent = seed_new(MiB)
    job, owner, _ = _seeding_on_one_node(cluster, torrent)
    info_hash, rpc = job["info_hash"], _rpc(cluster)
    owner.kill9()
    # Nobody answers the command: the limits wait in the database, and torrent-get shows them.
    rpc.change_torrent(info_hash, download_limited=True, download_limit=123, seed_ratio_mode=1, seed_ratio_limit=0.0)
    assert (rpc.get_torrent(info_hash).download_limit, rpc.get_torrent(info_hash).seed_ratio_mode.value) == (123, 1)
    owner.start()  # it restores the job and reconciles it with its row
    wait_until(lambda: cluster.on_node(owner.name)[info_hash]["download_limit"] == 123_000, 15,
               f"the node never applied the stored rate limit:\n{cluster.logs()}")
    back = cluster.wait_for(info_hash, lambda job: not job["offline"] and not job["seeding"], "stopped seeding")
    assert (back["node"], back["state"]) == (owner.name, "completed")
    check_files(torrent, owner.save_path)


def test_kill9_with_shared_storage_a_paused_job_is_adopted_paused_and_resumes_on_its_new_node(cluster, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=MiB)
    shared = cluster.root / "shared-downloads"
    cluster.start_nodes(concurrency=1, save_path=shared, SHARED_STORAGE=True)
    (info_hash,) = cluster.submit(torrent)
    job = cluster.wait_for(info_hash, lambda job: job["state"] == "downloading" and job["downloaded_bytes"] > 0,
                           "downloaded")
    owner = cluster.nodes[job["node"]]
    other = next(node for node in cluster.nodes.values() if node is not owner)
    assert cluster.app.request("POST", f"/api/jobs/{info_hash}/pause")["state"] == "paused"
    owner.kill9()
    adopted = cluster.wait_for(info_hash, lambda job: job["node"] == other.name and not job["offline"], "adopted")
    assert adopted["state"] == "paused"
    assert cluster.on_node(other.name)[info_hash]["state"] == "paused"
    resumed = cluster.app.request("POST", f"/api/jobs/{info_hash}/resume")
    assert (resumed["state"], resumed["node"]) == ("queued", other.name)
    done = cluster.wait_for(info_hash, lambda job: job["state"] == "completed", "completed")
    assert done["node"] == other.name
    check_files(torrent, shared)
    assert f"{info_hash} (paused) adopted by {other.name}" in other.log()
