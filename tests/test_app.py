"""The form, the JSON API and the config, with hashes no peer will ever answer."""
import json
import os
import re
import secrets
import stat
import sqlite3
import time
from contextlib import closing
from urllib.parse import parse_qs, urlsplit

import pytest

from app import create_app
from conftest import HERMETIC
from jobs import JobState
from jobs.view import job_view

HASH_A = "a" * 40
HASH_B = "0123456789abcdef0123456789abcdef01234567"
BASE32 = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"  # 32 base32 characters: a v1 hash


def flashes(client):
    page = client.get("/").get_data(as_text=True)
    return page


def test_index_shows_the_form(client):
    page = client.get("/").get_data(as_text=True)
    assert '<textarea id="downloads" name="downloads"' in page
    assert "No downloads yet" in page


def test_submit_starts_jobs_and_redirects(client, manager):
    response = client.post("/start-downloads", data={"downloads": f"  {HASH_A.upper()}  \n\n{HASH_B}\n"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/")
    jobs = {job["info_hash"]: job for job in manager.jobs()}
    assert set(jobs) == {HASH_A, HASH_B}
    page = flashes(client)
    assert "Started 2 downloads:" in page
    assert HASH_A in page


def test_submit_base32_and_magnet(client, manager):
    magnet = f"magnet:?xt=urn:btih:{HASH_B}&dn=Some+Name"
    client.post("/start-downloads", data={"downloads": f"{BASE32}\n{magnet}"})
    jobs = {job["info_hash"]: job for job in manager.jobs()}
    assert "6162636465666768696a6b6c6d6e6f7071727374" in jobs  # base32 decoded to hex
    assert jobs[HASH_B]["name"] == "Some Name"


def test_submit_empty_asks_for_a_hash(client, manager):
    response = client.post("/start-downloads", data={"downloads": "  \n \n"})
    assert response.status_code == 303
    assert "Paste at least one info hash or magnet link." in flashes(client)
    assert manager.jobs() == []


def test_bad_lines_are_named_and_good_lines_still_start(client, manager):
    client.post("/start-downloads", data={"downloads": f"not a hash\n{HASH_A}\n{HASH_A[:39]}"})
    page = flashes(client)
    assert "not a hash" in page and "39" in page
    assert "Started 1 download:" in page
    assert [job["info_hash"] for job in manager.jobs()] == [HASH_A]


def test_duplicates_and_existing_jobs_start_nothing_new(client, manager):
    client.post("/start-downloads", data={"downloads": f"{HASH_A}\n{HASH_A.upper()}"})
    assert "pasted more than once" in flashes(client)
    client.post("/start-downloads", data={"downloads": HASH_A})
    page = flashes(client)
    assert "already in the list" in page and "Started 0 downloads." in page
    assert len(manager.jobs()) == 1


def test_submit_answers_fast_with_many_hashes(client):
    lines = "\n".join(f"{i:040x}" for i in range(1, 201))
    started = time.perf_counter()
    response = client.post("/start-downloads", data={"downloads": lines})
    assert response.status_code == 303
    assert time.perf_counter() - started < 5  # generous: it must not wait for any peer


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


def test_page_actions_without_javascript(client):
    client.post("/start-downloads", data={"downloads": HASH_A})
    response = client.post(f"/jobs/{HASH_A}/pause")
    assert response.status_code == 303
    page = flashes(client)
    assert "Paused" in page and "state-paused" in page
    client.post(f"/jobs/{HASH_A}/remove")
    assert "No downloads yet" in flashes(client)


def test_jobs_survive_a_restart(make_app, tmp_path):
    first = make_app()
    first.test_client().post("/start-downloads", data={"downloads": f"{HASH_A}\n{HASH_B}"})
    first.test_client().post(f"/api/jobs/{HASH_B}/pause")
    first.extensions["hashdrop"].shutdown()
    second = make_app()
    jobs = {job["info_hash"]: job["state"] for job in second.extensions["hashdrop"].jobs()}
    assert jobs == {HASH_A: "fetching_metadata", HASH_B: "paused"}


HASH_C = "c" * 40


def refuse_writes(manager):
    """SQLite's own error from the real connection, as a full disk gives it for every write
    (checked on a 4 MiB tmpfs filled up: updates and deletes failed with this text)."""
    with closing(sqlite3.connect(manager.store.location)) as database:
        database.executescript("""
            CREATE TRIGGER no_update BEFORE UPDATE ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
            CREATE TRIGGER no_delete BEFORE DELETE ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
        """)


def allow_writes(manager):  # space came back
    with closing(sqlite3.connect(manager.store.location)) as database:
        database.executescript("DROP TRIGGER no_update; DROP TRIGGER no_delete;")


def test_pause_and_remove_work_while_the_job_database_cannot_be_written(make_app):
    """Pausing and removing are what a person does when the disk is full; they answered 500,
    and a removal left its job's thread and torrent running, out of the list."""
    from swarm import wait_until

    app = make_app(RESUME_INTERVAL=0.5)
    client, manager = app.test_client(), app.extensions["hashdrop"]
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B, HASH_C]})
    removed = manager.get(HASH_B)
    refuse_writes(manager)

    assert client.post(f"/api/jobs/{HASH_A}/pause").get_json()["state"] == "paused"
    assert client.delete(f"/api/jobs/{HASH_B}").status_code == 204
    removed.run.worker.join(5)
    assert not removed.run.worker.is_alive()
    assert len(manager.session.handles()) == 2
    problem = client.get("/api/status").get_json()["store_problem"]
    assert "cannot be written (database or disk is full). Changes to 2 jobs wait" in problem
    assert 'id="store-problem"' in client.get("/").get_data(as_text=True)

    allow_writes(manager)
    wait_until(lambda: client.get("/api/status").get_json()["store_problem"] is None, 5,
               "the waiting changes were not retried")  # with no other write to carry them
    assert 'id="store-problem"' not in client.get("/").get_data(as_text=True)
    assert {row["info_hash"]: row["state"] for row in manager.store.load()} == \
        {HASH_A: "paused", HASH_C: "fetching_metadata"}


