"""The one libtorrent session, its settings and `alerts` thread, and downloader(), a job thread's body."""
import errno
import logging
import threading
import time

import libtorrent as lt
import torrentp

from torrent_files import disk_is_full, info_hash_keys

log = logging.getLogger(__name__)

ALERT_MASK = (
    lt.alert_category.status
    | lt.alert_category.error
    | lt.alert_category.storage
    | lt.alert_category.tracker
)

ALERTS_PER_JOB = 8  # room in libtorrent's alert queue for each job's torrent (session_settings)

# Flags every job's torrent is added with. Not auto-managed: hashdrop queues jobs itself
# (MAX_ACTIVE), and libtorrent's own queue would pause torrents behind its back.
ADD_FLAGS = lt.torrent_flags.update_subscribe | lt.torrent_flags.apply_ip_filter

STATUS_INTERVAL = 1.0  # seconds between batched status updates (post_torrent_updates)
# No flush_disk_cache: in 2.1 it does not wait for the write-out (see flush()), its purpose was file
# timestamps that 2.x no longer keeps, and the release_files it queues mid-download left two disk
# threads writing the one file at once (docs/design.md).
RESUME_FLAGS = lt.save_resume_flags_t.save_info_dict
# Resume data is worth writing between starts for new pieces, metadata or settings. Not for
# libtorrent's counters, which it marks changed every second a torrent runs, nor for its state,
# which every start changes (checking, then seeding): saving on those wrote every job's resume
# data at each start of a library. Bits of libtorrent's resume_data_flags_t; the Python binding
# names only their sum, only_if_modified. Shutdown saves whatever changed, counters too.
IF_DOWNLOAD_PROGRESS, IF_CONFIG_CHANGED, IF_METADATA_CHANGED = 1 << 4, 1 << 5, 1 << 7
PERIODIC_RESUME_FLAGS = RESUME_FLAGS | IF_DOWNLOAD_PROGRESS | IF_CONFIG_CHANGED | IF_METADATA_CHANGED
SHUTDOWN_RESUME_FLAGS = RESUME_FLAGS | lt.save_resume_flags_t.only_if_modified
RESUME_NOT_MODIFIED = 143  # libtorrent's errors::resume_data_not_modified: nothing to save
CHECKING_STATES = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)


# libtorrent's disk back ends, by the name HASHDROP_DISK_IO takes (docs/design.md).
DISK_BACKENDS = {
    "pread": "pread_disk_io_constructor",  # libtorrent 2.1's default: pread/pwrite
    "mmap": "mmap_disk_io_constructor",  # 2.0's default: memory-mapped files
    "posix": "posix_disk_io_constructor",  # portable C file functions, single-threaded
}


def session_settings(config):
    """Build the libtorrent settings for the app's session from the app config."""
    return {
        "listen_interfaces": config["LISTEN_INTERFACES"],
        "outgoing_interfaces": config.get("OUTGOING_INTERFACES", ""),
        "enable_dht": config["DHT"],
        "enable_lsd": config["LSD"],
        "enable_upnp": config["UPNP"],
        "enable_natpmp": config["NATPMP"],
        "user_agent": f"hashdrop libtorrent/{lt.__version__}",
        "alert_mask": ALERT_MASK,
        # Each job's torrent posts a few alerts at once when all are added at start (added,
        # state, checked, announce and reply): a queue too short for that drops some.
        "alert_queue_size": max(10_000, ALERTS_PER_JOB * int(config.get("MAX_JOBS", 0))),
        "download_rate_limit": int(config["DOWNLOAD_LIMIT"]),
        "upload_rate_limit": int(config["UPLOAD_LIMIT"]),
        # Measured on loopback (docs/performance.md): these three decide throughput.
        # Dial peers over TCP; uTP is still accepted from peers that prefer it.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": True,
        "max_queued_disk_bytes": 1024 * 1024,
        "tick_interval": 100,
        # A paused-then-resumed job must be able to redial a lone seeder soon.
        "min_reconnect_time": 2,
        # 0: the system's size, and TCP's autotuning. Larger lets uTP's one UDP socket take
        # fast peers without drops, but libtorrent sets it on TCP sockets too (docs/performance.md).
        "recv_socket_buffer_size": int(config["RECV_BUFFER"]),
    }


