"""Unfinished files are named <name>.part, so a media server scanning the save path skips them."""
from io import BytesIO
from pathlib import Path

import libtorrent as lt
import pytest

import torrent_files
from swarm import job_of, wait_for_state, check_files, file_size_limit, make_payload, make_torrent, wait_until

MiB = 1024 * 1024


def part_files(root):
    return sorted(str(path.relative_to(root)) for path in Path(root).rglob("*.part"))



@pytest.mark.swarm
def test_unfinished_files_carry_the_suffix_until_the_job_is_completed(make_app, tracker, seed_new):
    torrent = seed_new({"film.mkv": 3 * MiB, "extras/sample.mkv": MiB}, upload_limit=MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    root = Path(app.config["SAVE_PATH"])
    film = root / torrent.name / "film.mkv"
    wait_until(lambda: Path(f"{film}.part").is_file(), 30, f"no film.mkv.part while downloading: {part_files(root)}")
    assert not film.exists()
    assert job_of(app, torrent.info_hash)["state"] == "downloading"
    # The file list names the files as they will be, and says where they are meanwhile.
    listed = {f["path"]: f for f in client.get(f"/api/jobs/{torrent.info_hash}/files").get_json()}
    assert sorted(listed) == sorted(torrent.files)
    assert listed[f"{torrent.name}/film.mkv"]["path_on_disk"] == f"{torrent.name}/film.mkv.part"
    page = client.get(f"/jobs/{torrent.info_hash}/files").get_data(as_text=True)
    assert "on disk as film.mkv.part until it is complete" in page

    wait_for_state(app, torrent.info_hash, "completed", timeout=60)
    assert part_files(root) == []
    check_files(torrent, root)
    listed = client.get(f"/api/jobs/{torrent.info_hash}/files").get_json()
    assert all(f["path_on_disk"] == f["path"] for f in listed)


@pytest.mark.swarm
def test_a_job_that_fails_writing_leaves_no_unfinished_file_under_its_own_name(make_app, tracker, seed_new):
    """A magnet's first pieces can land under the file's own name before its thread has marked
    it, and a write error (a full disk, by hand on a tmpfs) can fail the job before the first
    status marks it. Three jobs at once: without the fix, most runs left some file unmarked."""
    torrents = [seed_new(16 * MiB) for _ in range(3)]
    app = make_app(TRACKERS=[tracker.announce_url])
    root = Path(app.config["SAVE_PATH"])
    with file_size_limit(4 * MiB):  # every write past 4 MiB fails, as on a full disk
        app.test_client().post("/api/jobs", json={"hashes": [t.info_hash for t in torrents]})
        for torrent in torrents:
            wait_for_state(app, torrent.info_hash, "failed")
    for torrent in torrents:
        assert "File too large" in job_of(app, torrent.info_hash)["error"]
    expected = sorted(f"{torrent.name}.part" for torrent in torrents)
    wait_until(lambda: sorted(path.name for path in root.iterdir()) == expected, 10,
               f"unfinished files under their own names: {sorted(path.name for path in root.iterdir())}")


@pytest.mark.swarm
def test_an_empty_suffix_keeps_the_names(make_app, tracker, seed_new):
    torrent = seed_new(3 * MiB, upload_limit=MiB)
    app = make_app(TRACKERS=[tracker.announce_url], PART_SUFFIX="")
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    root = Path(app.config["SAVE_PATH"])
    wait_until(lambda: job_of(app, torrent.info_hash)["downloaded_bytes"] > 0, 30, "no bytes arrived")
    assert (root / torrent.name).is_file() and part_files(root) == []
    wait_for_state(app, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, root)


@pytest.mark.swarm
def test_removing_an_unfinished_job_with_its_files_deletes_the_part_file(make_app, tracker, seed_new):
    torrent = seed_new(4 * MiB, upload_limit=MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    root = Path(app.config["SAVE_PATH"])
    wait_until(lambda: part_files(root) == [f"{torrent.name}.part"], 30, "no .part file while downloading")
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: part_files(root) == [], 10, f"left behind: {part_files(root)}")
    assert not (root / torrent.name).exists()


@pytest.mark.swarm
def test_resume_data_saved_before_the_rename_still_finds_the_part_file(make_app, tracker, seeder, seed_new, tmp_path):
    """Resume data can lag a rename by a save interval; a crash then leaves it naming the file
    the download is no longer in. The next start looks under both names."""
    torrent = seed_new(4 * MiB, upload_limit=MiB)
    first = make_app(TRACKERS=[tracker.announce_url])
    first.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    root = Path(first.config["SAVE_PATH"])
    wait_until(lambda: job_of(first, torrent.info_hash)["downloaded_bytes"] >= 2 * MiB, 30, "too few bytes arrived")
    first.extensions["hashdrop"].shutdown()
    assert part_files(root) == [f"{torrent.name}.part"]
    resume_file = tmp_path / "data" / "resume" / f"{torrent.info_hash}.resume"
    params = lt.read_resume_data(resume_file.read_bytes())
    assert params.renamed_files == {0: f"{torrent.name}.part"}
    params.renamed_files = {}  # as saved before the rename
    resume_file.write_bytes(lt.write_resume_data_buf(params))
    uploaded_before = seeder.uploaded(torrent)

    again = make_app(TRACKERS=[tracker.announce_url])
    wait_for_state(again, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, root)
    assert part_files(root) == []
    assert seeder.uploaded(torrent) - uploaded_before < 3 * MiB  # what was on disk was kept


@pytest.mark.swarm
def test_a_file_name_with_no_room_for_the_suffix_keeps_its_name(make_app, tracker, seed_new):
    """A file name may have at most 255 bytes. libtorrent cuts longer ones to about 250, so
    ".part" always fits, but a longer suffix may not: the download would fail at its first write."""
    long_name = "映" * 80 + ".mkv"  # 244 bytes in UTF-8, as libtorrent keeps it
    suffix = ".incomplete-dl"  # 14 bytes: 258 in all
    blocker = seed_new(3 * MiB, upload_limit=MiB)
    torrent = seed_new({long_name: 2 * MiB, "short.mkv": 2 * MiB})
    app = make_app(TRACKERS=[tracker.announce_url], PART_SUFFIX=suffix, MAX_ACTIVE=1)
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [blocker.info_hash]})
    wait_for_state(app, blocker.info_hash, "downloading")
    # Queued behind the blocker, with its metadata from the .torrent: marked before any byte.
    client.post("/start-downloads", content_type="multipart/form-data",
                data={"torrents": [(BytesIO(torrent.data), "long.torrent")]})
    wait_for_state(app, torrent.info_hash, "queued")
    on_disk = {}

    def marked():
        on_disk.update((f["path"].rsplit("/", 1)[1], f["path_on_disk"].rsplit("/", 1)[1])
                       for f in client.get(f"/api/jobs/{torrent.info_hash}/files").get_json())
        return on_disk.get("short.mkv") == f"short.mkv{suffix}"

    wait_until(marked, 10, f"short.mkv was not marked: {on_disk}")
    assert on_disk[long_name] == long_name
    wait_for_state(app, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, Path(app.config["SAVE_PATH"]))


