"""Nothing lost: jobs and progress survive a restart, a kill -9 and damaged resume data."""
import time
import signal
from pathlib import Path

import libtorrent as lt
import pytest

from swarm import Server, check_files, wait_until

pytestmark = pytest.mark.swarm

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)
        server.log.close()


def start_server(servers, tmp_path, tracker, **settings):
    server = Server(tmp_path, tracker, **settings).start()
    servers.append(server)
    return server


def test_kill_9_mid_download_then_restart_completes_without_starting_over(
        servers, tmp_path, tracker, seeder, seed_new):
    torrent = seed_new(8 * MiB, upload_limit=2 * MiB)
    server = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    server.request("POST", "/api/jobs", {"hashes": [torrent.info_hash]})
    wait_until(lambda: server.job(torrent.info_hash)["progress"] >= 0.5, 30, "the download did not get halfway")
    resume_file = tmp_path / "data" / "resume" / f"{torrent.info_hash}.resume"
    wait_until(lambda: resume_file.is_file() and resume_file.stat().st_size > 1000, 10, "no resume data saved")
    uploaded_before = seeder.uploaded(torrent)
    server.process.kill()  # SIGKILL: no shutdown code runs
    server.process.wait(10)

    again = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    job = again.job(torrent.info_hash)
    assert job["state"] in ("fetching_metadata", "downloading", "queued", "completed")
    wait_until(lambda: again.job(torrent.info_hash)["state"] == "completed", 60, "did not complete after the crash")
    check_files(torrent, tmp_path / "downloads")
    assert not list((tmp_path / "downloads").rglob("*.part"))  # every file has its own name
    downloaded_again = seeder.uploaded(torrent) - uploaded_before
    # What was on disk at the last resume save (≥ half) is not downloaded again; allow for
    # the pieces that arrived after it (about 1 s at 2 MiB/s) and protocol slack.
    assert downloaded_again < 0.5 * torrent.total_size + 3 * MiB, (downloaded_again, torrent.total_size)


def test_after_a_crash_pieces_the_resume_data_claims_but_the_disk_lost_are_fetched_again(
        servers, tmp_path, tracker, seed_new):
    """A power loss drops the page cache, and kill -9 libtorrent's write buffer, while the resume
    data kept from before can say those pieces are done. Trusting it completed the job with holes
    in its file; after a crash the app has libtorrent check the files instead."""
    import libtorrent as lt

    torrent = seed_new(8 * MiB, upload_limit=2 * MiB, piece_size=256 * 1024)
    server = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    server.request("POST", "/api/jobs", {"hashes": [torrent.info_hash]})
    resume_file = tmp_path / "data" / "resume" / f"{torrent.info_hash}.resume"

    def claimed():
        if not resume_file.is_file():
            return []
        have = lt.read_resume_data(resume_file.read_bytes()).have_pieces
        return [index for index, done in enumerate(have) if done]

    wait_until(lambda: len(claimed()) >= 8, 30, "no resume data claiming pieces was saved")
    server.process.kill()  # SIGKILL: no shutdown code runs
    server.process.wait(10)
    assert (tmp_path / "data" / "running").is_file()
    # What a power loss leaves of pages that were never written back: holes (zeros). The file
    # is unfinished, so it is named with the part suffix.
    path = tmp_path / "downloads" / f"{next(iter(torrent.files))}.part"
    with open(path, "r+b") as f:
        for index in claimed():
            f.seek(index * 256 * 1024)
            f.write(bytes(256 * 1024))

    again = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    wait_until(lambda: again.job(torrent.info_hash)["state"] == "completed", 60, "did not complete after the crash")
    check_files(torrent, tmp_path / "downloads")
    assert not path.exists()


