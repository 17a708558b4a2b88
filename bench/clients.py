"""The BitTorrent clients bench.py races: the app, a bare tuned libtorrent, aria2c, transmission, qBittorrent.

Each downloads one magnet into a fresh directory on loopback (127.0.0.1, DHT, LSD, PEX, UPnP,
NAT-PMP and uTP off), has its files checked while it still runs, and answers an Outcome.
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

from app_server import AppServer, CpuMeter, log_tail
from swarm import free_port, wait_until

RAW_CLIENT = Path(__file__).with_name("raw_client.py")
POLL = 0.1            # seconds between looks for completion: the resolution of every figure
STALL_LIMIT = 120.0   # a client whose download stops growing this long has failed
DOWNLOAD_LIMIT = 600.0  # and no download may take longer than this at all
START_LIMIT = 30.0    # seconds for a client to be ready before the clock starts


class ClientFailed(Exception):
    """A client did not complete the download: it failed, stalled or ran out of time."""


@dataclass
class Outcome:
    """One download: seconds from submit to complete and to the first byte on disk, CPU seconds (in
    all, busiest thread), and how many seconds after it said complete its files were right (0: at once)."""

    seconds: float
    first_byte: float
    cpu: float
    busiest: float
    late: float


def wait_for(moment):
    """Sleep until time.monotonic() reaches moment (a pause the bench asks for, not a synchronisation)."""
    time.sleep(max(0.0, moment - time.monotonic()))


def start_clock(pid, not_before):
    """At not_before, start metering a client process's CPU; return (meter, the moment the clock started)."""
    wait_for(not_before)
    return CpuMeter(pid), time.monotonic()


def outcome(watched, meter, verify):
    """Stop the CPU meter, then check the files while the client still runs."""
    cpu, busiest = meter.stop()
    seconds, first_byte = watched
    return Outcome(seconds, first_byte, cpu, busiest, verify())


def watch(done, dest, started):
    """Poll done() until it is truthy; return (seconds since `started`, seconds until the first byte
    was on disk). ClientFailed on a stall or past DOWNLOAD_LIMIT."""
    last_size, last_change, next_look, first_byte = 0, started, started, None
    while not done():
        now = time.monotonic()
        if first_byte is None or now >= next_look:  # every poll until data comes, then once a second
            size = allocated_bytes(dest)
            if size != last_size:
                last_size, last_change = size, now
                first_byte = now - started if first_byte is None else first_byte
            elif now - last_change > STALL_LIMIT:
                raise ClientFailed(f"stalled: no new data for {STALL_LIMIT:.0f} s at {size} bytes")
            next_look = now + 1.0
        if now - started > DOWNLOAD_LIMIT:
            raise ClientFailed(f"not done after {DOWNLOAD_LIMIT:.0f} s")
        time.sleep(POLL)  # polling a client, not synchronising threads
    seconds = time.monotonic() - started
    return seconds, seconds if first_byte is None else first_byte


def allocated_bytes(path):
    """Bytes actually on disk under path (sparse files count only what was written)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # renamed or removed while we looked (.part files, control files)
    return total


def stop_process(process, timeout=10):
    """Terminate a subprocess we started; kill it if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def command_version(command):
    """The first line a command prints for --version, or None if it is not installed."""
    if shutil.which(command[0]) is None:
        return None
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else command[0]


class Client:
    """What bench.py races: a name, a short key, a version (None: not installed), and download()."""

    name = key = ""
    version = None
    skip = None  # why it is not raced here, if it is installed but cannot be

    def download(self, torrent, dest, workdir, verify, not_before):
        """Download torrent's magnet into dest, call verify() once complete; return an Outcome.

        The clock starts once the client is ready, but not before `not_before` (time.monotonic()).
        """
        raise NotImplementedError


class App(Client):
    """hashdrop itself: `python app.py`, the bare hash pasted into the form, polled through the API."""

    name = "hashdrop (app)"
    key = "app"

    def __init__(self, tracker_url):
        self.tracker_url = tracker_url
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RAW_CLIENT.parent, timeout=20).stdout.strip()
        self.version = f"hashdrop {commit or '?'}, libtorrent {lt.__version__}"

    def download(self, torrent, dest, workdir, verify, not_before):
        """Paste the hash into a fresh app, and wait until its job is completed."""
        server = AppServer(workdir, self.tracker_url, save_path=dest)
        try:
            server.start()
            server.fetch_token()  # the page is open before the person pastes
            meter, started = start_clock(server.pid, not_before)
            server.submit_form([torrent.info_hash])
            watched = watch(lambda: self._completed(server, torrent.info_hash), dest, started)
            return outcome(watched, meter, verify)
        finally:
            server.stop()

    @staticmethod
    def _completed(server, info_hash):
        """True once the job is completed; ClientFailed if it failed."""
        job = server.job(info_hash)
        if job["state"] == "failed":
            raise ClientFailed(f"the job failed: {job['error']}")
        return job["state"] == "completed"


