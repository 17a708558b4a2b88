"""End to end: real bytes from a seeder on 127.0.0.2 through opentracker, into the save path."""
import os
import re
import time
from io import BytesIO
from pathlib import Path

import libtorrent as lt
import pytest

from swarm import job_of, wait_for_state, check_files, make_torrent, wait_until

pytestmark = pytest.mark.swarm

MiB = 1024 * 1024


@pytest.fixture
def swarm_app(make_app, tracker):
    """An app whose bare hashes get the loopback tracker."""
    return make_app(TRACKERS=[tracker.announce_url])



def save_path(app):
    return Path(app.config["SAVE_PATH"])


def upload_paused(client, *torrents):
    """Start jobs from .torrent uploads, paused: the metadata is known before any byte moves."""
    client.post("/start-downloads", content_type="multipart/form-data", data={
        "torrents": [(BytesIO(torrent.data), f"{torrent.name}.torrent") for torrent in torrents],
        "paused": "on",
    })


def file_list(client, torrent):
    """The job's file list from the API, once it is there."""
    url = f"/api/jobs/{torrent.info_hash}/files"
    wait_until(lambda: client.get(url).status_code == 200, 10, "the file list is not there")
    return client.get(url).get_json()


def test_bare_hashes_download_through_the_form(swarm_app, swarm_payloads):
    single, multi = swarm_payloads["single"], swarm_payloads["multi"]
    client = swarm_app.test_client()
    response = client.post("/start-downloads", data={"downloads": f"{single.info_hash}\n{multi.info_hash.upper()}"})
    assert response.status_code == 303
    for torrent in (single, multi):
        job = wait_for_state(swarm_app, torrent.info_hash, "completed")
        assert job["name"] == torrent.name
        assert job["progress"] == 1.0
        assert job["total_bytes"] == torrent.total_size
        check_files(torrent, save_path(swarm_app))
    assert "Started 2 downloads:" in client.get("/").get_data(as_text=True)


def test_magnet_with_the_seeders_address_and_no_tracker(make_app, seeder, seed_new):
    torrent = seed_new(2 * MiB)
    app = make_app()  # no trackers: the only way to the seeder is x.pe
    response = app.test_client().post("/api/jobs", json={"hashes": [torrent.magnet(peer=seeder.peer, tracker=False)]})
    assert response.status_code == 201
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, save_path(app))


@pytest.mark.parametrize("kind", ["v2", "hybrid"])
def test_v2_only_and_hybrid_torrents(swarm_app, swarm_payloads, kind):
    torrent = swarm_payloads[kind]
    paste = torrent.v2_hash if kind == "v2" else torrent.magnet()
    swarm_app.test_client().post("/start-downloads", data={"downloads": paste})
    job = wait_for_state(swarm_app, torrent.key, "completed")
    assert job["info_hash"] == (torrent.v2_hash if kind == "v2" else torrent.info_hash)
    assert job["v2_hash"] == torrent.v2_hash
    check_files(torrent, save_path(swarm_app))


def test_uploaded_torrent_file(swarm_app, seed_new):
    torrent = seed_new({"a.bin": MiB, "b/c.bin": 300000})
    swarm_app.test_client().post("/start-downloads", content_type="multipart/form-data", data={
        "torrents": [(BytesIO(torrent.data), "upload.torrent")], "category": "Shows",
    })
    job = wait_for_state(swarm_app, torrent.info_hash, "completed")
    assert job["save_path"] == str(save_path(swarm_app) / "Shows")
    check_files(torrent, save_path(swarm_app) / "Shows")


def test_redirect_comes_back_while_the_download_runs(swarm_app, seed_new):
    torrent = seed_new(3 * MiB, upload_limit=512 * 1024)
    started = time.perf_counter()
    response = swarm_app.test_client().post("/start-downloads", data={"downloads": torrent.info_hash})
    elapsed = time.perf_counter() - started
    assert response.status_code == 303
    assert job_of(swarm_app, torrent.info_hash)["state"] != "completed"
    assert elapsed < 1.0, f"the submit took {elapsed:.2f} s"
    job = wait_for_state(swarm_app, torrent.info_hash, "downloading")
    assert job["state"] == "downloading"
    wait_for_state(swarm_app, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, save_path(swarm_app))


