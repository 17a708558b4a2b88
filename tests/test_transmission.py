"""The Transmission RPC, against `python app.py`, driven by the clients people point at it: the
transmission-rpc library, Debian's transmission-remote, and Sonarr's calls as it sends them."""
import base64
import functools
import http.server
import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from transmission_rpc import Client
from transmission_rpc.error import TransmissionAuthError, TransmissionError

from swarm import Server, check_files, wait_until

MiB = 1024 * 1024
SESSION_HEADER = "X-Transmission-Session-Id"
# What Sonarr and Radarr ask of every torrent (TransmissionProxy.GetTorrentArguments).
SONARR_FIELDS = ["id", "hashString", "name", "downloadDir", "totalSize", "leftUntilDone", "isFinished",
                 "eta", "status", "secondsDownloading", "secondsSeeding", "errorString", "uploadedEver",
                 "downloadedEver", "seedRatioLimit", "seedRatioMode", "seedIdleLimit", "seedIdleMode",
                 "fileCount", "file-count", "labels"]


def sonarr_version(version):
    """The version Sonarr reads (a .NET regex with a look-behind Python lacks): the first number
    not in brackets. It needs 2.40 or more, and 4.0 or more turns its labels on."""
    number = re.search(r"\d+(\.\d+)*", re.sub(r"\([^)]*\)", "", version)).group()
    return tuple(int(part) for part in number.split("."))


class RpcServer(Server):
    """`python app.py`, ready once its RPC path answers (a 401 or a 409 is an answer)."""

    def _answers(self):
        assert self.process.poll() is None, "the server exited"
        try:
            urllib.request.urlopen(self.url(), timeout=5).close()
        except urllib.error.HTTPError as exc:
            exc.close()
            return True
        except OSError:
            return False
        return True

    def url(self, path="/transmission/rpc"):
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def save_path(self):
        return Path(self.env["HASHDROP_SAVE_PATH"])


@pytest.fixture
def start_server(tmp_path, tracker):
    """start(**settings): a running hashdrop; each is stopped after the test."""
    servers = []

    def start(**settings):
        folder = tmp_path / f"server-{len(servers)}"
        folder.mkdir()
        server = RpcServer(folder, tracker, **settings)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop(signal.SIGKILL)
        server.log.close()


@pytest.fixture
def server(start_server):
    return start_server()


def client(server, **auth):
    return Client(host="127.0.0.1", port=server.port, timeout=15, **auth)


def post(url, body, session_id=None, auth=None, content_type="application/json"):
    """(status, headers, body) of one raw POST."""
    headers = {"Content-Type": content_type}
    if session_id:
        headers[SESSION_HEADER] = session_id
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


class Sonarr:
    """The calls Sonarr's TransmissionProxy makes: a GET for the session id, then POSTs."""

    def __init__(self, server):
        self.url = server.url()
        self.session_id = None

    def authenticate(self):
        try:
            urllib.request.urlopen(self.url, timeout=10).close()
        except urllib.error.HTTPError as exc:
            with exc:
                assert exc.code == 409, exc.read()
                self.session_id = exc.headers[SESSION_HEADER]
            return
        raise AssertionError("the session GET was not answered with 409")

    def call(self, method, **arguments):
        status, _, body = post(self.url, {"method": method, "arguments": arguments}, self.session_id)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["result"] == "success", answer
        return answer["arguments"]


def sonarr_state(torrent):
    """What Sonarr makes of a torrent (TransmissionBase.GetItems), in its order."""
    if torrent["errorString"]:
        return "warning"
    if torrent["totalSize"] == 0:
        return "queued"
    if torrent["leftUntilDone"] == 0 and torrent["status"] in (0, 5, 6):
        return "completed"
    if torrent["isFinished"] and torrent["status"] not in (1, 2):
        return "completed"
    return "queued" if torrent["status"] == 3 else "downloading"


def magnet(pair):
    """A magnet for a made-up info hash: pair repeated 20 times."""
    return f"magnet:?xt=urn:btih:{pair * 20}"


