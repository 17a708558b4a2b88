"""A bare libtorrent client with the app's own session settings, for bench.py to race the app.

Usage: raw_client.py --save-path DIR [--set KEY=JSON]...

Creates one session on 127.0.0.1 (DHT, LSD, UPnP, NAT-PMP off) with downloader.session_settings,
prints {"ready": port}, then for each line on stdin that is a magnet link adds it, and prints
{"finished": seconds} or {"error": "..."}. Quits at end of input. Finished means what the app's
completed means: torrent_finished_alert, then the cache_flushed_alert of a flush_cache(), which
comes once libtorrent has written out every block it held.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import libtorrent as lt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import downloader  # noqa: E402  (the app's module: its settings are what is measured)

LOOPBACK_CONFIG = {
    "LISTEN_INTERFACES": "127.0.0.1:0",
    "OUTGOING_INTERFACES": "127.0.0.1",
    "DHT": False,
    "LSD": False,
    "UPNP": False,
    "NATPMP": False,
    "DOWNLOAD_LIMIT": 0,
    "UPLOAD_LIMIT": 0,
    "RECV_BUFFER": 0,
}
ALERT_WAIT_MS = 50


def say(message):
    """Write one JSON line to stdout."""
    print(json.dumps(message), flush=True)


def parse_override(text):
    """KEY=JSON -> (key, value); a value that is not JSON stays a string."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def make_session(overrides):
    """The app's session settings on loopback, with overrides; the app's peer class filter.

    One override is not a setting: disk_io_constructor (e.g. "mmap_disk_io_constructor") picks
    libtorrent's disk back end, as session_params does.
    """
    settings = {**downloader.session_settings(LOOPBACK_CONFIG), **overrides}
    disk_io = settings.pop("disk_io_constructor", None)
    # default_settings() leaves out the string settings whose default is empty.
    unknown = sorted(set(settings) - set(lt.default_settings()) - {"outgoing_interfaces"})
    if unknown:
        raise SystemExit(f"not libtorrent settings: {unknown}")
    params = lt.session_params(settings)
    if disk_io:
        params.disk_io_constructor = disk_io
    session = lt.session(params)
    session.set_peer_class_filter(downloader.everyone_is_global())
    return session


def wait_listening(session, timeout=20):
    """Return the TCP listen port once the session listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.wait_for_alert(ALERT_WAIT_MS)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.listen_failed_alert):
                raise SystemExit(f"listen failed: {alert.message()}")
            if isinstance(alert, lt.listen_succeeded_alert) and alert.socket_type == lt.socket_type_t.tcp:
                return alert.port
    raise SystemExit("the session did not listen")


def download(session, magnet, save_path):
    """Add a magnet as the app does (not auto-managed, sparse); wait until it is finished and written."""
    params = lt.parse_magnet_uri(magnet)
    params.save_path = str(save_path)
    params.storage_mode = lt.storage_mode_t.storage_mode_sparse
    params.flags = (params.flags | downloader.ADD_FLAGS) & ~(
        lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    started = time.monotonic()
    handle = session.add_torrent(params)
    flushing = False
    while True:
        session.wait_for_alert(ALERT_WAIT_MS)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.torrent_finished_alert) and alert.handle == handle:
                flushing = True
                handle.flush_cache()
            elif flushing and isinstance(alert, lt.cache_flushed_alert) and alert.handle == handle:
                return {"finished": time.monotonic() - started}
            elif isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                return {"error": alert.message()}


def main(argv=None):
    """Download each magnet read from stdin, one after the other, and report the times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save-path", required=True)
    parser.add_argument("--set", action="append", default=[], type=parse_override,
                        help="KEY=JSON: a libtorrent setting on top of the app's")
    args = parser.parse_args(argv)
    session = make_session(dict(args.set))
    say({"ready": wait_listening(session)})
    for line in sys.stdin:
        if line.strip():
            say(download(session, line.strip(), args.save_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
