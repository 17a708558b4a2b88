"""Cluster mode's web app without download nodes (cluster.web): real PostgreSQL and Redis on
loopback; the nodes' part (claims, leases, live views) is played with the same statements and
the same Redis keys a node uses."""
import base64
import json

import pytest

from cluster_servers import RedisServer
from helpers import HASH_A, HASH_B, HASH_C
from swarm import wait_until

pytestmark = pytest.mark.cluster
psycopg = pytest.importorskip("psycopg", reason="pip install -r requirements-cluster.txt")
redis = pytest.importorskip("redis", reason="pip install -r requirements-cluster.txt")

QUEUE = "hashdrop.downloads"
NODE = "dl1@test"


@pytest.fixture
def broker(redis_server):
    """The session's Redis, emptied for this test: its URL and a client."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url, client
    client.close()


@pytest.fixture
def cluster_app(make_app, pg_database, broker):
    """make(**settings): an app in cluster mode on this test's database and the emptied Redis."""

    def make(**settings):
        return make_app(**{"MODE": "cluster", "DATABASE_URL": pg_database, "BROKER_URL": broker[0],
                           "NODE_LEASE": 3, **settings})

    return make


def rows(url):
    """Every job's row as a node or an operator would read it."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as connection:
        return {row["info_hash"]: row for row in connection.execute(
            "SELECT info_hash, state, node, desired, number, dispatched_at FROM jobs")}


def queued_tasks(client, queue=QUEUE):
    """(task name, info hash) of each message in a kombu Redis queue (a list named after it)."""
    tasks = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        tasks.append((message["headers"]["task"], args[0]))
    return sorted(tasks)


def api_job(client, info_hash):
    response = client.get(f"/api/jobs/{info_hash}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_submit_is_stored_before_it_answers_and_each_job_is_one_task(cluster_app, pg_database, broker):
    app = cluster_app()
    response = app.test_client().post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    assert response.status_code == 201, response.get_json()
    stored = rows(pg_database)  # read at once: the answer came after the commit
    assert {h: (r["state"], r["node"], r["desired"], r["number"]) for h, r in stored.items()} == \
        {HASH_A: ("queued", None, "run", 1), HASH_B: ("queued", None, "run", 2)}
    # The tasks are sent by the dispatch thread right after the answer, and recorded as sent.
    wait_until(lambda: len(queued_tasks(broker[1])) == 2, 10, "the tasks were not sent")
    assert queued_tasks(broker[1]) == sorted([("hashdrop.download", HASH_A), ("hashdrop.download", HASH_B)])
    wait_until(lambda: all(row["dispatched_at"] for row in rows(pg_database).values()), 10, "not recorded as sent")
    assert [job["state"] for job in response.get_json()["started"]] == ["queued", "queued"]


def test_a_duplicate_submit_adds_no_row_and_no_task(cluster_app, pg_database, broker):
    client = cluster_app().test_client()
    assert client.post("/api/jobs", json={"hashes": [HASH_A]}).status_code == 201
    wait_until(lambda: queued_tasks(broker[1]), 10, "the task was not sent")
    again = client.post("/api/jobs", json={"hashes": [HASH_A, HASH_A]})
    assert again.status_code == 200, again.get_json()
    assert [job["info_hash"] for job in again.get_json()["existing"]] == [HASH_A]
    assert list(rows(pg_database)) == [HASH_A]
    wait_until(lambda: rows(pg_database)[HASH_A]["dispatched_at"], 10, "not recorded as sent")
    assert queued_tasks(broker[1]) == [("hashdrop.download", HASH_A)]


def test_a_job_submitted_paused_is_stored_paused_and_not_sent(cluster_app, pg_database, broker):
    client = cluster_app().test_client()
    assert client.post("/api/jobs", json={"hashes": [HASH_A], "paused": True}).status_code == 201
    assert (rows(pg_database)[HASH_A]["state"], rows(pg_database)[HASH_A]["desired"]) == ("paused", "paused")
    client.post("/api/jobs", json={"hashes": [HASH_B]})  # sent after any task of the paused job would be
    wait_until(lambda: queued_tasks(broker[1]), 10, "the other job's task was not sent")
    assert queued_tasks(broker[1]) == [("hashdrop.download", HASH_B)]


def test_pause_of_a_job_no_node_holds_is_written_to_the_database_only(cluster_app, pg_database, broker):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    wait_until(lambda: queued_tasks(broker[1]), 10, "the task was not sent")
    assert client.post(f"/api/jobs/{HASH_A}/pause").get_json()["state"] == "paused"
    row = rows(pg_database)[HASH_A]
    assert (row["state"], row["desired"], row["node"]) == ("paused", "paused", None)
    # Its task stays in the queue; a node's claim refuses it (desired is not run).
    store = app.extensions["hashdrop"].store
    assert store.claim(HASH_A, NODE) is None
    resumed = client.post(f"/api/jobs/{HASH_A}/resume").get_json()
    assert (resumed["state"], resumed["desired"]) == ("queued", "run")
    wait_until(lambda: len(queued_tasks(broker[1])) == 2, 10, "the resumed job's task was not sent")
    assert queued_tasks(broker[1]) == [("hashdrop.download", HASH_A)] * 2
    assert store.claim(HASH_A, NODE) == 1


def test_resume_sends_the_task_to_the_node_that_has_the_files(cluster_app, broker):
    """To the queue cluster.celery_app.direct_queue names, which the node's bootstep consumes."""
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    store = app.extensions["hashdrop"].store
    epoch = store.claim(HASH_A, NODE)
    assert store.update_fenced(HASH_A, NODE, epoch, state="paused")
    app.extensions["hashdrop"].sync()
    assert client.post(f"/api/jobs/{HASH_A}/resume").status_code == 200
    wait_until(lambda: queued_tasks(broker[1], f"{NODE}.dq"), 10, "the task was not sent to the node's queue")
    assert queued_tasks(broker[1], f"{NODE}.dq") == [("hashdrop.download", HASH_A)]