def remote(server, *arguments, auth=None):
    """transmission-remote HOST:PORT [-n auth] arguments...: (exit code, output)."""
    command = ["transmission-remote", f"127.0.0.1:{server.port}"]
    if auth:
        command += ["-n", auth]
    done = subprocess.run(command + list(arguments), capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def listed_rows(server):
    """The torrent rows of transmission-remote -l (its header and Sum line left out)."""
    code, output = remote(server, "-l")
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines[0].split()[:2] == ["ID", "Done"] and lines[-1].startswith("Sum:"), output
    return lines[1:-1]


def test_the_session_handshake_answers_409_until_the_id_comes_back(server):
    url = server.url()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)  # Sonarr's first call: a GET without a body
    refused.value.close()
    assert refused.value.code == 409
    session_id = refused.value.headers[SESSION_HEADER]
    assert session_id and refused.value.headers["Access-Control-Expose-Headers"] == SESSION_HEADER
    status, headers, _ = post(server.url("/transmission/rpc/"), {"method": "session-get"})
    assert status == 409 and headers[SESSION_HEADER] == session_id  # stable, on either path
    # transmission-remote sends its JSON as a form, and reads the tag back, 0 included.
    for path in ("/transmission/rpc", "/transmission/rpc/"):
        status, _, body = post(server.url(path), b'{"method":"session-get","tag":0}', session_id,
                               content_type="application/x-www-form-urlencoded")
        answer = json.loads(body)
        assert status == 200 and answer["result"] == "success" and answer["tag"] == 0
        assert answer["arguments"]["rpc-version"] == 17
        assert answer["arguments"]["download-dir"] == str(server.save_path)
    assert sonarr_version(answer["arguments"]["version"]) >= (4, 0)
    for body, said in ((b'{"method":"no-such-thing","tag":7}', "method name not recognized"),
                       (b"not json", "not JSON"), (b'{"method":"torrent-get","arguments":[]}', "object")):
        status, _, text = post(url, body, session_id)
        answer = json.loads(text)
        assert status == 200 and said in answer["result"] and answer["arguments"] == {}


def test_with_a_password_it_takes_http_basic_and_answers_401_without(start_server):
    server = start_server(PASSWORD="secret", USERNAME="admin")
    status, headers, body = post(server.url(), {"method": "session-get"})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert b"Log in first" in body
    status, headers, _ = post(server.url(), {"method": "session-get"}, auth="admin:secret")
    assert status == 409 and headers[SESSION_HEADER]  # no login redirect, no form CSRF
    with pytest.raises(TransmissionAuthError):
        client(server, username="admin", password="wrong")
    session = client(server, username="admin", password="secret").get_session()
    assert session.rpc_version == 17 and session.download_dir == str(server.save_path)
    code, output = remote(server, "-si", auth="admin:secret")
    assert code == 0 and "RPC version: 17" in output and "Daemon version: 4.0.6" in output, output
    code, output = remote(server, "-st", auth="admin:secret")
    assert code == 0 and "TOTAL" in output, output
    # Wrong Basic credentials count towards the login lockout, as wrong logins on the page do.
    answers = [post(server.url(), {"method": "session-get"}, auth="admin:guess")[0] for _ in range(5)]
    assert answers[-1] == 429 and set(answers[:-1]) <= {401, 429}, answers
    assert post(server.url(), {"method": "session-get"}, auth="admin:secret")[0] == 429


def test_a_body_too_large_is_refused_with_a_result_not_a_page(start_server):
    server = start_server(MAX_UPLOAD_BYTES="200000")
    rpc = client(server)
    with pytest.raises(TransmissionError, match=r"too large: hashdrop takes at most 200,000 bytes"):
        rpc.add_torrent(b"d4:info" + b"x" * 300_000)
    assert rpc.get_session().rpc_version == 17 and server.get("/api/jobs") == []