def test_a_crash_keeps_what_a_seeding_job_has_uploaded(servers, tmp_path, tracker, seeder, seed_new):
    """libtorrent keeps the upload total in resume data, saved for it only at shutdown: a kill -9
    lost every byte seeded since the last clean stop, and the share ratio with it."""
    import sqlite3

    from swarm import hermetic_settings, start_download

    torrent = seed_new(4 * MiB)
    server = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    server.request("POST", "/api/jobs", {"hashes": [torrent.info_hash]})
    wait_until(lambda: server.job(torrent.info_hash)["state"] == "completed", 30, "the download did not complete")
    seeder.remove(torrent)  # the app is the only one left to download it from
    leecher = lt.session(hermetic_settings(listen="127.0.0.4:0"))
    # Not from 127.0.0.1: the app met itself there (the tracker lists it) and bans that address.
    leecher.apply_settings({"outgoing_interfaces": "127.0.0.4"})
    try:
        handle = start_download(leecher, torrent.magnet(), tmp_path / "leecher")
        wait_until(lambda: handle.status().is_seeding, 30, "the leecher did not get the torrent from the app")
    finally:
        leecher.pause()

    def recorded():  # the total the app showed, once its job database holds it too
        shown = server.job(torrent.info_hash)["uploaded_bytes"]
        with sqlite3.connect(tmp_path / "data" / "hashdrop.sqlite3") as db:
            stored = db.execute("SELECT uploaded_bytes FROM jobs").fetchone()[0]
        return shown >= torrent.total_size and shown == stored and shown

    uploaded = wait_until(recorded, 10, "the app did not record what it uploaded")
    server.process.kill()  # SIGKILL: no shutdown code runs
    server.process.wait(10)

    again = start_server(servers, tmp_path, tracker, RESUME_INTERVAL=1)
    assert again.job(torrent.info_hash)["uploaded_bytes"] == uploaded
    job = wait_until(lambda: again.job(torrent.info_hash)["state"] == "completed" and again.job(torrent.info_hash),
                     30, "the job did not come back completed")
    assert job["uploaded_bytes"] == uploaded  # libtorrent counts on from there
    assert job["ratio"] == round(uploaded / torrent.total_size, 3) >= 1


def test_a_job_database_from_before_upload_totals_gets_the_column(tmp_path):
    import sqlite3

    from store.sqlite import SQLiteJobStore

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (info_hash TEXT PRIMARY KEY, v1_hash TEXT, v2_hash TEXT, name TEXT, "
                   "magnet TEXT, torrent BLOB, added_at TEXT NOT NULL, state TEXT NOT NULL, error TEXT, "
                   "save_path TEXT NOT NULL, category TEXT NOT NULL DEFAULT '', "
                   "sequential INTEGER NOT NULL DEFAULT 0, completed_at TEXT)")
        db.execute("INSERT INTO jobs (info_hash, added_at, state, save_path) VALUES ('ab', 'now', 'completed', '/x')")
    db.close()
    store = SQLiteJobStore(str(path))
    assert store.load()[0]["uploaded_bytes"] == 0
    store.save_upload_totals([(123, "ab")])
    store.close()
    assert SQLiteJobStore(str(path)).load()[0]["uploaded_bytes"] == 123