def test_pause_stops_the_bytes_and_resume_finishes(swarm_app, seed_new):
    torrent = seed_new(4 * MiB, upload_limit=1024 * 1024)
    client = swarm_app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_until(lambda: job_of(swarm_app, torrent.info_hash)["downloaded_bytes"] > 0, 30, "no bytes arrived")
    assert client.post(f"/api/jobs/{torrent.info_hash}/pause").get_json()["state"] == "paused"
    handle = swarm_app.extensions["hashdrop"].get(torrent.info_hash).run.torrent.handle
    wait_until(lambda: handle.status().state is not None and handle.status().paused, 5, "torrent not paused")
    held = handle.status().total_wanted_done
    time.sleep(1.5)  # a paused torrent must not move: look again after a while
    assert handle.status().total_wanted_done == held
    assert job_of(swarm_app, torrent.info_hash)["state"] == "paused"
    assert client.post(f"/api/jobs/{torrent.info_hash}/resume").get_json()["state"] == "downloading"
    wait_for_state(swarm_app, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, save_path(swarm_app))


def test_remove_with_files_ends_the_thread_and_deletes(swarm_app, seed_new):
    torrent = seed_new(MiB)
    client = swarm_app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_for_state(swarm_app, torrent.info_hash, "completed")
    job = swarm_app.extensions["hashdrop"].get(torrent.info_hash)
    assert client.delete(f"/api/jobs/{torrent.info_hash}?delete_files=true").status_code == 204
    job.run.worker.join(5)
    assert not job.run.worker.is_alive()
    session = swarm_app.extensions["hashdrop"].session
    wait_until(lambda: session.handles() == [], 5, "torrent still in the session")
    wait_until(lambda: not (save_path(swarm_app) / torrent.name).exists(), 5, "files not deleted")
    assert client.get(f"/api/jobs/{torrent.info_hash}").status_code == 404


def test_remove_keeps_files_by_default(swarm_app, seed_new):
    torrent = seed_new(MiB)
    client = swarm_app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_for_state(swarm_app, torrent.info_hash, "completed")
    assert client.delete(f"/api/jobs/{torrent.info_hash}").status_code == 204
    session = swarm_app.extensions["hashdrop"].session
    wait_until(lambda: session.handles() == [], 5, "torrent still in the session")
    check_files(torrent, save_path(swarm_app))


def test_queue_runs_max_active_at_once(make_app, tracker, seed_new):
    app = make_app(TRACKERS=[tracker.announce_url], MAX_ACTIVE=1)
    torrents = [seed_new(MiB, upload_limit=1024 * 1024) for _ in range(3)]
    app.test_client().post("/api/jobs", json={"hashes": [t.info_hash for t in torrents]})
    manager = app.extensions["hashdrop"]
    seen = []

    def all_done():
        states = [job["state"] for job in manager.jobs()]
        seen.append(states)
        return states == ["completed"] * 3

    wait_until(all_done, 60, "the queue did not drain")
    assert all(states.count("downloading") <= 1 for states in seen), seen
    assert any(states.count("queued") == 2 for states in seen), seen
    for torrent in torrents:
        check_files(torrent, save_path(app))


@pytest.mark.parametrize("disk_io", ["mmap", "posix"])
def test_every_disk_back_end_writes_the_right_bytes(make_app, tracker, seed_new, disk_io):
    """HASHDROP_DISK_IO's other back ends (pread, the default, is in every other test)."""
    app = make_app(TRACKERS=[tracker.announce_url], DISK_IO=disk_io)
    torrents = [seed_new(3 * MiB + 12345), seed_new({"a.bin": MiB, "sub/b.bin": 700001, "c.bin": 1})]
    app.test_client().post("/api/jobs", json={"hashes": [t.info_hash for t in torrents]})
    for torrent in torrents:
        wait_for_state(app, torrent.info_hash, "completed")
        check_files(torrent, save_path(app))