@pytest.mark.swarm
def test_a_magnet_and_a_torrent_file_download_and_a_repeat_is_a_duplicate(server, seed_new):
    by_magnet, by_file = seed_new(2 * MiB), seed_new({"a.bin": MiB, "b/c.bin": MiB + 7})
    rpc = client(server)
    first = rpc.add_torrent(by_magnet.magnet())
    second = rpc.add_torrent(by_file.data, labels=["movies"])
    assert (first.hash_string, second.hash_string) == (by_magnet.info_hash, by_file.info_hash)
    assert first.id != second.id and {first.id, second.id} == {1, 2}
    again = rpc.add_torrent(by_magnet.magnet())  # torrent-duplicate, still success
    assert again.id == first.id and again.hash_string == first.hash_string

    def done():
        torrents = rpc.get_torrents(arguments=["leftUntilDone", "sizeWhenDone", "status"])
        # Seeding, not only nothing left: the files get their names once on disk ("completed").
        return all(t.fields["sizeWhenDone"] > 0 and t.fields["leftUntilDone"] == 0 and t.status == "seeding"
                   for t in torrents)

    wait_until(done, 60, "the downloads did not finish")
    check_files(by_magnet, server.save_path)
    check_files(by_file, server.save_path)
    listed = rpc.get_torrent(second.id)
    assert listed.labels == ["movies"] and listed.download_dir == str(server.save_path)
    assert sorted(f.name for f in listed.get_files()) == ["new-1/a.bin", "new-1/b/c.bin"]
    api = server.job(by_file.info_hash)
    assert (api["number"], api["labels"], api["source"]) == (second.id, ["movies"], "rpc")


@pytest.mark.swarm
def test_transmission_remote_lists_stops_starts_and_removes(server, seed_new):
    kept, deleted = seed_new(MiB), seed_new(MiB)
    nobody_has = seed_new(MiB, seeded=False)
    for added in (kept.magnet(), deleted.magnet(), nobody_has.info_hash):  # a bare hash too
        code, output = remote(server, "-a", added)
        assert code == 0 and "success" in output, output
    assert len(listed_rows(server)) == 3  # one row per job: every integer field is an int

    wait_until(lambda: server.job(kept.info_hash)["state"] == "completed"
               and server.job(deleted.info_hash)["state"] == "completed", 60, "no download finished")
    waiting = server.job(nobody_has.info_hash)["number"]
    code, output = remote(server, "-t", str(waiting), "-S")
    assert code == 0, output
    assert server.job(nobody_has.info_hash)["state"] == "paused"
    assert "Stopped" in next(row for row in listed_rows(server) if row.split()[0] == str(waiting))
    code, output = remote(server, "-t", nobody_has.info_hash, "-s")
    assert code == 0 and server.job(nobody_has.info_hash)["state"] == "fetching_metadata", output

    check_files(kept, server.save_path)
    check_files(deleted, server.save_path)
    assert remote(server, "-t", str(server.job(kept.info_hash)["number"]), "-r")[0] == 0
    assert remote(server, "-t", deleted.info_hash, "--remove-and-delete")[0] == 0
    wait_until(lambda: not (server.save_path / deleted.name).exists(), 20, "the data was not deleted")
    check_files(kept, server.save_path)  # removed without its data
    assert [job["info_hash"] for job in server.get("/api/jobs")] == [nobody_has.info_hash]
    assert len(listed_rows(server)) == 1
    assert remote(server, "-t", "99", "-r")[0] == 0  # an unknown id: nothing to do, no error


def test_a_download_dir_outside_the_save_path_is_refused_and_nothing_is_written(server, tmp_path):
    rpc = client(server)
    outside = tmp_path / "elsewhere"
    for folder in (str(outside), "../elsewhere", "/"):
        with pytest.raises(TransmissionError, match="outside hashdrop's save path|folder name inside"):
            rpc.add_torrent(magnet("ab"), download_dir=folder)
    assert not outside.exists() and server.get("/api/jobs") == []
    with pytest.raises(TransmissionError, match="127.0.0.1, which hashdrop does not fetch from"):
        rpc.add_torrent(server.url("/the-rpc-itself.torrent"))  # by default: public addresses only
    inside = rpc.add_torrent(magnet("cd"), download_dir=str(server.save_path / "tv"), paused=True)
    listed = rpc.get_torrent(inside.id)
    assert listed.download_dir == str(server.save_path / "tv") and listed.status == "stopped"
    assert server.job("cd" * 20)["category"] == "tv"
    free = rpc.free_space(str(server.save_path))
    assert free > 0 and rpc.free_space(str(server.save_path / "tv" / "not-made-yet")) > 0
    for path in ("/", str(tmp_path), "../elsewhere"):
        with pytest.raises(TransmissionError, match="free-space answers for hashdrop's save path"):
            rpc.free_space(path)


