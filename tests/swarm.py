"""The loopback swarm: payloads, .torrent files, an opentracker and a seeder subprocess for tests."""
import hashlib
import json
import os
import queue
import random
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

OPENTRACKER = "/usr/bin/opentracker"
SEEDER_SCRIPT = Path(__file__).with_name("seeder.py")
CLIENT_HOST = "127.0.0.1"  # tests' and the app's sessions, and the tracker
SEEDER_HOST = "127.0.0.2"  # never the clients' address: a peer handed itself bans the IP
SLOW_SEEDER_HOST = "127.0.0.3"
START_TIMEOUT = 20.0  # seconds for a tracker or seeder (and its torrents) to be ready
VERSIONS = ("v1", "v2", "hybrid")
ALERT_MASK = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.storage
    | lt.alert_category.tracker
)


def limit_file_size(limit):
    """From now on, a write past `limit` bytes into any file fails in this process with EFBIG, as
    one into a full disk fails with ENOSPC (Python ignores the SIGXFSZ that comes with it).
    Return the limits it had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    return soft, hard


@contextmanager
def file_size_limit(limit):
    """limit_file_size(limit) for the block, then the limit as it was."""
    before = limit_file_size(limit)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


def wait_until(predicate, timeout, message, interval=0.05):
    """Call predicate until it returns something truthy and return that; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout:g}s; last value: {value!r})")
        time.sleep(interval)


def job_of(app, info_hash):
    """The job as the API shows it."""
    return app.extensions["hashdrop"].job(info_hash)


def wait_for_state(app, info_hash, state, timeout=30):
    """Wait until the job is in state; return it as the API shows it."""
    wait_until(lambda: job_of(app, info_hash)["state"] == state, timeout,
               f"job {info_hash} never reached {state}: {job_of(app, info_hash)}")
    return job_of(app, info_hash)


def hermetic_settings(listen=f"{CLIENT_HOST}:0", **overrides):
    """Return libtorrent settings for a session on loopback only, tuned for loopback speed."""
    settings = {
        "listen_interfaces": listen,
        "outgoing_interfaces": listen.rpartition(":")[0].strip("[]"),
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": ALERT_MASK,
        # libtorrent's uTP is very slow over loopback; TCP is not.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "max_queued_disk_bytes": 1024 * 1024,
        "tick_interval": 100,
        # Every test client is 127.0.0.1; several may fetch from one seeder at once.
        "allow_multiple_connections_per_ip": True,
        "min_reconnect_time": 1,
        **overrides,
    }
    # default_settings() leaves out the string settings whose default is empty.
    unknown = sorted(set(settings) - set(lt.default_settings()) - {"outgoing_interfaces"})
    if unknown:
        raise KeyError(f"not libtorrent settings: {unknown}")
    return settings


# hashdrop's settings for a session that stays on loopback (conftest.py puts them in the
# environment of every test).
LOOPBACK_ENVIRONMENT = {
    "HASHDROP_LISTEN_INTERFACES": "127.0.0.1:0",
    "HASHDROP_OUTGOING_INTERFACES": "127.0.0.1",
    "HASHDROP_DHT": "false",
    "HASHDROP_LSD": "false",
    "HASHDROP_UPNP": "false",
    "HASHDROP_NATPMP": "false",
}


def loopback_app_env(port, save_path, data_dir, tracker_url, **settings):
    """The environment for `python app.py` on 127.0.0.1:port with discovery off, as tests and the bench run it."""
    return {
        **os.environ,
        "HASHDROP_HOST": "127.0.0.1",
        "HASHDROP_PORT": str(port),
        **LOOPBACK_ENVIRONMENT,
        "HASHDROP_SAVE_PATH": str(save_path),
        "HASHDROP_DATA_DIR": str(data_dir),
        "HASHDROP_TRACKERS": json.dumps([tracker_url]),
        **{f"HASHDROP_{key}": str(value) for key, value in settings.items()},
    }