def test_the_page_and_the_api_show_each_job_with_its_node_and_live_progress(cluster_app, broker):
    from cluster import live

    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    store = app.extensions["hashdrop"].store
    store.renew_node(NODE, 60, 2, "/srv/dl1", "127.0.0.3:6881")
    epoch = store.claim(HASH_A, NODE)
    store.update_fenced(HASH_A, NODE, epoch, state="downloading", name="film")
    view = {"info_hash": HASH_A, "progress": 0.25, "downloaded_bytes": 1024, "total_bytes": 4096,
            "download_rate": 512, "peers": 3, "seeds": 1, "has_metadata": True}
    assert live.publish(broker[1], NODE, {HASH_A: view})
    job = wait_until(lambda: (lambda j: j if j["progress"] == 0.25 else None)(api_job(client, HASH_A)), 10,
                     "the live progress did not show")
    assert (job["node"], job["offline"], job["state"], job["name"], job["peers"]) == \
        (NODE, False, "downloading", "film", 3)
    listed = {job["info_hash"]: job["node"] for job in client.get("/api/jobs").get_json()}
    assert listed == {HASH_A: NODE, HASH_B: None}
    page = client.get("/").get_data(as_text=True)
    assert f"on {NODE}" in page and "25.0 %" in page
    assert client.get("/api/status").get_json()["nodes"] == {NODE: True}


def test_a_job_whose_node_lease_ran_out_shows_offline(cluster_app):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    store = app.extensions["hashdrop"].store
    store.renew_node(NODE, 1, 2, "/srv/dl1", "127.0.0.3:6881")
    store.claim(HASH_A, NODE)
    wait_until(lambda: api_job(client, HASH_A)["node"] == NODE, 10, "the node did not show")
    wait_until(lambda: api_job(client, HASH_A)["offline"], 10, "the job did not show its node offline")
    assert f"on {NODE} (offline)" in client.get("/").get_data(as_text=True)