def test_a_download_over_utp_with_a_larger_receive_buffer(make_app, tracker, seed_new):
    """uTP stays on for peers that use it (libtorrent-based clients dial it first)."""
    app = make_app(TRACKERS=[tracker.announce_url], RECV_BUFFER=MiB)
    torrents = app.extensions["hashdrop"].session
    assert torrents.current_settings()["recv_socket_buffer_size"] == MiB
    # The app dials over TCP; here it dials over uTP only, to carry real bytes over it.
    torrents.apply({"enable_outgoing_utp": True, "enable_outgoing_tcp": False})
    torrent = seed_new(3 * MiB, upload_limit=MiB)  # a few seconds, to see the peer
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    utp_socket = 1 << 17  # peer_info::utp_socket, which the Python binding does not name
    peers = []

    def peer_seen():
        attached = app.extensions["hashdrop"].get(torrent.info_hash).run.torrent
        if attached is not None:
            peers.extend(bool(int(peer.flags) & utp_socket) for peer in attached.handle.get_peer_info())
        return bool(peers)

    wait_until(peer_seen, 30, "the app never connected to the seeder")
    wait_for_state(app, torrent.info_hash, "completed")
    assert all(peers), "a peer connection was not uTP"
    check_files(torrent, save_path(app))


def test_seed_ratio_zero_stops_seeding_when_complete(make_app, tracker, seed_new):
    app = make_app(TRACKERS=[tracker.announce_url], SEED_RATIO=0)
    torrent = seed_new(MiB)
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_for_state(app, torrent.info_hash, "completed")
    wait_until(lambda: job_of(app, torrent.info_hash)["seeding"] is False, 5, "still seeding")
    handle = app.extensions["hashdrop"].get(torrent.info_hash).run.torrent.handle
    wait_until(lambda: handle.status().paused, 5, "torrent not paused after completion")


def test_choose_files_downloads_only_those(swarm_app, seed_new):
    torrent = seed_new({"keep.bin": MiB, "skip.bin": MiB})
    client = swarm_app.test_client()
    upload_paused(client, torrent)
    manager = swarm_app.extensions["hashdrop"]
    files = file_list(client, torrent)
    assert sorted(f["path"] for f in files) == [f"{torrent.name}/keep.bin", f"{torrent.name}/skip.bin"]
    assert all(f["wanted"] for f in files)
    keep = next(f["index"] for f in files if f["path"].endswith("keep.bin"))
    chosen = client.post(f"/api/jobs/{torrent.info_hash}/files", json={"wanted": [keep]}).get_json()
    assert {f["path"].rsplit("/", 1)[1]: f["wanted"] for f in chosen} == {"keep.bin": True, "skip.bin": False}
    client.post(f"/api/jobs/{torrent.info_hash}/resume")
    wait_for_state(swarm_app, torrent.info_hash, "completed")
    keep_path = save_path(swarm_app) / torrent.name / "keep.bin"
    assert keep_path.is_file()
    from swarm import sha256_file
    assert sha256_file(keep_path) == torrent.files[f"{torrent.name}/keep.bin"]
    assert job_of(swarm_app, torrent.info_hash)["total_bytes"] == MiB
    assert manager.job(torrent.info_hash)["progress"] == 1.0


def test_a_magnet_started_paused_fetches_its_file_list_and_downloads_nothing_until_resumed(swarm_app, seed_new):
    """Paused meant no metadata, so a magnet's files could not be chosen before it downloaded
    them all. Now it fetches the file list, stays paused, and gets only the files chosen."""
    from swarm import sha256_file

    torrent = seed_new({"E01.mkv": MiB, "E02.mkv": MiB})
    client = swarm_app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.magnet()], "paused": True})
    files = file_list(client, torrent)
    job = wait_until(lambda: not job_of(swarm_app, torrent.info_hash)["fetching_file_list"] and
                     job_of(swarm_app, torrent.info_hash), 10, "the file list did not come")
    assert job["state"] == "paused" and job["has_metadata"] and job["downloaded_bytes"] == 0
    assert job["total_bytes"] == 0 and job["torrent_bytes"] == 2 * MiB  # nothing wanted yet, of 2 MiB
    assert not [f for f in files if f["wanted"]]  # nothing until a choice, or Resume
    handle = swarm_app.extensions["hashdrop"].get(torrent.info_hash).run.torrent.handle
    wait_until(lambda: handle.status().paused, 5, "the torrent was not paused once its file list came")
    assert handle.status().total_payload_download == 0
    assert not [path for path in save_path(swarm_app).rglob("*") if path.is_file()]
    assert "fetching the file list" not in client.get("/").get_data(as_text=True)

    second = next(f["index"] for f in files if f["path"].endswith("E02.mkv"))
    refused = client.post(f"/api/jobs/{torrent.info_hash}/files", json={"wanted": []})
    assert refused.status_code == 400 and "at least one file" in refused.get_json()["error"]
    client.post(f"/api/jobs/{torrent.info_hash}/files", json={"wanted": [second]})
    client.post(f"/api/jobs/{torrent.info_hash}/resume")
    wait_for_state(swarm_app, torrent.info_hash, "completed")
    assert sha256_file(save_path(swarm_app) / torrent.name / "E02.mkv") == torrent.files[f"{torrent.name}/E02.mkv"]
    assert not (save_path(swarm_app) / torrent.name / "E01.mkv").exists()
    assert not (save_path(swarm_app) / torrent.name / "E01.mkv.part").exists()


