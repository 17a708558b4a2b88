"""The libtorrent session (downloader.py's TorrentSession) and torrent_files.py: statuses and
resume timers of removed torrents, the listen ports set and taken, file error wording, and the
order files are listed in."""
import os

from hashes import parse_text


def submit_a_torrent(manager, tmp_path):
    """A job for a small .torrent nobody seeds: it has metadata, so its resume data is saved
    (a magnet's is not before its metadata comes)."""
    from swarm import make_payload, make_torrent

    torrent = make_torrent(make_payload(tmp_path / "payload", "timer.bin", 64 * 1024))
    job = manager.submit(parse_text(""), uploads=[("timer.torrent", torrent.data)]).started[0]
    return job


def test_status_of_a_torrent_removed_since_the_update_is_skipped(manager, tmp_path):
    """A batched status can name a torrent that was removed meanwhile; asking it for resume
    data raised and lost the rest of the batch's statuses for every other job."""
    from swarm import wait_until

    job = submit_a_torrent(manager, tmp_path)
    wait_until(lambda: job.run.torrent is not None, 10, "the torrent was not added")
    handle = job.run.torrent.handle
    wait_until(lambda: handle.status().need_save_resume, 10, "no resume data to save")
    status = handle.status()
    manager.session.session.remove_torrent(handle)
    wait_until(lambda: not handle.is_valid(), 10, "the torrent was not removed")
    manager.session.resume_interval = 0
    manager.session.save_if_due(status)  # raised RuntimeError before the fix
    assert manager.session.resume_asked_at(str(status.info_hashes.get_best())) is None  # due again


def test_a_removed_torrent_leaves_no_resume_timer_behind(manager, tmp_path):
    """The alert thread kept the time of every torrent's last resume save forever; a server that
    runs for months sees many torrents come and go."""
    from swarm import wait_until

    job = submit_a_torrent(manager, tmp_path)
    wait_until(lambda: job.run.torrent is not None, 10, "the torrent was not added")
    key = str(job.run.torrent.handle.info_hashes().get_best())
    wait_until(lambda: manager.session.resume_asked_at(key) is not None, 10, "no resume data was asked for")
    manager.remove(job.info_hash)
    wait_until(lambda: manager.session.resume_asked_at(key) is None, 10, "the removed torrent's timer stayed")


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


def test_files_are_listed_as_a_person_sorts_them():
    from torrent_files import natural_order

    paths = ["Show/Show E10.mkv", "Show/extras/b.mkv", "Show/show E2.mkv", "Show/Show E1.mkv"]
    assert sorted(paths, key=natural_order) == [
        "Show/extras/b.mkv", "Show/Show E1.mkv", "Show/show E2.mkv", "Show/Show E10.mkv"]
