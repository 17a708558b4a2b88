"""The Transmission RPC at /transmission/rpc: Sonarr, Radarr, Prowlarr, transmission-rpc and
transmission-remote drive hashdrop as they would a Transmission 4.0 daemon.

Only the legacy envelope is spoken ({"method", "arguments", "tag"}); every call goes through the
JobManager facade, as the page and the JSON API do. docs/design.md says what is mapped how.
"""
import base64
import binascii
import hmac
import json
import logging
import math
import os
import secrets
import shutil
import time
from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, request

import torrent_files
import torrent_urls
from jobs import JobError

bp = Blueprint("transmission", __name__)
log = logging.getLogger(__name__)

# Sonarr and Radarr read the first number of "version": 4.0 or more turns their labels on.
VERSION = "4.0.6 (hashdrop)"
RPC_VERSION = 17
RPC_VERSION_MINIMUM = 14
RPC_VERSION_SEMVER = "5.3.0"
SESSION_HEADER = "X-Transmission-Session-Id"
RECENT_SECONDS = 60  # "recently-active": what changed, or was removed, in the last minute
KILO = 1000  # Transmission's speeds are in kB/s of 1,000 bytes
DEFAULT_RATIO, DEFAULT_IDLE = 2.0, 30  # what Transmission shows for a limit that is off
FILE_LIST_WAIT = 10  # seconds torrent-add waits for a file list to apply files-wanted to
DEFAULT_TORRENT_LIMIT = 100  # kB/s: what Transmission shows for a torrent's rate limit that is off
# torrent-set's names for a job's seeding limits (jobs.seeding.SeedLimits)
SEED_LIMIT_NAMES = {"seedRatioLimit": "ratio", "seedRatioMode": "ratio_mode",
                    "seedIdleLimit": "idle_minutes", "seedIdleMode": "idle_mode"}

# Transmission's torrent status numbers (libtransmission's tr_torrent_activity).
STOPPED, CHECK_WAIT, CHECKING, DOWNLOAD_WAIT, DOWNLOADING, SEED_WAIT, SEEDING = range(7)
LOCAL_ERROR = 3  # the torrent's "error" field: a local error, such as a disk that is gone
TRACKER_WARNING = 1  # ...and a warning: a stalled job, which tries on
ACTIVE_STATES = ("queued", "fetching_metadata", "downloading", "stalled")


class RpcError(Exception):
    """A call that cannot be done: the sentence is sent as the result, with HTTP 200."""


@bp.record_once
def start_session(state):
    """Make the session id, stable for the process: clients keep it between calls."""
    state.app.extensions["transmission"] = {"session_id": secrets.token_urlsafe(24),
                                            "started": time.monotonic()}


def rpc_state():
    return current_app.extensions["transmission"]


def manager():
    return current_app.extensions["hashdrop"]


# Both paths: transmission-remote posts to the one with the slash, Sonarr to the other, and
# Sonarr follows no redirect.
@bp.route("/transmission/rpc", methods=["GET", "POST"])
@bp.route("/transmission/rpc/", methods=["GET", "POST"])
def rpc():
    """Answer one RPC call, once the client has sent back the session id (409 until then)."""
    session_id = rpc_state()["session_id"]
    sent = request.headers.get(SESSION_HEADER, "")
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), session_id.encode()):
        return handshake(session_id)
    try:
        body = json.loads(request.get_data() or b"null")
    except (ValueError, RecursionError):
        return reply("The request body is not JSON: send {\"method\": ..., \"arguments\": {...}}.")
    if not isinstance(body, dict):
        return reply("The request body must be a JSON object with a \"method\".")
    arguments = body.get("arguments")
    return reply(*call(body.get("method"), {} if arguments is None else arguments), tag=body.get("tag"))


def handshake(session_id):
    """The 409 that hands the client the session id: this path's defence against other sites'
    pages, which cannot read the header and so cannot send it back."""
    page = ("<h1>409: Conflict</h1><p>Your request had an invalid session id. Send it back in the "
            f"header <code>{SESSION_HEADER}: {session_id}</code>.</p>")
    return page, 409, {SESSION_HEADER: session_id, "Access-Control-Expose-Headers": SESSION_HEADER,
                       "Content-Type": "text/html; charset=UTF-8"}


def reply(result, arguments=None, tag=None):
    """The envelope: arguments always an object, and the tag echoed, 0 included."""
    answer = {"result": result, "arguments": arguments or {}}
    if isinstance(tag, int) and not isinstance(tag, bool):
        answer["tag"] = tag
    return jsonify(answer)


