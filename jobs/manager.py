"""The facade the views call: submit, look up, steer and list jobs; start-up and shutdown."""
import functools
import logging
import os

import cpus
import hashes
import torrent_files
from downloader import STOP, TorrentSession, session_settings
from jobs.durability import CrashMarker, ResumeFiles
from jobs.folder_names import FolderNames
from jobs import listing
from jobs.library_move import LibraryMove
from jobs.lifecycle import Lifecycle
from jobs.model import JobState, utcnow
from jobs.notify import Notifier
from jobs.ownership import FileLedger, Ownership
from jobs.part_files import PartFiles
from jobs.periodic import PeriodicWork
from jobs.registry import JobRegistry
from jobs.restore import Restorer
from jobs.runner import WorkerNotStarted, runner_from_config
from jobs.seeding import SessionSeedLimits
from jobs.slots import SlotQueue
from jobs.stall import StallLimits
from jobs.steering import Steering
from jobs.submit import category_for_dir, prepare_submit
from jobs.task import JobServices, JobTask
from jobs.turns import AddTurns
from jobs.view import job_view
from jobs.watch import WatchFolder
from notifiers import targets_from_config
from store import StoreWriteError, open_store

log = logging.getLogger(__name__)
KEEP = object()  # an argument left out: the setting stays as it is


