"""The JSON API (/api/...): job fields, submits, bad bodies, unknown jobs and routes, the
state filter, and pause, resume and remove."""
import pytest

from helpers import HASH_A, HASH_B, HASH_C


def test_api_job_fields(client):
    client.post("/start-downloads", data={"downloads": HASH_A})
    [job] = client.get("/api/jobs").get_json()
    for key in ("info_hash", "name", "added_at", "state", "progress", "total_bytes",
                "downloaded_bytes", "download_rate", "upload_rate", "peers", "error", "save_path"):
        assert key in job
    assert job["info_hash"] == HASH_A
    assert job["state"] == "fetching_metadata"
    assert job["name"] is None and job["error"] is None
    assert 0.0 <= job["progress"] <= 1.0
    assert job["added_at"].endswith("+00:00")
    assert client.get(f"/api/jobs/{HASH_A.upper()}").get_json()["info_hash"] == HASH_A


def test_api_submit_reports_each_line(client):
    response = client.post("/api/jobs", json={"hashes": [HASH_A, HASH_A, "nope"]})
    assert response.status_code == 201
    body = response.get_json()
    assert [job["info_hash"] for job in body["started"]] == [HASH_A]
    assert body["duplicates"][0]["info_hash"] == HASH_A
    assert body["rejected"][0]["text"] == "nope"
    again = client.post("/api/jobs", json={"text": f"see {HASH_A} here"})
    assert again.status_code == 200
    assert again.get_json()["existing"][0]["info_hash"] == HASH_A


@pytest.mark.parametrize("kwargs, status", [
    ({"data": "hashes=x", "content_type": "application/x-www-form-urlencoded"}, 415),
    ({"data": "{not json", "content_type": "application/json"}, 400),
    ({"data": "[" * 100000 + "]" * 100000, "content_type": "application/json"}, 400),
    ({"json": ["a list"]}, 400),
    ({"json": {"hashes": "not a list"}}, 400),
    ({"json": {"hashes": [1, 2]}}, 400),
    ({"json": {"text": 5}}, 400),
    ({"json": {"other": 1}}, 400),
    ({"json": {"text": "nothing here"}}, 400),
])
def test_api_bad_bodies_get_json_errors(client, kwargs, status):
    response = client.post("/api/jobs", **kwargs)
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"]


def test_api_unknown_hash_and_route(client):
    assert client.get(f"/api/jobs/{HASH_B}").status_code == 404
    assert client.get(f"/api/jobs/{HASH_B}").get_json()["error"]
    assert client.post(f"/api/jobs/{HASH_B}/pause").status_code == 404
    assert client.delete(f"/api/jobs/{HASH_B}").status_code == 404
    assert client.get("/api/nothing").get_json()["error"]


def test_api_jobs_by_state(client):
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    client.post("/api/jobs", json={"hashes": [HASH_B], "paused": True})
    paused = client.get("/api/jobs?state=paused").get_json()
    assert [job["info_hash"] for job in paused] == [HASH_B]
    either = client.get("/api/jobs?state=paused,fetching_metadata").get_json()
    assert {job["info_hash"] for job in either} == {HASH_A, HASH_B}
    assert client.get("/api/jobs?state=completed").get_json() == []
    assert len(client.get("/api/jobs?state=").get_json()) == 2
    wrong = client.get("/api/jobs?state=paused,done")
    assert wrong.status_code == 400 and "Unknown state 'done'" in wrong.get_json()["error"]


def test_api_pause_resume_remove(client, manager):
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    assert client.post(f"/api/jobs/{HASH_A}/pause").get_json()["state"] == "paused"
    assert client.get(f"/api/jobs/{HASH_A}").get_json()["state"] == "paused"
    assert client.post(f"/api/jobs/{HASH_A}/resume").get_json()["state"] == "fetching_metadata"
    job = manager.get(HASH_A)
    assert client.delete(f"/api/jobs/{HASH_A}").status_code == 204
    job.run.worker.join(5)
    assert not job.run.worker.is_alive()
    assert client.get("/api/jobs").get_json() == []
    assert manager.session.handles() == []


# Incremental reads: GET /api/jobs?since=<token>, against a live server with real jobs -----------

def call(url, method="GET", body=None):
    """An HTTP request as a script sends it; (status, JSON body or None)."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"X-Hashdrop": "1", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def quiet_token(url, query=""):
    """The token of a moment after which nothing changed for QUIET_SECONDS (paused magnets nobody
    seeds: their adds and first statuses, which come within a second or so, are in). Two reads
    in a row with nothing new were not enough: they could both come before a job's first status."""
    import time

    from swarm import wait_until

    quiet = {"token": call(f"{url}/api/jobs?since={query}")[1]["token"], "since": time.monotonic()}

    def settled():
        answer = call(f"{url}/api/jobs?since={quiet['token']}")[1]
        if answer["jobs"] or answer["removed"]:
            quiet.update(token=answer["token"], since=time.monotonic())
            return None
        return quiet["token"] if time.monotonic() - quiet["since"] >= QUIET_SECONDS else None

    return wait_until(settled, 20, "the jobs kept changing")