def call(method, arguments):
    """(result, arguments) for one method: "success", or a sentence that says what is wrong."""
    handler = METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        return f"method name not recognized: {method!r}", {}
    if not isinstance(arguments, dict):
        return "The arguments must be a JSON object.", {}
    try:
        return "success", handler(arguments)
    except RpcError as exc:
        return str(exc), {}
    except JobError as exc:
        return exc.message, {}
    except Exception:  # a bug: the client still gets a sentence it can show, the log the trace
        log.exception("the RPC method %s failed", method)
        return f"{method} failed inside hashdrop; its log says why.", {}


# Picking torrents ------------------------------------------------------------------

def selected(arguments):
    """The jobs (as shown) that "ids" names: absent for all, "recently-active", an id, a hash,
    or a list of ids and hashes. Unknown ones select nothing, as in Transmission."""
    jobs = manager().jobs()
    ids = arguments.get("ids")
    if ids is None:
        return jobs
    if ids == "recently-active":
        return [job for job in jobs if recently_active(job)]
    if not isinstance(ids, list):
        ids = [ids]
    numbers = {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}
    named = {i.lower() for i in ids if isinstance(i, str)}
    return [job for job in jobs if job["number"] in numbers or named & job_hashes(job)]


def job_hashes(job):
    return {key for key in (job["info_hash"], job["v1_hash"], job["v2_hash"]) if key}


def recently_active(job):
    """Whether the job changes now: it runs, checks, or moves bytes."""
    return (job["state"] in ACTIVE_STATES or job["checking"] or job["download_rate"] > 0
            or job["upload_rate"] > 0)


def hash_list(arguments):
    return [job["info_hash"] for job in selected(arguments)]


def flag(arguments, name, default=False):
    """A true/false argument; 0 and 1 too, which Transmission takes as well."""
    value = arguments.get(name, default)
    if value not in (True, False):  # 0 == False and 1 == True
        raise RpcError(f"{name} must be true or false, not {value!r}.")
    return bool(value)


def string_list(arguments, name):
    value = arguments.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RpcError(f"{name} must be a list of strings.")
    return value


def index_list(arguments, name):
    value = arguments.get(name, [])
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise RpcError(f"{name} must be a list of file numbers.")
    return value


# The session ------------------------------------------------------------------------

def session_get(arguments):
    """The session's settings as Transmission names them; "fields" keeps some of them."""
    config, status = current_app.config, manager().status()
    down, up = config["DOWNLOAD_LIMIT"], config["UPLOAD_LIMIT"]
    seed = manager().seed_session
    settings = {
        "version": VERSION, "rpc-version": RPC_VERSION, "rpc-version-minimum": RPC_VERSION_MINIMUM,
        "rpc-version-semver": RPC_VERSION_SEMVER, "session-id": rpc_state()["session_id"],
        "download-dir": config["SAVE_PATH"], "download-dir-free-space": status["free_bytes"] or 0,
        "incomplete-dir": config["INCOMPLETE_PATH"] or config["SAVE_PATH"],
        "incomplete-dir-enabled": bool(config["INCOMPLETE_PATH"]),
        "config-dir": config["DATA_DIR"], "rename-partial-files": bool(config["PART_SUFFIX"]),
        "peer-port": (status["listen_ports"] or [0])[0], "peer-port-random-on-start": False,
        "port-forwarding-enabled": bool(config["UPNP"] or config["NATPMP"]),
        "dht-enabled": bool(config["DHT"]), "lpd-enabled": bool(config["LSD"]), "pex-enabled": True,
        "utp-enabled": True, "encryption": "preferred",
        "start-added-torrents": manager().start_added_torrents,
        "seedRatioLimit": float(DEFAULT_RATIO if seed.ratio is None else seed.ratio),
        "seedRatioLimited": seed.ratio is not None,
        "idle-seeding-limit": DEFAULT_IDLE if seed.idle_minutes is None else math.ceil(seed.idle_minutes),
        "idle-seeding-limit-enabled": seed.idle_minutes is not None,
        "download-queue-enabled": True, "download-queue-size": int(config["MAX_ACTIVE"]),
        "seed-queue-enabled": False, "seed-queue-size": 10, "queue-stalled-enabled": False,
        "queue-stalled-minutes": 30, "blocklist-enabled": False, "blocklist-size": 0,
        "blocklist-url": "", "cache-size-mb": 4, "trash-original-torrent-files": False,
        "speed-limit-down": down // KILO, "speed-limit-down-enabled": down > 0,
        "speed-limit-up": up // KILO, "speed-limit-up-enabled": up > 0,
        "alt-speed-enabled": False, "alt-speed-down": 50, "alt-speed-up": 50,
        "alt-speed-time-enabled": False, "alt-speed-time-begin": 540, "alt-speed-time-end": 1020,
        "alt-speed-time-day": 127, "peer-limit-global": 200, "peer-limit-per-torrent": 50,
        "units": {"speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"], "speed-bytes": KILO,
                  "size-units": ["kB", "MB", "GB", "TB"], "size-bytes": KILO,
                  "memory-units": ["KiB", "MiB", "GiB", "TiB"], "memory-bytes": 1024},
    }
    fields = arguments.get("fields")
    if isinstance(fields, list):
        return {key: value for key, value in settings.items() if key in fields}
    return settings