def test_a_completed_jobs_resume_data_vouches_once_its_files_are_synced(make_app, tracker, seed_new, tmp_path):
    import torrent_files

    torrent = seed_new(MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    manager = app.extensions["hashdrop"]
    assert (tmp_path / "data" / "running").is_file()
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    resume_file = tmp_path / "data" / "resume" / f"{torrent.info_hash}.resume"
    wait_until(lambda: resume_file.is_file() and torrent_files.vouched(resume_file.read_bytes()), 30,
               "no resume data vouched for the completed job's files")
    assert manager.get(torrent.info_hash).state.value == "completed"
    manager.shutdown()
    assert not (tmp_path / "data" / "running").exists()
    # Saved again at shutdown, still vouching: else the next crash would recheck a whole library.
    assert torrent_files.vouched(resume_file.read_bytes())
    # And across a clean restart, whose first statuses (checking the resume data) are not finished.
    again = make_app(TRACKERS=[tracker.announce_url]).extensions["hashdrop"]
    job = again.get(torrent.info_hash)
    wait_until(lambda: job.live.get("finished"), 10, "the restored job is not finished")
    again.shutdown()
    assert job.state.value == "completed" and torrent_files.vouched(resume_file.read_bytes())


def test_sigterm_saves_resume_data_and_paused_jobs_stay_paused(servers, tmp_path, tracker, seed_new):
    running, paused, done = seed_new(4 * MiB, upload_limit=MiB), seed_new(MiB), seed_new(MiB)
    server = start_server(servers, tmp_path, tracker)
    server.request("POST", "/api/jobs", {"hashes": [done.info_hash]})
    wait_until(lambda: server.job(done.info_hash)["state"] == "completed", 30, "first job did not complete")
    server.request("POST", "/api/jobs", {"hashes": [paused.info_hash], "paused": True})
    server.request("POST", "/api/jobs", {"hashes": [running.magnet()]})
    wait_until(lambda: server.job(running.info_hash)["downloaded_bytes"] > 0, 30, "no bytes arrived")
    assert server.stop(signal.SIGTERM) == 0
    assert (tmp_path / "data" / "resume" / f"{running.info_hash}.resume").is_file()
    # torrentp logs every pause and resume at INFO: a line per job at every start of a library.
    assert "INFO torrentp" not in (tmp_path / "server.log").read_text()

    again = start_server(servers, tmp_path, tracker)
    assert again.job(paused.info_hash)["state"] == "paused"
    assert again.job(done.info_hash)["state"] == "completed"
    # The metadata came back with the resume data: the name is known before any peer answers.
    assert again.job(running.info_hash)["name"] == running.name
    wait_until(lambda: again.job(running.info_hash)["state"] == "completed", 60, "did not complete after restart")
    check_files(running, tmp_path / "downloads")
    check_files(done, tmp_path / "downloads")
    assert not (tmp_path / "downloads" / paused.name).exists() or again.job(paused.info_hash)["progress"] < 1


def test_damaged_resume_data_rechecks_the_files(make_app, tracker, seeder, seed_new, tmp_path):
    torrent = seed_new(2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    manager = app.extensions["hashdrop"]
    wait_until(lambda: manager.get(torrent.info_hash).state.value == "completed", 30, "did not complete")
    manager.shutdown()
    resume_file = tmp_path / "data" / "resume" / f"{torrent.info_hash}.resume"
    resume_file.write_bytes(b"d4:junk")  # truncated: not bencode any more
    uploaded_before = seeder.uploaded(torrent)

    again = make_app(TRACKERS=[tracker.announce_url])
    job = again.extensions["hashdrop"].get(torrent.info_hash)
    damaged = resume_file.parent / f"{torrent.info_hash}.resume.damaged"
    wait_until(damaged.is_file, 10, "the damaged resume file was not set aside")
    assert damaged.read_bytes() == b"d4:junk"
    wait_until(lambda: job.live.get("finished"), 30, "the torrent did not finish after the recheck")
    assert job.state.value == "completed"
    check_files(torrent, tmp_path / "downloads")
    # The recheck found every piece on disk: nothing but the metadata came from the seeder.
    assert seeder.uploaded(torrent) - uploaded_before < MiB


def completed_library(make_app, tmp_path, size=5):
    """A manager whose jobs are files already in the save path: each is checked, then completed."""
    import torrent_files
    from hashes import parse_text
    from swarm import make_payload, make_torrent

    items = [make_torrent(make_payload(tmp_path / "downloads", f"film{i}.mkv", 64 * 1024),
                          torrent_path=tmp_path / f"film{i}.torrent") for i in range(size)]
    manager = make_app(RESUME_INTERVAL=0).extensions["hashdrop"]
    manager.submit(parse_text(""), uploads=[(item.path.name, item.data) for item in items])
    resume_dir = tmp_path / "data" / "resume"
    wait_until(lambda: all((resume_dir / f"{item.info_hash}.resume").is_file()
                           and torrent_files.vouched((resume_dir / f"{item.info_hash}.resume").read_bytes())
                           for item in items), 20, "the library's jobs did not complete")
    return manager, items


def resume_files_as_on_disk(tmp_path):
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in (tmp_path / "data" / "resume").iterdir()}


def test_a_clean_restart_of_a_completed_library_writes_no_resume_data(make_app, tmp_path):
    """Each start marks every torrent changed (checking, then seeding), and that used to write
    every job's resume data, with two fsyncs each: minutes of disk work for a library on a hard disk."""
    manager, items = completed_library(make_app, tmp_path)
    manager.shutdown()
    saved = resume_files_as_on_disk(tmp_path)
    assert len(saved) == len(items)

    again = make_app(RESUME_INTERVAL=0).extensions["hashdrop"]
    jobs = [again.get(item.info_hash) for item in items]
    wait_until(lambda: all(job.live.get("finished") for job in jobs), 10, "the library did not come back")
    # Every torrent's status has been through the periodic save once (interval 0), which asks
    # libtorrent for resume data only if a piece, the metadata or a setting changed.
    keys = [str(job.run.torrent.handle.info_hashes().get_best()) for job in jobs]
    wait_until(lambda: all(again.session.resume_asked_at(key) is not None for key in keys), 10, "no periodic save")
    time.sleep(1)  # the answers, and any write they would cause
    assert [job.state.value for job in jobs] == ["completed"] * len(items)
    assert resume_files_as_on_disk(tmp_path) == saved


def test_shutdown_writes_every_jobs_resume_data_with_two_syncs_in_all(make_app, tmp_path, monkeypatch):
    """Two fsyncs per resume file made the shutdown of 1,000 jobs 2,000 fsyncs, longer on a hard
    disk than the 10 s it is given; now the files are written, synced once, renamed, synced again."""
    import os

    import torrent_files

    manager, items = completed_library(make_app, tmp_path)
    magnet = manager.submit_text("ab" * 20).started[0]  # no peers: only shutdown has a reason to save it
    wait_until(lambda: magnet.run.torrent is not None, 10, "the magnet was not added")
    manager.pause(magnet.info_hash)  # a change libtorrent's periodic save leaves to shutdown
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    manager.shutdown()
    monkeypatch.undo()
    assert calls == ["sync", "sync"]
    resume_dir = tmp_path / "data" / "resume"
    assert sorted(path.name for path in resume_dir.iterdir()) == sorted(
        f"{key}.resume" for key in [magnet.info_hash, *(item.info_hash for item in items)])  # no .tmp left
    assert all(torrent_files.vouched((resume_dir / f"{item.info_hash}.resume").read_bytes()) for item in items)
    kept = lt.read_resume_data((resume_dir / f"{magnet.info_hash}.resume").read_bytes())
    assert str(kept.info_hashes.get_best()) == magnet.info_hash


def test_a_resume_file_that_cannot_be_written_costs_only_itself(tmp_path):
    from jobs.durability import write_all_atomically

    good, bad = tmp_path / "good.resume", tmp_path / "gone" / "bad.resume"
    good.write_bytes(b"old")
    failed = write_all_atomically({bad: b"new", good: b"new"})
    assert list(failed) == [bad] and isinstance(failed[bad], FileNotFoundError)
    assert good.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [good]


def test_a_resume_file_that_fails_midway_keeps_the_old_one_and_leaves_no_temp_file(tmp_path):
    from jobs.durability import write_atomically
    from swarm import file_size_limit

    kept = tmp_path / "job.resume"
    kept.write_bytes(b"old")
    with file_size_limit(MiB), pytest.raises(OSError):  # a write past 1 MiB fails, as on a full disk
        write_atomically(kept, b"x" * (2 * MiB))
    assert kept.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [kept]


def test_a_library_whose_disk_is_not_mounted_fails_with_a_reason_and_writes_nothing(make_app, tmp_path):
    """Downloading on would have filled the empty mount point, and seeding failed on every read.
    Once the disk is back, Retry finds the files: nothing is downloaded again."""
    manager, items = completed_library(make_app, tmp_path, size=2)
    unknown = manager.submit_text("ab" * 20).started[0]  # no metadata, no data: nothing to miss
    manager.shutdown()
    downloads = tmp_path / "downloads"
    downloads.rename(tmp_path / "unmounted")

    app = make_app(RESUME_INTERVAL=0)
    again, client = app.extensions["hashdrop"], app.test_client()
    jobs = [again.get(item.info_hash) for item in items]
    wait_until(lambda: all(job.state.value == "failed" for job in jobs), 10, "the jobs did not fail")
    assert all(job.error == f"No data found in {downloads}: is its disk connected? "
                            "Retry once it is (or to download it again)." for job in jobs)
    magnet = again.get(unknown.info_hash)
    wait_until(lambda: magnet.run.torrent is not None, 10, "the magnet job was not added")
    assert magnet.state.value == "fetching_metadata"
    assert list(downloads.iterdir()) == []  # made for the magnet job only; nothing of the library

    downloads.rmdir()
    (tmp_path / "unmounted").rename(downloads)
    assert "Retry all 2</button>" in client.get("/?show=failed").get_data(as_text=True)
    response = client.post("/jobs/retry-failed?show=failed")
    assert response.status_code == 303 and response.headers["Location"].endswith("/?show=failed")
    wait_until(lambda: all(job.state.value == "completed" for job in jobs), 10, "the retried jobs did not complete")
    for item in items:
        check_files(item, downloads)
