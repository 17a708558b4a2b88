"""The job registry: one thread per download, its state, queueing, and the submit path."""
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

import cpus
import downloader as torrents_mod
import hashes
from downloader import STOP, TorrentSession, downloader, session_settings
from store import JobStore, write_all_atomically, write_atomically

log = logging.getLogger(__name__)

# A shown rate is the bytes of the last RATE_WINDOW seconds of statuses; with less than
# MIN_RATE_SPAN between the two counts it is libtorrent's own.
RATE_WINDOW = 2.0
MIN_RATE_SPAN = 0.5


class JobState(str, Enum):
    QUEUED = "queued"
    FETCHING_METADATA = "fetching_metadata"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobError(Exception):
    """An action on a job that cannot be done; status is the HTTP status that fits."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


def utcnow():
    return datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Job:
    """One download: what was asked for, where it goes, and what libtorrent last said."""

    info_hash: str
    save_path: str
    manager: "JobManager"
    v1_hash: str | None = None
    v2_hash: str | None = None
    name: str | None = None
    magnet: str | None = None
    torrent: bytes | None = None  # the uploaded .torrent file (magnet metadata is kept with the resume data)
    category: str = ""
    sequential: bool = False
    added_at: datetime = field(default_factory=utcnow)
    state: JobState = JobState.FETCHING_METADATA
    error: str | None = None
    completed_at: datetime | None = None
    live: dict = field(default_factory=dict)  # the latest batched torrent status
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None
    torrent_handle: object = None  # downloader.SessionDownloader once added
    delete_files: bool = False
    removing: bool = False
    seeding_stopped: bool = False
    has_metadata: bool = False
    flushing: bool = False  # finished; completed once libtorrent has written out what it holds
    synced: bool = False  # completed and its files fsynced: its resume data may vouch for them
    detached: bool = False  # its thread has let go of its torrent, and no longer deletes files
    restored: bool = False  # brought back at start, not retried since: its files should be on disk
    fetching_file_list: bool = False  # paused, but fetching its metadata: it downloads no file
    redial_due: bool = False  # its held files were just released: dial its seeds once it wants them
    marked_for: int | None = None  # total_wanted when its unfinished files were last marked
    renaming: set = field(default_factory=set)  # indices of its files with a rename under way
    unrenamable: set = field(default_factory=set)  # indices of files whose rename failed
    tracker: str | None = None  # what the last tracker answer said
    byte_counts: deque = field(default_factory=deque)  # (monotonic time, all-time down, up) per status
    uploaded_saved: int = 0  # its upload total as the store last recorded it

    # Called from the job's own thread (see downloader.downloader) -------------------
    def wait_for_submit(self):
        self.manager.wait_for_submit()

    def add_params(self):
        return self.manager.add_params(self)

    def attach(self, torrent):
        self.manager.attach(self, torrent)

    def handle_event(self, event, value):
        """Apply one event from libtorrent (see downloader.translate) to this job."""
        manager = self.manager
        if event == "status":
            self.live = self.measure_rates(value, time.monotonic())
            if self.redial_due and value["total_wanted"] > 0:
                manager.redial_if_due(self)
            if not value["finished"] and not value.get("checking"):
                self.synced = False  # pieces to fetch (more files wanted, or lost ones): not on disk yet
                if self.state == JobState.COMPLETED and self.has_metadata:
                    manager.download_again(self)
            if value["finished"] and self.state in (JobState.DOWNLOADING, JobState.QUEUED):
                manager.finishing(self)
            if self.state == JobState.COMPLETED:
                manager.check_seed_ratio(self)
            manager.mark_partial(self)
        elif event == "metadata":
            name, keys = value
            manager.metadata_arrived(self, name, keys)
        elif event == "finished":  # translate() has asked libtorrent to write out (flush)
            self.live = value
            # Not finished by the time of its status: more files were wanted meanwhile, or
            # none was yet (files held for a choice, released as the metadata came).
            if value["finished"] and (self.state in RUNNING or self.state == JobState.COMPLETED):
                # completed: rechecked, or more files were wanted and are done
                manager.finishing(self, flush_asked=True)
        elif event == "error":
            manager.set_state(self, JobState.FAILED, error=value)
            manager.mark_failed(self)
        elif event == "tracker":
            self.tracker = value
        elif event == "resume_data":
            manager.save_resume(self, value)
        elif event == "flushed":
            manager.flushed(self)
        elif event == "renamed":
            manager.renamed(self, *value)

    def measure_rates(self, status, now):
        """The status, with its rates measured from the byte counts of the last few seconds.

        libtorrent's rates are running averages that take in a fifth of each second's bytes
        (stat.cpp), so they lag: a download at 4 MiB/s showed 1.3 MiB/s, and 29 s left for 9,
        four seconds in. Runs in the job's thread only.
        """
        counts = self.byte_counts
        if counts and now - counts[-1][0] > RATE_WINDOW:
            counts.clear()  # no status for a while: what came in between is not a rate
        counts.append((now, status["all_time_download"], status["all_time_upload"]))
        while len(counts) > 2 and now - counts[0][0] > RATE_WINDOW:
            counts.popleft()
        then, down, up = counts[0]
        span = now - then
        if span < MIN_RATE_SPAN:
            return status
        return {**status,
                "download_rate": int(max(0, status["all_time_download"] - down) / span),
                "upload_rate": int(max(0, status["all_time_upload"] - up) / span)}

    def keys(self):
        """The hashes libtorrent may report this job's torrent under."""
        return [key for key in {self.info_hash, self.v1_hash, self.v2_hash} if key]

    def fail(self, error):
        self.manager.set_state(self, JobState.FAILED, error=error)

    def detach(self, torrent):
        self.manager.detach(self, torrent)

    # Read by the page and the API ---------------------------------------------------
    def short_of_space(self, remaining):
        """The free bytes on the save path's disk if fewer than the job still needs, else None."""
        if remaining <= 0 or self.state not in (*RUNNING, JobState.PAUSED):
            return None
        free = torrents_mod.free_bytes(self.save_path)
        return free if free is not None and free < remaining else None

    def record(self):
        """The job's durable fields, as stored."""
        return {
            "info_hash": self.info_hash,
            "v1_hash": self.v1_hash,
            "v2_hash": self.v2_hash,
            "name": self.name,
            "magnet": self.magnet,
            "torrent": self.torrent,
            "added_at": self.added_at.isoformat(),
            "state": self.state.value,
            "error": self.error,
            "save_path": self.save_path,
            "category": self.category,
            "sequential": int(self.sequential),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }

    def uploaded(self):
        return self.live.get("all_time_upload", self.uploaded_saved)

    def share_ratio(self):
        """Bytes uploaded per byte wanted, as HASHDROP_SEED_RATIO counts it; None before metadata."""
        wanted = self.live.get("total_wanted")
        return self.uploaded() / wanted if wanted else None

    def rates(self):
        """Bytes/s (in, out) now. With no peer nothing moves, whatever rate was last reported:
        a job with no peer left showed 200 KiB/s and "10 s left" for half a minute."""
        if not self.live.get("peers"):
            return 0, 0
        down = 0 if self.state == JobState.COMPLETED else self.live.get("download_rate", 0)
        return down, self.live.get("upload_rate", 0)

    def to_dict(self, now=None):
        """The job as the API and the page show it."""
        now = now or utcnow()
        live = self.live
        total = live.get("total_wanted", 0)
        done = live.get("total_wanted_done", 0)
        rate, upload_rate = self.rates()
        ratio = self.share_ratio()
        progress = 1.0 if self.state == JobState.COMPLETED else (done / total if total else 0.0)
        eta = None
        if self.state == JobState.DOWNLOADING and rate > 0 and total > done:
            eta = int((total - done) / rate)
        return {
            "info_hash": self.info_hash,
            "v1_hash": self.v1_hash,
            "v2_hash": self.v2_hash,
            "name": self.name,
            "added_at": self.added_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "state": self.state.value,
            "progress": round(progress, 4),
            "total_bytes": total,
            "torrent_bytes": live.get("total_size", 0),
            "downloaded_bytes": total if self.state == JobState.COMPLETED and total else done,
            "uploaded_bytes": self.uploaded(),
            "ratio": None if ratio is None else round(ratio, 3),
            "download_rate": rate,
            "upload_rate": upload_rate,
            "peers": live.get("peers", 0),
            "seeds": live.get("seeds", 0),
            "eta_seconds": eta,
            "waiting_seconds": int((now - self.added_at).total_seconds()),
            "seeding": self.state == JobState.COMPLETED and not self.seeding_stopped,
            "checking": live.get("checking", False),
            "disk_free_bytes": self.short_of_space(total - done),
            "error": self.error,
            "tracker": self.tracker,
            "save_path": self.save_path,
            "category": self.category,
            "sequential": self.sequential,
            "has_metadata": self.has_metadata,
            "fetching_file_list": self.fetching_file_list,
        }