QUIET_SECONDS = 2.0


@pytest.fixture
def start_paused(live_server, monkeypatch):
    """start(removals_kept=None): a live server with three paused magnets nobody seeds (and
    that many removals remembered), and their hashes."""

    def start(removals_kept=None):
        if removals_kept:
            monkeypatch.setattr("jobs.changes.REMOVALS_KEPT", removals_kept)
        url = live_server()
        hashes = [HASH_A, HASH_B, HASH_C]
        assert call(f"{url}/api/jobs", "POST", {"hashes": hashes, "paused": True})[0] == 201
        return url, hashes

    return start


@pytest.fixture
def three_paused(start_paused):
    return start_paused()


def test_since_a_quiet_moment_nothing_comes_back(live_server):
    """Magnets nobody seeds still get statuses from libtorrent; the same figures are not news."""
    url, hashes = live_server(), [HASH_A, HASH_B, HASH_C]
    assert call(f"{url}/api/jobs", "POST", {"hashes": hashes})[0] == 201
    status, first = call(f"{url}/api/jobs?since=")
    assert status == 200 and first["full"] is True and first["removed"] == []
    assert sorted(job["info_hash"] for job in first["jobs"]) == sorted(hashes)
    token = quiet_token(url)
    again = call(f"{url}/api/jobs?since={token}")[1]
    assert again == {"token": token, "jobs": [], "removed": [], "full": False}
    assert isinstance(call(f"{url}/api/jobs")[1], list)  # without since: today's list, as it was


def test_a_change_brings_back_that_job_alone(three_paused):
    url, hashes = three_paused
    token = quiet_token(url)
    assert call(f"{url}/api/jobs/{HASH_B}/resume", "POST")[0] == 200
    answer = call(f"{url}/api/jobs?since={token}")[1]
    assert answer["full"] is False and answer["removed"] == []
    assert [job["info_hash"] for job in answer["jobs"]] == [HASH_B]
    assert answer["jobs"][0]["state"] == "fetching_metadata"
    assert answer["jobs"][0] == {**call(f"{url}/api/jobs/{HASH_B}")[1],
                                 "waiting_seconds": answer["jobs"][0]["waiting_seconds"]}
    assert answer["token"] != token


def test_a_removal_is_listed_by_its_hash(three_paused):
    url, hashes = three_paused
    token = quiet_token(url)
    assert call(f"{url}/api/jobs/{HASH_C}", "DELETE")[0] == 204
    answer = call(f"{url}/api/jobs?since={token}")[1]
    assert answer["removed"] == [HASH_C] and answer["jobs"] == [] and answer["full"] is False
    later = call(f"{url}/api/jobs?since={answer['token']}")[1]
    assert later["removed"] == []  # told once


def test_a_stale_token_gets_every_job(three_paused):
    url, hashes = three_paused
    token = quiet_token(url)
    epoch, version = token.split(".")
    other_run = f"{'0' if epoch[0] != '0' else '1'}{epoch[1:]}.{version}"
    for stale in (other_run, f"{epoch}.{int(version) + 1000}"):
        answer = call(f"{url}/api/jobs?since={stale}")[1]
        assert answer["full"] is True and answer["token"] == token
        assert sorted(job["info_hash"] for job in answer["jobs"]) == sorted(hashes)


def test_a_token_older_than_the_removals_kept_is_stale(start_paused):
    url, hashes = start_paused(removals_kept=1)
    token = quiet_token(url)
    call(f"{url}/api/jobs/{HASH_A}", "DELETE")
    middle = call(f"{url}/api/jobs?since={token}")[1]
    assert middle["removed"] == [HASH_A]
    call(f"{url}/api/jobs/{HASH_B}", "DELETE")  # HASH_A's removal is forgotten
    answer = call(f"{url}/api/jobs?since={token}")[1]
    assert answer["full"] is True and [job["info_hash"] for job in answer["jobs"]] == [HASH_C]
    assert call(f"{url}/api/jobs?since={middle['token']}")[1]["removed"] == [HASH_B]


def test_with_a_state_filter_a_job_that_leaves_it_is_removed(three_paused):
    url, hashes = three_paused
    token = quiet_token(url, "&state=paused")
    call(f"{url}/api/jobs/{HASH_A}/resume", "POST")
    answer = call(f"{url}/api/jobs?since={token}&state=paused")[1]
    assert answer["jobs"] == [] and answer["removed"] == [HASH_A]


@pytest.mark.parametrize("token", ["nonsense", "abc", "abc.def", "ABC.1"])
def test_a_malformed_token_is_a_clear_error(client, token):
    response = client.get(f"/api/jobs?since={token}")
    assert response.status_code == 400 and "token" in response.get_json()["error"]