def test_changes_that_wait_are_written_with_the_next_write_or_at_shutdown(make_app):
    app = make_app()
    client, manager = app.test_client(), app.extensions["hashdrop"]
    client.post("/api/jobs", json={"hashes": [HASH_A, HASH_B, HASH_C]})
    refuse_writes(manager)
    client.post(f"/api/jobs/{HASH_A}/pause")
    client.delete(f"/api/jobs/{HASH_B}")
    allow_writes(manager)
    client.post(f"/api/jobs/{HASH_C}/pause")
    assert {row["info_hash"]: row["state"] for row in manager.store.load()} == {HASH_A: "paused", HASH_C: "paused"}

    refuse_writes(manager)
    client.post(f"/api/jobs/{HASH_C}/resume")
    allow_writes(manager)
    manager.shutdown()
    jobs = {job["info_hash"]: job["state"] for job in make_app().extensions["hashdrop"].jobs()}
    assert jobs == {HASH_A: "paused", HASH_C: "fetching_metadata"}


def test_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHDROP_SAVE_PATH", str(tmp_path / "media"))
    monkeypatch.setenv("HASHDROP_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HASHDROP_LISTEN_INTERFACES", "127.0.0.1:0")
    for name in ("DHT", "LSD", "UPNP", "NATPMP"):
        monkeypatch.setenv(f"HASHDROP_{name}", "false")
    monkeypatch.setenv("HASHDROP_TRACKERS", "http://127.0.0.1:1/announce, udp://127.0.0.1:2")
    monkeypatch.setenv("HASHDROP_MAX_ACTIVE", "2")
    app = create_app()
    try:
        settings = app.extensions["hashdrop"].session.current_settings()
        assert settings["enable_dht"] is False and settings["enable_lsd"] is False
        assert settings["enable_upnp"] is False and settings["enable_natpmp"] is False
        assert settings["listen_interfaces"] == "127.0.0.1:0"
        assert app.config["TRACKERS"] == ["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"]
        assert app.config["MAX_ACTIVE"] == 2
        assert app.config["SAVE_PATH"] == str(tmp_path / "media")
        key_file = tmp_path / "state" / "secret_key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert app.secret_key == key_file.read_text().strip() and len(app.secret_key) >= 32
    finally:
        app.extensions["hashdrop"].shutdown()