def test_a_magnet_held_for_a_choice_downloads_everything_when_resumed_without_one(make_app, tracker, seed_new):
    """Also after a restart, when nothing but its file priorities says its files were held."""
    torrent = seed_new({"E01.mkv": MiB, "E02.mkv": MiB})
    app = make_app(TRACKERS=[tracker.announce_url])
    app.test_client().post("/api/jobs", json={"hashes": [torrent.magnet()], "paused": True})
    wait_until(lambda: job_of(app, torrent.info_hash)["has_metadata"], 10, "the file list did not come")
    app.extensions["hashdrop"].shutdown()
    again = make_app(TRACKERS=[tracker.announce_url])
    assert job_of(again, torrent.info_hash)["state"] == "paused"
    again.test_client().post(f"/api/jobs/{torrent.info_hash}/resume")
    wait_for_state(again, torrent.info_hash, "completed")
    check_files(torrent, save_path(again))


def test_a_magnet_resumed_before_its_file_list_came_downloads_everything(swarm_app, seeder, seed_new):
    torrent = seed_new({"E01.mkv": MiB, "E02.mkv": MiB}, seeded=False)  # no peer yet: no metadata
    client = swarm_app.test_client()
    # The seeder's address in the link: the tracker is asked again only minutes later.
    client.post("/api/jobs", json={"hashes": [torrent.magnet(peer=seeder.peer)], "paused": True})
    wait_until(lambda: job_of(swarm_app, torrent.info_hash)["fetching_file_list"], 10, "not fetching its file list")
    client.post(f"/api/jobs/{torrent.info_hash}/resume")
    job = job_of(swarm_app, torrent.info_hash)
    assert job["state"] == "fetching_metadata" and not job["fetching_file_list"]
    seeder.add(torrent)
    wait_for_state(swarm_app, torrent.info_hash, "completed")
    check_files(torrent, save_path(swarm_app))


def test_download_limit_holds_for_loopback_peers(make_app, tracker, seed_new):
    limit = 256 * 1024
    app = make_app(TRACKERS=[tracker.announce_url], DOWNLOAD_LIMIT=limit)
    torrent = seed_new(4 * MiB)
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    handle = None
    wait_until(lambda: job_of(app, torrent.info_hash)["downloaded_bytes"] > 0, 30, "no bytes arrived")
    handle = app.extensions["hashdrop"].get(torrent.info_hash).run.torrent.handle
    before, started = handle.status().total_payload_download, time.monotonic()
    time.sleep(3)  # measure the rate over a few seconds
    rate = (handle.status().total_payload_download - before) / (time.monotonic() - started)
    # Unlimited, this torrent arrives in well under a second (tens of MiB/s).
    assert rate < 2 * limit, f"{rate / 1024:.0f} KiB/s with a {limit // 1024} KiB/s limit"
    assert job_of(app, torrent.info_hash)["state"] == "downloading"