def test_remove_of_a_job_no_node_holds_deletes_its_row(cluster_app, pg_database):
    client = cluster_app().test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    assert client.delete(f"/api/jobs/{HASH_A}").status_code == 204
    assert list(rows(pg_database)) == [HASH_B]
    assert [job["info_hash"] for job in client.get("/api/jobs").get_json()] == [HASH_B]


def test_remove_of_a_job_a_node_holds_is_left_to_that_node(cluster_app, pg_database):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    app.extensions["hashdrop"].store.claim(HASH_A, NODE)
    assert client.delete(f"/api/jobs/{HASH_A}?delete_files=true").status_code == 204
    assert rows(pg_database)[HASH_A]["desired"] == "remove_files"  # the node deletes it, and its files
    assert client.get("/api/jobs").get_json() == []
    assert client.get(f"/api/jobs/{HASH_A}").status_code == 404


def test_a_submit_while_the_broker_is_down_is_kept_and_sent_once_it_is_back(cluster_app, pg_database):
    own_redis = RedisServer().start()
    try:
        app = cluster_app(BROKER_URL=own_redis.url)
        own_redis._terminate()
        response = app.test_client().post("/api/jobs", json={"hashes": [HASH_A]})
        assert response.status_code == 201, response.get_json()
        assert rows(pg_database)[HASH_A]["dispatched_at"] is None
        wait_until(lambda: app.test_client().get("/api/status").get_json()["store_problem"], 10,
                   "the page did not say the broker is down")
        own_redis.start()
        wait_until(lambda: rows(pg_database)[HASH_A]["dispatched_at"], 20, "the waiting task was not sent")
        assert queued_tasks(redis.Redis.from_url(own_redis.url)) == [("hashdrop.download", HASH_A)]
    finally:
        own_redis.stop()


def test_a_restarted_web_app_shows_every_job_and_numbers_on(cluster_app):
    first = cluster_app()
    first.test_client().post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    first.extensions["hashdrop"].shutdown()
    second = cluster_app()
    client = second.test_client()
    assert [(job["info_hash"], job["number"]) for job in client.get("/api/jobs").get_json()] == \
        [(HASH_A, 1), (HASH_B, 2)]
    assert client.post("/api/jobs", json={"hashes": [HASH_C]}).get_json()["started"][0]["number"] == 3


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/jobs/{h}/files", None),
    ("post", "/api/jobs/{h}/files", {"wanted": [0]}),
])
def test_what_needs_the_torrent_answers_a_clear_4xx(cluster_app, method, path, body):
    client = cluster_app().test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    response = getattr(client, method)(path.format(h=HASH_A), json=body)
    assert response.status_code == 400
    assert "not available in cluster mode yet" in response.get_json()["error"]


def test_the_files_page_and_the_rpc_say_what_cluster_mode_cannot_do_yet(cluster_app):
    client = cluster_app().test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    page = client.get(f"/jobs/{HASH_A}/files")
    assert page.status_code == 200 and "not available in cluster mode yet" in page.get_data(as_text=True)
    session_id = client.get("/transmission/rpc").headers["X-Transmission-Session-Id"]
    for method, arguments in [("torrent-set", {"ids": [HASH_A], "files-unwanted": [0]}), ("torrent-set-location",
                              {"ids": [HASH_A], "location": "films", "move": True}),
                              ("session-set", {"speed-limit-down": 10, "speed-limit-down-enabled": True})]:
        answer = client.post("/transmission/rpc", json={"method": method, "arguments": arguments},
                             headers={"X-Transmission-Session-Id": session_id})
        assert answer.status_code == 200
        assert "cluster mode" in answer.get_json()["result"], (method, answer.get_json())
    listed = client.post("/transmission/rpc", json={"method": "torrent-get", "arguments": {
        "fields": ["hashString", "status", "files", "peers", "queuePosition"]}},
        headers={"X-Transmission-Session-Id": session_id}).get_json()
    assert listed["result"] == "success"
    assert [(t["hashString"], t["files"], t["queuePosition"]) for t in listed["arguments"]["torrents"]] == \
        [(HASH_A, [], 0)]


