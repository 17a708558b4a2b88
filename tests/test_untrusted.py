"""Names from strangers: escaped wherever shown, and no file ever lands outside the save path."""
import hashlib
from io import BytesIO
from pathlib import Path

import libtorrent as lt
import pytest

from swarm import Payload, Torrent, check_files, make_payload, make_torrent, wait_until

pytestmark = pytest.mark.swarm

XSS = "<img src=x onerror=alert(1)>"
PIECE = 16384


def upload(client, torrent_data, filename="x.torrent"):
    return client.post("/start-downloads", content_type="multipart/form-data",
                       data={"torrents": [(BytesIO(torrent_data), filename)]})


def test_a_torrent_named_like_html_is_shown_as_text(make_app, tracker, seeder, tmp_path):
    torrent = make_torrent(make_payload(tmp_path / "seed", XSS, 50000), tracker.announce_url)
    tracker.add(torrent)
    seeder.add(torrent)
    try:
        app = make_app(TRACKERS=[tracker.announce_url])
        client = app.test_client()
        upload(client, torrent.data, filename=f"{XSS}.torrent")
        job = app.extensions["hashdrop"].get(torrent.info_hash)
        wait_until(lambda: job.state.value == "completed", 30, "did not complete")
        for page in (client.get("/"), client.get("/jobs"), client.get(f"/jobs/{torrent.info_hash}/files")):
            html = page.get_data(as_text=True)
            assert XSS not in html
            assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert client.get(f"/api/jobs/{torrent.info_hash}").get_json()["name"] == XSS
        check_files(torrent, app.config["SAVE_PATH"])
    finally:
        seeder.remove(torrent)


def hand_made_torrent(root, tracker_url):
    """A multi-file torrent whose paths climb out with '..' and start at '/', built with bencode."""
    parts = [(["..", "..", "escaped.txt"], b"A" * 20000), (["/abs", "etc", "passwd"], b"B" * 5000)]
    content = b"".join(data for _, data in parts)
    pieces = b"".join(hashlib.sha1(content[i:i + PIECE]).digest() for i in range(0, len(content), PIECE))
    info = {
        b"name": b"evil",
        b"piece length": PIECE,
        b"pieces": pieces,
        b"files": [{b"length": len(data), b"path": [p.encode() for p in path]} for path, data in parts],
    }
    data = lt.bencode({b"announce": tracker_url.encode(), b"info": info})
    info_hash = str(lt.torrent_info(data).info_hashes().v1)
    # Where libtorrent itself puts such paths (it sanitises them); the seeder serves them there.
    layout = lt.torrent_info(data).layout()
    files, sizes = {}, {}
    for index, (_, body) in enumerate(parts):
        relative = layout.file_path(index)
        target = Path(root) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        files[relative] = hashlib.sha256(body).hexdigest()
        sizes[relative] = len(body)
    path = Path(root) / "evil.torrent"
    path.write_bytes(data)
    return Torrent(data=data, path=path, info_hash=info_hash, v2_hash=None, name="evil", version="v1",
                   payload=Payload(Path(root), "evil", files, sizes), tracker_url=tracker_url)


def test_paths_with_dot_dot_and_slash_stay_inside_the_save_path(make_app, tracker, seeder, tmp_path):
    torrent = hand_made_torrent(tmp_path / "seed", tracker.announce_url)
    tracker.add(torrent)
    seeder.add(torrent)
    try:
        save_path = tmp_path / "deep" / "library" / "downloads"
        app = make_app(TRACKERS=[tracker.announce_url], SAVE_PATH=str(save_path))
        client = app.test_client()
        upload(client, torrent.data)
        job = app.extensions["hashdrop"].get(torrent.info_hash)
        wait_until(lambda: job.state.value == "completed", 30, "did not complete")
        check_files(torrent, save_path)
        kept_apart = (tmp_path / "seed", tmp_path / "data")  # the seeder's copy, the app's state
        written = [p for p in tmp_path.rglob("*")
                   if p.is_file() and not any(p.is_relative_to(d) for d in kept_apart)]
        assert written and all(save_path in p.parents for p in written), written
        assert not (tmp_path / "deep" / "escaped.txt").exists()
        assert not Path("/abs").exists()
        listed = client.get(f"/api/jobs/{torrent.info_hash}/files").get_json()
        assert all(not f["path"].startswith("/") and ".." not in f["path"].split("/") for f in listed)
    finally:
        seeder.remove(torrent)