def test_numbers_are_never_reused_and_outlive_a_restart(server):
    rpc = client(server)
    first = rpc.add_torrent(magnet("11"))
    second = rpc.add_torrent(magnet("22"))
    rpc.remove_torrent(second.id)
    assert rpc.add_torrent(magnet("33")).id == 3
    assert rpc.get_recently_active_torrents()[1] == [second.id]
    server.stop()
    server.start()
    rpc = client(server)
    assert {t.hash_string: t.id for t in rpc.get_torrents()} == {"11" * 20: first.id, "33" * 20: 3}
    rpc.remove_torrent(3)
    server.stop()
    server.start()
    assert client(server).add_torrent(magnet("44")).id == 4


@pytest.mark.swarm
def test_sonarrs_grab_poll_import_and_removal(server, seed_new):
    episode = seed_new({"Show.S01E01.mkv": 2 * MiB, "Show.S01E01.nfo": 300})
    sonarr = Sonarr(server)
    sonarr.authenticate()
    session = sonarr.call("session-get")
    assert sonarr_version(session["version"]) >= (4, 0)  # labels on
    assert sonarr.call("torrent-get", fields=SONARR_FIELDS) == {"torrents": []}  # the Test button
    folder = f"{session['download-dir']}/tv-sonarr"
    added = sonarr.call("torrent-add", metainfo=base64.b64encode(episode.data).decode(), paused=True,
                        labels=["tv-sonarr"], **{"download-dir": folder})["torrent-added"]
    assert added["hashString"] == episode.info_hash
    sonarr.call("torrent-set", ids=[episode.info_hash], seedRatioLimit=1.0, seedRatioMode=1,
                seedIdleLimit=60, seedIdleMode=1)
    sonarr.call("queue-move-top", ids=[episode.info_hash])
    torrent = sonarr.call("torrent-get", fields=SONARR_FIELDS)["torrents"][0]
    assert set(torrent) == set(SONARR_FIELDS) and None not in torrent.values()
    assert torrent["status"] == 0 and torrent["labels"] == ["tv-sonarr"] and torrent["downloadDir"] == folder
    sonarr.call("torrent-start", ids=[added["id"]])

    def completed():
        torrents = sonarr.call("torrent-get", fields=SONARR_FIELDS)["torrents"]
        return sonarr_state(torrents[0]) == "completed" and torrents[0]

    torrent = wait_until(completed, 60, "Sonarr never saw the download complete")
    assert torrent["totalSize"] == episode.total_size and torrent["fileCount"] == 2
    check_files(episode, folder)
    sonarr.call("torrent-set", ids=[episode.info_hash], labels=["tv-imported"])  # after import
    assert sonarr.call("torrent-get", ids=[added["id"]], fields=["labels"])["torrents"] == [{"labels": ["tv-imported"]}]
    sonarr.call("torrent-remove", ids=[episode.info_hash], **{"delete-local-data": True})
    wait_until(lambda: not (Path(folder) / episode.name).exists(), 20, "the episode was not deleted")
    assert sonarr.call("torrent-get", fields=["id"]) == {"torrents": []}


