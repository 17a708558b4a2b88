"""The watch folder: files dropped there become jobs that download the right bytes."""
import threading
from pathlib import Path

import pytest

from swarm import check_files, wait_for_state, wait_until

MiB = 1024 * 1024
pytestmark = pytest.mark.swarm


@pytest.fixture
def watched(make_app, tracker, tmp_path):
    """watched(): an app watching tmp_path/watch; returns (app, the watch folder)."""
    def start(**config):
        folder = tmp_path / "watch"
        app = make_app(TRACKERS=[tracker.announce_url], WATCH_DIR=str(folder), **config)
        return app, folder
    return start


def jobs(app):
    return app.extensions["hashdrop"].registry.all()


def wait_for_watched(app, info_hash, state="completed"):
    """Wait for the watch folder to make the job, then for the job to reach state."""
    wait_until(lambda: app.extensions["hashdrop"].registry.get(info_hash), 10,
               f"the watch folder made no job for {info_hash}")
    return wait_for_state(app, info_hash, state)


def test_a_dropped_torrent_file_downloads_and_is_marked_added(watched, seed_new):
    torrent = seed_new({"a.bin": MiB, "sub/b.bin": 300_000})
    app, folder = watched()
    (folder / "show.torrent").write_bytes(torrent.data)
    done = wait_for_watched(app, torrent.info_hash)
    assert done["source"] == "watch"
    check_files(torrent, app.config["SAVE_PATH"])
    wait_until(lambda: (folder / "show.torrent.added").exists(), 5, "the file was not renamed .added")
    assert not (folder / "show.torrent").exists()


@pytest.mark.parametrize("text", ["magnet", "bare hash"])
def test_a_dropped_magnet_file_downloads(watched, seed_new, text):
    torrent = seed_new(MiB)
    app, folder = watched()
    content = torrent.magnet() if text == "magnet" else torrent.info_hash.upper() + "\n"
    (folder / "movie.magnet").write_text(content)
    wait_for_watched(app, torrent.info_hash)
    check_files(torrent, app.config["SAVE_PATH"])
    wait_until(lambda: (folder / "movie.magnet.added").exists(), 5, "the file was not renamed .added")


def test_a_subfolder_names_the_category(watched, seed_new):
    torrent = seed_new({"ep1.mkv": MiB})
    app, folder = watched()
    (folder / "tv-sonarr").mkdir(parents=True, exist_ok=True)
    (folder / "tv-sonarr" / "ep.torrent").write_bytes(torrent.data)
    done = wait_for_watched(app, torrent.info_hash)
    assert done["category"] == "tv-sonarr"
    check_files(torrent, Path(app.config["SAVE_PATH"]) / "tv-sonarr")
    assert (folder / "tv-sonarr" / "ep.torrent.added").exists()


def test_a_file_still_being_written_is_not_read_until_it_settles(watched, seed_new):
    torrent = seed_new(MiB)
    app, folder = watched()
    path = folder / "slow.torrent"
    half = len(torrent.data) // 2
    path.write_bytes(torrent.data[:half])
    # A slow writer: a few more bytes every 0.3 s for about 3 s, each poll sees a new size.
    pause = threading.Event()
    with path.open("ab") as f:
        for start in range(half, half + 10):
            pause.wait(0.3)
            f.write(torrent.data[start:start + 1])
            f.flush()
            assert jobs(app) == [] and path.exists(), "a file still being written was taken"
        f.write(torrent.data[half + 10:])
    wait_for_watched(app, torrent.info_hash)
    check_files(torrent, app.config["SAVE_PATH"])
    assert (folder / "slow.torrent.added").exists() and not (folder / "slow.torrent.invalid").exists()


@pytest.mark.parametrize("name, content, reason", [
    ("junk.torrent", b"<html>not found</html>", "is not a usable .torrent file"),
    ("words.magnet", b"hello there\n", "'hello there': no info hash or magnet link found"),
    ("nothing.magnet", b"", "holds no info hash"),
])
def test_a_bad_file_is_set_aside_with_its_reason(watched, name, content, reason):
    app, folder = watched()
    (folder / name).write_bytes(content)
    wait_until(lambda: (folder / f"{name}.invalid").exists(), 10, f"{name} was not set aside")
    why = (folder / f"{name}.invalid.txt").read_text()
    assert reason in why, why
    assert jobs(app) == []


def test_a_known_torrent_dropped_again_is_marked_added(watched, seed_new):
    torrent = seed_new(MiB)
    app, folder = watched()
    (folder / "one.magnet").write_text(torrent.magnet())
    wait_for_watched(app, torrent.info_hash)
    (folder / "again.torrent").write_bytes(torrent.data)
    wait_until(lambda: (folder / "again.torrent.added").exists(), 10, "the duplicate was not marked .added")
    assert len(jobs(app)) == 1


def test_files_dropped_while_down_are_taken_at_start_and_others_are_left_alone(make_app, tracker,
                                                                             seed_new, tmp_path):
    torrent = seed_new(MiB)
    folder = tmp_path / "watch"
    folder.mkdir()
    (folder / "early.torrent").write_bytes(torrent.data)
    (folder / "notes.txt").write_text("not for hashdrop")
    (folder / ".hidden.torrent").write_bytes(b"half")
    app = make_app(TRACKERS=[tracker.announce_url], WATCH_DIR=str(folder))
    wait_for_watched(app, torrent.info_hash)
    check_files(torrent, app.config["SAVE_PATH"])
    assert sorted(p.name for p in folder.iterdir()) == [".hidden.torrent", "early.torrent.added", "notes.txt"]


def test_a_watch_folder_that_does_not_exist_is_made(make_app, tmp_path):
    folder = tmp_path / "not" / "yet"
    app = make_app(WATCH_DIR=str(folder))
    assert folder.is_dir()
    assert any(t.name == "watch-folder" for t in threading.enumerate())
    app.extensions["hashdrop"].shutdown()
    assert not any(t.name == "watch-folder" for t in threading.enumerate())


def test_no_watch_folder_by_default(make_app):
    make_app()
    assert not any(t.name == "watch-folder" for t in threading.enumerate())