def test_defaults_are_what_a_user_expects():
    from config import DEFAULTS
    assert DEFAULTS["LISTEN_INTERFACES"] == "0.0.0.0:6881"
    assert all(DEFAULTS[name] is True for name in ("DHT", "LSD", "UPNP", "NATPMP"))
    assert DEFAULTS["SAVE_PATH"] == "downloads"


def test_bare_hash_gets_configured_trackers(make_app):
    app = make_app(TRACKERS=["http://127.0.0.1:9/announce"])
    app.test_client().post("/start-downloads", data={"downloads": HASH_A})
    job = app.extensions["hashdrop"].get(HASH_A)
    assert parse_qs(urlsplit(job.magnet).query)["tr"] == ["http://127.0.0.1:9/announce"]


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


def test_corrupt_database_stops_startup_naming_the_file(make_app, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "hashdrop.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception) as caught:
        make_app()
    assert str(data_dir / "hashdrop.sqlite3") in str(caught.value)
    assert "cannot be read (file is not a database). Move it aside" in str(caught.value)


def test_a_job_database_that_cannot_be_opened_is_not_called_damaged(make_app, tmp_path):
    """On a full disk the database cannot make its -shm file, and SQLite says "disk I/O error";
    start-up said to move the (sound) job list aside. Here a write past 4 KiB fails (EFBIG) in
    the server's process, as one into a full disk fails (ENOSPC): both are SQLite's IOERR."""
    import subprocess
    import sys

    from swarm import free_port, limit_file_size, loopback_app_env

    first = make_app()
    first.test_client().post("/api/jobs", json={"hashes": [HASH_A]})
    first.extensions["hashdrop"].shutdown()
    env = loopback_app_env(free_port(), tmp_path / "downloads", tmp_path / "data", "http://127.0.0.1:1/announce")
    server = subprocess.run(
        [sys.executable, "app.py"], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
        capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: limit_file_size(4096))
    assert server.returncode == 1
    assert "cannot be opened (disk I/O error); nothing in it was changed. Its disk has" in server.stderr
    assert "Move it aside" not in server.stderr
    assert [job["info_hash"] for job in make_app().extensions["hashdrop"].jobs()] == [HASH_A]


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


def test_a_full_job_database_refuses_the_submit_and_loses_nothing(client, manager):
    """SQLite's own "database or disk is full", as when the downloads fill the data dir's disk:
    the submit says so, and no job is left half made (listed, but with no thread and no row)."""
    paste = [secrets.token_hex(20) for _ in range(50)]
    database = sqlite3.connect(manager.store.location, isolation_level=None)
    database.execute("CREATE TRIGGER no_insert BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")

    response = client.post("/start-downloads", data={"downloads": "\n".join(paste)})
    assert response.status_code == 303
    page = flashes(client)
    assert "could not record the new downloads (database or disk is full); nothing was started." in page
    htmx = client.post("/start-downloads", data={"downloads": "\n".join(paste)}, headers={"HX-Request": "true"})
    assert "nothing was started" in htmx.get_data(as_text=True)
    assert "HX-Trigger" not in htmx.headers  # the paste stays in the box
    api = client.post("/api/jobs", json={"hashes": paste})
    assert api.status_code == 507 and "database or disk is full" in api.get_json()["error"]
    assert client.get("/api/jobs").get_json() == [] and manager.jobs() == []

    database.execute("DROP TRIGGER no_insert")
    database.close()
    response = client.post("/api/jobs", json={"hashes": paste})
    assert response.status_code == 201 and len(response.get_json()["started"]) == 50


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


def test_status_of_a_torrent_removed_since_the_update_is_skipped(manager):
    """A batched status can name a torrent that was removed meanwhile; asking it for resume
    data raised and lost the rest of the batch's statuses for every other job."""
    from swarm import wait_until

    job = manager.submit_text(HASH_A).started[0]
    wait_until(lambda: job.run.torrent is not None, 10, "the torrent was not added")
    handle = job.run.torrent.handle
    wait_until(lambda: handle.status().need_save_resume, 10, "no resume data to save")
    status = handle.status()
    manager.session.session.remove_torrent(handle)
    wait_until(lambda: not handle.is_valid(), 10, "the torrent was not removed")
    manager.session.resume_interval = 0
    manager.session.save_if_due(status)  # raised RuntimeError before the fix
    assert manager.session.resume_asked_at(str(status.info_hashes.get_best())) is None  # due again


def test_a_removed_torrent_leaves_no_resume_timer_behind(manager):
    """The alert thread kept the time of every torrent's last resume save forever; a server that
    runs for months sees many torrents come and go."""
    from swarm import wait_until

    job = manager.submit_text(HASH_A).started[0]
    wait_until(lambda: job.run.torrent is not None, 10, "the torrent was not added")
    key = str(job.run.torrent.handle.info_hashes().get_best())
    wait_until(lambda: manager.session.resume_asked_at(key) is not None, 10, "no resume data was asked for")
    manager.remove(HASH_A)
    wait_until(lambda: manager.session.resume_asked_at(key) is None, 10, "the removed torrent's timer stayed")


def test_a_paste_of_many_bad_lines_keeps_the_session_cookie_small(client, manager):
    """Each skipped line was its own flashed message; 300 of them made a cookie browsers drop."""
    lines = [f"line {number} of a paste: {secrets.token_urlsafe(30)}" for number in range(300)]
    response = client.post("/start-downloads", data={"downloads": "\n".join(lines + [HASH_A])})
    cookie = response.headers["Set-Cookie"]
    assert len(cookie) < 4093
    page = flashes(client)
    assert "line 0 of" in page and "line 4 of" in page and "line 5 of" not in page
    assert "295 more lines were skipped" in page
    assert "Started 1 download:" in page


def rows_of(html):
    """The info hashes of the job table's rows, top to bottom."""
    return re.findall(r'<tr id="job-([0-9a-f]+)"', html)


def page_rows(client, url):
    page = client.get(url).get_data(as_text=True)
    return rows_of(page), page


def test_the_table_shows_fifty_jobs_a_page_newest_first(client, manager):
    hashes = [f"{number:040x}" for number in range(1, 121)]
    for chunk in (hashes[:60], hashes[60:]):  # two submits: the second one's jobs are newer
        client.post("/start-downloads", data={"downloads": "\n".join(chunk)})
    rows, page = page_rows(client, "/")
    assert rows == hashes[::-1][:50]
    assert "120 downloads, newest first · page 1 of 3" in page and "?page=2" in page
    assert page_rows(client, "/?page=2")[0] == hashes[::-1][50:100]
    assert page_rows(client, "/?page=3")[0] == hashes[::-1][100:]
    assert page_rows(client, "/?page=99")[0] == hashes[::-1][100:]  # past the end: the last page
    assert page_rows(client, "/?page=nonsense")[0] == hashes[::-1][:50]
    assert page_rows(client, "/jobs?page=2")[0] == hashes[::-1][50:100]


def test_a_button_on_page_two_comes_back_to_page_two(client, manager):
    hashes = [f"{number:040x}" for number in range(1, 61)]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    rows, page = page_rows(client, "/?page=2")
    assert f'/jobs/{rows[0]}/pause?page=2' in page
    response = client.post(f"/jobs/{rows[0]}/pause?page=2")
    assert response.status_code == 303 and response.headers["Location"].endswith("/?page=2")
    fragment = client.post(f"/jobs/{rows[0]}/pause?page=2", headers={"HX-Request": "true"})
    assert rows_of(fragment.get_data(as_text=True)) == rows
    # The button's message comes with the table (it used to wait for the next full page load).
    assert re.search(r'<div id="messages"[^>]*hx-swap-oob="true">\s*<p class="flash flash-success">Paused ',
                     fragment.get_data(as_text=True))
    assert "flash-success" not in client.get("/").get_data(as_text=True)  # shown once, not again later



def test_the_table_filters_by_state_and_its_buttons_keep_the_filter(client, manager):
    """A library of hundreds: the failed or paused few should not be pages away."""
    from swarm import wait_until

    hashes = [f"{number:040x}" for number in range(1, 8)]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    # Adding a torrent sets its job's state: set states by hand only after that.
    wait_until(lambda: all(manager.get(h).run.torrent for h in hashes), 10, "the jobs were not added")
    manager.pause(hashes[1])
    manager.pause(hashes[4])
    manager.lifecycle.set_state(manager.get(hashes[2]), JobState.FAILED, error="No space left on device")
    rows, page = page_rows(client, "/?show=paused")
    assert rows == [hashes[4], hashes[1]] and "2 paused downloads" in page
    assert 'aria-current="page">Paused <small>2</small>' in page and ">Failed <small>1</small>" in page
    assert 'hx-get="/jobs?show=paused"' in page  # the once-a-second refresh keeps the filter
    assert ">All <small>7</small>" in page and ">Active <small>4</small>" in page
    assert page_rows(client, "/?show=failed")[0] == [hashes[2]]
    assert "Retry all 1</button>" in client.get("/?show=failed").get_data(as_text=True)
    assert "Retry all" not in page
    assert page_rows(client, "/jobs?show=active")[0] == [hashes[6], hashes[5], hashes[3], hashes[0]]
    assert page_rows(client, "/?show=nonsense")[0] == hashes[::-1]  # all
    assert "No completed downloads." in client.get("/?show=completed").get_data(as_text=True)
    # A button in a filtered table comes back to it, with and without htmx.
    assert f"/jobs/{hashes[4]}/resume?show=paused" in page
    response = client.post(f"/jobs/{hashes[4]}/resume?page=1&show=paused")
    assert response.status_code == 303 and response.headers["Location"].endswith("/?page=1&show=paused")
    fragment = client.post(f"/jobs/{hashes[1]}/resume?page=1&show=paused", headers={"HX-Request": "true"})
    assert "No paused downloads." in fragment.get_data(as_text=True)

def test_the_table_finds_jobs_by_name_or_hash_and_keeps_the_search(client, manager):
    """In a library of hundreds, one film is found by a word of its name."""
    names = ["Sintel (2010)", "Big Buck Bunny (2008)", "Sintel – Director's Cut", "Tears of Steel"]
    hashes = [f"{number:040x}" for number in range(1, 5)]
    client.post("/start-downloads", data={"downloads": "\n".join(
        f"magnet:?xt=urn:btih:{info_hash}&dn={name.replace(' ', '+')}" for info_hash, name in zip(hashes, names))})
    rows, page = page_rows(client, "/?q=sintel")
    assert rows == [hashes[2], hashes[0]] and "2 downloads matching “sintel”" in page
    assert 'name="q" value="sintel"' in page and ">All <small>4</small>" in page  # counts are of every job
    assert 'hx-get="/jobs?q=sintel"' in page  # the refresh keeps the search, and so do the buttons:
    assert f"/jobs/{hashes[0]}/pause?q=sintel" in page
    response = client.post(f"/jobs/{hashes[0]}/pause?q=sintel")
    assert response.headers["Location"].endswith("/?q=sintel")
    rows, page = page_rows(client, "/?q=sintel&show=paused")
    assert rows == [hashes[0]] and 'name="show" value="paused"' in page
    assert page_rows(client, f"/?q={hashes[3][-6:]}")[0] == [hashes[3]]  # by hash
    assert [job["info_hash"] for job in client.get("/api/jobs?q=SINTEL").get_json()] == [hashes[0], hashes[2]]
    assert [job["info_hash"] for job in client.get("/api/jobs?q=sintel&state=paused").get_json()] == [hashes[0]]
    assert "No downloads matching “nothing like it”." in client.get("/?q=nothing+like+it").get_data(as_text=True)
    page = client.get("/?q=<b>x</b>").get_data(as_text=True)
    assert "<b>x</b>" not in page and "“&lt;b&gt;x&lt;/b&gt;”" in page


FINISHED = {"total_wanted": 10, "total_wanted_done": 10, "download_rate": 0, "upload_rate": 0,
            "all_time_upload": 0, "all_time_download": 10, "peers": 0, "seeds": 0, "finished": True}


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


def test_disk_io_picks_a_back_end_and_refuses_others(make_app):
    app = make_app(DISK_IO=" MMAP ")
    assert app.config["DISK_IO"] == "mmap" and app.extensions["hashdrop"].session.disk_io == "mmap"
    with pytest.raises(ValueError, match="HASHDROP_DISK_IO must be one of pread, mmap, posix, not 'zfs'"):
        make_app(DISK_IO="zfs")


def test_an_io_error_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    import errno
    from collections import namedtuple

    import downloader
    import torrent_files

    class FileError:
        def __init__(self, code):
            self.code = code

        def value(self):
            return self.code

        def message(self):
            return os.strerror(self.code)

    usage = namedtuple("usage", "total used free")
    path = str(tmp_path / "show.mkv")
    monkeypatch.setattr(torrent_files.shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 4096))
    assert downloader.describe_file_error(FileError(errno.EIO), path) == \
        f"Input/output error: {path} (the disk is full)"
    assert downloader.describe_file_error(FileError(errno.EACCES), path) == f"Permission denied: {path}"
    monkeypatch.setattr(torrent_files.shutil, "disk_usage", lambda p: usage(10 << 30, 1 << 30, 9 << 30))
    assert downloader.describe_file_error(FileError(errno.EIO), path) == f"Input/output error: {path}"