class RawLibtorrent(Client):
    """bench/raw_client.py: a fresh libtorrent session with downloader.session_settings (+ overrides)."""

    key = "raw"

    def __init__(self, overrides=None):
        self.overrides = dict(overrides or {})
        extra = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        self.name = f"raw libtorrent + {extra}" if extra else "raw libtorrent, app settings"
        self.version = f"libtorrent {lt.__version__}"
        if extra:
            self.key = "raw+" + ",".join(f"{k}={v}" for k, v in self.overrides.items())

    def download(self, torrent, dest, workdir, verify, not_before):
        """Start the client, then hand it the magnet and wait for its finished line."""
        command = [sys.executable, str(RAW_CLIENT), "--save-path", str(dest)]
        for key, value in self.overrides.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        log_path = Path(workdir) / "raw_client.log"
        process = None
        try:
            with open(log_path, "ab") as log:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, text=True, bufsize=1)
            lines = read_lines(process)
            self._next(lines, process, log_path, START_LIMIT)  # {"ready": port}
            meter, started = start_clock(process.pid, not_before)
            process.stdin.write(torrent.magnet() + "\n")
            process.stdin.flush()
            watched = watch(lambda: self._finished(lines, process, log_path), dest, started)
            return outcome(watched, meter, verify)
        finally:
            stop_process(process)

    def _finished(self, lines, process, log_path):
        """True once the client printed its finished line."""
        try:
            self._next(lines, process, log_path, 0)
        except queue.Empty:
            return False
        return True

    @staticmethod
    def _next(lines, process, log_path, timeout):
        """The next JSON line from the client; ClientFailed for an error or an exit."""
        line = lines.get(timeout=timeout) if timeout else lines.get_nowait()
        if line is None:
            raise ClientFailed(f"raw client exited {process.poll()}: {log_tail(log_path)}")
        if "error" in line:
            raise ClientFailed(line["error"])
        return line


def read_lines(process):
    """A queue of the JSON lines a subprocess prints; None once its output ends."""
    lines = queue.Queue()

    def pump():
        for text in process.stdout:
            lines.put(json.loads(text))
        lines.put(None)

    threading.Thread(target=pump, name="raw-client-output", daemon=True).start()
    return lines


class Aria2(Client):
    """Debian's aria2c given the magnet; done when its --on-bt-download-complete hook runs."""

    name = "aria2c"
    key = "aria2c"

    def __init__(self):
        self.version = command_version(["aria2c", "--version"])

    def download(self, torrent, dest, workdir, verify, not_before):
        """Run aria2c on the magnet until its hook marks the download complete (before seeding)."""
        workdir = Path(workdir)
        marker, hook = workdir / "finished", workdir / "finished.sh"
        # The hook also runs for the metadata download, with 0 files: only the payload counts.
        write_script(hook, f'[ "$2" != 0 ] && touch \'{marker}\'')
        command = [
            "aria2c", "--no-conf=true", f"--dir={dest}", "--interface=127.0.0.1", "--disable-ipv6=true",
            f"--listen-port={free_port()}", "--enable-dht=false", "--enable-dht6=false",
            "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--seed-time=0",
            "--file-allocation=none", "--check-integrity=false", "--bt-save-metadata=false",
            "--console-log-level=warn", "--summary-interval=0", f"--on-bt-download-complete={hook}",
            torrent.magnet(),
        ]
        return run_until_marked(command, marker, dest, workdir / "aria2c.log", verify, not_before)


def write_script(path, line):
    """Write an executable /bin/sh script of one line."""
    path.write_text(f"#!/bin/sh\n{line}\n")
    path.chmod(0o755)


def run_until_marked(command, marker, dest, log_path, verify, not_before):
    """At not_before, start a client process (the clock starts with it) and wait until its completion
    hook creates marker; return an Outcome."""
    process = None
    try:
        wait_for(not_before)
        started = time.monotonic()
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        meter = CpuMeter(process.pid)
        watched = watch(lambda: marked(marker, process, log_path), dest, started)
        return outcome(watched, meter, verify)
    finally:
        stop_process(process)


def marked(marker, process, log_path):
    """True once marker exists; ClientFailed if the client exited before it appeared."""
    if marker.exists():
        return True
    if process.poll() is not None:
        raise ClientFailed(f"{Path(process.args[0]).name} exited {process.returncode}: {log_tail(log_path)}")
    return False


