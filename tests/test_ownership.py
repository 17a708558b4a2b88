"""A job writes and deletes only its own files, inside the save path, whatever is in the library."""
import uuid
from io import BytesIO
from pathlib import Path

import pytest

from swarm import (check_files, file_size_limit, job_of, make_payload, make_torrent, sha256_file, wait_for_state,
                   wait_until)

MiB = 1024 * 1024
pytestmark = pytest.mark.swarm


@pytest.fixture
def seed_named(tracker, seeder, tmp_path):
    """seed(name, files): a torrent whose file or top folder has this name, seeded on loopback."""
    def seed(name, files):
        payload = make_payload(tmp_path / f"seed-{uuid.uuid4().hex[:8]}", name, files, seed=uuid.uuid4().hex)
        torrent = make_torrent(payload, tracker.announce_url)
        tracker.add(torrent)
        seeder.add(torrent)
        return torrent
    return seed


def plant(path, size, fill=b"family video "):
    """A person's own file in the library, which hashdrop did not write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((fill * (size // len(fill) + 1))[:size])
    return sha256_file(path)


def add(app, torrent, how, **options):
    """Add the torrent as a person would: its bare hash (the tracker finds the seeder) or its file."""
    client = app.test_client()
    if how == "hash":
        response = client.post("/api/jobs", json={"hashes": [torrent.info_hash], **options})
    else:
        data = {"torrents": [(BytesIO(torrent.data), f"{torrent.name}.torrent")],
                **{key: "on" for key, on in options.items() if on}}
        response = client.post("/start-downloads", content_type="multipart/form-data", data=data)
    assert response.status_code in (201, 303), response.get_data(as_text=True)
    return client


@pytest.mark.parametrize("how", ["hash", "upload"])
def test_a_file_in_the_library_with_other_bytes_is_never_overwritten(make_app, tracker, seed_named, how):
    torrent = seed_named("Home Movie.mp4", 3 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    planted = plant(library / "Home Movie.mp4", 3 * MiB)
    add(app, torrent, how)
    failed = wait_for_state(app, torrent.info_hash, "failed")
    assert "Home Movie.mp4 is already in" in failed["error"] and "leaves it alone" in failed["error"]
    assert sha256_file(library / "Home Movie.mp4") == planted
    assert not (library / "Home Movie.mp4.part").exists()


def test_delete_files_leaves_a_file_the_job_did_not_write(make_app, tracker, seed_named):
    """A paused job that had downloaded nothing deleted a person's video of the same name."""
    torrent = seed_named("Family", {"Family Video 2019.mp4": MiB, "notes.txt": 1000})
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    planted = plant(library / "Family" / "Family Video 2019.mp4", 2 * MiB)
    client = add(app, torrent, "upload", paused=True)
    wait_until(lambda: job_of(app, torrent.info_hash)["torrent_bytes"] > 0, 10, "the job has no size yet")
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: app.extensions["hashdrop"].session.handles() == [], 10, "the torrent stayed")
    assert sha256_file(library / "Family" / "Family Video 2019.mp4") == planted


def test_a_file_that_holds_the_torrents_data_is_seeded_as_it_is_and_never_deleted(
        make_app, tracker, seeder, seed_named):
    """Seeding what you already have: the file is checked, not downloaded, and stays on removal."""
    torrent = seed_named("Concert.mkv", 2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    (library).mkdir(parents=True, exist_ok=True)
    (library / "Concert.mkv").write_bytes((torrent.payload.path).read_bytes())
    uploaded_before = seeder.uploaded(torrent)
    client = add(app, torrent, "hash")
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, library)
    assert seeder.uploaded(torrent) - uploaded_before < MiB  # checked, not fetched again
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: app.extensions["hashdrop"].session.handles() == [], 10, "the torrent stayed")
    check_files(torrent, library)


def test_retry_after_the_file_was_moved_away_downloads_it(make_app, tracker, seed_named):
    torrent = seed_named("Holiday.mp4", 2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    planted = plant(library / "Holiday.mp4", MiB)
    client = add(app, torrent, "hash")
    wait_for_state(app, torrent.info_hash, "failed")
    (library / "Holiday.mp4").rename(library / "Holiday (ours).mp4")
    assert client.post(f"/api/jobs/{torrent.info_hash}/resume").status_code == 200
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, library)
    assert sha256_file(library / "Holiday (ours).mp4") == planted