@dataclass
class SubmitResult:
    """What one submit did, line by line."""

    started: list = field(default_factory=list)     # Job
    duplicates: list = field(default_factory=list)  # hashes.Target repeated in the paste
    existing: list = field(default_factory=list)    # hashes.Target already a job
    rejected: list = field(default_factory=list)    # hashes.Rejected
    refused: str | None = None                      # the whole submit was refused
    refused_status: int = 400                       # and the HTTP status that says why

    def messages(self):
        """(message, category) pairs for flash(), in the order a person reads them."""
        if self.refused:
            return [(self.refused, "error")]
        out = first_few([(f"Skipped {r.text!r}: {r.reason}", "error") for r in self.rejected],
                        "more lines were skipped")
        out += first_few([(f"{label(t)} was pasted more than once; started it once.", "warning")
                          for t in self.duplicates], "more were pasted more than once")
        out += first_few([(f"{label(t)} is already in the list; nothing new started.", "warning")
                          for t in self.existing], "more are already in the list")
        if not (self.started or self.rejected or self.duplicates or self.existing):
            return [("Paste at least one info hash or magnet link.", "error")]
        count = len(self.started)
        names = ", ".join(job.name or job.info_hash for job in self.started[:5])
        more = f" and {count - 5} more" if count > 5 else ""
        found = f": {names}{more}" if count else ""
        out.append((f"Started {count} download{'s' if count != 1 else ''}{found}.",
                    "success" if count else "warning"))
        return out

    def to_dict(self):
        return {
            "started": [job.to_dict() for job in self.started],
            "duplicates": [{"info_hash": t.info_hash, "text": t.source} for t in self.duplicates],
            "existing": [{"info_hash": t.info_hash, "text": t.source} for t in self.existing],
            "rejected": [{"text": r.text, "reason": r.reason} for r in self.rejected],
            "messages": [{"text": m, "category": c} for m, c in self.messages()],
        }