TRANSMISSION_SETTINGS = {
    "dht-enabled": False,
    "lpd-enabled": False,
    "pex-enabled": False,
    "utp-enabled": False,
    "port-forwarding-enabled": False,
    "bind-address-ipv4": "127.0.0.1",
    "bind-address-ipv6": "::1",
    "peer-port-random-on-start": False,
    "rpc-enabled": False,
    "blocklist-enabled": False,
    "incomplete-dir-enabled": False,
    "speed-limit-down-enabled": False,
    "speed-limit-up-enabled": False,
    "alt-speed-enabled": False,
    "message-level": 1,
}


class Transmission(Client):
    """Debian's transmission-cli with a settings.json for loopback; done when its -f script runs."""

    name = "transmission-cli"
    key = "transmission"

    def __init__(self):
        self.version = command_version(["transmission-cli", "--version"])
        # libtransmission/net.c: tr_address_is_valid_for_peers() drops every peer in 127.0.0.0/8
        # ("martian"), so on loopback it hears of the seeder from the tracker and never dials it.
        if self.version and self.version.startswith("transmission-cli 3."):
            self.skip = "drops peers in 127.0.0.0/8 (net.c isMartianAddr): cannot run on loopback"

    def download(self, torrent, dest, workdir, verify, not_before):
        """Run transmission-cli on the magnet until its finish script leaves a marker."""
        workdir = Path(workdir)
        config, marker, script = workdir / "transmission", workdir / "finished", workdir / "finished.sh"
        port = free_port()
        config.mkdir(parents=True, exist_ok=True)
        settings = {**TRANSMISSION_SETTINGS, "peer-port": port, "download-dir": str(dest)}
        (config / "settings.json").write_text(json.dumps(settings, indent=2))
        write_script(script, f"touch '{marker}'")
        command = ["transmission-cli", "-g", str(config), "-w", str(dest), "-p", str(port), "-M", "-D", "-U",
                   "-f", str(script), torrent.magnet()]
        return run_until_marked(command, marker, dest, workdir / "transmission.log", verify, not_before)


QBITTORRENT_CONFIG = """\
[LegalNotice]
Accepted=true

[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\BTProtocol=TCP
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\InterfaceAddress=127.0.0.1
Session\\Port={port}
Session\\DefaultSavePath={dest}
Session\\QueueingSystemEnabled=false
Session\\RefreshInterval=100

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\\ResolvePeerCountries=false
WebUI\\Address=127.0.0.1
WebUI\\Port={webui_port}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
WebUI\\UseUPnP=false

[AutoRun]
enabled=true
program=/usr/bin/touch {marker}
"""


class QBittorrent(Client):
    """Debian's qbittorrent-nox configured through its config file; the magnet added over its Web API.

    Its status refresh is set to 100 ms (default 1.5 s): qBittorrent announces a finished torrent
    only at its next refresh, and the bench looks every 100 ms at every client.
    """

    name = "qbittorrent-nox"
    key = "qbittorrent"

    def __init__(self):
        self.version = command_version(["qbittorrent-nox", "--version"])

    def download(self, torrent, dest, workdir, verify, not_before):
        """Start qbittorrent-nox, add the magnet through its Web API, and wait for its AutoRun marker."""
        workdir = Path(workdir)
        profile, marker = workdir / "qbittorrent", workdir / "finished"
        webui_port = free_port()
        conf = profile / "qBittorrent" / "config" / "qBittorrent.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(QBITTORRENT_CONFIG.format(port=free_port(), dest=dest, webui_port=webui_port, marker=marker))
        api = f"http://127.0.0.1:{webui_port}/api/v2"
        log_path = workdir / "qbittorrent.log"
        process = None
        try:
            with open(log_path, "ab") as log:
                process = subprocess.Popen(["qbittorrent-nox", f"--profile={profile}"], stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT)
            wait_until(lambda: self._answers(api, process, log_path), START_LIMIT, "qbittorrent-nox did not start",
                       interval=0.1)
            meter, started = start_clock(process.pid, not_before)
            form = urllib.parse.urlencode({"urls": torrent.magnet(), "savepath": str(dest)}).encode()
            with urllib.request.urlopen(f"{api}/torrents/add", data=form, timeout=30) as response:
                if response.read().strip() != b"Ok.":
                    raise ClientFailed("qbittorrent-nox did not take the magnet")
            watched = watch(lambda: marked(marker, process, log_path), dest, started)
            return outcome(watched, meter, verify)
        finally:
            stop_process(process)

    @staticmethod
    def _answers(api, process, log_path):
        """True once the Web API answers; ClientFailed if qbittorrent-nox exited."""
        if process.poll() is not None:
            raise ClientFailed(f"qbittorrent-nox exited {process.returncode}: {log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{api}/app/version", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