class JobManager:
    """Every job of this process: what the page and the API ask of them goes through here."""

    def __init__(self, config, session, store, runner):
        self.config = config
        self.session = session
        self.store = store
        self.runner = runner
        self.registry = registry = JobRegistry()
        self.resume_interval = float(config["RESUME_INTERVAL"])
        self._last_number = 0  # the highest job number given; restore() reads it from the store
        resume_files = ResumeFiles(os.path.join(config["DATA_DIR"], "resume"))
        self.crash_marker = CrashMarker(os.path.join(config["DATA_DIR"], "running"))
        suffix, incomplete = config.get("PART_SUFFIX", ""), config.get("INCOMPLETE_PATH", "")
        ownership = Ownership(FileLedger(os.path.join(config["DATA_DIR"], "written")), config["SAVE_PATH"], suffix,
                              incomplete)
        part_files = PartFiles(suffix, registry.lock, ownership)
        library_move = LibraryMove(incomplete, config["SAVE_PATH"], suffix, store, registry.lock)
        slots = SlotQueue(int(config["MAX_ACTIVE"]))
        self.seed_session = SessionSeedLimits(config["SEED_RATIO"], config["SEED_IDLE_MINUTES"])
        targets, secrets = targets_from_config(config)
        self.notifier = Notifier(targets, registry.lock, secrets, touch=registry.touch)
        self.lifecycle = Lifecycle(registry, slots, session, store, part_files, resume_files,
                                   self.seed_session, library_move, self.notifier,
                                   StallLimits.from_config(config))
        self.services = JobServices(session, registry, slots, self.lifecycle, part_files, ownership,
                                    resume_files, self.crash_marker, library_move, FolderNames(), AddTurns())
        self.steering = Steering(registry, self.lifecycle, self.services, store, self._start_or_fail)
        self.periodic = PeriodicWork(registry, store, self.lifecycle, self.resume_interval)
        self.lifecycle.stalls.remove = self.steering.remove  # HASHDROP_STALLED_REMOVE_AFTER
        self.watch_folder = None  # a WatchFolder once watch() is called (HASHDROP_WATCH_DIR)
        self.restorer = Restorer(self.store, self.registry, self._take_number, self._start_or_fail)
        # Whether the RPC's and the watch folder's new jobs start at once (Transmission's
        # start-added-torrents; session-set changes it until the next start).
        self.start_added_torrents = True

    @classmethod
    def from_config(cls, config):
        """Find the runner, open the store, start the session, and bring back the stored jobs."""
        runner = runner_from_config(config)
        store = open_store(config)
        session = TorrentSession(session_settings(config), float(config["RESUME_INTERVAL"]),
                                 config["DISK_IO"])
        session.start()
        manager = cls(config, session, store, runner)
        manager.notifier.start()
        session.on_tick = manager.tick
        manager.restore()
        return manager

    # Submitting ---------------------------------------------------------------------------
    def submit_text(self, text, **options):
        """Start one background download per info hash or magnet found in text."""
        return self.submit(hashes.parse_text(text or ""), **options)

    def submit_items(self, items, **options):
        return self.submit(hashes.parse_items(items), **options)

    def submit(self, parsed, uploads=(), category="", paused=False, sequential=False, labels=(),
               source="form"):
        """Start a job per new target and per uploaded .torrent file ((filename, bytes) pairs)."""
        result, targets, options = prepare_submit(self.config, parsed, uploads, category, paused, sequential,
                                                  labels, source)
        if result.refused:
            return result
        with self.registry.submitting(), self.services.add_turns.closed():
            if self.registry.closed:
                return result.refuse("hashdrop is shutting down; nothing was started.", 503)
            known = {id(target) for target in self.registry.known([target for target, _ in targets])}
            result.existing.extend(target for target, _ in targets if id(target) in known)
            new_jobs = [options.new_job(target, metainfo) for target, metainfo in targets
                        if id(target) not in known]
            refusal = self._over_the_cap(len(new_jobs))
            if refusal:
                return result.refuse(refusal, 409)
            refusal = self._add(new_jobs)
            if refusal:
                return result.refuse(*refusal)
        result.started = new_jobs
        self.notifier.added(new_jobs)
        return result

    def _add(self, new_jobs):
        """Number, register, store and start the new jobs; (why not, HTTP status) if they could
        not be, with none of them kept. Called holding the registry's `adding` lock."""
        for job in new_jobs:
            job.number = self._take_number()
        self.registry.add(*new_jobs)
        try:
            self._record_new(new_jobs)
        except StoreWriteError as exc:  # a full disk, most often: the downloads filled it
            return (f"The job database {self.store.location} could not record the new downloads "
                    f"({exc}); nothing was started.", 507)
        try:
            self._start_all(new_jobs)
        except WorkerNotStarted as exc:
            return (f"hashdrop could not start a download thread ({exc}); nothing was started. The "
                    f"system allows no more threads: remove or pause jobs, or raise the limit on "
                    f"threads or memory.", 503)
        return None

    def _take_number(self):
        """The next job number; one a store refused stays used: numbers only go up."""
        self._last_number += 1
        return self._last_number

    def _record_new(self, new_jobs):
        """Store the new jobs in one write; if the store refuses, forget them again."""
        if not new_jobs:
            return
        try:
            self.store.save_many([job.record() for job in new_jobs])
        except StoreWriteError:
            for job in new_jobs:
                self.registry.discard(job)
            raise

    def _over_the_cap(self, count):
        """Why count more jobs would be too many (HASHDROP_MAX_JOBS), or None."""
        cap, held = self.config["MAX_JOBS"], len(self.registry)
        if held + count <= cap:
            return None
        return (f"hashdrop keeps at most {cap:,} jobs (HASHDROP_MAX_JOBS) and holds {held:,}: these "
                f"{count:,} would be too many; nothing was started. Remove finished jobs first.")

    def _start_all(self, new_jobs):
        """Start every new job's worker, or, if one cannot start, take every one of them back."""
        started = 0
        try:
            with cpus.starting_on_this_cpu():
                for job in new_jobs:
                    self._start(job)
                    started += 1
        except WorkerNotStarted:
            log.warning("started %d of %d new jobs before the system refused a thread; taking them back",
                        started, len(new_jobs))
            for job in new_jobs:
                self.steering.forget(job)
            raise

    def describe_submit(self, result):
        """The submit's result as the API answers it."""
        now = utcnow()
        return result.to_dict(lambda job: job_view(job, now))

    def _start(self, job):
        job.run.detached = False  # a retried job's new worker holds its torrent (and deletes its files)
        job.run.worker = self.runner.start(JobTask(job, self.services))

    def _start_or_fail(self, job):
        """Start the job's worker; if the system gives none, fail the job with its reason (it
        can be retried), and return False."""
        try:
            self._start(job)
        except WorkerNotStarted as exc:
            self.lifecycle.set_state(job, JobState.FAILED, error=f"Could not start a download thread: {exc}. "
                                     "Retry once other jobs are removed or paused.")
            return False
        return True

    # Steering (jobs/steering.py) -----------------------------------------------------------
    def get(self, info_hash):
        """The job with this info hash, or a 404 JobError."""
        return self.steering.get(info_hash)

    def job(self, info_hash):
        """The job with this info hash as the page and the API show it."""
        return job_view(self.get(info_hash))

    def pause(self, info_hash):
        return self.steering.pause(info_hash)

    def resume(self, info_hash):
        return self.steering.resume(info_hash)

    def retry_failed(self):
        return self.steering.retry_failed()

    def remove(self, info_hash, delete_files=False):
        return self.steering.remove(info_hash, delete_files)

    def removed_numbers(self, seconds):
        return self.steering.removed_numbers(seconds)

    def set_labels(self, info_hash, labels):
        return self.steering.set_labels(info_hash, labels)

    def reannounce(self, info_hash):
        return self.steering.reannounce(info_hash)

    def move_in_queue(self, info_hashes, where):
        return self.steering.move_in_queue(info_hashes, where)

    def queue_positions(self):
        return self.steering.queue_positions()

    def details(self, info_hash):
        return self.steering.details(info_hash)

    def set_job_rate_limits(self, info_hash, download=None, upload=None):
        return self.steering.set_rate_limits(info_hash, download, upload)

    def relocate(self, info_hash, directory):
        """Move a job's files into directory, which must be in the save path (category_for_dir)."""
        return self.steering.relocate(info_hash, self.category_for_dir(directory))

    def verify(self, info_hash):
        return self.steering.verify(info_hash)

    def set_seed_limits(self, info_hash, changes):
        return self.steering.set_seed_limits(info_hash, changes)

    def set_session_seed_limits(self, ratio=KEEP, idle_minutes=KEEP):
        """Change the global seeding limits (None: no limit) until the next start."""
        with self.registry.lock:
            if ratio is not KEEP:
                self.seed_session.ratio = ratio
            if idle_minutes is not KEEP:
                self.seed_session.idle_minutes = idle_minutes
        self.check_seed_limits()

    def find(self, target):
        """The job a hashes.Target names under any of its hashes, as shown, or None."""
        job = self.registry.find(target)
        return job_view(job) if job is not None else None

    def category_for_dir(self, directory):
        """The category for a client's download folder, or a JobError if it leaves the save path."""
        return category_for_dir(self.config["SAVE_PATH"], directory)

    def set_rate_limits(self, download=None, upload=None):
        """Change the session's transfer limits (bytes/s, 0 for none) until the next start."""
        changes = {}
        if download is not None:
            self.config["DOWNLOAD_LIMIT"] = changes["download_rate_limit"] = int(download)
        if upload is not None:
            self.config["UPLOAD_LIMIT"] = changes["upload_rate_limit"] = int(upload)
        if changes:
            self.session.apply(changes)

    def files(self, info_hash):
        return self.steering.files(info_hash)

    def wait_for_file_list(self, info_hash, timeout):
        return self.steering.wait_for_file_list(info_hash, timeout)

    def set_files(self, info_hash, wanted):
        return self.steering.set_files(info_hash, wanted)

    # Listing (jobs/listing.py) ------------------------------------------------------------
    def jobs(self, states=None, text=""):
        return listing.every_job(self.registry, states, text)

    def newest_first(self, start, count, states=None, text="", since=""):
        return listing.newest_first(self.registry, start, count, states, text, since)

    def changes(self, since, states=None, text=""):
        return listing.changes(self.registry, since, states, text)

    def counts(self):
        return listing.counts(self.registry)

    def has_changing(self):
        return listing.has_changing(self.registry)

    def status(self):
        """What the whole app is doing: transfer rates, the free space where downloads land, the
        ports peers can reach it on, and what stops it from keeping its job list."""
        rates = [job.rates() for job in self.registry.with_peers()]
        save_path = self.config["SAVE_PATH"]
        return {"download_rate": sum(down for down, _ in rates), "upload_rate": sum(up for _, up in rates),
                "free_bytes": torrent_files.free_bytes(save_path), "save_path": save_path,
                "listen_ports": sorted(self.session.listen_ports),
                "restoring": self.restorer.progress(),
                "listen_problem": self.session.listen_problem(), "store_problem": self.store.unsaved_problem()}

    # Start-up, the periodic save, and shutdown ------------------------------------------------
    def restore(self):
        """Bring back every stored job (jobs/restore.py): all listed at once, the unfinished
        ones' workers started in the background."""
        self._last_number = self.store.last_number()
        self.restorer.restore()

    def tick(self):
        """The periodic work (jobs/periodic.py), about once a second in the alert thread."""
        self.periodic.tick()

    def check_seed_limits(self):
        self.periodic.check_seed_limits()

    def watch(self, directory):
        """Start turning .torrent and .magnet files dropped in directory into jobs."""
        self.watch_folder = WatchFolder(self, directory)
        self.watch_folder.start()

    def shutdown(self, timeout=10):
        """Stop taking work, save resume data for every torrent, and end the workers."""
        if self.watch_folder is not None:  # first, so no file is submitted to a closing manager
            self.watch_folder.stop(timeout)
        with self.registry.adding, self.registry.lock:
            if self.registry.closed:
                return
            self.registry.closed = True
        self.restorer.join(timeout)  # it stops at its next job, seeing closed
        jobs = self.registry.all()
        resume_files = {}
        self.session.close(functools.partial(self._keep_resume_by_key, resume_files), timeout)
        for job in jobs:
            job.run.inbox.put(STOP)
        for job in jobs:
            if job.run.worker is not None:
                job.run.worker.join(timeout)
        self.notifier.stop(timeout)
        self.periodic.stop()
        self.store.close()
        self.services.resume_files.write_all(resume_files)
        self.crash_marker.clear()

    def _keep_resume_by_key(self, resume_files, keys, data):
        job = next((job for job in map(self.registry.by_key, keys) if job is not None), None)
        data = self.services.resume_files.worth_keeping(job, data) if job else None
        if data is not None:
            resume_files[self.services.resume_files.path(job)] = data