@pytest.mark.swarm
def test_seeding_limits_stop_seeding_the_way_each_mode_says_and_outlive_a_restart(server, seed_new):
    by_session, unlimited, idle, keeps = (seed_new(MiB) for _ in range(4))
    rpc = client(server)
    rpc.set_session(seed_ratio_limited=True, seed_ratio_limit=0.0)  # every torrent in mode 0: stop at once
    ids = {t.info_hash: rpc.add_torrent(t.magnet(), paused=True).id for t in (by_session, unlimited, idle, keeps)}
    rpc.change_torrent(ids[unlimited.info_hash], seed_ratio_mode=2)
    rpc.change_torrent(ids[idle.info_hash], seed_ratio_mode=2, seed_idle_mode=1, seed_idle_limit=0)
    rpc.change_torrent(ids[keeps.info_hash], seed_ratio_mode=1, seed_ratio_limit=5.0,
                       seed_idle_mode=1, seed_idle_limit=60)
    rpc.start_torrent(list(ids.values()))
    wait_until(lambda: all(server.job(h)["state"] == "completed" for h in ids), 60, "the downloads did not finish")

    def statuses():
        return {t.hash_string: (t.status, t.fields["isFinished"]) for t in rpc.get_torrents(
            arguments=["hashString", "status", "isFinished"])}

    stopped, seeding = ("stopped", True), ("seeding", False)
    expected = {by_session.info_hash: stopped, unlimited.info_hash: seeding, idle.info_hash: stopped,
                keeps.info_hash: seeding}
    wait_until(lambda: statuses() == expected, 30, "the seeding limits were not applied as their modes say")
    for torrent in (by_session, unlimited, idle, keeps):
        check_files(torrent, server.save_path)
    assert rpc.get_session().seed_ratio_limited and rpc.get_session().seed_ratio_limit == 0
    kept = rpc.get_torrent(ids[keeps.info_hash])
    assert (kept.seed_ratio_limit, kept.seed_ratio_mode.value, kept.seed_idle_limit, kept.seed_idle_mode.value) == \
        (5.0, 1, 60, 1)

    server.stop()
    server.start()  # the session's limit is back to HASHDROP_SEED_RATIO (unset): no limit
    rpc = client(server)
    wait_until(lambda: statuses() == expected, 30, "a stop by a seeding limit did not outlive a restart")
    assert rpc.get_torrent(ids[keeps.info_hash]).seed_ratio_limit == 5.0
    rpc.start_torrent(ids[by_session.info_hash])  # started again, and no limit now: it seeds
    wait_until(lambda: statuses()[by_session.info_hash] == seeding, 20, "a started torrent did not seed")
    with pytest.raises(TransmissionError, match="seedRatioMode|ratio_mode"):
        rpc.change_torrent(ids[keeps.info_hash], seed_ratio_mode=7)


@pytest.mark.swarm
def test_verify_finds_a_damaged_file_and_downloads_the_damage_again(server, seed_new):
    film = seed_new({"film.mkv": 4 * MiB, "film.nfo": 500})
    rpc = client(server)
    added = rpc.add_torrent(film.magnet())
    wait_until(lambda: server.job(film.info_hash)["state"] == "completed", 60, "the download did not finish")
    damaged = server.save_path / film.name / "film.mkv"
    with open(damaged, "r+b") as f:
        f.seek(MiB + 5)
        f.write(b"\x00" * 4096)
    code, output = remote(server, "-t", str(added.id), "-v")
    assert code == 0 and "success" in output, output
    # libtorrent reads the damaged piece again and fetches it from the seed.
    wait_until(lambda: server.job(film.info_hash)["state"] == "completed"
               and not server.job(film.info_hash)["checking"] and file_matches(film, server.save_path),
               60, "the damaged piece was not downloaded again")
    check_files(film, server.save_path)
    wait_until(lambda: not server.job(film.info_hash)["verify_pending"], 10, "the check ended, still shown pending")
    rpc.stop_torrent(added.id)
    rpc.verify_torrent(added.id)  # a stopped torrent's check waits until it is started
    wait_until(lambda: rpc.get_torrent(added.id).status == "check pending", 30, "no check was pending")
    rpc.start_torrent(added.id)
    wait_until(lambda: rpc.get_torrent(added.id).status == "seeding", 30, "a verified torrent did not seed")
    check_files(film, server.save_path)  # a whole file checks whole
    rpc.verify_torrent(rpc.add_torrent(magnet("ef"), paused=True).id)  # no file list yet: nothing to check


def file_matches(torrent, save_path):
    try:
        check_files(torrent, save_path)
    except AssertionError:
        return False
    return True


@pytest.mark.swarm
def test_a_torrent_url_from_an_allowed_address_is_fetched_and_downloads(start_server, seed_new, tmp_path):
    film = seed_new({"film.mkv": 2 * MiB})
    (tmp_path / "indexer").mkdir()
    (tmp_path / "indexer" / "film.torrent").write_bytes(film.data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path / "indexer")
    indexer = http.server.ThreadingHTTPServer(("127.0.0.3", 0), handler)
    threading.Thread(target=indexer.serve_forever, daemon=True).start()
    try:
        at = f"http://127.0.0.3:{indexer.server_address[1]}"
        server = start_server(URL_ALLOW="127.0.0.3/32")
        rpc = client(server)
        added = rpc.add_torrent(f"{at}/film.torrent", labels=["films"])
        assert added.hash_string == film.info_hash
        wait_until(lambda: server.job(film.info_hash)["state"] == "completed", 60, "the download did not finish")
        check_files(film, server.save_path)
        for url, said in ((f"{at}/missing.torrent", "answered 404"),
                          (f"http://127.0.0.1:{server.port}/", "127.0.0.1, which hashdrop does not fetch from")):
            with pytest.raises(TransmissionError, match=said):
                rpc.add_torrent(url)
        assert [job["info_hash"] for job in server.get("/api/jobs")] == [film.info_hash]
    finally:
        indexer.shutdown()
        indexer.server_close()