def configured_ports(listen_interfaces):
    """The ports in a listen_interfaces setting ("0.0.0.0:6881,[::]:6881s"), without 0 (any port)."""
    ports = set()
    for item in listen_interfaces.split(","):
        port = item.rpartition(":")[2].strip().rstrip("sl")
        if port.isdigit() and int(port):
            ports.add(int(port))
    return ports


def everyone_is_global():
    """A peer class filter that puts LAN and loopback peers under the global rate limits.

    libtorrent's default exempts them (the 'local' peer class has no limit); a user who sets
    a limit on a media server expects it to hold for the LAN too, as in qBittorrent.
    """
    classes = lt.ip_filter()
    global_class = 1 << lt.session.global_peer_class_id
    classes.add_rule("0.0.0.0", "255.255.255.255", global_class)
    classes.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", global_class)
    return classes


class SessionDownloader(torrentp.Downloader):
    """torrentp's Downloader bound to the app's shared session, without its blocking loops.

    torrentp gives us the add parameters (sparse storage) and pause/resume/stop. Its
    status() sleeps 1 s per metadata poll and its download() is a coroutine that polls
    every second and draws a progress bar on stdout, so adding is done here and progress
    comes from the session's batched updates instead.
    """

    def __init__(self, session, add_params):
        super().__init__(
            session=session,
            torrent_info=add_params,
            save_path=add_params.save_path,
            libtorrent=lt,
            is_magnet=True,
        )

    def add(self):
        """Add the torrent to the session and return its handle."""
        self._file = self._session.add_torrent(self._build_add_torrent_params())
        self._paused = bool(self._file.flags() & lt.torrent_flags.paused)
        return self._file

    @property
    def handle(self):
        return self._file

    def resume(self):
        """Resume the torrent, also after libtorrent paused it itself (on an error)."""
        self._paused = True  # torrentp only resumes what it paused itself
        super().resume()

    def stop(self):
        """Remove the torrent from the session; its files stay."""
        if self._file is not None:
            super().stop()


class SessionClosed(Exception):
    """The session has been closed; no torrent can be added."""


class JobRefused(Exception):
    """A job cannot go on as asked, for a reason a person can act on; the text says it."""


class DataMissing(JobRefused):
    """A restored job's files are not where its resume data says they are."""