def rpc_call(client, method, arguments):
    session_id = client.get("/transmission/rpc").headers["X-Transmission-Session-Id"]
    answer = client.post("/transmission/rpc", json={"method": method, "arguments": arguments},
                         headers={"X-Transmission-Session-Id": session_id})
    assert answer.status_code == 200
    return answer.get_json()


def stored_limits(url, info_hash):
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT seed_limits, rate_limits FROM jobs WHERE info_hash = %s",
                                  (info_hash,)).fetchone()


def test_torrent_set_limits_are_stored_with_the_job_and_shown_whoever_holds_it(cluster_app, pg_database):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    app.extensions["hashdrop"].store.claim(HASH_B, NODE)  # held by a node that never answers
    for info_hash in (HASH_A, HASH_B):
        answer = rpc_call(client, "torrent-set", {"ids": [info_hash], "seedRatioLimit": 1.5, "seedRatioMode": 1,
                                                  "seedIdleMode": 2, "downloadLimit": 250, "downloadLimited": True})
        assert answer["result"] == "success", answer
    answer = rpc_call(client, "torrent-set", {"ids": [HASH_A], "uploadLimit": 40, "uploadLimited": True})
    assert answer["result"] == "success"  # the download limit set before stays
    seed_limits, rate_limits = stored_limits(pg_database, HASH_A)
    assert (json.loads(seed_limits)["ratio"], json.loads(seed_limits)["ratio_mode"], json.loads(rate_limits)) == \
        (1.5, 1, {"download": 250_000, "upload": 40_000})
    assert json.loads(stored_limits(pg_database, HASH_B)[1]) == {"download": 250_000, "upload": 0}
    listed = rpc_call(client, "torrent-get", {"ids": [HASH_A, HASH_B], "fields": [
        "hashString", "seedRatioLimit", "seedRatioMode", "seedIdleMode", "downloadLimit", "downloadLimited",
        "uploadLimited"]})["arguments"]["torrents"]
    assert [(t["hashString"], t["seedRatioLimit"], t["seedRatioMode"], t["seedIdleMode"], t["downloadLimit"],
             t["downloadLimited"], t["uploadLimited"]) for t in listed] == \
        [(HASH_A, 1.5, 1, 2, 250, True, True), (HASH_B, 1.5, 1, 2, 250, True, False)]
    refused = rpc_call(client, "torrent-set", {"ids": [HASH_A], "seedRatioMode": 7})
    assert refused["result"] == "ratio_mode must be 0 (global), 1 (this torrent's) or 2 (unlimited), not 7."
    assert json.loads(stored_limits(pg_database, HASH_A)[0])["ratio_mode"] == 1  # nothing changed


def test_verify_says_when_the_jobs_node_is_offline_and_is_nothing_to_do_before_one_holds_it(cluster_app):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    store = app.extensions["hashdrop"].store
    store.renew_node(NODE, 1, 2, "/srv/dl1", "127.0.0.3:6881")
    store.claim(HASH_A, NODE)
    wait_until(lambda: api_job(client, HASH_A)["offline"], 10, "the job did not show its node offline")
    for method in ("torrent-verify", "torrent-reannounce"):
        answer = rpc_call(client, method, {"ids": [HASH_A]})
        assert answer["result"] == f"Its download node {NODE} is offline: ask again once it is back.", answer
        assert rpc_call(client, method, {"ids": [HASH_B]})["result"] == "success"  # queued: nothing on disk yet


def test_queue_moves_are_accepted_and_change_nothing(cluster_app, pg_database):
    """Sonarr's "First" priority sends queue-move-top after adding, and shows any failure."""
    client = cluster_app().test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    for method in ("queue-move-top", "queue-move-up", "queue-move-down", "queue-move-bottom"):
        assert rpc_call(client, method, {"ids": [HASH_B]})["result"] == "success"
    listed = rpc_call(client, "torrent-get", {"fields": ["hashString", "queuePosition"]})["arguments"]["torrents"]
    assert [(t["hashString"], t["queuePosition"]) for t in listed] == [(HASH_A, 0), (HASH_B, 1)]
    assert rpc_call(client, "queue-move-top", {"ids": ["0" * 40]})["result"] == "success"  # unknown: none selected