@pytest.mark.swarm
def test_queue_moves_decide_who_gets_the_next_slot_and_outlive_a_restart(start_server, seed_new):
    server = start_server(MAX_ACTIVE="1")
    stuck = seed_new(MiB, seeded=False)
    first, second, moved = (seed_new(MiB, upload_limit=MiB) for _ in range(3))  # about 1 s each
    rpc = client(server)
    ids = {}
    for torrent in (stuck, first, second, moved):  # .torrent files: each knows its files, so it queues
        ids[torrent.info_hash] = rpc.add_torrent(torrent.data).id
        if torrent is stuck:
            wait_until(lambda: server.job(stuck.info_hash)["state"] == "downloading", 20, "no slot taken")
    wait_until(lambda: [server.job(t.info_hash)["state"] for t in (first, second, moved)] == ["queued"] * 3,
               20, "the others did not queue")

    def positions():
        torrents = rpc.get_torrents(arguments=["hashString", "queuePosition"])
        return [t.hash_string for t in sorted(torrents, key=lambda t: t.fields["queuePosition"])]

    assert positions() == [stuck.info_hash, first.info_hash, second.info_hash, moved.info_hash]
    rpc.queue_top(ids[moved.info_hash])
    rpc.change_torrent(ids[first.info_hash], queue_position=3)  # to the end
    assert positions() == [moved.info_hash, stuck.info_hash, second.info_hash, first.info_hash]
    rpc.queue_down(ids[second.info_hash])
    expected = [moved.info_hash, stuck.info_hash, first.info_hash, second.info_hash]
    assert positions() == expected
    rpc.stop_torrent(ids[stuck.info_hash])  # its slot goes to each queued job in turn, by the queue
    finished = []

    def all_finished():
        finished.extend(t.info_hash for t in (first, second, moved)
                        if t.info_hash not in finished and server.job(t.info_hash)["state"] == "completed")
        return len(finished) == 3

    wait_until(all_finished, 60, "the queued jobs did not finish")
    assert finished == [moved.info_hash, first.info_hash, second.info_hash]
    for torrent in (first, second, moved):
        check_files(torrent, server.save_path)
    server.stop()
    server.start()
    rpc = client(server)
    assert positions() == expected  # kept in the job database


@pytest.mark.swarm
def test_trackers_peers_and_the_magnet_link_are_shown_as_transmission_remote_prints_them(server, seed_new, tracker):
    slow = seed_new(8 * MiB, upload_limit=512 * 1024)  # about 16 s: time to see the seed as a peer
    rpc = client(server)
    added = rpc.add_torrent(slow.data)

    def seeding_peer():
        torrent = rpc.get_torrent(added.id, arguments=["peers"])
        return [peer for peer in torrent.fields["peers"] if peer["rateToClient"] > 0]

    peer = wait_until(seeding_peer, 30, "the seed never showed as a peer sending to us")[0]
    assert peer["address"] == "127.0.0.2" and "D" in peer["flagStr"] and 0 < peer["progress"] <= 1
    code, output = remote(server, "-t", str(added.id), "-pi")
    assert code == 0 and "127.0.0.2" in output, output
    torrent = rpc.get_torrent(added.id, arguments=["trackers", "trackerStats", "trackerList", "magnetLink"])
    assert [t["announce"] for t in torrent.fields["trackers"]] == [tracker.announce_url]
    assert torrent.fields["trackerList"] == tracker.announce_url
    stats = torrent.fields["trackerStats"][0]
    assert stats["announce"] == tracker.announce_url and stats["host"].startswith("127.0.0.1:")
    assert all(isinstance(stats[key], int) for key in ("seederCount", "leecherCount", "tier", "nextAnnounceTime"))
    assert torrent.fields["magnetLink"].startswith(f"magnet:?xt=urn:btih:{slow.info_hash}")
    code, output = remote(server, "-t", str(added.id), "-it")
    assert code == 0 and "Tracker 0: 127.0.0.1:" in output, output
    code, output = remote(server, "-t", str(added.id), "-i")
    assert code == 0 and f"Magnet: magnet:?xt=urn:btih:{slow.info_hash}" in output, output


