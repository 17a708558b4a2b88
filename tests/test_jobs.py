"""The job manager (jobs/manager.py) and the jobs' behaviour with a real libtorrent session
(jobs/submit.py, jobs/lifecycle.py, jobs/model.py): configured trackers, categories, failed jobs,
submits while shutting down, paused jobs and files before metadata, broken uploads, finishing
(flush and renames), rates and ETA, and the free space in the status."""
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from helpers import FINISHED, HASH_A, HASH_B
from jobs import JobState
from jobs.view import job_view


def test_bare_hash_gets_configured_trackers(make_app):
    app = make_app(TRACKERS=["http://127.0.0.1:9/announce"])
    app.test_client().post("/start-downloads", data={"downloads": HASH_A})
    job = app.extensions["hashdrop"].get(HASH_A)
    assert parse_qs(urlsplit(job.magnet).query)["tr"] == ["http://127.0.0.1:9/announce"]


@pytest.mark.parametrize("category, stored", [
    ("Movies", "Movies"), ("/TV/Shows/", "TV/Shows"), ("a/./b", "a/b"), ("", ""),
])
def test_category_is_a_subfolder(make_app, tmp_path, category, stored):
    app = make_app()
    app.test_client().post("/api/jobs", json={"hashes": [HASH_A], "category": category})
    job = app.extensions["hashdrop"].job(HASH_A)
    assert job["category"] == stored
    assert job["save_path"] == os.path.normpath(os.path.join(tmp_path, "downloads", stored))


@pytest.mark.parametrize("category", ["..", "../x", "a/../../x", "/etc/..", "x\0y"])
def test_category_cannot_leave_the_save_path(client, category):
    response = client.post("/api/jobs", json={"hashes": [HASH_A], "category": category})
    assert response.status_code == 400
    assert "inside the save path" in response.get_json()["error"]
    assert client.get("/api/jobs").get_json() == []


