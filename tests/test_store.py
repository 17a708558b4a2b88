"""The job database (store/): jobs that survive a restart, writes refused and the changes that
wait for them, a full database refusing a submit, and a corrupt or unopenable one at start-up."""
import os
import secrets
import sqlite3
from contextlib import closing

import pytest

from helpers import HASH_A, HASH_B, HASH_C, flashes


def test_jobs_survive_a_restart(make_app, tmp_path):
    first = make_app()
    first.test_client().post("/start-downloads", data={"downloads": f"{HASH_A}\n{HASH_B}"})
    first.test_client().post(f"/api/jobs/{HASH_B}/pause")
    first.extensions["hashdrop"].shutdown()
    second = make_app()
    jobs = {job["info_hash"]: job["state"] for job in second.extensions["hashdrop"].jobs()}
    assert jobs == {HASH_A: "fetching_metadata", HASH_B: "paused"}


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


def test_jobs_of_a_database_made_before_numbers_get_them_at_start_and_keep_them(make_app, tmp_path):
    first = make_app()
    first.test_client().post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    first.extensions["hashdrop"].shutdown()
    with closing(sqlite3.connect(tmp_path / "data" / "hashdrop.sqlite3")) as database:
        with database:  # as a hashdrop before job numbers left it
            database.execute("UPDATE jobs SET number = NULL")
            database.execute("DELETE FROM counters")
    second = make_app()
    numbers = {job["info_hash"]: job["number"] for job in second.extensions["hashdrop"].jobs()}
    assert numbers == {HASH_A: 1, HASH_B: 2}
    client = second.test_client()
    assert client.delete(f"/api/jobs/{HASH_B}").status_code == 204
    second.extensions["hashdrop"].shutdown()
    third = make_app()  # B's number is not given again, though no job holds it now
    started = third.test_client().post("/api/jobs", json={"hashes": [HASH_C]}).get_json()["started"]
    assert (started[0]["number"], started[0]["source"], started[0]["labels"]) == (3, "api", [])


def test_the_job_database_numbers_the_jobs_it_held_before_numbers_in_one_go(make_app, tmp_path):
    first = make_app()
    first.test_client().post("/api/jobs", json={"hashes": [HASH_A, HASH_B]})
    first.extensions["hashdrop"].shutdown()
    with closing(sqlite3.connect(tmp_path / "data" / "hashdrop.sqlite3")) as database:
        with database:  # the schema before numbers, labels and sources
            database.execute("DROP TABLE counters")
            for column in ("number", "labels", "source"):
                database.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    jobs = make_app().extensions["hashdrop"].jobs()
    assert [(job["info_hash"], job["number"], job["labels"], job["source"]) for job in jobs] == [
        (HASH_A, 1, [], "form"), (HASH_B, 2, [], "form")]