def test_the_receive_buffer_defaults_to_the_systems_and_must_be_a_number(make_app):
    from config import DEFAULTS
    from config import ConfigError

    assert DEFAULTS["RECV_BUFFER"] == 0  # the system's size, with TCP's autotuning
    app = make_app(RECV_BUFFER="2097152")
    assert app.extensions["hashdrop"].session.current_settings()["recv_socket_buffer_size"] == 2097152
    with pytest.raises(ConfigError, match="HASHDROP_RECV_BUFFER must be a whole number, not '4M'"):
        make_app(RECV_BUFFER="4M")


def test_a_seed_ratio_that_is_not_a_number_is_refused_with_a_sentence(make_app):
    from config import ConfigError

    with pytest.raises(ConfigError, match="HASHDROP_SEED_RATIO must be a number, not 'lots'"):
        make_app(SEED_RATIO="lots")


def test_the_part_suffix_defaults_to_part_and_must_be_a_file_name_ending(make_app):
    from config import DEFAULTS
    from config import ConfigError

    assert DEFAULTS["PART_SUFFIX"] == ".part"  # as Transmission names unfinished files
    assert make_app(PART_SUFFIX=" .!hd ").extensions["hashdrop"].services.part_files.suffix == ".!hd"
    assert make_app(PART_SUFFIX="").extensions["hashdrop"].services.part_files.suffix == ""
    with pytest.raises(ConfigError, match="HASHDROP_PART_SUFFIX must be a short file name ending"):
        make_app(PART_SUFFIX="/incomplete")