def session_set(arguments):
    """Apply the speed and seeding limits asked for; accept the other settings and leave them."""
    config = current_app.config
    limits = {}
    for direction, key in (("down", "DOWNLOAD_LIMIT"), ("up", "UPLOAD_LIMIT")):
        if f"speed-limit-{direction}" in arguments or f"speed-limit-{direction}-enabled" in arguments:
            limits[direction] = speed_limit(arguments, direction, config[key])
    if limits:
        manager().set_rate_limits(download=limits.get("down"), upload=limits.get("up"))
    manager().set_session_seed_limits(**session_seed_limits(arguments))
    if "start-added-torrents" in arguments:
        manager().start_added_torrents = flag(arguments, "start-added-torrents")
    return {}


def session_seed_limits(arguments):
    """The global seeding limits session-set changes, as set_session_seed_limits takes them."""
    seed, changes = manager().seed_session, {}
    if "seedRatioLimit" in arguments or "seedRatioLimited" in arguments:
        limited = flag(arguments, "seedRatioLimited", seed.ratio is not None)
        ratio = number(arguments, "seedRatioLimit", DEFAULT_RATIO if seed.ratio is None else seed.ratio)
        changes["ratio"] = float(ratio) if limited else None
    if "idle-seeding-limit" in arguments or "idle-seeding-limit-enabled" in arguments:
        enabled = flag(arguments, "idle-seeding-limit-enabled", seed.idle_minutes is not None)
        minutes = number(arguments, "idle-seeding-limit", DEFAULT_IDLE if seed.idle_minutes is None
                         else seed.idle_minutes)
        changes["idle_minutes"] = minutes if enabled else None
    return changes


def whole_number(arguments, name):
    value = arguments.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcError(f"{name} must be a whole number of 0 or more, not {value!r}.")
    return value


def number(arguments, name, default):
    value = arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RpcError(f"{name} must be a number of 0 or more, not {value!r}.")
    return value


