"""The two seams, replaced through configuration alone: another runner, another job store."""
from pathlib import Path

import pytest

from config import ConfigError
from doubles import MemoryJobStore, PoolRunner
from downloader import DISK_BACKENDS
from jobs.runner import ThreadRunner
from swarm import check_files, wait_for_state, wait_until

MiB = 1024 * 1024
SEAMS = {"RUNNER": "doubles:PoolRunner", "STORE": "doubles:MemoryJobStore"}


def test_the_defaults_are_a_thread_per_job_and_sqlite(manager):
    assert isinstance(manager.runner, ThreadRunner)
    assert manager.store.location.endswith("hashdrop.sqlite3")


@pytest.mark.swarm
def test_a_download_through_another_runner_and_another_store(make_app, tracker, seed_new):
    """The views, the state machine and the downloader are the same; only the config differs."""
    torrent = seed_new({"film.mkv": 3 * MiB, "extras/sample.mkv": MiB})
    app = make_app(TRACKERS=[tracker.announce_url], **SEAMS)
    manager = app.extensions["hashdrop"]
    assert isinstance(manager.runner, PoolRunner) and isinstance(manager.store, MemoryJobStore)
    response = app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    assert response.status_code == 201
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, Path(app.config["SAVE_PATH"]))
    assert manager.runner.tasks == [torrent.info_hash]
    assert manager.store.records[torrent.info_hash]["state"] == "completed"
    assert manager.store.records[torrent.info_hash]["name"] == torrent.name


def test_removing_ends_the_other_runners_worker(make_app):
    app = make_app(**SEAMS)
    client = app.test_client()
    info_hash = "d" * 40
    client.post("/api/jobs", json={"hashes": [info_hash]})
    worker = app.extensions["hashdrop"].get(info_hash).run.worker
    wait_until(lambda: app.extensions["hashdrop"].get(info_hash).run.torrent is not None, 10, "not added")
    assert client.delete(f"/api/jobs/{info_hash}").status_code == 204
    worker.join(5)
    assert not worker.is_alive()
    assert app.extensions["hashdrop"].store.records == {}


def test_a_store_that_refuses_new_jobs_refuses_the_submit(make_app):
    app = make_app(**SEAMS)
    app.extensions["hashdrop"].store.full = True
    response = app.test_client().post("/api/jobs", json={"hashes": ["e" * 40]})
    assert response.status_code == 507
    assert "memory could not record the new downloads (database or disk is full)" in response.get_json()["error"]
    assert app.test_client().get("/api/jobs").get_json() == []


@pytest.mark.parametrize("setting", ["RUNNER", "STORE"])
@pytest.mark.parametrize("name", ["nowhere:Runner", "doubles:Nothing", "no-colon"])
def test_a_seam_that_names_nothing_says_which_setting(make_app, setting, name):
    with pytest.raises(ConfigError, match=f"HASHDROP_{setting} must be"):
        make_app(**{setting: name})


def test_the_disk_back_ends_config_accepts_are_the_ones_the_session_knows():
    from config import DISK_IO_CHOICES
    assert set(DISK_IO_CHOICES) == set(DISK_BACKENDS)


CLUSTER_PACKAGES = ("celery", "kombu", "redis", "psycopg", "psycopg_pool", "flower")
IMPORTED = """
import json, sys
import app
application = app.create_app(json.loads(sys.argv[1]))
client = application.test_client()
answer = client.post("/api/jobs", json={"hashes": ["a" * 40]}, headers={"X-Hashdrop": "1"})
assert answer.status_code == 201, answer.get_data(as_text=True)
client.post("/api/jobs/" + "a" * 40 + "/pause", headers={"X-Hashdrop": "1"})
application.extensions["hashdrop"].shutdown()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:]))))
"""


def packages_imported(tmp_path, **settings):
    """The cluster packages a fresh `python` has imported after making an app, one submit and
    one pause, and shutting it down (none of them is imported by pytest's process for it)."""
    import json
    import subprocess
    import sys

    from conftest import HERMETIC

    config = {**HERMETIC, "SAVE_PATH": str(tmp_path / "downloads"), "DATA_DIR": str(tmp_path / "data"), **settings}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", IMPORTED, json.dumps(config), *CLUSTER_PACKAGES], cwd=root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_embedded_mode_imports_no_cluster_package(tmp_path):
    """Celery, Redis and PostgreSQL are the cluster's: installed or not, embedded mode needs none."""
    assert packages_imported(tmp_path) == []


@pytest.mark.cluster
def test_the_postgres_store_imports_psycopg_and_nothing_of_celery(tmp_path, pg_database):
    assert packages_imported(tmp_path, STORE="postgres", DATABASE_URL=pg_database) == ["psycopg"]


@pytest.mark.swarm
@pytest.mark.cluster
def test_a_download_kept_in_postgresql(make_app, tracker, seed_new, pg_database):
    """The embedded app on the PostgreSQL store: real bytes, and the job's row follows it."""
    torrent = seed_new({"film.mkv": 3 * MiB, "extras/sample.mkv": MiB})
    app = make_app(TRACKERS=[tracker.announce_url], STORE="postgres", DATABASE_URL=pg_database)
    manager = app.extensions["hashdrop"]
    assert manager.store.location == pg_database
    assert app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]}).status_code == 201
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, Path(app.config["SAVE_PATH"]))
    wait_until(lambda: {row["info_hash"]: (row["state"], row["name"]) for row in manager.store.load()} ==
               {torrent.info_hash: ("completed", torrent.name)}, 10, "the job's row was not written")
    manager.shutdown()
    restarted = make_app(TRACKERS=[tracker.announce_url], STORE="postgres", DATABASE_URL=pg_database)
    assert [(job["info_hash"], job["state"], job["number"]) for job in restarted.extensions["hashdrop"].jobs()] == \
        [(torrent.info_hash, "completed", 1)]