def test_its_own_files_are_taken_back_when_added_again_and_deleted_when_asked(make_app, tracker, seeder, seed_named):
    torrent = seed_named("Again", {"a.mkv": 2 * MiB, "b.mkv": MiB})
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    client = add(app, torrent, "hash")
    wait_for_state(app, torrent.info_hash, "completed")
    assert client.delete(f"/api/jobs/{torrent.info_hash}").status_code == 204  # files kept
    wait_until(lambda: app.extensions["hashdrop"].session.handles() == [], 10, "the torrent stayed")
    uploaded_before = seeder.uploaded(torrent)
    add(app, torrent, "hash")
    wait_for_state(app, torrent.info_hash, "completed")
    assert seeder.uploaded(torrent) - uploaded_before < MiB
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: not (library / "Again").exists(), 10, f"its files stayed: {list(library.rglob('*'))}")


def test_a_symlinked_folder_does_not_lead_a_job_out_of_the_save_path(make_app, tracker, seed_named, tmp_path):
    """Shows in the library is a link to another disk; a torrent whose top folder is Shows."""
    other_disk = tmp_path / "other-disk"
    kept = plant(other_disk / "episode.mkv", MiB)
    torrent = seed_named("Shows", {"episode.mkv": MiB, "new.mkv": MiB})
    app = make_app(TRACKERS=[tracker.announce_url])
    library = Path(app.config["SAVE_PATH"])
    library.mkdir(parents=True, exist_ok=True)
    (library / "Shows").symlink_to(other_disk, target_is_directory=True)
    client = add(app, torrent, "hash")
    failed = wait_for_state(app, torrent.info_hash, "failed")
    assert "outside the save path" in failed["error"]
    assert sorted(p.name for p in other_disk.iterdir()) == ["episode.mkv"]
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: app.extensions["hashdrop"].session.handles() == [], 10, "the torrent stayed")
    assert sha256_file(other_disk / "episode.mkv") == kept


@pytest.mark.parametrize("failure", ["write", "conflict"])
def test_a_failed_job_whose_thread_has_ended_deletes_its_own_files_and_no_one_elses(
        make_app, tracker, seed_named, failure):
    """Removed with its files after its thread ended (here: the app restarted; a failed job comes
    back with no thread), a failed job deletes what it wrote, as any removal does."""
    torrent = seed_named("Film", {"film.mkv": 3 * MiB, "extras.mkv": MiB})
    settings = {"TRACKERS": [tracker.announce_url]}
    app = make_app(**settings)
    folder = Path(app.config["SAVE_PATH"]) / "Film"
    theirs = {folder / "poster.jpg": plant(folder / "poster.jpg", 1000)}
    if failure == "conflict":  # a person's file under one of the torrent's names
        theirs[folder / "extras.mkv"] = plant(folder / "extras.mkv", MiB)
        add(app, torrent, "hash")
        failed = wait_for_state(app, torrent.info_hash, "failed")
        assert "extras.mkv is already in" in failed["error"]
    else:
        with file_size_limit(2 * MiB):  # every write past 2 MiB fails, as on a full disk
            add(app, torrent, "hash")
            failed = wait_for_state(app, torrent.info_hash, "failed")
        assert "File too large" in failed["error"]
    wait_until(lambda: {"film.mkv", "film.mkv.part"} & {p.name for p in folder.iterdir()}, 10,
               "the job wrote nothing of film.mkv")
    app.extensions["hashdrop"].shutdown()

    again = make_app(**settings)
    assert again.extensions["hashdrop"].get(torrent.info_hash).run.worker is None
    client = again.test_client()
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    assert sorted(p.name for p in folder.iterdir()) == sorted(path.name for path in theirs)
    assert all(sha256_file(path) == digest for path, digest in theirs.items())


def test_a_file_put_there_just_before_the_add_never_counts_as_the_jobs():
    """The file system's clock is coarse: a file a person made in the same tick as a magnet's add
    must still be theirs, or removing the job with its files would delete it."""
    import os
    import tempfile
    import time

    from jobs.ownership import made_since

    with tempfile.TemporaryDirectory() as folder:
        for number in range(50):  # every offset within a tick
            path = os.path.join(folder, f"film-{number}.mkv")
            open(path, "wb").close()
            assert not made_since(path, time.time())


def test_a_file_made_right_after_a_magnets_add_moment_counts_as_made_since():
    """The other side of the same tick: what libtorrent makes once the add's moment is taken
    (moment_of_add waits out the file system's coarse clock) is never older than it."""
    import os
    import tempfile

    from jobs.ownership import made_since, moment_of_add

    with tempfile.TemporaryDirectory() as folder:
        for number in range(50):
            moment = moment_of_add()
            path = os.path.join(folder, f"film-{number}.mkv")
            open(path, "wb").close()
            assert made_since(path, moment)