class TorrentSession:
    """Owns the process's one libtorrent session and its `alerts` thread."""

    def __init__(self, settings, resume_interval=10.0, disk_io="pread"):
        self.settings = settings
        self.disk_io = disk_io  # a key of DISK_BACKENDS
        self.session = None
        self._listeners = {}  # info hash hex -> callable(alert or status)
        self._removals = {}  # info hash hex -> Event set once a removed torrent's files are closed
        self._metadata_hooks = {}  # info hash hex -> callable(handle, name), see listen()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.resume_interval = resume_interval  # seconds between saves of a changing torrent
        self._last_resume_save = {}
        # From the listen alerts; replaced whole, never changed in place (requests read them).
        self.listen_ports = frozenset()  # the TCP ports peers can reach this session on
        self.configured_ports = configured_ports(settings["listen_interfaces"])
        self.listen_error = None  # why libtorrent could not listen, while it cannot
        self.on_tick = None  # called in the alert thread about once a second, when set

    def start(self):
        """Create the session (DHT etc. start now, with these settings) and the alert thread."""
        params = lt.session_params(self.settings)
        params.disk_io_constructor = DISK_BACKENDS[self.disk_io]
        self.session = lt.session(params)
        self.session.set_peer_class_filter(everyone_is_global())
        self._thread = threading.Thread(target=self._alert_loop, name="alerts", daemon=True)
        self._thread.start()

    def listen(self, keys, listener, before_metadata=None):
        """Route alerts and status updates for these info hash keys to listener; before_metadata
        (handle, torrent name), if given, runs in the alert thread as the metadata arrives,
        before anything else can be done about it."""
        with self._lock:
            for key in keys:
                self._listeners[key] = listener
                if before_metadata is not None:
                    self._metadata_hooks[key] = before_metadata

    def forget(self, keys, listener):
        """Stop routing these keys to listener (a newer job for the same hash keeps its own)."""
        with self._lock:
            for key in keys:
                if self._listeners.get(key) == listener:
                    del self._listeners[key]
                    self._metadata_hooks.pop(key, None)

    def add(self, add_params):
        """Add a torrent bound to a torrentp downloader; return the downloader."""
        session = self.session
        if session is None:
            raise SessionClosed()
        add_params.flags = (add_params.flags | ADD_FLAGS) & ~lt.torrent_flags.auto_managed
        torrent = SessionDownloader(session, add_params)
        torrent.add()
        return torrent

    def remove_and_wait(self, handle, timeout=10):
        """Remove a torrent and wait until libtorrent has closed its files (and deleted its part
        file, which only libtorrent writes): after that nothing of it writes to disk."""
        key = str(handle.info_hashes().get_best())
        closed = threading.Event()
        with self._lock:
            self._removals[key] = closed
        self.session.remove_torrent(handle, lt.session.delete_partfile)
        if not closed.wait(timeout):
            log.warning("libtorrent did not say within %s s that %s's files are closed", timeout, key)

    def is_open(self):
        return self.session is not None

    def current_settings(self):
        """libtorrent's settings of the session as they are now."""
        return self.session.get_settings()

    def handles(self):
        """The torrents in the session now (libtorrent handles); none once it is closed."""
        session = self.session
        return [] if session is None else session.get_torrents()

    def resume_asked_at(self, key):
        """When resume data was last asked for the torrent with this info hash (monotonic), or None."""
        return self._last_resume_save.get(key)

    def listen_port(self):
        return self.session.listen_port()

    def redial(self, handle):
        """Make a torrent that was finished, and now wants more files, dial its known peers again.

        A finished torrent drops the seeds it was connected to and stops counting them as peers
        to dial, and libtorrent 2.1 does not count again when it downloads again
        (torrent::resume_download): with one known seed and no tracker it never redialed
        (scratch run, 15 s, four tries). Changing max_failcount makes every peer list recount
        (session_impl::update_max_failcount); a pause and resume then puts the torrent back
        among those that want peers, and it dialed in 0.2 s. Trackers are asked again too.
        """
        session = self.session
        if session is None:  # shutting down
            return
        failcount = session.get_settings()["max_failcount"]
        session.apply_settings({"max_failcount": failcount + 1})
        session.apply_settings({"max_failcount": failcount})
        handle.pause()
        handle.resume()
        reconnect(handle)

    def apply_ip_filter(self, ip_filter):
        self.session.set_ip_filter(ip_filter)

    def apply(self, settings):
        self.session.apply_settings(settings)

    def _listener_for(self, info_hashes):
        with self._lock:
            for key in info_hash_keys(info_hashes):
                if key in self._listeners:
                    return self._listeners[key]
        return None

    def _alert_loop(self):
        next_update = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_update:
                self.session.post_torrent_updates()
                next_update = now + STATUS_INTERVAL
                self._tick()
            self.session.wait_for_alert(int(max(0.0, next_update - now) * 1000) + 1)
            alerts = self.session.pop_alerts()
            # The metadata hooks first: libtorrent starts a magnet's download the moment its
            # metadata is in, and a batch can hold thousands of statuses before that alert.
            for alert in alerts:
                if isinstance(alert, lt.metadata_received_alert):
                    self._guarded(self._metadata_arrived, alert)
            for alert in alerts:
                self._guarded(self._dispatch, alert)

    @staticmethod
    def _guarded(handler, alert):
        try:
            handler(alert)
        except Exception:
            log.exception("handling %s failed", type(alert).__name__)

    def _metadata_arrived(self, alert):
        handle = alert.handle
        if handle.is_valid() and self._listener_for(handle.info_hashes()):
            self._before_metadata(handle, alert.torrent_name)

    def _tick(self):
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                log.exception("the periodic work failed")

    def _dispatch(self, alert):
        if isinstance(alert, lt.state_update_alert):
            for status in alert.status:
                self.save_if_due(status)
                listener = self._listener_for(status.info_hashes)
                if listener:
                    listener(translate(status))
            return
        if isinstance(alert, (lt.torrent_deleted_alert, lt.torrent_delete_failed_alert)):
            with self._lock:
                closed = self._removals.pop(str(alert.info_hashes.get_best()), None)
            if closed is not None:
                closed.set()
            return
        if isinstance(alert, lt.torrent_removed_alert):
            self._last_resume_save.pop(str(alert.info_hashes.get_best()), None)
            return
        if isinstance(alert, (lt.listen_succeeded_alert, lt.listen_failed_alert)):
            self._note_listening(alert)
            return
        handle = getattr(alert, "handle", None)
        if handle is None or not handle.is_valid():
            return
        listener = self._listener_for(handle.info_hashes())
        event = translate(alert) if listener else None
        if event:
            listener(event)

    def _before_metadata(self, handle, name):
        with self._lock:
            hook = next((self._metadata_hooks[key] for key in info_hash_keys(handle.info_hashes())
                         if key in self._metadata_hooks), None)
        if hook is not None:
            hook(handle, name)

    def _note_listening(self, alert):
        if isinstance(alert, lt.listen_failed_alert):
            log.error("libtorrent cannot listen: %s", alert.message())
            self.listen_error = alert.message()
        elif alert.socket_type == lt.socket_type_t.tcp:
            self.listen_ports = self.listen_ports | {alert.port}

    def listen_problem(self):
        """What stops peers reaching this session as configured, in a sentence; None if nothing.

        libtorrent moves on to the next port when one is taken (max_retry_port_bind), saying
        nothing: a port forwarded on the router then leads nowhere.
        """
        ports, error = self.listen_ports, self.listen_error
        if not ports:
            return error and (f"Peers cannot connect to hashdrop ({error}); it still connects to them. "
                              "Set HASHDROP_LISTEN_INTERFACES to a free address and port, and restart.")
        wanted = self.configured_ports
        if not wanted or wanted & ports:
            return None
        port, configured = min(ports), min(wanted)
        return (f"Peers reach hashdrop on port {port}, not {configured} as set: another program holds "
                f"{configured}. Forward {port} on your router, or free {configured} and restart.")

    def save_if_due(self, status):
        """Ask for resume data of a torrent that changed, at most every resume_interval.

        Not before its metadata: the store keeps its magnet already, and a thousand magnets
        submitted at once would each write a file for nothing while jobs are being added.
        """
        if not status.need_save_resume or not status.has_metadata:
            return
        key = str(status.info_hashes.get_best())
        now = time.monotonic()
        if now - self._last_resume_save.get(key, 0.0) >= self.resume_interval:
            self._last_resume_save[key] = now
            try:
                status.handle.save_resume_data(PERIODIC_RESUME_FLAGS)
            except RuntimeError:  # removed since this update; the rest of the batch still counts
                self._last_resume_save.pop(key, None)

    def close(self, on_resume_data, timeout=10):
        """Stop the alert thread, then save resume data for every torrent within timeout.

        on_resume_data(keys, data) receives each torrent's encoded resume data, and keeps its own errors.
        """
        if self.session is None:
            return
        self._stop.set()
        self.session.post_session_stats()  # wakes the alert thread from wait_for_alert
        if self._thread:
            self._thread.join(timeout)
        session, self.session = self.session, None
        session.pause()
        waiting = set()
        for handle in session.get_torrents():
            handle.save_resume_data(SHUTDOWN_RESUME_FLAGS)
            waiting.add(str(handle.info_hashes().get_best()))
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            session.wait_for_alert(100)
            for alert in session.pop_alerts():
                if isinstance(alert, lt.save_resume_data_alert):
                    keys = info_hash_keys(alert.params.info_hashes)
                    on_resume_data(keys, lt.write_resume_data_buf(alert.params))
                elif not isinstance(alert, lt.save_resume_data_failed_alert):
                    continue
                waiting.discard(str(alert.handle.info_hashes().get_best()))
        if waiting:
            log.warning("shut down before %d torrents saved their resume data", len(waiting))