def label(target):
    return target.name or target.info_hash


MESSAGES_PER_KIND = 5  # flashed messages live in the session cookie, which browsers cap at 4 KB


def first_few(messages, more):
    """The first MESSAGES_PER_KIND messages, and one line that counts the rest."""
    if len(messages) <= MESSAGES_PER_KIND:
        return messages
    rest = len(messages) - MESSAGES_PER_KIND
    return messages[:MESSAGES_PER_KIND] + [(f"…and {rest:,} {more}.", messages[0][1])]


class JobManager:
    """The registry of jobs, their threads and the download slots, under one lock."""

    def __init__(self, config, torrents, store):
        self.config = config
        self.torrents = torrents
        self.store = store
        self.resume_dir = os.path.join(config["DATA_DIR"], "resume")
        os.makedirs(self.resume_dir, exist_ok=True)
        self.max_active = int(config["MAX_ACTIVE"])
        self.seed_ratio = config["SEED_RATIO"]
        self.part_suffix = config.get("PART_SUFFIX", "")
        self.resume_interval = float(config["RESUME_INTERVAL"])
        self._upload_totals_due = 0.0  # monotonic time of the next save of upload totals
        self._lock = threading.RLock()
        self._jobs = {}      # info_hash -> Job, in the order they were added
        self._active = set()  # info hashes holding a download slot
        self._aliases = {}    # every v1/v2 hash of a job -> its info_hash
        self._closed = False
        # There while the app runs: found at start, the last run did not shut down cleanly.
        self.running_marker = os.path.join(config["DATA_DIR"], "running")
        self.unclean_start = os.path.exists(self.running_marker)
        if self.unclean_start:
            log.warning("hashdrop did not shut down cleanly last time: "
                        "unfinished downloads are checked against their files before they go on")
        write_atomically(self.running_marker, f"{os.getpid()}\n".encode())

    @classmethod
    def from_config(cls, config):
        """Open the store, start the session, and bring back the stored jobs."""
        store = JobStore.in_dir(config["DATA_DIR"])
        torrents = TorrentSession(session_settings(config), float(config["RESUME_INTERVAL"]),
                                  config["DISK_IO"])
        torrents.start()
        manager = cls(config, torrents, store)
        torrents.on_tick = manager.save_upload_totals
        manager.restore()
        return manager

    # Submitting ---------------------------------------------------------------------
    def submit_text(self, text, **options):
        """Start one background download per info hash or magnet found in text."""
        return self.submit(hashes.parse_text(text or ""), **options)

    def submit_items(self, items, **options):
        return self.submit(hashes.parse_items(items), **options)

    def submit(self, parsed, uploads=(), category="", paused=False, sequential=False):
        """Start a job per new target and per uploaded .torrent file ((filename, bytes) pairs)."""
        result = SubmitResult(duplicates=list(parsed.duplicates), rejected=list(parsed.rejected))
        try:
            category = self.check_category(category)
        except JobError as exc:
            result.refused = exc.message
            return result
        targets = [(target, None) for target in parsed.targets]
        for filename, data in uploads:
            try:
                v1, v2, name = torrents_mod.describe_torrent(data)
            except ValueError as exc:
                result.rejected.append(hashes.Rejected(filename, f"is not a usable .torrent file: {exc}"))
                continue
            target = hashes.Target(info_hash=v1 or v2, v1_hash=v1, v2_hash=v2, name=name, source=filename)
            targets.append((target, data))
        new_jobs = []
        save_path = self.save_path_for(category)
        with self._lock:
            if self._closed:
                result.refused = "hashdrop is shutting down; nothing was started."
                result.refused_status = 503
                return result
            for target, torrent in targets:
                if self._find(target):
                    result.existing.append(target)
                    continue
                job = self._new_job(target, save_path, category, sequential)
                job.torrent = torrent
                job.state = JobState.PAUSED if paused else job.state
                self._register(job)
                new_jobs.append(job)
            if new_jobs:
                try:
                    self.store.save_many([job.record() for job in new_jobs])
                except sqlite3.Error as exc:  # a full disk, most often: the downloads filled it
                    for job in new_jobs:
                        self._unregister(job)
                    result.refused = (f"The job database {self.store.path} could not record the new "
                                      f"downloads ({exc}); nothing was started.")
                    result.refused_status = 507
                    return result
            with cpus.starting_on_this_cpu():
                for job in new_jobs:
                    self._start(job)
        result.started = new_jobs
        return result

    def _find(self, target):
        for key in (target.v1_hash, target.v2_hash, target.info_hash):
            if key and key in self._aliases:
                return self._jobs.get(self._aliases[key])
        return None

    def _register(self, job):
        self._jobs[job.info_hash] = job
        for key in (job.v1_hash, job.v2_hash, job.info_hash):
            if key:
                self._aliases[key] = job.info_hash

    def _unregister(self, job):
        del self._jobs[job.info_hash]
        for key in [k for k, v in self._aliases.items() if v == job.info_hash]:
            del self._aliases[key]

    def _new_job(self, target, save_path, category, sequential):
        return Job(
            info_hash=target.info_hash,
            v1_hash=target.v1_hash,
            v2_hash=target.v2_hash,
            name=target.name,
            magnet=hashes.magnet_for(target, self.config["TRACKERS"]),
            save_path=save_path,
            category=category,
            sequential=sequential,
            manager=self,
        )

    def save_path_for(self, category):
        return os.path.abspath(os.path.join(self.config["SAVE_PATH"], category))

    def check_category(self, category):
        """A category is a subfolder of the save path; refuse any that would leave it."""
        category = (category or "").strip().strip("/")
        if not category:
            return ""
        refusal = JobError(f"The category {category!r} must be a folder name inside the save path.")
        if "\0" in category or os.path.isabs(category) or len(category) > 200:
            raise refusal
        root = os.path.realpath(self.config["SAVE_PATH"])
        target = os.path.realpath(os.path.join(root, category))
        if not target.startswith(root + os.sep):
            raise refusal
        return os.path.relpath(target, root)

    def _start(self, job):
        job.thread = threading.Thread(
            target=downloader, args=(job,), name=f"job-{job.info_hash[:8]}", daemon=True
        )
        job.thread.start()

    # The job thread's side ----------------------------------------------------------
    def wait_for_submit(self):
        """Return once no submit is starting jobs, then take back every CPU.

        A new job's thread waits here first: were it to go on and add its torrent, it would
        take the GIL from the request that is still starting the other threads (a 100-hash
        submit took up to 70 ms instead of 25). It widens its CPUs only after the wait: until
        a new thread blocks, the request that started it waits on the CPU they share (100
        starts: 7.5 ms p50 this way round, 8.4 the other).
        """
        with self._lock:
            pass
        cpus.all_cpus()

    def add_params(self, job):
        """Build libtorrent's add parameters: resume data if kept, else .torrent or magnet."""
        params, vouched = self._read_resume(job)
        if params is not None and (params.renamed_files or not vouched):
            torrents_mod.match_names_on_disk(params, job.save_path, self.part_suffix)
        if params is not None and job.restored and job.state != JobState.PAUSED \
                and torrents_mod.data_missing(params, job.save_path):
            # A library on a disk that is not mounted (yet): downloading on would fill the
            # empty mount point, and seeding would fail on every read. Transmission says "No
            # data found!" here too.
            raise torrents_mod.DataMissing(f"No data found in {job.save_path}: is its disk connected? "
                              "Retry once it is (or to download it again).")
        os.makedirs(job.save_path, exist_ok=True)
        if params is not None:
            # After a crash, only resume data saved once the files were fsynced is believed:
            # other resume data can claim pieces that were still in libtorrent's buffers or
            # in the page cache. A clean shutdown syncs everything (see shutdown()).
            job.synced = vouched or (not self.unclean_start and job.state == JobState.COMPLETED)
            if self.unclean_start and not vouched:
                torrents_mod.drop_piece_claims(params)
        if params is None and job.torrent:
            params = torrents_mod.params_from_torrent(job.torrent)
            torrents_mod.match_names_on_disk(params, job.save_path, self.part_suffix)
        if params is None:
            params = torrents_mod.params_from_magnet(job.magnet)
        params.save_path = job.save_path
        torrents_mod.set_flag(params, "sequential_download", job.sequential)
        with self._lock:
            job.has_metadata = torrents_mod.has_metadata(params)
            if job.state == JobState.COMPLETED:
                paused, slot = job.seeding_stopped, True
            elif job.state == JobState.PAUSED:
                # Paused before its metadata came: it fetches the metadata all the same, so that
                # its files can be chosen before any byte of them moves; libtorrent downloads no
                # file whose priority was not set (default_dont_download).
                job.fetching_file_list = not job.has_metadata
                paused, slot = not job.fetching_file_list, False
            else:
                paused, slot = False, not job.has_metadata or self._take_slot(job)
        # A torrent with metadata but no slot runs in upload mode: it requests no piece
        # and starts at once when a slot frees. One without metadata must not: a seed
        # drops a peer that says it is upload-only before sending it the metadata.
        torrents_mod.set_flag(params, "paused", paused)
        torrents_mod.set_flag(params, "upload_mode", not slot and job.has_metadata)
        torrents_mod.set_flag(params, "default_dont_download", job.fetching_file_list)
        # After a crash the store's total is newer than the resume data's (see save_upload_totals).
        params.total_uploaded = max(params.total_uploaded, job.uploaded_saved)
        return params

    def attach(self, job, torrent):
        """The torrent is in the session: listen to it, and match it to the job's state,
        which may have changed while it was being added."""
        keys = torrents_mod.info_hash_keys(torrent.handle.info_hashes())
        with self._lock:
            job.torrent_handle = torrent
            if job.state == JobState.PAUSED:
                if not job.fetching_file_list:
                    torrent.pause()
            elif job.state == JobState.COMPLETED:
                pass
            elif not job.has_metadata:
                self.set_state(job, JobState.FETCHING_METADATA)
                torrent.resume()
            else:
                self._want_download(job)
        self.torrents.listen(keys, job.inbox.put)
        # The first status arrives with the next batch; ask now so metadata-less jobs
        # show their peers at once.
        torrent.handle.post_status()

    def detach(self, job, torrent):
        """The job's thread is ending: its torrent leaves the session, unless the app stops."""
        with self._lock:
            job.torrent_handle = None
            job.detached = True
            self._release_slot(job)
            closing = self._closed
            delete_files = job.removing and job.delete_files
        self.torrents.forget(job.keys(), job.inbox.put)
        if torrent is None or torrent.handle is None:
            return
        self.torrents.forget(torrents_mod.info_hash_keys(torrent.handle.info_hashes()), job.inbox.put)
        if not closing and self.torrents.session is not None:
            torrent.stop(delete_files=delete_files)

    def set_state(self, job, state, error=None):
        """Move a job to a new state, record it, and hand its slot on when it frees one."""
        with self._lock:
            if job.removing or (job.state == state and job.error == error):
                return
            job.state = state
            job.error = error
            if state == JobState.COMPLETED and job.completed_at is None:
                job.completed_at = utcnow()
            if state != JobState.DOWNLOADING:
                self._release_slot(job)
            self.store.update(job.info_hash, state=state.value, error=error,
                              completed_at=job.record()["completed_at"])

    def metadata_arrived(self, job, name, keys):
        """Record the name, then start downloading if a slot is free.

        The metadata itself is kept with the resume data, asked for as it arrived. The files
        are named first: libtorrent is downloading already, and the store's writes can wait.
        """
        self._mark_before_download(job)
        self.torrents.listen(keys, job.inbox.put)
        with self._lock:
            job.name = name
            job.has_metadata = True
            for key in keys:
                self._aliases[key] = job.info_hash
            self.store.update(job.info_hash, name=name)
            fetched_file_list, job.fetching_file_list = job.fetching_file_list, False
            if job.state == JobState.FETCHING_METADATA:
                self._want_download(job)
            elif fetched_file_list and job.state == JobState.PAUSED and job.torrent_handle:
                job.torrent_handle.pause()  # its files can be chosen now; Resume downloads them

    def finishing(self, job, flush_asked=False):
        """Every wanted piece is in: complete the job once libtorrent has written them all out.

        libtorrent says finished while the last blocks can still sit in its write buffer (the
        bench saw a 1 GiB file incomplete on disk for up to 0.9 s after). The job is completed
        at the cache_flushed_alert of the flush that finishing asks for, when its files are whole
        for whoever reads them.
        """
        with self._lock:
            if job.flushing:
                return
            job.flushing = True
            torrent = job.torrent_handle
            buffered = torrent is not None and job.has_metadata
        if flush_asked:
            return
        if not buffered:  # no torrent or no metadata yet: nothing of it can be in a buffer
            self.flushed(job)
            return
        try:
            torrents_mod.flush(torrent.handle)
        except RuntimeError:  # removed meanwhile
            self.flushed(job)

    def flushed(self, job):
        """libtorrent's buffers for this torrent are on disk: a finishing job is completed,
        once its files have their own names back."""
        with self._lock:
            if not job.flushing:
                return
        if job.renaming or self._unmark_complete(job):
            return  # renamed() comes back here once the renames are done
        with self._lock:
            job.flushing = False
            if job.state in RUNNING:
                self.set_state(job, JobState.COMPLETED)
        if job.state == JobState.COMPLETED:
            self.sync(job)
        self.check_seed_ratio(job)

    def _unmark_complete(self, job):
        """Rename a finishing job's complete files back from the part suffix; True if any.

        Its pieces are written by now (flushed), and libtorrent posts file_renamed_alert once
        each file has its name on disk: renamed() then completes the job.
        """
        torrent = job.torrent_handle
        if torrent is None or not job.has_metadata:
            return False
        try:
            indices = torrents_mod.unmark_complete(torrent.handle, skip=job.unrenamable)
        except RuntimeError:  # removed meanwhile
            return False
        job.renaming.update(indices)
        return bool(indices)

    def renamed(self, job, index, ok):
        """One of the job's files was renamed (or could not be: it keeps its name)."""
        tracked = index in job.renaming
        job.renaming.discard(index)
        if not ok:
            job.unrenamable.add(index)
        if job.renaming:
            return
        if job.flushing:
            self.flushed(job)  # it was waiting for its renames
        elif tracked and job.torrent_handle:
            # Renames alone do not make the periodic save (they are libtorrent's "state"),
            # and resume data that names a file wrongly loses it after a crash.
            try:
                torrents_mod.save_resume(job.torrent_handle.handle)
            except RuntimeError:  # removed meanwhile
                pass

    def _mark_before_download(self, job):
        """Its metadata is in: mark its files before their first byte, or take back kept ones."""
        torrent = job.torrent_handle
        if not self.part_suffix or torrent is None:
            return
        try:
            indices, kept = torrents_mod.mark_before_download(torrent.handle, job.save_path, self.part_suffix)
            if kept:
                torrent.handle.force_recheck()
        except RuntimeError:  # removed meanwhile
            return
        job.renaming.update(indices)

    def mark_partial(self, job):
        """Give a downloading job's unfinished files the part suffix, once it knows which.

        Runs on each status: the first one after the files were checked, and the first after
        more files were chosen (total_wanted changes), rename; the others return at once.
        """
        live = job.live
        if job.state not in (JobState.DOWNLOADING, JobState.QUEUED) \
                or live.get("finished") or live.get("checking") or live.get("total_wanted") == job.marked_for:
            return
        if self._mark_unfinished(job):
            job.marked_for = live.get("total_wanted")

    def mark_failed(self, job):
        """Mark the unfinished files of a job that failed, whatever its last status said.

        A magnet's first pieces can land under the files' own names before its thread has
        marked them (mark_before_download), and a full disk can fail it before the first
        status marks them: a media library would take the unfinished files for finished ones.
        """
        self._mark_unfinished(job)

    def _mark_unfinished(self, job):
        """Give the job's unfinished wanted files the suffix; return whether it could look."""
        torrent = job.torrent_handle
        if not self.part_suffix or torrent is None or not job.has_metadata:
            return False
        try:
            job.renaming.update(torrents_mod.mark_partial(torrent.handle, self.part_suffix, skip=job.unrenamable))
        except RuntimeError:  # removed meanwhile
            return False
        return True

    def sync(self, job):
        """fsync a completed job's files, then ask for resume data that vouches for them.

        Runs in the job's thread, after the job is completed, so it delays no one: until it is
        done, the job's resume data does not vouch, and a crash means a recheck of its files.
        """
        torrent = job.torrent_handle
        if job.synced or torrent is None:
            return
        try:
            torrents_mod.sync_files(torrent.handle, job.save_path)
            job.synced = True
            torrents_mod.save_resume(torrent.handle)
        except RuntimeError:  # removed meanwhile
            pass
        except OSError as exc:
            log.warning("cannot sync the files of %s to disk: %s", job.info_hash, exc)

    def download_again(self, job):
        """A completed job has pieces to fetch again (more files chosen, or lost after a crash)."""
        with self._lock:
            if job.state != JobState.COMPLETED or job.removing:
                return
            job.seeding_stopped = False
            self._want_download(job)
            if job.torrent_handle:  # seeds dropped it once it was finished
                self.torrents.redial(job.torrent_handle.handle)

    def check_seed_ratio(self, job):
        """Stop seeding once the configured share ratio is reached (0: at once)."""
        with self._lock:
            if self.seed_ratio is None or job.seeding_stopped or not job.torrent_handle:
                return
            wanted = job.live.get("total_wanted") or 1
            if job.uploaded() / wanted >= self.seed_ratio:
                job.seeding_stopped = True
                job.torrent_handle.pause()

    def _want_download(self, job):
        self._release_held_files(job)
        slot = self._take_slot(job)
        was_queued = job.state == JobState.QUEUED
        self.set_state(job, JobState.DOWNLOADING if slot else JobState.QUEUED)
        if job.torrent_handle:
            handle = job.torrent_handle.handle
            torrents_mod.set_flag(handle, "upload_mode", not slot)
            job.torrent_handle.resume()
            if slot and was_queued:
                torrents_mod.reconnect(handle)  # seeds dropped it while it was upload-only

    def _release_held_files(self, job):
        """Want every file of a job whose files all wait for a choice (it was added paused
        before its metadata, see add_params) once it is to download without one."""
        torrent = job.torrent_handle
        if torrent is None or not job.has_metadata:
            return
        try:
            if any(torrent.handle.get_file_priorities()):
                return
            self._want_files(job, torrent.handle, set(range(torrent.handle.torrent_file().num_files())))
            job.redial_due = True
        except RuntimeError:  # removed meanwhile
            pass

    def redial_if_due(self, job):
        """Wanting nothing, a held job's torrent was finished: it let its seeds go and will not
        dial them again (see TorrentSession.redial). Once its new priorities show (libtorrent
        applies them after a disk job), make it. Without this it waited for the next announce."""
        torrent = job.torrent_handle
        job.redial_due = False
        if torrent is not None:
            try:
                self.torrents.redial(torrent.handle)
            except RuntimeError:  # removed meanwhile
                pass

    def _take_slot(self, job):
        if job.info_hash in self._active:
            return True
        if len(self._active) >= self.max_active:
            return False
        self._active.add(job.info_hash)
        return True

    def _release_slot(self, job):
        if job.info_hash not in self._active:
            return
        self._active.discard(job.info_hash)
        for waiting in self._jobs.values():
            if waiting.state == JobState.QUEUED and waiting.torrent_handle:
                self._want_download(waiting)
                break

    def save_upload_totals(self):
        """Record the upload totals that grew, at most every resume_interval, in one transaction.

        libtorrent keeps them in the resume data only, which is saved for them at shutdown alone
        (see downloader.PERIODIC_RESUME_FLAGS): a crash lost every byte seeded since the last
        clean stop, and the share ratio with it. Called about once a second by the alert thread;
        it also retries the changes that the job database could not take (JobStore.update).
        """
        now = time.monotonic()
        if now < self._upload_totals_due:  # most calls: not due, and the alert thread takes no lock
            return
        with self._lock:
            if now < self._upload_totals_due or self._closed:
                return
            self._upload_totals_due = now + self.resume_interval
            grown = [(job, job.live["all_time_upload"]) for job in self._jobs.values()
                     if job.live.get("all_time_upload", 0) > job.uploaded_saved]
            # With none grown, this still retries changes that the database could not take.
            self.store.save_upload_totals([(uploaded, job.info_hash) for job, uploaded in grown])
            for job, uploaded in grown:
                job.uploaded_saved = uploaded

    def save_resume(self, job, data):
        """Keep libtorrent's resume data (with the metadata) for the next start."""
        data = self._resume_to_keep(job, data)
        if data is None:
            return
        try:
            write_atomically(self._resume_path(job), data)
        except OSError as exc:
            log.warning("cannot keep resume data for %s: %s", job.info_hash, exc)

    def _resume_to_keep(self, job, data):
        if job.removing:
            return None
        if job.synced:  # else a completed job's files would be checked after the next crash
            data = torrents_mod.vouch(data)
        return data

    def _resume_path(self, job):
        return os.path.join(self.resume_dir, f"{job.info_hash}.resume")

    def _read_resume(self, job):
        """The job's kept resume data as add parameters, and whether it vouches for its pieces."""
        path = self._resume_path(job)
        try:
            with open(path, "rb") as f:
                data = f.read()
            return torrents_mod.params_from_resume(data), torrents_mod.vouched(data)
        except FileNotFoundError:
            return None, False
        except Exception as exc:
            log.warning("resume data %s is damaged (%s); the files will be rechecked", path, exc)
            os.replace(path, f"{path}.damaged")
            return None, False

    # Steering -----------------------------------------------------------------------
    def get(self, info_hash):
        with self._lock:
            job = self._jobs.get((info_hash or "").lower())
        if job is None:
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        return job

    def pause(self, info_hash):
        """Pause a job; a completed job stops seeding."""
        job = self.get(info_hash)
        with self._lock:
            if job.state in (JobState.FAILED, JobState.CANCELLED):
                raise JobError(f"{job.state.value} jobs cannot be paused.", 409)
            if job.state == JobState.COMPLETED:
                job.seeding_stopped = True
            elif job.state != JobState.PAUSED:
                self.set_state(job, JobState.PAUSED)
            job.fetching_file_list = False  # paused outright: no metadata either
            if job.torrent_handle:
                job.torrent_handle.pause()
        return job

    def resume(self, info_hash):
        """Resume a paused job (or retry a failed one); it may have to queue for a slot."""
        job = self.get(info_hash)
        with self._lock:
            if job.state == JobState.COMPLETED:
                job.seeding_stopped = False
                if job.torrent_handle:
                    job.torrent_handle.resume()
                return job
            if job.state not in (JobState.PAUSED, JobState.FAILED):
                return job
            retry = job.state == JobState.FAILED
            job.error = None
            job.fetching_file_list = False  # a held job's files are all wanted as its metadata comes
            job.restored = False  # a person asked: download again where files are missing
            if job.thread is None or not job.thread.is_alive():
                job.state = JobState.FETCHING_METADATA
                self.store.update(job.info_hash, state=job.state.value, error=None)
                self._start(job)
                return job
            torrent = job.torrent_handle
            if torrent is not None and retry:
                torrent.handle.clear_error()
            if not job.has_metadata:
                self.set_state(job, JobState.FETCHING_METADATA)
                if torrent is not None:
                    torrent.resume()
            else:
                self._want_download(job)
            if torrent is not None:
                torrents_mod.reconnect(torrent.handle)
        return job

    def retry_failed(self):
        """Retry every failed job; return them."""
        with self._lock:
            failed = [job for job in self._jobs.values() if job.state == JobState.FAILED]
        return [self.resume(job.info_hash) for job in failed]

    def remove(self, info_hash, delete_files=False):
        """Forget a job; its thread removes the torrent (and its files when asked)."""
        job = self.get(info_hash)
        with self._lock:
            job.state = JobState.CANCELLED
            job.removing = True
            job.delete_files = delete_files
            self._unregister(job)
            self._release_slot(job)
            self.store.delete(job.info_hash)
            job.inbox.put(STOP)
            # A failed job's thread has ended (and a failed job restored at start never had
            # one): its files are left for the manager to delete.
            files_left = delete_files and (job.thread is None or job.detached)
        if files_left:
            self._delete_files(job)
        try:
            os.remove(self._resume_path(job))
        except FileNotFoundError:
            pass
        return job

    def _delete_files(self, job):
        """Delete the files of a job that has no torrent in the session, as libtorrent would."""
        params, _ = self._read_resume(job)
        if params is None and job.torrent:
            params = torrents_mod.params_from_torrent(job.torrent)
        if params is None or not torrents_mod.has_metadata(params):
            return  # no metadata, so no files
        params.save_path = job.save_path
        torrents_mod.match_names_on_disk(params, job.save_path, self.part_suffix)
        self.torrents.delete_files(params)

    def files(self, info_hash):
        """The job's files, once its metadata is known."""
        torrent = self._torrent_with_metadata(info_hash)
        return torrents_mod.file_list(torrent.handle)

    def set_files(self, info_hash, wanted):
        """Choose which of the job's files to download, by index."""
        torrent = self._torrent_with_metadata(info_hash)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise JobError('"wanted" must be a list of file indices.')
        wanted = set(wanted)
        if not wanted:
            raise JobError("Choose at least one file. To download nothing, pause or remove the job.")
        self._want_files(self.get(info_hash), torrent.handle, wanted)
        # libtorrent applies priorities asynchronously: answer with what was asked for.
        return [{**entry, "wanted": entry["index"] in wanted}
                for entry in torrents_mod.file_list(torrent.handle)]

    def _want_files(self, job, handle, wanted):
        """Download exactly the files whose indices are in wanted."""
        if self.part_suffix:  # libtorrent copies a new file's first pieces in at once: name it first
            was_wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            torrents_mod.mark_before_download(handle, job.save_path, self.part_suffix, wanted - was_wanted)
        with self._lock:
            job.marked_for = None  # mark what is wanted now at the next status
        torrents_mod.set_wanted_files(handle, wanted)

    def _torrent_with_metadata(self, info_hash):
        job = self.get(info_hash)
        with self._lock:
            torrent = job.torrent_handle
            if torrent is None or not job.has_metadata:
                raise JobError("The file list is known once the metadata has arrived.", 409)
        return torrent

    def jobs(self, states=None, text=""):
        """Every job (or those in `states` whose name or hash holds `text`) as a dict, oldest first."""
        now = utcnow()
        # to_dict runs outside the lock: it asks the file system for free space, which can hang on a NAS.
        return [job.to_dict(now) for job in self._in_states(states, text)]

    def newest_first(self, start, count, states=None, text=""):
        """count jobs (those in `states` whose name or hash holds `text`, in any case) as dicts,
        newest first from position start, and how many there are."""
        now = utcnow()
        jobs = self._in_states(states, text)
        chosen = jobs[::-1][start:start + count]
        return [job.to_dict(now) for job in chosen], len(jobs)

    def _in_states(self, states, text=""):
        """The jobs in `states` (every job for None) whose name or hash holds `text` in any case,
        oldest first."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if states is None or job.state in states]
        if text:
            text = text.casefold()
            jobs = [job for job in jobs if text in (job.name or "").casefold() or text in job.info_hash]
        return jobs

    def transfer_rates(self):
        """Bytes/s in and out over every job."""
        rates = [job.rates() for job in self._in_states(None)]
        return {"download_rate": sum(down for down, _ in rates), "upload_rate": sum(up for _, up in rates)}

    def counts(self):
        with self._lock:
            states = [job.state for job in self._jobs.values()]
        return {state.value: states.count(state) for state in JobState}

    def has_changing(self):
        """Whether some job's row will change without a click: it runs, or libtorrent's first
        status for it is still to come (a job just started paused has no size or Files link yet)."""
        with self._lock:
            return any(job.state in RUNNING or job.fetching_file_list or (not job.live and job.state not in ENDED)
                       for job in self._jobs.values())

    # Start-up and shutdown ----------------------------------------------------------
    def restore(self):
        """Bring back every stored job; unfinished ones run again in their own thread."""
        for record in self.store.load():
            job = Job(
                info_hash=record["info_hash"],
                v1_hash=record["v1_hash"],
                v2_hash=record["v2_hash"],
                name=record["name"],
                magnet=record["magnet"],
                torrent=record["torrent"],
                added_at=datetime.fromisoformat(record["added_at"]),
                state=JobState(record["state"]),
                error=record["error"],
                save_path=record["save_path"],
                category=record["category"],
                sequential=bool(record["sequential"]),
                uploaded_saved=record["uploaded_bytes"],
                completed_at=(datetime.fromisoformat(record["completed_at"])
                              if record["completed_at"] else None),
                manager=self,
            )
            if job.state in (JobState.DOWNLOADING, JobState.QUEUED):
                job.state = JobState.FETCHING_METADATA
            job.restored = True
            with self._lock:
                self._register(job)
                if job.state != JobState.FAILED:
                    self._start(job)

    def shutdown(self, timeout=10):
        """Stop taking work, save resume data for every torrent, and end the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
        resume_files = {}
        self.torrents.close(functools.partial(self._keep_resume_by_key, resume_files), timeout)
        for job in jobs:
            job.inbox.put(STOP)
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)
        self.store.close()
        # The syncs also put what the resume data claims on disk, not only in the page cache.
        for path, exc in write_all_atomically(resume_files).items():
            log.warning("cannot keep resume data %s: %s", path, exc)
        try:
            os.remove(self.running_marker)
        except FileNotFoundError:
            pass

    def _keep_resume_by_key(self, resume_files, keys, data):
        with self._lock:
            jobs = [self._jobs[self._aliases[key]] for key in keys if self._aliases.get(key) in self._jobs]
        data = self._resume_to_keep(jobs[0], data) if jobs else None
        if data is not None:
            resume_files[self._resume_path(jobs[0])] = data


RUNNING = {JobState.QUEUED, JobState.FETCHING_METADATA, JobState.DOWNLOADING}
ENDED = {JobState.FAILED, JobState.CANCELLED}  # no torrent in the session: no status comes