def test_outgoing_interfaces_runner_and_store_default_and_lose_their_blanks(make_app):
    from config import DEFAULTS

    assert (DEFAULTS["OUTGOING_INTERFACES"], DEFAULTS["RUNNER"], DEFAULTS["STORE"]) == ("", "thread", "sqlite")
    config = make_app().config  # OUTGOING_INTERFACES aside: a test config may keep it on loopback
    assert (config["RUNNER"], config["STORE"]) == ("thread", "sqlite")
    config = make_app(OUTGOING_INTERFACES=" 127.0.0.1 ", RUNNER=" thread\n", STORE=" sqlite ").config
    assert (config["OUTGOING_INTERFACES"], config["RUNNER"], config["STORE"]) == ("127.0.0.1", "thread", "sqlite")


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


def test_the_page_and_the_api_show_the_transfer_rates_and_the_free_space(client, manager, app):
    """qBittorrent's status bar: what moves now, and how much room the library has left."""
    import shutil

    from swarm import wait_until

    hashes = [HASH_A, HASH_B]
    client.post("/api/jobs", json={"hashes": hashes})
    jobs = [manager.get(h) for h in hashes]
    wait_until(lambda: all(job.run.torrent for job in jobs), 10, "the jobs were not added")
    for job in jobs:  # libtorrent's own statuses (no peers here) would overwrite the ones set below
        manager.session.forget(job.keys(), job.run.inbox.put)
    manager.lifecycle.set_state(jobs[0], JobState.DOWNLOADING)
    jobs[0].live = {**FINISHED, "finished": False, "download_rate": 3 * 1024 * 1024, "upload_rate": 1024, "peers": 2}
    jobs[1].live = {**FINISHED, "finished": False, "download_rate": 9999, "upload_rate": 9999, "peers": 0}
    status = client.get("/api/status").get_json()
    free = shutil.disk_usage(app.config["SAVE_PATH"]).free
    assert status["download_rate"] == 3 * 1024 * 1024 and status["upload_rate"] == 1024
    assert abs(status["free_bytes"] - free) < 64 * 1024 * 1024 and status["save_path"] == app.config["SAVE_PATH"]
    assert status["jobs"]["downloading"] == 1 and sum(status["jobs"].values()) == 2
    page = client.get("/").get_data(as_text=True)
    assert "↓ 3.0 MiB/s · ↑ 1.0 KiB/s" in page and " free</span>" in page