# The job thread ----------------------------------------------------------------------

STOP = "stop"


def downloader(task):
    """Download one job's torrent into its save path until it is removed or the app stops.

    Runs in the job's own worker. task (jobs.task.JobTask) gives the session, the job's hashes
    (keys()), its add parameters and its inbox; it takes the torrent (attach, detach), the
    events (handle), a failure (fail), and the metadata as it arrives, in the alert thread
    (before_metadata). This adds the torrent to the shared session, then
    sleeps on the inbox (next_message), where the alert thread delivers the torrent's alerts
    and status updates, until it is told to stop.
    """
    torrent = None
    try:
        with task.turn_to_add():
            # Listen before adding: a torrent's first alerts (metadata, finished) can come
            # before add() returns, and an alert with no listener is dropped.
            task.session.listen(task.keys(), task.inbox.put, task.before_metadata)
            torrent = task.session.add(task.add_params())
            task.attach(torrent)
        # (event, value) pairs from translate(), and ("tick", None) when a timer of the job is due
        for message in iter(task.next_message, STOP):
            task.handle(*message)
    except SessionClosed:
        pass  # the app is shutting down; the job runs again at the next start
    except JobRefused as exc:
        log.warning("job %s: %s", task.info_hash, exc)
        task.fail(str(exc))
    except Exception as exc:
        log.exception("job %s failed", task.info_hash)
        task.fail(describe_error(exc))
    finally:
        task.detach(torrent)