def sha256_file(path):
    """Return the SHA-256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def free_port(kind=socket.SOCK_STREAM, host=CLIENT_HOST):
    """Return a port that is free on host right now (TCP by default, or UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class Payload:
    """Content on disk to seed: root/name, with {path relative to root: SHA-256} and sizes."""

    root: Path
    name: str
    files: dict
    sizes: dict

    @property
    def path(self):
        """The file or directory named in the torrent."""
        return self.root / self.name

    @property
    def total_size(self):
        """The payload's size in bytes, without padding."""
        return sum(self.sizes.values())


def make_payload(root, name, files, seed=0):
    """Write random content under root/name: one file of `files` bytes, or a dir of {relative path: size}."""
    root = Path(root)
    rng = random.Random(f"{name}:{seed}")  # reproducible, and different for each name
    sizes = {name: files} if isinstance(files, int) else {f"{name}/{rel}": size for rel, size in files.items()}
    hashes = {}
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        hashes[rel] = hashlib.sha256(data).hexdigest()
    return Payload(root, name, hashes, sizes)


def read_payload(path):
    """Describe existing content (a file or a directory) as a Payload."""
    path = Path(path)
    found = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    rels = {str(p.relative_to(path.parent)): p for p in found}
    return Payload(
        path.parent,
        path.name,
        {rel: sha256_file(p) for rel, p in rels.items()},
        {rel: p.stat().st_size for rel, p in rels.items()},
    )


def truncated_v2(v2_hash):
    """Return the 40-hex form under which trackers (and opentracker's whitelist) know a v2 hash."""
    return v2_hash[:40]


@dataclass
class Torrent:
    """A .torrent made for a payload, with its hashes and the content's SHA-256 per file."""

    data: bytes
    path: Path
    info_hash: str | None  # v1, 40 lowercase hex; None for a v2-only torrent
    v2_hash: str | None  # 64 lowercase hex; None for a v1-only torrent
    name: str
    version: str
    payload: Payload
    tracker_url: str | None = None

    @property
    def files(self):
        """{path relative to the save path: SHA-256} for every file."""
        return self.payload.files

    @property
    def key(self):
        """The app's info_hash for this torrent: v1, or the v2 hash where there is no v1."""
        return self.info_hash or self.v2_hash

    @property
    def save_path(self):
        """The directory a seeder (or client) uses as save path for this torrent."""
        return self.payload.root

    @property
    def total_size(self):
        """Payload bytes (without v2 padding)."""
        return self.payload.total_size

    def tracker_hashes(self):
        """Return the 40-hex hashes this torrent announces under (v1 and/or truncated v2)."""
        hashes = [self.info_hash] if self.info_hash else []
        if self.v2_hash:
            hashes.append(truncated_v2(self.v2_hash))
        return hashes

    def magnet(self, peer=None, tracker=True):
        """Build a magnet link, with the tracker unless tracker=False, and x.pe=peer ("ip:port") if given."""
        parts = []
        if self.info_hash:
            parts.append(f"xt=urn:btih:{self.info_hash}")
        if self.v2_hash:
            parts.append(f"xt=urn:btmh:1220{self.v2_hash}")
        parts.append(f"dn={urllib.parse.quote(self.name)}")
        if tracker and self.tracker_url:
            parts.append(f"tr={urllib.parse.quote(self.tracker_url, safe='')}")
        if peer:
            parts.append(f"x.pe={peer}")
        return "magnet:?" + "&".join(parts)


def make_torrent(content, tracker_url=None, version="v1", piece_size=None, torrent_path=None):
    """Create a .torrent (v1, v2 or hybrid) for a Payload or a file/directory path; write it; return a Torrent."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, not {version!r}")
    if not isinstance(content, Payload):
        content = read_payload(content)
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[version]
    creator = lt.create_torrent(lt.list_files(str(content.path)), piece_size or 0, flags)
    if tracker_url:
        creator.add_tracker(tracker_url)
    creator.set_creator("hashdrop tests")
    lt.set_piece_hashes(creator, str(content.root))
    data = lt.bencode(creator.generate())
    hashes = lt.torrent_info(data).info_hashes()
    path = Path(torrent_path or content.root / f"{content.name}.{version}.torrent")
    path.write_bytes(data)
    return Torrent(
        data=data,
        path=path,
        info_hash=str(hashes.v1) if hashes.has_v1() else None,
        v2_hash=str(hashes.v2) if hashes.has_v2() else None,
        name=content.name,
        version=version,
        payload=content,
        tracker_url=tracker_url,
    )


def start_download(session, magnet, save_path, **params):
    """Add a magnet to a libtorrent session, started at once, and return its handle."""
    atp = lt.parse_magnet_uri(magnet)
    atp.save_path = str(save_path)
    # Not auto-managed: the session would start it only on its next once-a-second queue check.
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    for name, value in params.items():
        setattr(atp, name, value)
    return session.add_torrent(atp)


def check_files(torrent, save_path):
    """Assert that every file of a torrent is under save_path with the SHA-256 it was made with."""
    save_path = Path(save_path)
    wrong = {}
    for rel, expected in torrent.files.items():
        path = save_path / rel
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            wrong[rel] = actual
    assert not wrong, f"{torrent.name} in {save_path}: wrong or missing files {wrong}"


def _log_tail(path, limit=2000):
    """Return the end of a log file, for error messages."""
    try:
        return Path(path).read_text(errors="replace")[-limit:]
    except OSError as error:
        return f"<no log: {error}>"


class Service:
    """Something started for tests that is stopped again: usable as a context manager."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info):
        self.stop()


class Tracker(Service):
    """Debian's opentracker on 127.0.0.1 with a whitelist that add() extends (reloaded on SIGHUP)."""

    def __init__(self, host=CLIENT_HOST):
        self.host = host
        self.port = None
        self.udp_port = None
        self.process = None
        self.dir = None
        self.whitelisted = set()

    @property
    def announce_url(self):
        """The HTTP announce URL."""
        return f"http://{self.host}:{self.port}/announce"

    @property
    def udp_announce_url(self):
        """The UDP announce URL."""
        return f"udp://{self.host}:{self.udp_port}/announce"

    @property
    def whitelist(self):
        """The whitelist file: one 40-hex hash a line."""
        return self.dir / "whitelist"

    @property
    def log(self):
        """opentracker's stdout and stderr."""
        return self.dir / "opentracker.log"

    def start(self):
        """Start opentracker on free ports and wait until it accepts connections."""
        # Not pytest's tmp_path: opentracker chroots here and drops to `nobody`, so every
        # directory on the way must be world-readable (/tmp/pytest-of-root is 0700).
        self.dir = Path(tempfile.mkdtemp(prefix="hashdrop-tracker-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.whitelist.touch()
        self.whitelist.chmod(0o644)
        self.port = free_port(socket.SOCK_STREAM, self.host)
        self.udp_port = free_port(socket.SOCK_DGRAM, self.host)
        command = [OPENTRACKER, "-i", self.host, "-p", str(self.port), "-P", str(self.udp_port)]
        # The whitelist is (re)read after the chroot, so its path is relative to -d.
        command += ["-d", str(self.dir), "-w", self.whitelist.name]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # opentracker will not keep running as root
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._accepting, START_TIMEOUT, f"opentracker did not start: {command}")
        return self

    def _accepting(self):
        """Return True once opentracker accepts TCP connections; fail at once if it exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"opentracker exited {self.process.returncode}: {_log_tail(self.log)}")
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def add(self, *items):
        """Whitelist torrents (or 40-hex / 64-hex hashes) and wait until opentracker has reloaded."""
        hashes = []
        for item in items:
            if isinstance(item, Torrent):
                hashes += item.tracker_hashes()
            else:
                hashes.append(truncated_v2(item.lower()))
        # opentracker answers 'stopped' announces without checking its whitelist, and any other
        # announce joins a swarm; a fresh hash of our own shows the reload and disturbs no swarm.
        probe = secrets.token_hex(20)
        with open(self.whitelist, "a") as f:
            f.writelines(f"{h}\n" for h in [*hashes, probe])
        self.whitelisted.update(hashes)
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self._reloaded(probe), 5, f"opentracker did not reload {self.whitelist}")
        self._announce(probe, event="stopped")

    def _reloaded(self, probe):
        """Return whether opentracker knows the probe hash yet; if not, signal it again.

        A reload can fail ("Can't open accesslist file"): opentracker closes a file descriptor
        twice, sometimes while its reload thread holds that number.
        """
        if self._announce(probe):
            return True
        self.process.send_signal(signal.SIGHUP)
        return False

    def _announce(self, hash40, **query):
        """Announce a peer 127.0.0.1:1 for a 40-hex hash; return whether opentracker accepted it."""
        query = {
            "info_hash": bytes.fromhex(hash40),
            "peer_id": b"-HDTEST-000000000000",
            "port": 1,
            "uploaded": 0,
            "downloaded": 0,
            "left": 0,
            "compact": 1,
            **query,
        }
        # %20, not "+", for a space byte: opentracker does not decode "+".
        url = f"{self.announce_url}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return b"failure reason" not in lt.bdecode(response.read())

    def stop(self):
        """Stop opentracker and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)



class SeederError(AssertionError):
    """The seeder subprocess reported an error or did not answer."""


class Seeder(Service):
    """tests/seeder.py in a subprocess on its own loopback address, driven over stdin/stdout."""

    def __init__(self, host=SEEDER_HOST, port=0, upload_limit=0, log_dir=None, utp=False):
        self.host = host
        self.port = port
        self.upload_limit = upload_limit  # bytes/s for the whole seeder, loopback peers included
        self.utp = utp  # also accept peers over uTP (the uTP test and the bench dial it)
        self.process = None
        self.torrents = {}
        self._reader = None
        self._replies = queue.Queue()
        self._lock = threading.Lock()  # one command and its answer at a time
        self.log_dir = log_dir  # where seeder-<host>.log goes; None: a temporary directory
        self.log = None
        self._own_log_dir = None

    @property
    def peer(self):
        """The seeder's "ip:port", as for a magnet link's x.pe."""
        return f"{self.host}:{self.port}"

    def start(self, torrents=()):
        """Start the subprocess with some torrents and wait until it seeds and has announced them all."""
        command = [sys.executable, str(SEEDER_SCRIPT), "--listen", f"{self.host}:{self.port}"]
        command += ["--upload-limit", str(self.upload_limit)] + (["--utp"] if self.utp else [])
        for torrent in torrents:
            command += [str(torrent.path), str(torrent.save_path)]
        if self.log_dir is None:
            self._own_log_dir = self.log_dir = Path(tempfile.mkdtemp(prefix="hashdrop-seeder-"))
        self.log = Path(self.log_dir) / f"seeder-{self.host}.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
            )
        self._reader = threading.Thread(target=self._read_replies, name=f"seeder-{self.host}", daemon=True)
        self._reader.start()
        ready = self._reply(START_TIMEOUT + 10 * len(torrents))
        self.port = ready["port"]
        self.torrents.update((torrent.key, torrent) for torrent in torrents)
        return self

    def _read_replies(self):
        """Move the subprocess's JSON lines to the reply queue; None marks its end."""
        for line in self.process.stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:
                self._replies.put({"error": f"not a JSON line: {line!r}"})
        self._replies.put(None)

    def _reply(self, timeout):
        """Return the next reply, raising SeederError for an error, an exit or a timeout."""
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise SeederError(f"seeder {self.host} did not answer in {timeout}s: {_log_tail(self.log)}") from None
        if reply is None:
            self._replies.put(None)  # every later call fails too
            raise SeederError(f"seeder {self.host} exited {self.process.poll()}: {_log_tail(self.log)}")
        if "error" in reply:
            raise SeederError(f"seeder {self.host}: {reply['error']}")
        return reply

    def _command(self, *words, timeout=START_TIMEOUT):
        """Send one command line and return its answer."""
        with self._lock:
            self.process.stdin.write(shlex.join(str(word) for word in words) + "\n")
            self.process.stdin.flush()
            return self._reply(timeout)

    def add(self, torrent, upload_limit=0):
        """Seed one more torrent (optionally limited to bytes/s) and wait until it seeds and has announced."""
        self._command("add", torrent.path, torrent.save_path, upload_limit)
        self.torrents[torrent.key] = torrent
        return torrent

    def remove(self, torrent):
        """Stop seeding a torrent (its files stay)."""
        self._command("remove", torrent.key)
        self.torrents.pop(torrent.key, None)

    def stats(self):
        """Return {torrent key: payload bytes uploaded since it was added}."""
        return self._command("stats")

    def uploaded(self, torrent):
        """Return the payload bytes uploaded for one torrent."""
        return self.stats()[torrent.key]

    def stop(self):
        """Ask the subprocess to quit, and wait for it (killing it if it hangs)."""
        if self.process is not None:
            self._end_process()
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)
            self._own_log_dir = self.log_dir = None

    def _end_process(self):
        """Send quit, wait (or kill), and close the pipes."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            except OSError:
                pass  # it is exiting already
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)  # it ends at the subprocess's end of output
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass  # a broken pipe to a dead process


ROOT = Path(__file__).resolve().parent.parent


class Server:
    """`python app.py` in a subprocess, on loopback, as a user runs it."""

    def __init__(self, tmp_path, tracker, **settings):
        self.port = free_port()
        self.env = loopback_app_env(self.port, tmp_path / "downloads", tmp_path / "data",
                                    tracker.announce_url, **settings)
        self.log = open(tmp_path / "server.log", "ab")
        self.process = None

    def start(self, preexec_fn=None):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        preexec_fn=preexec_fn)
        wait_until(self._answers, 20, "the server did not start")
        return self

    def _answers(self):
        assert self.process.poll() is None, "the server exited"
        try:
            self.get("/api/jobs")
            return True
        except OSError:
            return False

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def get(self, path):
        return self.request("GET", path)

    def job(self, info_hash):
        return self.get(f"/api/jobs/{info_hash}")

    def stop(self, sig=signal.SIGTERM):
        """Signal the server and wait for it; its exit code (None if it never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)
        return self.process.returncode