@pytest.mark.swarm
@pytest.mark.parametrize("source", ["magnet", "torrent file"])
def test_a_job_removed_with_its_files_kept_and_added_again_goes_on_from_them(
        make_app, tracker, seeder, seed_new, source):
    """Its data is in <name>.part, where libtorrent, which knows the file as <name>, does not
    look: the job downloaded everything again over it (found in review)."""
    torrent = seed_new(12 * MiB, upload_limit=2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url])
    client = app.test_client()
    root = Path(app.config["SAVE_PATH"])

    def add():
        if source == "magnet":
            client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
        else:
            client.post("/start-downloads", content_type="multipart/form-data",
                        data={"torrents": [(BytesIO(torrent.data), "kept.torrent")]})

    add()
    wait_until(lambda: job_of(app, torrent.info_hash)["downloaded_bytes"] >= 6 * MiB, 30, "too few bytes arrived")
    assert client.delete(f"/api/jobs/{torrent.info_hash}").status_code == 204  # files kept
    session = app.extensions["hashdrop"].session
    wait_until(lambda: session.handles() == [], 10, "the torrent is still in the session")
    assert part_files(root) == [f"{torrent.name}.part"]
    uploaded_before = seeder.uploaded(torrent)

    add()
    wait_for_state(app, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, root)
    assert part_files(root) == []
    assert seeder.uploaded(torrent) - uploaded_before < 9 * MiB  # what was kept was not fetched again


def test_names_are_matched_to_the_disk_before_a_torrent_is_added(tmp_path):
    payload = make_payload(tmp_path / "payload", "show", {"e1.mkv": 64 * 1024, "e2.mkv": 64 * 1024})
    info = lt.torrent_info(make_torrent(payload).data)
    save = tmp_path / "library"
    (save / "show").mkdir(parents=True)
    (save / "show" / "e1.mkv.part").write_bytes(b"x")  # renamed after the resume data was saved
    (save / "show" / "e2.mkv").write_bytes(b"x")  # renamed back after it was saved
    index = {path: number for number, path in torrent_files.real_files(info.layout())}
    params = lt.add_torrent_params()
    params.ti = info
    params.renamed_files = {index["show/e2.mkv"]: "show/e2.mkv.part"}
    params.have_pieces = [True] * info.num_pieces()
    torrent_files.match_names_on_disk(params, str(save), ".part")
    assert params.renamed_files == {index["show/e1.mkv"]: "show/e1.mkv.part"}
    assert not torrent_files.data_missing(params, str(save))

    (save / "show" / "e1.mkv.part").unlink()
    (save / "show" / "e2.mkv").unlink()
    torrent_files.match_names_on_disk(params, str(save), ".part")
    assert torrent_files.data_missing(params, str(save))  # nothing under either name: a disk not mounted