def describe_error(exc):
    """A sentence for a person: the OS's reason for OS errors, else the exception text."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def translate(alert):
    """Turn a libtorrent alert or status into a plain (event, value) pair for a job.

    Alerts are only valid until the next pop_alerts(), so this runs in the alert thread
    and keeps nothing of the alert. Returns None for alerts jobs do not care about.
    """
    if isinstance(alert, lt.torrent_status):
        return "status", live_status(alert)
    if isinstance(alert, lt.metadata_received_alert):
        alert.handle.save_resume_data(RESUME_FLAGS)
        info = alert.handle.torrent_file()
        return "metadata", (info.name(), info_hash_keys(info.info_hashes()))
    if isinstance(alert, lt.torrent_finished_alert):
        flush(alert.handle)
        return "finished", live_status(alert.handle.status())
    if isinstance(alert, lt.file_error_alert):
        return "error", describe_file_error(alert.error, alert.filename())
    if isinstance(alert, lt.torrent_error_alert):
        return "error", alert.error.message()  # no file name: this alert does not carry one
    if isinstance(alert, lt.tracker_reply_alert):
        peers = "1 peer" if alert.num_peers == 1 else f"{alert.num_peers} peers"
        return "tracker", f"{peers} from {alert.tracker_url()}"
    if isinstance(alert, lt.tracker_error_alert):
        reason = alert.failure_reason() or alert.error.message()
        return "tracker", f"{alert.tracker_url()}: {reason}"
    if isinstance(alert, lt.torrent_checked_alert):
        return "checked", None
    if isinstance(alert, lt.cache_flushed_alert):
        return "flushed", None
    if isinstance(alert, lt.save_resume_data_alert):
        return "resume_data", lt.write_resume_data_buf(alert.params)
    if isinstance(alert, lt.save_resume_data_failed_alert) and not not_modified(alert.error):
        log.warning("resume data not saved: %s", alert.message())
    return translate_file_alert(alert)


def translate_file_alert(alert):
    """translate() for the alerts about a torrent's files on disk: moved, renamed, or not."""
    if isinstance(alert, lt.storage_moved_alert):
        return "moved", alert.storage_path()
    if isinstance(alert, lt.storage_moved_failed_alert):
        return "move_failed", (describe_move_error(alert), alert.error.value() == errno.EEXIST)
    if isinstance(alert, lt.file_renamed_alert):
        return "renamed", (int(alert.index), True)
    if isinstance(alert, lt.file_rename_failed_alert):
        log.warning("%s", alert.message())  # the file keeps its name; the job goes on
        return "renamed", (int(alert.index), False)
    return None