def test_metadata_that_never_comes_shows_the_wait(swarm_app, seed_new):
    torrent = seed_new(MiB, seeded=False)  # the tracker knows it; nobody has it
    swarm_app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_until(lambda: job_of(swarm_app, torrent.info_hash)["waiting_seconds"] >= 1, 10, "no wait shown")
    job = job_of(swarm_app, torrent.info_hash)
    assert job["state"] == "fetching_metadata" and job["name"] is None
    page = swarm_app.test_client().get("/").get_data(as_text=True)
    assert "Fetching metadata" in page
    # "1 peer" since aac4fb5 (the tracker may hand the app itself); any other count is "peers".
    # The waited time counts on in the browser (static/app.js) from the seconds rendered.
    assert re.search(r'waiting <span data-waited="\d+">\d+s</span>, (1 peer|(?!1 peers)\d+ peers)<', page), page


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted after the test (list it before make_app: it is torn down last)."""
    small = tmp_path / "small"
    small.mkdir()
    if os.system(f"mount -t tmpfs -o size=1m tmpfs {small} 2>/dev/null") != 0:
        pytest.skip("this machine cannot mount a small tmpfs (needs root): no full-disk case here")
    yield small
    os.system(f"umount {small}")


@pytest.mark.parametrize("disk_io", ["pread", "mmap"])
def test_full_disk_fails_that_job_only(small_disk, make_app, tracker, seed_new, disk_io):
    """With mmap, libtorrent turns the SIGBUS of a full disk into an error (mmap_storage.cpp):
    "No space left on device" when a write faults, an I/O error when a read does."""
    app = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(small_disk), DISK_IO=disk_io)
    big, fine = seed_new(3 * MiB), seed_new(200000)
    client = app.test_client()
    # The small one first: once the big one has filled the disk, nothing more fits.
    client.post("/api/jobs", json={"hashes": [fine.info_hash]})
    wait_for_state(app, fine.info_hash, "completed")
    client.post("/api/jobs", json={"hashes": [big.info_hash]})
    failed = wait_for_state(app, big.info_hash, "failed", timeout=30)
    said = "No space left on device"
    if disk_io == "mmap" and "No space" not in failed["error"]:  # a read faulted, not a write
        said = "(the disk is full)"
    assert said in failed["error"], failed["error"]
    assert wait_for_state(app, fine.info_hash, "completed")["error"] is None
    check_files(fine, small_disk)
    assert client.get("/api/jobs").status_code == 200
    assert said in client.get("/").get_data(as_text=True)
    # What a person does next, maybe after a restart: remove the failed job with its files,
    # to free the disk. A failed job is restored without a thread, and nothing deleted them.
    app.extensions["hashdrop"].shutdown()
    again = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(small_disk), DISK_IO=disk_io)
    assert again.extensions["hashdrop"].get(big.info_hash).run.worker is None
    # Named .part if its first status came before the disk filled up.
    left = [small_disk / big.name, small_disk / f"{big.name}.part"]
    assert any(path.exists() for path in left)
    assert again.test_client().delete(f"/api/jobs/{big.info_hash}?delete_files=true").status_code == 204
    wait_until(lambda: not any(path.exists() for path in left), 10, "the failed job's file was not deleted")
    check_files(fine, small_disk)
    again.extensions["hashdrop"].shutdown()


def test_a_job_that_cannot_fit_says_so_before_it_fills_the_disk(small_disk, make_app, tracker, seed_new):
    app = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(small_disk))
    big, fine = seed_new(3 * MiB), seed_new(200000)
    client = app.test_client()
    upload_paused(client, big, fine)
    wait_until(lambda: job_of(app, big.info_hash)["disk_free_bytes"] is not None, 10,
               "the job that cannot fit said nothing")
    assert 0 < job_of(app, big.info_hash)["disk_free_bytes"] <= MiB
    assert job_of(app, fine.info_hash)["disk_free_bytes"] is None
    page = client.get("/").get_data(as_text=True)
    assert re.search(r"needs 3\.0 MiB\s+more, 1\.0 MiB free on its disk", page), page
    app.extensions["hashdrop"].shutdown()


def test_real_downloads_complete_among_hundreds_of_starting_jobs(swarm_app, seed_new):
    """Alerts that come while a torrent is being added must reach its job (seen with 1,000 jobs)."""
    import secrets

    real = [seed_new(MiB) for _ in range(3)]
    noise = [secrets.token_hex(20) for _ in range(300)]
    client = swarm_app.test_client()
    client.post("/api/jobs", json={"hashes": noise})
    client.post("/api/jobs", json={"hashes": [torrent.info_hash for torrent in real]})
    for torrent in real:
        wait_for_state(swarm_app, torrent.info_hash, "completed", timeout=60)
        check_files(torrent, save_path(swarm_app))


def test_files_already_on_disk_are_checked_not_downloaded_again(make_app, tracker, seeder, seed_new, tmp_path):
    """A torrent added where its files already are (a library moved to a new install, or after a
    crash) is checked first; the page and the API say so while it is."""
    torrent = seed_new(2 * MiB)
    first = make_app(TRACKERS=[tracker.announce_url])
    first.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_for_state(first, torrent.info_hash, "completed")
    first.extensions["hashdrop"].shutdown()
    uploaded_before = seeder.uploaded(torrent)

    # A new data dir (no job, no resume data), the same save path; paused, libtorrent waits
    # in checking_files, so the flag can be seen.
    app = make_app(TRACKERS=[tracker.announce_url], DATA_DIR=str(tmp_path / "new-data"))
    client = app.test_client()
    upload_paused(client, torrent)
    wait_until(lambda: job_of(app, torrent.info_hash)["checking"], 10, "the job never said it was checking")
    assert "will check the files on disk when resumed" in client.get("/").get_data(as_text=True)
    client.post(f"/api/jobs/{torrent.info_hash}/resume")
    wait_for_state(app, torrent.info_hash, "completed")
    assert job_of(app, torrent.info_hash)["checking"] is False
    check_files(torrent, save_path(app))
    assert seeder.uploaded(torrent) - uploaded_before < MiB  # found on disk, not fetched again


def test_choosing_more_files_of_a_completed_job_downloads_them(make_app, seeder, seed_new, tmp_path):
    """It showed "completed", 100 %, while the newly chosen file came in; and libtorrent never
    dialed again the seed it dropped on finishing. No tracker here, and the seed cannot dial in:
    it is known only as the peer first dialed, so only the app's redial can bring it back."""
    seeded = seed_new({"first.bin": MiB, "later.bin": 2 * MiB}, upload_limit=MiB)
    torrent = make_torrent(seeded.payload, torrent_path=tmp_path / "trackerless.torrent")
    assert torrent.info_hash == seeded.info_hash and not torrent.tracker_url
    app = make_app()
    # As behind a NAT, the seed cannot dial the app: on loopback its connections come from 127.0.0.1.
    no_incoming = lt.ip_filter()
    no_incoming.add_rule("127.0.0.1", "127.0.0.1", 1)
    app.extensions["hashdrop"].session.apply_ip_filter(no_incoming)
    client = app.test_client()
    upload_paused(client, torrent)
    files = {f["path"].rsplit("/", 1)[1]: f["index"] for f in file_list(client, torrent)}
    client.post(f"/api/jobs/{torrent.info_hash}/files", json={"wanted": [files["first.bin"]]})
    client.post(f"/api/jobs/{torrent.info_hash}/resume")
    host, port = seeder.peer.rsplit(":", 1)
    handle = app.extensions["hashdrop"].get(torrent.info_hash).run.torrent.handle
    handle.connect_peer((host, int(port)))
    wait_for_state(app, torrent.info_hash, "completed")
    # As when someone picks more files later: libtorrent has dropped the seed by then, and no
    # longer counts it as a peer to dial.
    wait_until(lambda: handle.status().num_peers == 0 and handle.status().connect_candidates == 0, 10,
               "the seed is still connected, or still counted as a peer to dial")

    client.post(f"/api/jobs/{torrent.info_hash}/files", json={"wanted": list(files.values())})
    job = wait_for_state(app, torrent.info_hash, "downloading")
    assert job["progress"] < 1 and job["completed_at"] is not None
    # The new file is unfinished (named .part); the one already done keeps its name.
    folder = save_path(app) / torrent.name
    wait_until(lambda: (folder / "later.bin.part").is_file(), 10, "the file chosen later is not named .part")
    assert (folder / "first.bin").is_file() and not (folder / "later.bin").exists()
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, save_path(app))
    assert not (folder / "later.bin.part").exists()