def test_while_the_database_is_down_a_submit_is_refused_and_the_page_still_answers(cluster_app, postgres_server):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    postgres_server.stop(remove=False)
    try:
        refused = client.post("/api/jobs", json={"hashes": [HASH_B]})
        assert refused.status_code == 507, refused.get_json()
        assert "nothing was started" in refused.get_json()["error"]
        paused = client.post(f"/api/jobs/{HASH_A}/pause")
        assert paused.status_code == 503 and "Nothing was changed" in paused.get_json()["error"]
        wait_until(lambda: client.get("/api/status").get_json()["store_problem"], 10, "the problem was not shown")
        page = client.get("/")
        assert page.status_code == 200 and HASH_A in page.get_data(as_text=True)
    finally:
        postgres_server.start()
    wait_until(lambda: client.get("/api/status").get_json()["store_problem"] is None, 20, "it did not recover")
    assert client.post("/api/jobs", json={"hashes": [HASH_B]}).status_code == 201


def mirror_row(info_hash, number, **fields):
    return {"info_hash": info_hash, "v1_hash": info_hash, "v2_hash": None, "name": None, "magnet": None,
            "added_at": "2026-12-05T10:00:00+00:00", "state": "queued", "error": None, "save_path": "/srv",
            "category": "", "sequential": 0, "completed_at": None, "number": number, "labels": "[]",
            "source": "api", "seeding_stopped": 0, "seed_limits": None, "queue_rank": None, "moving_to": None,
            "uploaded_bytes": 0, "node": None, "epoch": 0, "desired": "run", **fields}


def test_a_refresh_read_before_the_web_apps_own_change_does_not_undo_it():
    import time

    from cluster.mirror import JobMirror

    mirror = JobMirror()
    mirror.refresh([mirror_row(HASH_A, 1)], {}, {}, time.monotonic())
    read_at = time.monotonic()  # a refresh reads its rows now, while a submit and a remove happen
    mirror.apply(mirror_row(HASH_B, 2))
    mirror.forget(HASH_A)
    mirror.refresh([mirror_row(HASH_A, 1)], {}, {}, read_at)
    assert [job["info_hash"] for job in mirror.jobs()] == [HASH_B]
    assert mirror.removed_numbers(60) == [1]
    mirror.refresh([mirror_row(HASH_B, 2, state="downloading", node=NODE)], {NODE: True}, {}, time.monotonic())
    assert [(job["info_hash"], job["state"], job["node"]) for job in mirror.jobs()] == [(HASH_B, "downloading", NODE)]


def test_a_job_submitted_again_while_its_node_removes_it_is_a_new_job_fenced_off_that_node(cluster_app, pg_database):
    app = cluster_app()
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    store = app.extensions["hashdrop"].store
    epoch = store.claim(HASH_A, NODE)
    assert rpc_call(client, "torrent-set", {"ids": [HASH_A], "downloadLimit": 10, "seedRatioMode": 2})["result"] \
        == "success"
    assert client.delete(f"/api/jobs/{HASH_A}").status_code == 204  # the node has not removed it yet
    again = client.post("/api/jobs", json={"hashes": [HASH_A]})
    assert again.status_code == 201 and again.get_json()["started"][0]["number"] == 2
    row = rows(pg_database)[HASH_A]
    assert (row["state"], row["node"], row["desired"], row["number"]) == ("queued", None, "run", 2)
    seed_limits, rate_limits = stored_limits(pg_database, HASH_A)  # the new job's own: none yet
    assert (json.loads(seed_limits)["ratio_mode"], rate_limits) == (0, None)
    assert not store.update_fenced(HASH_A, NODE, epoch, state="downloading")  # the old holder is fenced off
    assert store.last_number() == 2
