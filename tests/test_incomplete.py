"""The incomplete folder (HASHDROP_INCOMPLETE_PATH): jobs download there and move into the library,
by rename on one disk and by copy across disks (a tmpfs mounted in the test), seed from there,
survive a kill -9 mid-move, and fail with the OS's reason when the move cannot be made."""
import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import libtorrent as lt
import pytest

from config import ConfigError
from swarm import Server, check_files, hermetic_settings, sha256_file, start_download, wait_for_state, wait_until

pytestmark = pytest.mark.swarm

MiB = 1024 * 1024
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, name, read_only=False) -> a fresh tmpfs under tmp_path: a second file system,
    so a move onto it is a copy. Unmounted after the test; skipped where mount is not permitted."""
    mounted = []

    def mount(size="64m", name="library", read_only=False):
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"a second file system is needed and mount is not permitted here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def stored_save_path(tmp_path, info_hash):
    with sqlite3.connect(tmp_path / "data" / "hashdrop.sqlite3") as db:
        row = db.execute("SELECT save_path, moving_to FROM jobs WHERE info_hash = ?", (info_hash,)).fetchone()
    db.close()
    return row


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*") if path.is_file())


def test_same_disk_the_files_download_in_the_incomplete_folder_and_move_by_rename(
        make_app, tracker, seed_new, tmp_path):
    torrent = seed_new({"one.bin": 2 * MiB, "sub/two.bin": MiB + 123}, upload_limit=MiB)
    incomplete, library = tmp_path / "incomplete", tmp_path / "downloads"
    app = make_app(TRACKERS=[tracker.announce_url], INCOMPLETE_PATH=str(incomplete))
    app.test_client().post("/api/jobs", json={"hashes": [torrent.magnet()], "category": "films"})

    wait_until(lambda: app.extensions["hashdrop"].job(torrent.info_hash)["downloaded_bytes"] > 0, 30, "no bytes came")
    assert app.extensions["hashdrop"].job(torrent.info_hash)["save_path"] == str(incomplete / "films")
    # While it downloads, the library has nothing of it, and its unfinished files are marked.
    assert not (library / "films" / torrent.name).exists()
    assert all(name.endswith(".part") for name in files_under(incomplete / "films"))

    job = wait_for_state(app, torrent.info_hash, "completed")
    assert job["save_path"] == str(library / "films") and not job["moving"]
    check_files(torrent, library / "films")
    assert files_under(incomplete / "films") == []
    assert stored_save_path(tmp_path, torrent.info_hash) == (str(library / "films"), None)


def test_across_disks_the_files_are_copied_into_the_library_and_seeded_from_there(
        make_app, tracker, seeder, seed_new, tmp_path, tmpfs):
    library = tmpfs("64m")
    torrent = seed_new({"film.mkv": 8 * MiB, "extras/a.bin": MiB})
    app = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(library),
                   INCOMPLETE_PATH=str(tmp_path / "incomplete"))
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    job = wait_for_state(app, torrent.info_hash, "completed")
    assert os.stat(library).st_dev != os.stat(tmp_path / "incomplete").st_dev
    assert job["save_path"] == str(library)
    check_files(torrent, library)
    assert not list(library.rglob("*.part")) and files_under(tmp_path / "incomplete") == []

    # Seeding goes on from the library: a second client gets every byte from hashdrop alone.
    seeder.remove(torrent)
    leecher = lt.session(hermetic_settings(listen="127.0.0.4:0"))
    leecher.apply_settings({"outgoing_interfaces": "127.0.0.4"})
    try:
        handle = start_download(leecher, torrent.magnet(), tmp_path / "leecher")
        wait_until(lambda: handle.status().is_seeding, 30, "the second client did not get the torrent from hashdrop")
    finally:
        leecher.pause()
    check_files(torrent, tmp_path / "leecher")
    assert app.extensions["hashdrop"].job(torrent.info_hash)["seeding"]


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_move_that_fails_fails_the_job_with_the_reason_and_leaves_the_files(
        make_app, tracker, seed_new, tmp_path, tmpfs, kind):
    library = tmpfs("2m") if kind == "full" else tmpfs("1m", read_only=True)
    torrent = seed_new({"big.bin": 4 * MiB, "small.bin": 100000})
    incomplete = tmp_path / "incomplete"
    app = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(library), INCOMPLETE_PATH=str(incomplete))
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    job = wait_for_state(app, torrent.info_hash, "failed")
    reason = "No space left on device" if kind == "full" else "Read-only file system"
    assert reason in job["error"] and "library" in job["error"], job["error"]
    assert job["save_path"] == str(incomplete) and not job["moving"]
    # Every file is whole where it was, under its unfinished name; no copy is left in the library.
    for path, digest in torrent.files.items():
        assert sha256_file(incomplete / f"{path}.part") == digest
    assert files_under(library) == []
    assert stored_save_path(tmp_path, torrent.info_hash) == (str(incomplete), None)


def test_a_name_taken_in_the_library_fails_the_job_naming_it_and_the_file_is_left_alone(
        make_app, tracker, seed_new, tmp_path):
    torrent = seed_new(MiB)
    library = tmp_path / "downloads"
    library.mkdir()
    theirs = library / torrent.name
    theirs.write_bytes(b"someone else's film")
    app = make_app(TRACKERS=[tracker.announce_url], INCOMPLETE_PATH=str(tmp_path / "incomplete"))
    app.test_client().post("/api/jobs", json={"hashes": [torrent.magnet()]})
    job = wait_for_state(app, torrent.info_hash, "failed")
    assert torrent.name in job["error"] and str(library) in job["error"], job["error"]
    assert theirs.read_bytes() == b"someone else's film"


def test_the_incomplete_folder_cannot_be_the_save_path_or_hold_it(make_app, tmp_path):
    with pytest.raises(ConfigError, match="HASHDROP_INCOMPLETE_PATH"):
        make_app(INCOMPLETE_PATH=str(tmp_path / "downloads"))
    with pytest.raises(ConfigError, match="HASHDROP_INCOMPLETE_PATH"):
        make_app(INCOMPLETE_PATH=str(tmp_path))


@pytest.fixture
def slow_cpu():
    """throttle(pid): from now on the process gets 5 % of a CPU (a cgroup v1 CPU quota), so that a
    copy it makes takes seconds. Skipped where CPU cgroups cannot be made."""
    made = []

    def throttle(pid):
        group = CPU_CGROUPS / f"hashdrop-test-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            made.append(group)
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("5000")
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            pytest.skip(f"the move must be slowed down to be cut short, and no CPU cgroup can be made: {exc}")

    yield throttle
    for group in made:
        wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), 10, "the throttled process lingers")
        group.rmdir()


def test_a_kill_9_mid_move_loses_nothing_and_the_move_is_made_again(tmp_path, tracker, seed_new, tmpfs, slow_cpu):
    library = tmpfs("160m")
    incomplete = tmp_path / "incomplete"
    torrent = seed_new({"film.mkv": 48 * MiB, "film.nfo": 2000})
    server = Server(tmp_path, tracker, SAVE_PATH=library, INCOMPLETE_PATH=incomplete)
    try:
        server.start()
        server.request("POST", "/api/jobs", {"hashes": [torrent.info_hash]})
        slow_cpu(server.process.pid)
        copying = library / torrent.name / "film.mkv.part"
        wait_until(copying.exists, 120, "the move into the library did not start")
        server.process.kill()  # SIGKILL while libtorrent copies: no shutdown code runs
        server.process.wait(10)
        server.log.close()
        # Cut short mid-copy, and the library never showed the film under its own name.
        assert (incomplete / torrent.name / "film.mkv.part").exists()
        assert not (library / torrent.name / "film.mkv").exists()
        assert stored_save_path(tmp_path, torrent.info_hash) == (str(incomplete), str(library))

        again = Server(tmp_path, tracker, SAVE_PATH=library, INCOMPLETE_PATH=incomplete).start()
        server = again
        wait_until(lambda: again.job(torrent.info_hash)["state"] == "completed", 120,
                   "the job did not complete after the restart")
        check_files(torrent, library)
        assert not list(library.rglob("*.part")) and files_under(incomplete) == []
        assert stored_save_path(tmp_path, torrent.info_hash) == (str(library), None)
    finally:
        server.stop(signal.SIGKILL)
        server.log.close()


def recovering_job(tmp_path, library, torrent):
    """A job whose move from tmp_path/incomplete into library was cut short, as the store left it,
    and a LibraryMove as the manager makes it."""
    import threading

    from doubles import MemoryJobStore
    from jobs.library_move import LibraryMove
    from jobs.model import Job

    store = MemoryJobStore()
    job = Job(info_hash=torrent.info_hash, save_path=str(tmp_path / "incomplete"), moving_to=str(library))
    store.save_many([job.record()])
    return job, store, LibraryMove(str(tmp_path / "incomplete"), str(library), ".part", store, threading.Lock())


def place(payload, folder, rel, size=None):
    """Copy a payload file into folder under its .part name (its first size bytes: a partial copy)."""
    target = Path(folder) / f"{rel}.part"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((payload.root / rel).read_bytes()[:size])


def test_a_cut_short_cross_disk_move_whose_copies_were_all_made_goes_on_into_the_library(tmp_path, tmpfs):
    """libtorrent deletes the originals only once every file is copied: a file found only in the
    library means every copy is whole, and the move goes on instead of copying back across disks."""
    from swarm import make_payload, make_torrent

    library = tmpfs("16m")
    payload = make_payload(tmp_path / "made", "show", {"e1.mkv": MiB, "e2.mkv": MiB})
    torrent = make_torrent(payload, None, "v1")
    job, store, move = recovering_job(tmp_path, library, torrent)
    place(payload, library, "show/e1.mkv")
    place(payload, library, "show/e2.mkv")
    place(payload, tmp_path / "incomplete", "show/e2.mkv")  # e1's original was deleted already
    move.recover(job, lt.load_torrent_buffer(torrent.data))
    assert job.save_path == str(library) and job.moving_to is None
    assert store.records[job.info_hash]["save_path"] == str(library)
    assert files_under(tmp_path / "incomplete") == []
    for rel, digest in torrent.files.items():
        assert sha256_file(library / f"{rel}.part") == digest


def test_a_cut_short_move_with_originals_in_place_goes_back_and_partial_copies_go(tmp_path, tmpfs):
    from swarm import make_payload, make_torrent

    library = tmpfs("16m")
    payload = make_payload(tmp_path / "made", "show", {"e1.mkv": MiB, "e2.mkv": MiB})
    torrent = make_torrent(payload, None, "v1")
    job, store, move = recovering_job(tmp_path, library, torrent)
    place(payload, library, "show/e1.mkv")  # copied whole
    place(payload, library, "show/e2.mkv", size=1000)  # cut short mid-copy
    for rel in torrent.files:
        place(payload, tmp_path / "incomplete", rel)
    move.recover(job, lt.load_torrent_buffer(torrent.data))
    assert job.save_path == str(tmp_path / "incomplete") and job.moving_to is None
    assert store.records[job.info_hash]["moving_to"] is None
    assert files_under(library) == []
    for rel, digest in torrent.files.items():
        assert sha256_file(tmp_path / "incomplete" / f"{rel}.part") == digest


def test_a_cut_short_move_on_one_disk_renames_the_moved_files_back(tmp_path):
    from swarm import make_payload, make_torrent

    library = tmp_path / "downloads"
    payload = make_payload(tmp_path / "made", "show", {"e1.mkv": MiB, "sub/e2.mkv": MiB})
    torrent = make_torrent(payload, None, "v1")
    job, _, move = recovering_job(tmp_path, library, torrent)
    place(payload, library, "show/sub/e2.mkv")  # renamed into the library before the crash
    place(payload, tmp_path / "incomplete", "show/e1.mkv")
    move.recover(job, lt.load_torrent_buffer(torrent.data))
    assert job.save_path == str(tmp_path / "incomplete")
    assert not (library / "show").exists()  # the folders the move made are gone with it
    for rel, digest in torrent.files.items():
        assert sha256_file(tmp_path / "incomplete" / f"{rel}.part") == digest
