"""Seed torrents on a loopback address for the tests' swarm; driven by swarm.Seeder over stdin/stdout.

Usage: seeder.py --listen 127.0.0.2:0 [--upload-limit BYTES_PER_S] [TORRENT SAVE_PATH]...

Every line written to stdout is one JSON object. The first is {"ready": true, "port": P, "torrents":
[...]} once every torrent given is checked, seeding and announced; then one answer per command:
    add TORRENT SAVE_PATH [UPLOAD_LIMIT]  -> {"added": key} once it seeds and has announced
    remove KEY                            -> {"removed": key}
    stats                                 -> {key: payload bytes uploaded, ...}
    quit                                  -> (exits)
A failure answers {"error": "..."}. A torrent's key is its v1 hash, or its v2 hash where it has no v1.
"""
import argparse
import json
import queue
import shlex
import sys
import threading

import libtorrent as lt

from swarm import hermetic_settings

POLL_MS = 25  # the longest a command waits for the alert loop to look at it


def seeder_settings(listen, upload_limit, utp=False):
    """Return settings for a seeding session: hermetic, every peer unchoked, optionally limited.

    With utp, peers may also connect over uTP (the seeder itself dials nobody over it).
    """
    return hermetic_settings(
        listen=listen,
        enable_incoming_utp=utp,
        seed_choking_algorithm=int(lt.seed_choking_algorithm_t.fastest_upload),
        unchoke_slots_limit=-1,
        upload_rate_limit=upload_limit,
        stop_tracker_timeout=1,
        user_agent=f"hashdrop-test-seeder libtorrent/{lt.__version__}",
    )


def everyone_is_global():
    """Return a peer class filter that puts every address in the global (rate-limited) class."""
    # By default loopback and LAN peers are only in the 'local' class, which has no limit.
    classes = lt.ip_filter()
    global_class = 1 << lt.session.global_peer_class_id
    classes.add_rule("0.0.0.0", "255.255.255.255", global_class)
    classes.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", global_class)
    return classes


def key_of(info_hashes):
    """Return a torrent's key: its v1 hash, or its v2 hash where it has no v1."""
    return str(info_hashes.v1) if info_hashes.has_v1() else str(info_hashes.v2)


def say(message):
    """Write one JSON line to stdout."""
    print(json.dumps(message), flush=True)


class Seeds:
    """The seeding session's torrents, and those still on their way to seeding and announced."""

    def __init__(self, session):
        self.session = session
        self.handles = {}
        self.pending = {}  # key -> {"announce": protocol versions still to announce, "checked", "error"}

    def add(self, torrent_path, save_path, upload_limit=0):
        """Start seeding a torrent from save_path and return its key."""
        params = lt.load_torrent_file(torrent_path)
        params.save_path = save_path
        # Not auto-managed: libtorrent would queue seeds beyond active_seeds, and they stop announcing.
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        params.flags |= lt.torrent_flags.duplicate_is_error
        if upload_limit:
            params.upload_limit = int(upload_limit)
        key = key_of(params.ti.info_hashes())
        versions = set()
        if params.trackers:
            # A hybrid torrent announces twice: its v1 hash and its truncated v2 hash.
            if params.ti.info_hashes().has_v1():
                versions.add(lt.protocol_version.V1)
            if params.ti.info_hashes().has_v2():
                versions.add(lt.protocol_version.V2)
        self.handles[key] = self.session.add_torrent(params)
        self.pending[key] = {"announce": versions, "checked": False, "error": None}
        return key

    def remove(self, key):
        """Stop seeding a torrent; its files stay."""
        self.session.remove_torrent(self.handles.pop(key))
        self.pending.pop(key, None)

    def handle_alert(self, alert):
        """Note checks, announces and errors of pending torrents."""
        handle = getattr(alert, "handle", None)
        if handle is None or not handle.is_valid():
            return
        state = self.pending.get(key_of(handle.info_hashes()))
        if state is None:
            return
        if isinstance(alert, lt.tracker_reply_alert):
            state["announce"].discard(alert.version)
        elif isinstance(alert, lt.torrent_checked_alert):
            state["checked"] = True
        elif isinstance(alert, (lt.tracker_error_alert, lt.torrent_error_alert, lt.file_error_alert)):
            state["error"] = alert.message()

    def settled(self):
        """Remove and return [(key, error or None)] for pending torrents now seeding or failed."""
        done = []
        for key, state in list(self.pending.items()):
            if state["error"] is None and state["checked"]:
                status = self.handles[key].status()
                if status.progress < 1:
                    state["error"] = f"content incomplete after check ({status.progress:.1%}): {status.save_path}"
                elif not status.is_seeding or state["announce"]:
                    continue
            elif state["error"] is None:
                continue
            del self.pending[key]
            done.append((key, state["error"]))
        return done

    def stats(self):
        """Return {key: payload bytes uploaded}."""
        return {key: handle.status().total_payload_upload for key, handle in self.handles.items()}