def test_unusable_save_path_fails_only_that_job(make_app, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = make_app(SAVE_PATH=str(blocker / "media"))
    client = app.test_client()
    client.post("/start-downloads", data={"downloads": HASH_A})
    manager = app.extensions["hashdrop"]
    job = manager.get(HASH_A)
    job.run.worker.join(5)
    failed = client.get(f"/api/jobs/{HASH_A}").get_json()
    assert failed["state"] == "failed"
    assert "Not a directory" in failed["error"]
    assert client.get("/").status_code == 200
    client.post("/start-downloads", data={"downloads": HASH_B, "category": "../escape"})
    assert "must be a folder name inside the save path" in client.get("/").get_data(as_text=True)


def test_failed_job_can_be_retried_and_removed(make_app, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    app = make_app(SAVE_PATH=str(blocker))
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    app.extensions["hashdrop"].get(HASH_A).run.worker.join(5)
    blocker.unlink()
    assert client.post(f"/api/jobs/{HASH_A}/resume").get_json()["state"] == "fetching_metadata"
    assert client.delete(f"/api/jobs/{HASH_A}").status_code == 204


def test_a_submit_while_shutting_down_is_refused_as_unavailable(client, manager):
    manager.shutdown()
    response = client.post("/api/jobs", json={"hashes": [HASH_A]})
    assert response.status_code == 503
    assert response.get_json()["error"] == "hashdrop is shutting down; nothing was started."


def test_submit_paused_and_files_before_metadata(client):
    response = client.post("/api/jobs", json={"hashes": [HASH_A], "paused": True, "sequential": True})
    job = response.get_json()["started"][0]
    assert job["state"] == "paused" and job["sequential"] is True
    files = client.get(f"/api/jobs/{HASH_A}/files")
    assert files.status_code == 409 and "metadata" in files.get_json()["error"]
    assert client.post("/api/jobs", json={"hashes": [HASH_B], "paused": "yes"}).status_code == 400


def test_broken_torrent_upload_is_named(client):
    from io import BytesIO
    response = client.post("/start-downloads", content_type="multipart/form-data", data={
        "downloads": "",
        "torrents": [(BytesIO(b"garbage"), "broken.torrent"), (BytesIO(b""), "empty.torrent")],
    })
    assert response.status_code == 303
    page = client.get("/").get_data(as_text=True)
    assert "broken.torrent" in page and "empty.torrent" in page and "not a usable .torrent" in page


def attached_job(manager):
    """A job whose torrent is in the session, with no periodic resume saves to race the test."""
    from swarm import wait_until

    manager.session.resume_interval = 1e9
    job = manager.submit_text(HASH_B).started[0]
    wait_until(lambda: job.run.torrent is not None, 10, "the torrent was not added")
    return job


def test_finished_is_completed_only_once_libtorrent_has_written_it_out(manager):
    """libtorrent says finished while its last blocks can still be in its write buffer."""
    job = attached_job(manager)
    manager.lifecycle.handle(job, "finished", FINISHED)
    assert job.state.value == "fetching_metadata" and job.finishing
    # libtorrent posts resume data before it has written out, even when asked to flush
    manager.lifecycle.handle(job, "resume_data", b"d4:infod0:ee")
    assert job.state.value == "fetching_metadata" and job.finishing
    manager.lifecycle.handle(job, "flushed", None)  # cache_flushed_alert
    assert job.state.value == "completed" and not job.finishing


def test_a_finishing_job_waits_for_its_renames(manager):
    """A file marked .part just before the torrent finished may still be waiting in libtorrent's
    disk queue when the flush is done: completing then left it named .part for good."""
    job = attached_job(manager)
    manager.session.forget(job.keys(), job.run.inbox.put)  # only the events below
    job.marks.renaming.add(0)  # a rename under way
    manager.lifecycle.handle(job, "finished", FINISHED)
    manager.lifecycle.handle(job, "flushed", None)
    assert job.state.value == "fetching_metadata" and job.finishing
    manager.lifecycle.handle(job, "renamed", (0, True))  # file_renamed_alert
    assert job.state.value == "completed" and not job.finishing
    manager.lifecycle.handle(job, "renamed", (1, False))  # a failed rename: that file keeps its name for good
    assert job.marks.unrenamable == {1} and job.state.value == "completed"


def test_a_finished_status_asks_libtorrent_to_write_out_and_then_completes(manager, tmp_path):
    """With metadata the torrent has storage: completed comes with libtorrent's cache_flushed_alert."""
    from hashes import parse_text
    from swarm import make_payload, make_torrent, wait_until

    torrent = make_torrent(make_payload(tmp_path, "flushed.bin", 64 * 1024))
    manager.session.resume_interval = 1e9
    job = manager.submit(parse_text(""), uploads=[("flushed.torrent", torrent.data)]).started[0]
    wait_until(lambda: job.run.torrent is not None and job.has_metadata, 10, "the torrent was not added")
    manager.lifecycle.set_state(job, JobState.DOWNLOADING)
    job.run.inbox.put(("status", FINISHED))  # handled by the job's thread, as the alert thread does
    wait_until(lambda: job.state.value == "completed", 10, f"not completed: {job.state}")


def test_a_job_without_peers_shows_no_rate_and_no_eta(manager):
    """The last rate reported can stay once no peer is left: a job waiting for a seed said
    200 KiB/s and "10 s left" for half a minute."""
    job = attached_job(manager)
    manager.session.forget(job.keys(), job.run.inbox.put)  # no real status (no peers) to overwrite the ones set here
    manager.lifecycle.set_state(job, JobState.DOWNLOADING)
    job.live = {**FINISHED, "total_wanted_done": 4, "finished": False, "download_rate": 2, "upload_rate": 5,
                "peers": 1}
    assert [job_view(job)[key] for key in ("download_rate", "upload_rate", "eta_seconds")] == [2, 5, 3]
    job.live = {**job.live, "peers": 0}
    assert [job_view(job)[key] for key in ("download_rate", "upload_rate", "eta_seconds")] == [0, 0, None]


def test_rates_are_measured_from_the_byte_counts_of_the_last_seconds(tmp_path):
    """libtorrent's rates take in a fifth of each second's bytes: 4 s into a 4 MiB/s download the
    table showed 1.3 MiB/s. The job measures them from libtorrent's byte counts instead."""
    from jobs.model import RateMeter

    meter = RateMeter()
    lagging = {**FINISHED, "finished": False, "download_rate": 800, "upload_rate": 100, "peers": 1}

    def status(at, down, up=0):
        return meter.measure({**lagging, "all_time_download": down, "all_time_upload": up}, at)

    assert status(100.0, 0)["download_rate"] == 800  # one count: libtorrent's own rate
    assert status(100.2, 500)["download_rate"] == 800  # 0.2 s apart: too short to tell
    assert status(101.0, 4000)["download_rate"] == 4000
    assert status(102.0, 8000, 1000)["upload_rate"] == 500
    assert status(103.0, 12000, 1000)["download_rate"] == 4000  # the window holds the last 2 s
    assert status(104.0, 12000, 1000)["download_rate"] == 2000  # stalled: the rate falls as it does
    assert status(120.0, 13000, 1000)["download_rate"] == 800  # after 16 s without a status, start over
    assert status(121.0, 14000, 1000)["download_rate"] == 1000


def test_a_fresh_install_shows_the_free_space_where_its_save_path_will_be(make_app, tmp_path):
    import shutil

    app = make_app(SAVE_PATH=str(tmp_path / "not" / "made" / "yet"))
    status = app.test_client().get("/api/status").get_json()
    assert abs(status["free_bytes"] - shutil.disk_usage(tmp_path).free) < 64 * 1024 * 1024
    assert not (tmp_path / "not").exists()