@pytest.mark.swarm
def test_set_location_moves_the_files_within_the_save_path_and_nothing_else(server, seed_new, tmp_path):
    film, show = seed_new({"film.mkv": 2 * MiB, "film.nfo": 100}), seed_new(MiB)
    rpc = client(server)
    ids = [rpc.add_torrent(torrent.data).id for torrent in (film, show)]
    wait_until(lambda: all(server.job(t.info_hash)["state"] == "completed" for t in (film, show)), 60,
               "the downloads did not finish")
    code, output = remote(server, "-t", str(ids[0]), "--move", str(server.save_path / "films"))
    assert code == 0 and "success" in output, output
    wait_until(lambda: server.job(film.info_hash)["save_path"] == str(server.save_path / "films"), 20,
               "the files did not move")
    check_files(film, server.save_path / "films")
    assert not (server.save_path / film.name).exists()
    moved = rpc.get_torrent(ids[0])
    assert moved.download_dir == str(server.save_path / "films") and moved.status == "seeding"
    assert server.job(film.info_hash)["category"] == "films"
    rpc.change_torrent(ids[1], location="tv")  # torrent-set's location: a folder in the save path
    wait_until(lambda: (server.save_path / "tv" / show.name).exists(), 20, "torrent-set location did not move")
    check_files(show, server.save_path / "tv")
    for arguments, said in (({"location": str(tmp_path), "move": True}, "outside hashdrop's save path"),
                            ({"location": "films", "move": False}, "moves a torrent's files itself")):
        with pytest.raises(TransmissionError, match=said):
            rpc.move_torrent_data(ids[1], arguments["location"], move=arguments["move"])
    check_files(show, server.save_path / "tv")


@pytest.mark.swarm
def test_files_chosen_at_add_rate_limits_and_start_added_torrents(server, seed_new):
    album = seed_new({"01.flac": MiB, "02.flac": MiB, "03.flac": MiB})
    slow = seed_new(2 * MiB)
    rpc = client(server)
    chosen = rpc.add_torrent(album.data, files_unwanted=[1])  # every file but 02.flac, as in Transmission
    wait_until(lambda: server.job(album.info_hash)["state"] == "completed", 60, "the chosen files did not come")
    for name in ("01.flac", "03.flac"):
        assert (server.save_path / album.name / name).is_file()
    assert not list((server.save_path / album.name).glob("02.flac*"))
    assert rpc.get_torrent(chosen.id).status == "seeding"
    assert [f.selected for f in rpc.get_torrent(chosen.id).get_files()] == [True, False, True]

    rpc.set_session(start_added_torrents=False)
    assert rpc.get_session().start_added_torrents is False
    limited = rpc.add_torrent(slow.data)
    assert rpc.get_torrent(limited.id).status == "stopped"  # not started: start-added-torrents is off
    code, output = remote(server, "-t", str(limited.id), "-d", "512")  # kB/s
    assert code == 0 and "success" in output, output
    torrent = rpc.get_torrent(limited.id)
    assert (torrent.download_limited, torrent.download_limit) == (True, 512)
    rpc.start_torrent(limited.id)
    rates = []

    def done():
        job = server.job(slow.info_hash)
        rates.append(job["download_rate"])
        return job["state"] == "completed"

    wait_until(done, 60, "the limited download did not finish")
    moving = sorted(rate for rate in rates if rate > 0)
    assert moving and moving[len(moving) // 2] <= 512 * 1000 * 1.5, rates  # held to the limit, bursts aside
    check_files(slow, server.save_path)
    server.stop()
    server.start()  # the limit is in the resume data, back once the torrent is (in the background)
    wait_until(lambda: (client(server).get_torrent(limited.id).download_limited,
                        client(server).get_torrent(limited.id).download_limit) == (True, 512),
               20, "the torrent's own limit did not outlive a restart")
    client(server).change_torrent(limited.id, download_limited=False)
    assert client(server).get_torrent(limited.id).download_limited is False