def describe_file_error(error, filename):
    """libtorrent's reason for a file error, and "the disk is full" where an I/O error means that.

    With memory-mapped files (HASHDROP_DISK_IO=mmap) a full disk is a SIGBUS, which libtorrent
    reports as "No space left on device" when it faults in a write but as an I/O error when it
    faults in a read (mmap_storage.cpp, translate_error).
    """
    text = f"{error.message()}: {filename}"
    if error.value() == errno.EIO and disk_is_full(filename):
        text += " (the disk is full)"
    return text


def describe_move_error(alert):
    """The OS's reason a move into the library failed, and the file it failed on."""
    where = alert.file_path()
    return f"{alert.error.message()}: {where}" if where else alert.error.message()


def live_status(status):
    """The fields of a torrent_status that the page and the API show."""
    return {
        "total_wanted": status.total_wanted,
        "total_size": status.total,  # every file's bytes, wanted or not
        "total_wanted_done": status.total_wanted_done,
        "download_rate": status.download_payload_rate,
        "upload_rate": status.upload_payload_rate,
        "all_time_upload": status.all_time_upload,
        "all_time_download": status.all_time_download,
        "peers": status.num_peers,
        "seeds": status.num_seeds,
        # Nothing wanted is not finished: a job added paused holds all its files for a choice.
        "finished": status.has_metadata and status.is_finished and status.total_wanted > 0,
        "checking": status.state in CHECKING_STATES,
        # Copies of the torrent among the connected peers and this job (1.0: every piece is
        # there); -1 once nothing is wanted. Tells a stalled job that a peer has what it lacks.
        "distributed_copies": status.distributed_copies,
    }


def flush(handle):
    """Have libtorrent write out every block it holds for this torrent.

    cache_flushed_alert says when the blocks are written. save_resume_data's flush_disk_cache
    would not wait for that: libtorrent 2.1 posts the resume data first (torrent::save_resume_data).
    No resume data is asked for here: until the files are fsynced it would not be believed after
    a crash anyway, and jobs.durability.sync asks for it once they are.
    """
    handle.flush_cache()


def not_modified(error):
    """True for the "nothing changed since the last save" answer to a conditional resume save."""
    return error.value() == RESUME_NOT_MODIFIED and error.category().name() == "libtorrent"


def save_resume(handle):
    handle.save_resume_data(RESUME_FLAGS)



def reconnect(handle):
    """Ask trackers for peers again at once, e.g. after a resume."""
    handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)


def announce_everywhere(handle):
    """Ask the trackers, and the DHT where it is on (else this part does nothing), for peers again."""
    reconnect(handle)
    handle.force_dht_announce()


def peer_progress(torrent):
    """The share of the torrent (0 to 1) each connected peer has; none for no torrent."""
    if torrent is None:
        return []
    try:
        return [peer.progress for peer in torrent.handle.get_peer_info()]
    except RuntimeError:  # removed meanwhile
        return []