def read_commands(commands):
    """Queue stdin's lines; at its end, queue a quit."""
    for line in sys.stdin:
        commands.put(line)
    commands.put("quit")


def listen_port(session):
    """Wait for the session's TCP listen socket and return its port."""
    while True:
        session.wait_for_alert(1000)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.listen_failed_alert):
                raise SystemExit(f"listen failed: {alert.message()}")
            if isinstance(alert, lt.listen_succeeded_alert) and alert.socket_type == lt.socket_type_t.tcp:
                return alert.port


def main(argv=None):
    """Seed the torrents given, then answer commands until quit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ip:port (port 0 picks one)")
    parser.add_argument("--upload-limit", type=int, default=0, help="bytes/s for all peers, 0 for none")
    parser.add_argument("--utp", action="store_true", help="also accept peers over uTP")
    parser.add_argument("torrents", nargs="*", help="pairs of TORRENT SAVE_PATH")
    args = parser.parse_args(argv)
    if len(args.torrents) % 2:
        parser.error("torrents come in pairs: TORRENT SAVE_PATH")

    session = lt.session(seeder_settings(args.listen, args.upload_limit, args.utp))
    if args.upload_limit:
        session.set_peer_class_filter(everyone_is_global())
    port = listen_port(session)
    seeds = Seeds(session)
    starting = {seeds.add(path, save_path) for path, save_path in zip(args.torrents[::2], args.torrents[1::2])}
    ready = False
    answering = None  # the key an "add" command is waiting for

    commands = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), name="commands", daemon=True).start()
    while True:
        session.wait_for_alert(POLL_MS)
        for alert in session.pop_alerts():
            seeds.handle_alert(alert)
        for key, error in seeds.settled():
            if key in starting:
                if error:
                    say({"error": f"{key}: {error}"})
                    return 1
                starting.discard(key)
            elif key == answering:
                say({"error": f"{key}: {error}"} if error else {"added": key})
                answering = None
            if error:
                seeds.remove(key)  # so that the test may add it again once it is fixed
        if not ready and not starting:
            ready = True
            say({"ready": True, "port": port, "torrents": sorted(seeds.handles)})
        if not ready or answering is not None:
            continue
        try:
            line = commands.get_nowait()
        except queue.Empty:
            continue
        words = shlex.split(line)
        if not words:
            continue
        if words[0] == "quit":
            return 0
        try:
            if words[0] == "add":
                answering = seeds.add(*words[1:])
            elif words[0] == "remove":
                seeds.remove(words[1])
                say({"removed": words[1]})
            elif words[0] == "stats":
                say(seeds.stats())
            else:
                say({"error": f"unknown command: {line.strip()}"})
        except Exception as error:  # any failure is the test's to see, not a reason to stop seeding
            say({"error": f"{line.strip()}: {error!r}"})


if __name__ == "__main__":
    sys.exit(main())