def test_a_fresh_install_shows_the_free_space_where_its_save_path_will_be(make_app, tmp_path):
    import shutil

    app = make_app(SAVE_PATH=str(tmp_path / "not" / "made" / "yet"))
    status = app.test_client().get("/api/status").get_json()
    assert abs(status["free_bytes"] - shutil.disk_usage(tmp_path).free) < 64 * 1024 * 1024
    assert not (tmp_path / "not").exists()


def test_a_taken_listen_port_is_said_on_the_page_and_in_the_status(make_app):
    """libtorrent takes the next port when the one set is taken, and says nothing: a port
    forwarded on the router then leads nowhere."""
    import socket

    from swarm import free_port, wait_until

    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        app = make_app(LISTEN_INTERFACES=f"127.0.0.1:{taken}")
        client = app.test_client()
        status = wait_until(lambda: client.get("/api/status").get_json()["listen_ports"] and
                            client.get("/api/status").get_json(), 10, "libtorrent did not listen")
    port = status["listen_ports"][0]
    assert port != taken
    assert status["listen_problem"] == (
        f"Peers reach hashdrop on port {port}, not {taken} as set: another program holds {taken}. "
        f"Forward {port} on your router, or free {taken} and restart.")
    assert f"Peers reach hashdrop on port {port}, not {taken}" in client.get("/").get_data(as_text=True)

    free = free_port()
    client = make_app(LISTEN_INTERFACES=f"127.0.0.1:{free}", DATA_DIR=app.config["DATA_DIR"] + "2").test_client()
    status = wait_until(lambda: client.get("/api/status").get_json()["listen_ports"] and
                        client.get("/api/status").get_json(), 10, "libtorrent did not listen")
    assert status["listen_ports"] == [free] and status["listen_problem"] is None
    assert "Peers reach hashdrop" not in client.get("/").get_data(as_text=True)


def test_ports_are_read_from_listen_interfaces():
    from downloader import configured_ports

    assert configured_ports("0.0.0.0:6881,[::]:6881") == {6881}
    assert configured_ports("127.0.0.1:0") == set()
    assert configured_ports("eth0:6881s, 10.0.0.2:7000") == {6881, 7000}


def test_files_are_listed_as_a_person_sorts_them():
    from torrent_files import natural_order

    paths = ["Show/Show E10.mkv", "Show/extras/b.mkv", "Show/show E2.mkv", "Show/Show E1.mkv"]
    assert sorted(paths, key=natural_order) == [
        "Show/extras/b.mkv", "Show/Show E1.mkv", "Show/show E2.mkv", "Show/Show E10.mkv"]