def speed_limit(arguments, direction, current):
    """The new limit in bytes/s (0 for none) from speed-limit-<direction>(-enabled)."""
    enabled = flag(arguments, f"speed-limit-{direction}-enabled", current > 0)
    kilobytes = arguments.get(f"speed-limit-{direction}", current // KILO)
    if not isinstance(kilobytes, int) or isinstance(kilobytes, bool) or kilobytes < 0:
        raise RpcError(f"speed-limit-{direction} must be a whole number of kB/s, not {kilobytes!r}.")
    return kilobytes * KILO if enabled else 0


def session_stats(arguments):
    """Counts and rates over every job; hashdrop keeps no totals across starts, so the
    cumulative stats are this session's."""
    jobs, status = manager().jobs(), manager().status()
    stats = {"uploadedBytes": sum(job["uploaded_bytes"] for job in jobs),
             "downloadedBytes": sum(job["downloaded_bytes"] for job in jobs),
             "filesAdded": len(jobs), "sessionCount": 1,
             "secondsActive": int(time.monotonic() - rpc_state()["started"])}
    active = sum(1 for job in jobs if job["state"] in ACTIVE_STATES or job["seeding"])
    return {"activeTorrentCount": active, "pausedTorrentCount": len(jobs) - active,
            "torrentCount": len(jobs), "downloadSpeed": status["download_rate"],
            "uploadSpeed": status["upload_rate"], "current-stats": stats, "cumulative-stats": dict(stats)}


def free_space(arguments):
    """The free bytes where a path is; the path is echoed, as transmission-rpc checks. Only the
    save path and folders in it are answered for: the RPC is no way to map the machine's disks."""
    path = arguments.get("path")
    if not isinstance(path, str) or not path:
        raise RpcError("free-space needs a path.")
    root = current_app.config["SAVE_PATH"]
    target = os.path.join(root, path)  # a relative path is a folder in the save path
    if not torrent_files.resolves_inside(target, root):
        raise RpcError(f"free-space answers for hashdrop's save path {root} and the folders in it, "
                       f"not for {path!r}.")
    while not os.path.isdir(target) and torrent_files.resolves_inside(os.path.dirname(target), root):
        target = os.path.dirname(target)  # a category folder not made yet: the disk it will be on
    try:
        usage = shutil.disk_usage(target)
    except OSError as exc:
        raise RpcError(f"The free space of {path!r} cannot be read: {exc.strerror or exc}.") from None
    return {"path": path, "size-bytes": usage.free, "total_size": usage.total}


def port_test(arguments):
    """Whether hashdrop listens for peers: it cannot ask the outside whether they reach it."""
    status = manager().status()
    return {"port-is-open": bool(status["listen_ports"]) and not status["listen_problem"]}


def accepted(arguments):
    """A call hashdrop has nothing to do for (bandwidth groups): it succeeds."""
    return {}


# Adding ---------------------------------------------------------------------------

def torrent_add(arguments):
    """Add a magnet link, an info hash or a .torrent file (base64 metainfo) as a job."""
    if not isinstance(arguments.get("download-dir", ""), str):
        raise RpcError("download-dir must be a string.")
    options = {"category": manager().category_for_dir(arguments.get("download-dir") or ""),
               "paused": flag(arguments, "paused", not manager().start_added_torrents),
               "labels": string_list(arguments, "labels"),
               "source": "rpc"}
    choosing = "files-wanted" in arguments or "files-unwanted" in arguments
    index_list(arguments, "files-wanted"), index_list(arguments, "files-unwanted")  # checked first
    start = not options["paused"]
    if choosing:  # added paused, so that nothing downloads before the choice applies
        options["paused"] = True
    answer = add(arguments, options)
    if choosing and "torrent-added" in answer:
        choose_files_at_add(answer["torrent-added"]["hashString"], arguments, start)
    return answer


def choose_files_at_add(info_hash, arguments, start):
    """Apply torrent-add's files-wanted/-unwanted once the file list is known (at once for a
    .torrent file; a magnet's comes from its peers), then start the job if it was to start."""
    wanted, unwanted = index_list(arguments, "files-wanted"), index_list(arguments, "files-unwanted")
    if not manager().wait_for_file_list(info_hash, FILE_LIST_WAIT):
        log.info("%s: no file list within %d s; it waits, paused, for its files to be chosen",
                 info_hash, FILE_LIST_WAIT)
        return
    choose_files(info_hash, wanted, unwanted, "files-wanted" in arguments, "files-unwanted" in arguments)
    if start:
        manager().resume(info_hash)


def add(arguments, options):
    """Submit what torrent-add names; the torrent-added or torrent-duplicate answer."""
    metainfo, filename = arguments.get("metainfo"), arguments.get("filename")
    if metainfo:
        result = manager().submit_items([], uploads=[("metainfo", decoded(metainfo))], **options)
    elif isinstance(filename, str) and filename.strip():
        filename = filename.strip()
        if filename.lower().startswith(("http://", "https://")):
            shown = torrent_urls.shown(filename)
            kind, filename = fetched(filename, arguments.get("cookies"))
            if kind == "torrent":
                return added(manager().submit_items([], uploads=[(shown, filename)], **options))
        result = manager().submit_items([filename], **options)
    else:
        raise RpcError("torrent-add needs a filename (a magnet link, an info hash or the URL of a "
                       ".torrent file) or metainfo (a .torrent file in base64).")
    return added(result)


def fetched(url, cookies):
    """("torrent", bytes) or ("magnet", link) from a URL, as HASHDROP_URL_ALLOW lets it be fetched."""
    if cookies is not None and not isinstance(cookies, str):
        raise RpcError("cookies must be a string such as \"name=value; other=value\".")
    config = current_app.config
    try:
        return torrent_urls.fetch(url, config["URL_ALLOW"], config["URL_TIMEOUT"], cookies or "")
    except torrent_urls.FetchError as exc:
        raise RpcError(str(exc)) from None


def decoded(metainfo):
    if not isinstance(metainfo, str):
        raise RpcError("metainfo must be a .torrent file in base64.")
    try:
        return base64.b64decode(metainfo, validate=False)
    except (binascii.Error, ValueError):
        raise RpcError("invalid or corrupt torrent file: metainfo is not base64.") from None


def added(result):
    """torrent-added for a new job, torrent-duplicate for one already there, else the reason."""
    if result.refused:
        raise RpcError(result.refused)
    answer = manager().describe_submit(result)
    if answer["started"]:
        return {"torrent-added": brief(answer["started"][0])}
    for target in result.existing + result.duplicates:
        job = manager().find(target)
        if job is not None:
            return {"torrent-duplicate": brief(job)}
    if result.rejected:
        rejected = result.rejected[0]
        raise RpcError(f"invalid or corrupt torrent file: {rejected.text!r} {rejected.reason}")
    raise RpcError(result.messages()[0][0])


def brief(job):
    return {"id": job["number"], "name": job["name"] or job["info_hash"], "hashString": job["info_hash"]}


# Steering -------------------------------------------------------------------------

def torrent_start(arguments):
    """Resume the jobs named (every job without ids); a failed one is retried."""
    for info_hash in hash_list(arguments):
        manager().resume(info_hash)
    return {}


def torrent_stop(arguments):
    """Pause the jobs named; a failed job is stopped already (409: nothing to do)."""
    return for_each(arguments, manager().pause, done_if=409)


def for_each(arguments, action, done_if, **options):
    """action(info_hash, **options) for each job named; a JobError with the status done_if means
    what was asked is so already (a removed job, a stopped one), and the others go on."""
    for info_hash in hash_list(arguments):
        try:
            action(info_hash, **options)
        except JobError as exc:
            if exc.status != done_if:
                raise
    return {}


def queue_move(arguments, where):
    """Move the jobs named in the download queue; the first queued job gets the next free slot."""
    manager().move_in_queue(hash_list(arguments), where)
    return {}


def torrent_set_location(arguments):
    """Move the jobs' files into another folder of the save path. Only moving is done: pointing
    a job at files that are there already (move false) would make it take them for its own."""
    location = arguments.get("location")
    if not isinstance(location, str) or not location:
        raise RpcError("torrent-set-location needs a location: a folder in hashdrop's save path.")
    if not flag(arguments, "move", False):
        raise RpcError("hashdrop moves a torrent's files itself (move: true); it does not take "
                       "files already in another folder for a torrent's own.")
    for info_hash in hash_list(arguments):
        manager().relocate(info_hash, location)
    return {}


def torrent_verify(arguments):
    """Check the files of the jobs named against their pieces; one without metadata has none
    (409: nothing on disk to check)."""
    return for_each(arguments, manager().verify, done_if=409)


def torrent_reannounce(arguments):
    for info_hash in hash_list(arguments):
        manager().reannounce(info_hash)
    return {}


def torrent_remove(arguments):
    """Remove the jobs named, with their files when delete-local-data is true; one removed
    meanwhile by another call (404) is what was asked."""
    return for_each(arguments, manager().remove, done_if=404, delete_files=flag(arguments, "delete-local-data"))


def torrent_set(arguments):
    """Set labels, seeding and rate limits, the queue position, the location and the files wanted."""
    labels = string_list(arguments, "labels") if "labels" in arguments else None
    wanted, unwanted = index_list(arguments, "files-wanted"), index_list(arguments, "files-unwanted")
    seed_limits = {key: arguments[name] for name, key in SEED_LIMIT_NAMES.items() if name in arguments}
    limits = torrent_rate_limits(arguments)
    for info_hash in hash_list(arguments):
        if labels is not None:
            manager().set_labels(info_hash, labels)
        if seed_limits:
            manager().set_seed_limits(info_hash, seed_limits)
        if "location" in arguments:  # moved, as torrent-set-location with move: true
            torrent_set_location({"ids": [info_hash], "location": arguments["location"], "move": True})
        if limits:
            manager().set_job_rate_limits(info_hash, **limits)
        if "queuePosition" in arguments:
            manager().move_in_queue([info_hash], whole_number(arguments, "queuePosition"))
        if "files-wanted" in arguments or "files-unwanted" in arguments:
            choose_files(info_hash, wanted, unwanted, "files-wanted" in arguments,
                         "files-unwanted" in arguments)
    return {}


def torrent_rate_limits(arguments):
    """A job's own rate limits from torrent-set (downloadLimit in kB/s, downloadLimited, and the
    same for upload) as set_job_rate_limits takes them: bytes/s, 0 for none."""
    limits = {}
    for direction, name in (("download", "downloadLimit"), ("upload", "uploadLimit")):
        if name in arguments or f"{name}ed" in arguments:
            kilobytes = whole_number(arguments, name) if name in arguments else DEFAULT_TORRENT_LIMIT
            limits[direction] = kilobytes * KILO if flag(arguments, f"{name}ed", True) else 0
    return limits


def choose_files(info_hash, wanted, unwanted, has_wanted, has_unwanted):
    """Change which files a job downloads; an empty list means every file, as in Transmission."""
    files = manager().files(info_hash)
    every = {entry["index"] for entry in files}
    chosen = {entry["index"] for entry in files if entry["wanted"]}
    if has_wanted:
        chosen |= set(wanted) if wanted else every
    if has_unwanted:
        chosen -= set(unwanted) if unwanted else every
    manager().set_files(info_hash, sorted(chosen))


# Reading torrents -----------------------------------------------------------------

def torrent_get(arguments):
    """The fields asked for of the torrents named; "removed" too for "recently-active"."""
    fields = arguments.get("fields")
    if fields is None:
        fields = list(FIELDS)
    if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
        raise RpcError("fields must be a list of torrent field names.")
    known = [name for name in dict.fromkeys(fields) if name in FIELDS]
    now = datetime.now().astimezone()
    positions = manager().queue_positions() if "queuePosition" in known else {}
    torrents = [{name: FIELDS[name](Torrent(job, positions.get(job["info_hash"], 0), now)) for name in known}
                for job in selected(arguments)]
    answer = {"torrents": torrents}
    if arguments.get("ids") == "recently-active":
        answer["removed"] = manager().removed_numbers(RECENT_SECONDS)
    return answer


class Torrent:
    """A job as the field table reads it; its file list is asked for once, if a field needs it."""

    def __init__(self, job, position, now):
        self.job, self.position, self.now = job, position, now
        self._files = self._details = None

    def files(self):
        """The job's files in the torrent's order; none before its metadata has arrived."""
        if self._files is None:
            try:
                self._files = sorted(manager().files(self.job["info_hash"]), key=lambda f: f["index"])
            except JobError:
                self._files = []
        return self._files

    def details(self):
        """The job's trackers, peers, magnet link and rate limits, asked for once, if a field
        needs them."""
        if self._details is None:
            try:
                self._details = manager().details(self.job["info_hash"])
            except JobError:  # removed meanwhile; in cluster mode, on its node (the limits are stored)
                self._details = {"trackers": [], "peers": [], "magnet": "",
                                 "download_limit": self.job.get("download_limit", 0),
                                 "upload_limit": self.job.get("upload_limit", 0)}
        return self._details

    def status(self):
        """Transmission's status number for the job's state."""
        job = self.job
        if self.stopped():  # libtorrent checks a stopped torrent's files once it is started
            return CHECK_WAIT if job["verify_pending"] else STOPPED
        if job["checking"]:
            return CHECKING
        if job["state"] == "queued":
            return DOWNLOAD_WAIT
        if job["state"] in ("fetching_metadata", "downloading", "stalled"):
            return DOWNLOADING  # a magnet still fetching its file list: downloading, totalSize 0
        return SEEDING if job["seeding"] else STOPPED

    def stopped(self):
        return self.job["state"] == "paused" or (self.job["state"] == "completed" and not self.job["seeding"])

    def eta(self):
        """Seconds left; -2 (unknown) for a running job that does not move, -1 (none) otherwise."""
        if self.job["eta_seconds"] is not None:
            return self.job["eta_seconds"]
        return -2 if self.job["state"] in ACTIVE_STATES else -1

    def left(self):
        return max(0, self.job["total_bytes"] - self.job["downloaded_bytes"])

    def seconds_since(self, stamp):
        return max(0, int((self.now - datetime.fromisoformat(stamp)).total_seconds())) if stamp else 0

    def epoch(self, stamp):
        return int(datetime.fromisoformat(stamp).timestamp()) if stamp else 0

    def failed(self):
        return self.job["state"] == "failed"


def file_entries(torrent):
    return [{"name": entry["path"], "length": entry["size"], "bytesCompleted": done_bytes(entry)}
            for entry in torrent.files()]


def file_stats(torrent):
    return [{"bytesCompleted": done_bytes(entry), "wanted": entry["wanted"], "priority": 0}
            for entry in torrent.files()]


def trackers(torrent):
    return [{"announce": entry["url"], "id": number, "scrape": "", "tier": entry["tier"],
             "sitename": site_name(entry["url"])} for number, entry in enumerate(torrent.details()["trackers"])]


def tracker_stats(torrent):
    """Each tracker as transmission-remote -it prints it; times are epoch seconds, 0 for never."""
    stats = []
    for number, entry in enumerate(torrent.details()["trackers"]):
        said = entry["message"] or ("Success" if entry["announced"] and not entry["fails"] else "")
        stats.append({
            "id": number, "announce": entry["url"], "scrape": "", "tier": entry["tier"],
            "host": host_of(entry["url"]), "sitename": site_name(entry["url"]), "isBackup": False,
            "announceState": 3 if entry["updating"] else 1,  # 3: announcing now, 1: waiting
            "hasAnnounced": entry["announced"], "lastAnnounceSucceeded": entry["announced"] and not entry["fails"],
            "lastAnnounceResult": said, "lastAnnounceTimedOut": False, "lastAnnouncePeerCount": 0,
            "lastAnnounceTime": 0, "lastAnnounceStartTime": 0, "nextAnnounceTime": int(entry["next_announce"]),
            "hasScraped": entry["seeders"] >= 0, "scrapeState": 1, "lastScrapeSucceeded": entry["seeders"] >= 0,
            "lastScrapeResult": "", "lastScrapeTimedOut": False, "lastScrapeTime": 0,
            "lastScrapeStartTime": 0, "nextScrapeTime": 0, "seederCount": entry["seeders"],
            "leecherCount": entry["leechers"], "downloadCount": entry["downloads"],
        })
    return stats


def peers(torrent):
    return [{"address": peer["address"], "port": peer["port"], "clientName": peer["client"],
             "progress": peer["progress"], "rateToClient": peer["down"], "rateToPeer": peer["up"],
             "isDownloadingFrom": peer["down"] > 0, "isUploadingTo": peer["up"] > 0,
             "isIncoming": peer["incoming"], "isUTP": peer["utp"], "isEncrypted": peer["encrypted"],
             "clientIsChoked": peer["choked"], "clientIsInterested": peer["interesting"],
             "peerIsChoked": peer["remote_choked"], "peerIsInterested": peer["remote_interested"],
             "flagStr": peer_flags(peer)} for peer in torrent.details()["peers"]]


def peer_flags(peer):
    """Transmission's flag letters: D downloading from, U uploading to, I incoming, T uTP, E encrypted."""
    return "".join(letter for letter, on in (("D", peer["down"] > 0), ("U", peer["up"] > 0), ("I", peer["incoming"]),
                                             ("T", peer["utp"]), ("E", peer["encrypted"])) if on)


def tracker_list(entries):
    """The trackers as one text: a URL per line, tiers apart by a blank line."""
    tiers = {}
    for entry in entries:
        tiers.setdefault(entry["tier"], []).append(entry["url"])
    return "\n\n".join("\n".join(urls) for _, urls in sorted(tiers.items()))


def host_of(url):
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def site_name(url):
    """The tracker's site as Transmission names it: its host's last two labels' first, e.g. "example"."""
    labels = (urlsplit(url).hostname or "").split(".")
    return labels[-2] if len(labels) >= 2 and not labels[-1].isdigit() else (urlsplit(url).hostname or "")


def done_bytes(entry):
    return min(entry["size"], int(round(entry["progress"] * entry["size"])))


# Every torrent field hashdrop answers, and how; integers are ints, and nothing is null.
FIELDS = {
    "id": lambda t: t.job["number"],
    "hashString": lambda t: t.job["info_hash"],
    "name": lambda t: t.job["name"] or t.job["info_hash"],
    "status": Torrent.status,
    "totalSize": lambda t: t.job["torrent_bytes"],
    "sizeWhenDone": lambda t: t.job["total_bytes"],
    "leftUntilDone": Torrent.left,
    "haveValid": lambda t: t.job["downloaded_bytes"],
    "haveUnchecked": lambda t: 0,
    "desiredAvailable": lambda t: 0,
    "corruptEver": lambda t: 0,
    "percentDone": lambda t: t.job["progress"],
    "metadataPercentComplete": lambda t: 1 if t.job["has_metadata"] else 0,
    "recheckProgress": lambda t: 0,
    "eta": Torrent.eta,
    "etaIdle": lambda t: -1,
    "rateDownload": lambda t: t.job["download_rate"],
    "rateUpload": lambda t: t.job["upload_rate"],
    "uploadRatio": lambda t: t.job["ratio"] if t.job["ratio"] is not None else -1,
    "uploadedEver": lambda t: t.job["uploaded_bytes"],
    "downloadedEver": lambda t: t.job["downloaded_bytes"],
    "isFinished": lambda t: t.job["state"] == "completed" and not t.job["seeding"],
    "isStalled": lambda t: t.job["state"] == "stalled",
    "isPrivate": lambda t: False,
    "error": lambda t: LOCAL_ERROR if t.failed() else TRACKER_WARNING if t.job["state"] == "stalled" else 0,
    "errorString": lambda t: (t.job["error"] or "failed") if t.failed() else t.job["error"] or "",
    "downloadDir": lambda t: t.job["save_path"],
    "labels": lambda t: t.job["labels"],
    "group": lambda t: "",
    "addedDate": lambda t: t.epoch(t.job["added_at"]),
    "startDate": lambda t: t.epoch(t.job["added_at"]),
    "activityDate": lambda t: t.epoch(t.job["completed_at"] or t.job["added_at"]),
    "doneDate": lambda t: t.epoch(t.job["completed_at"]),
    "dateCreated": lambda t: 0,
    "secondsDownloading": lambda t: 0,
    "secondsSeeding": lambda t: t.seconds_since(t.job["completed_at"]) if t.job["seeding"] else 0,
    "seedRatioLimit": lambda t: t.job["seed_limits"]["ratio"],
    "seedRatioMode": lambda t: t.job["seed_limits"]["ratio_mode"],
    "seedIdleLimit": lambda t: t.job["seed_limits"]["idle_minutes"],
    "seedIdleMode": lambda t: t.job["seed_limits"]["idle_mode"],
    "queuePosition": lambda t: t.position,
    "peersConnected": lambda t: t.job["peers"],
    "peersSendingToUs": lambda t: 0 if t.job["state"] == "completed" else t.job["peers"],
    "peersGettingFromUs": lambda t: t.job["peers"] if t.job["seeding"] else 0,
    "webseedsSendingToUs": lambda t: 0,
    "peer-limit": lambda t: 50,
    "bandwidthPriority": lambda t: 0,
    "honorsSessionLimits": lambda t: True,
    "downloadLimit": lambda t: t.details()["download_limit"] // KILO or DEFAULT_TORRENT_LIMIT,
    "downloadLimited": lambda t: t.details()["download_limit"] > 0,
    "uploadLimit": lambda t: t.details()["upload_limit"] // KILO or DEFAULT_TORRENT_LIMIT,
    "uploadLimited": lambda t: t.details()["upload_limit"] > 0,
    "sequentialDownload": lambda t: t.job["sequential"],
    "comment": lambda t: "",
    "creator": lambda t: "",
    "magnetLink": lambda t: t.details()["magnet"],
    "errorCode": lambda t: LOCAL_ERROR if t.failed() else 0,
    "trackers": trackers,
    "trackerStats": tracker_stats,
    "trackerList": lambda t: tracker_list(t.details()["trackers"]),
    "peers": peers,
    "webseeds": lambda t: [],
    "file-count": lambda t: len(t.files()),
    "fileCount": lambda t: len(t.files()),
    "files": file_entries,
    "fileStats": file_stats,
    "wanted": lambda t: [1 if entry["wanted"] else 0 for entry in t.files()],
    "priorities": lambda t: [0 for _ in t.files()],
}

METHODS = {
    "session-get": session_get,
    "session-set": session_set,
    "session-stats": session_stats,
    "free-space": free_space,
    "port-test": port_test,
    "blocklist-update": lambda arguments: {"blocklist-size": 0},
    "torrent-get": torrent_get,
    "torrent-add": torrent_add,
    "torrent-start": torrent_start,
    "torrent-start-now": torrent_start,
    "torrent-stop": torrent_stop,
    "torrent-verify": torrent_verify,
    "torrent-set-location": torrent_set_location,
    "torrent-reannounce": torrent_reannounce,
    "torrent-remove": torrent_remove,
    "torrent-set": torrent_set,
    "queue-move-top": lambda arguments: queue_move(arguments, "top"),
    "queue-move-up": lambda arguments: queue_move(arguments, "up"),
    "queue-move-down": lambda arguments: queue_move(arguments, "down"),
    "queue-move-bottom": lambda arguments: queue_move(arguments, "bottom"),
    "group-get": lambda arguments: {"group": []},
    "group-set": accepted,
}
