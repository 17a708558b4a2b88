"""The JSON API (/api/...): job fields, submits, bad bodies, unknown jobs and routes, the
state filter, and pause, resume and remove."""
import pytest

from helpers import HASH_A, HASH_B


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
