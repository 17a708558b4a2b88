"""The facade the views call: submit, look up, steer and list jobs; start-up and shutdown."""
import functools
import logging
import os
import time

import cpus
import downloader
import hashes
import torrent_files
from downloader import STOP, TorrentSession, session_settings
from jobs.durability import CrashMarker, ResumeFiles
from jobs.lifecycle import Lifecycle
from jobs.model import ENDED, RUNNING, Job, JobError, JobState, Removal, SubmitResult, utcnow
from jobs.part_files import PartFiles
from jobs.registry import JobRegistry
from jobs.runner import runner_from_config
from jobs.slots import SlotQueue
from jobs.submit import JobOptions, check_category, uploaded_targets
from jobs.task import JobServices, JobTask
from jobs.view import job_view
from store import StoreWriteError, open_store

log = logging.getLogger(__name__)


class JobManager:
    """Every job of this process: what the page and the API ask of them goes through here."""

    def __init__(self, config, session, store, runner):
        self.config = config
        self.session = session
        self.store = store
        self.runner = runner
        self.registry = registry = JobRegistry()
        self.resume_interval = float(config["RESUME_INTERVAL"])
        self._upload_totals_due = 0.0  # monotonic time of the next save of upload totals
        resume_files = ResumeFiles(os.path.join(config["DATA_DIR"], "resume"))
        self.crash_marker = CrashMarker(os.path.join(config["DATA_DIR"], "running"))
        part_files = PartFiles(config.get("PART_SUFFIX", ""), registry.lock)
        slots = SlotQueue(int(config["MAX_ACTIVE"]))
        self.lifecycle = Lifecycle(registry, slots, session, store, part_files, resume_files,
                                   config["SEED_RATIO"])
        self.services = JobServices(session, registry, slots, self.lifecycle, part_files,
                                    resume_files, self.crash_marker)

    @classmethod
    def from_config(cls, config):
        """Find the runner, open the store, start the session, and bring back the stored jobs."""
        runner = runner_from_config(config)
        store = open_store(config)
        session = TorrentSession(session_settings(config), float(config["RESUME_INTERVAL"]),
                                 config["DISK_IO"])
        session.start()
        manager = cls(config, session, store, runner)
        session.on_tick = manager.save_upload_totals
        manager.restore()
        return manager

    # Submitting ---------------------------------------------------------------------------
    def submit_text(self, text, **options):
        """Start one background download per info hash or magnet found in text."""
        return self.submit(hashes.parse_text(text or ""), **options)

    def submit_items(self, items, **options):
        return self.submit(hashes.parse_items(items), **options)

    def submit(self, parsed, uploads=(), category="", paused=False, sequential=False):
        """Start a job per new target and per uploaded .torrent file ((filename, bytes) pairs)."""
        result = SubmitResult(duplicates=list(parsed.duplicates), rejected=list(parsed.rejected))
        try:
            category = check_category(self.config["SAVE_PATH"], category)
        except JobError as exc:
            return result.refuse(exc.message)
        targets = [(target, None) for target in parsed.targets] + uploaded_targets(uploads, result.rejected)
        options = JobOptions(self.config["SAVE_PATH"], category, sequential, paused, self.config["TRACKERS"])
        registry = self.registry
        with registry.lock:
            if registry.closed:
                return result.refuse("hashdrop is shutting down; nothing was started.", 503)
            new_jobs = []
            for target, metainfo in targets:
                if registry.find(target):
                    result.existing.append(target)
                    continue
                new_jobs.append(options.new_job(target, metainfo))
                registry.add(new_jobs[-1])
            try:
                self._record_new(new_jobs)
            except StoreWriteError as exc:  # a full disk, most often: the downloads filled it
                return result.refuse(f"The job database {self.store.location} could not record the "
                                     f"new downloads ({exc}); nothing was started.", 507)
            with cpus.starting_on_this_cpu():
                for job in new_jobs:
                    self._start(job)
        result.started = new_jobs
        return result

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

    def describe_submit(self, result):
        """The submit's result as the API answers it."""
        now = utcnow()
        return result.to_dict(lambda job: job_view(job, now))

    def _start(self, job):
        job.run.worker = self.runner.start(JobTask(job, self.services))

    # Steering -----------------------------------------------------------------------------
    def get(self, info_hash):
        """The job with this info hash, or a 404 JobError."""
        job = self.registry.get(info_hash)
        if job is None:
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        return job

    def job(self, info_hash):
        """The job with this info hash as the page and the API show it."""
        return job_view(self.get(info_hash))

    def pause(self, info_hash):
        """Pause a job; a completed job stops seeding. Return it as shown."""
        job = self.get(info_hash)
        with self.registry.lock:
            if job.state in ENDED:
                raise JobError(f"{job.state.value} jobs cannot be paused.", 409)
            if job.state == JobState.COMPLETED:
                job.seeding_stopped = True
            elif job.state != JobState.PAUSED:
                self.lifecycle.set_state(job, JobState.PAUSED)
            job.fetching_file_list = False  # paused outright: no metadata either
            if job.run.torrent:
                job.run.torrent.pause()
        return job_view(job)

    def resume(self, info_hash):
        """Resume a paused job (or retry a failed one); it may have to queue for a slot."""
        job = self.get(info_hash)
        with self.registry.lock:
            if job.state == JobState.COMPLETED:
                job.seeding_stopped = False
                if job.run.torrent:
                    job.run.torrent.resume()
            elif job.state in (JobState.PAUSED, JobState.FAILED):
                self._go_on(job)
        return job_view(job)

    def _go_on(self, job):
        """Start a paused or failed job's download again, in its worker or in a new one."""
        retry = job.state == JobState.FAILED
        job.error = None
        job.fetching_file_list = False  # a held job's files are all wanted as its metadata comes
        job.durability.restored = False  # a person asked: download again where files are missing
        if not job.run.is_running():
            job.state = JobState.FETCHING_METADATA
            self.store.update(job.info_hash, state=job.state.value, error=None)
            self._start(job)
            return
        torrent = job.run.torrent
        if torrent is not None and retry:
            torrent.handle.clear_error()
        if not job.has_metadata:
            self.lifecycle.set_state(job, JobState.FETCHING_METADATA)
            if torrent is not None:
                torrent.resume()
        else:
            self.lifecycle.want_download(job)
        if torrent is not None:
            downloader.reconnect(torrent.handle)

    def retry_failed(self):
        """Retry every failed job; return how many."""
        failed = self.registry.matching({JobState.FAILED})
        for job in failed:
            self.resume(job.info_hash)
        return len(failed)

    def remove(self, info_hash, delete_files=False):
        """Forget a job; its worker removes the torrent (and its files when asked)."""
        job = self.get(info_hash)
        with self.registry.lock:
            job.state = JobState.CANCELLED
            job.removal = Removal(delete_files=delete_files)
            self.registry.discard(job)
            self.lifecycle.release_slot(job)
            self.store.delete(job.info_hash)
            job.run.inbox.put(STOP)
            # A failed job's worker has ended (and a failed job restored at start never had
            # one): its files are left for the manager to delete.
            files_left = delete_files and (job.run.worker is None or job.run.detached)
        if files_left:
            self._delete_files(job)
        self.services.resume_files.remove(job)
        return job_view(job)

    def _delete_files(self, job):
        """Delete the files of a job that has no torrent in the session, as libtorrent would."""
        params, _ = self.services.resume_files.read(job)
        if params is None and job.metainfo:
            params = torrent_files.params_from_torrent(job.metainfo)
        if params is None or not torrent_files.has_metadata(params):
            return  # no metadata, so no files
        params.save_path = job.save_path
        self.services.part_files.match_names(params, job.save_path)
        self.session.delete_files(params)

    def files(self, info_hash):
        """The job's files, once its metadata is known."""
        return torrent_files.file_list(self._torrent_with_metadata(info_hash).handle)

    def set_files(self, info_hash, wanted):
        """Choose which of the job's files to download, by index."""
        torrent = self._torrent_with_metadata(info_hash)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise JobError('"wanted" must be a list of file indices.')
        count = torrent.handle.torrent_file().num_files()
        outside = sorted(i for i in set(wanted) if not 0 <= i < count)
        if outside:  # else libtorrent would take them as "no file wanted" and unselect every file
            raise JobError(f"There is no file {outside[0]}: this torrent's files are numbered 0 to {count - 1}.")
        wanted = set(wanted)
        if not wanted:
            raise JobError("Choose at least one file. To download nothing, pause or remove the job.")
        self.services.part_files.want_files(self.get(info_hash), torrent.handle, wanted)
        # libtorrent applies priorities asynchronously: answer with what was asked for.
        return [{**entry, "wanted": entry["index"] in wanted}
                for entry in torrent_files.file_list(torrent.handle)]

    def _torrent_with_metadata(self, info_hash):
        job = self.get(info_hash)
        with self.registry.lock:
            torrent = job.run.torrent
            if torrent is None or not job.has_metadata:
                raise JobError("The file list is known once the metadata has arrived.", 409)
        return torrent

    # Listing ------------------------------------------------------------------------------
    def jobs(self, states=None, text=""):
        """Every job (or those in `states` whose name or hash holds `text`) as a dict, oldest first."""
        now = utcnow()
        # Views are made outside the lock: they ask the file system for free space, which can hang on a NAS.
        return [job_view(job, now) for job in self.registry.matching(states, text)]

    def newest_first(self, start, count, states=None, text=""):
        """count jobs (those in `states` whose name or hash holds `text`, in any case) as dicts,
        newest first from position start, and how many there are."""
        now = utcnow()
        jobs = self.registry.matching(states, text)
        return [job_view(job, now) for job in jobs[::-1][start:start + count]], len(jobs)

    def counts(self):
        states = [job.state for job in self.registry.all()]
        return {state.value: states.count(state) for state in JobState}

    def has_changing(self):
        """Whether some job's row will change without a click: it runs, or libtorrent's first
        status for it is still to come (a job just started paused has no size or Files link yet)."""
        return any(job.state in RUNNING or job.fetching_file_list or (not job.live and job.state not in ENDED)
                   for job in self.registry.all())

    def status(self):
        """What the whole app is doing: transfer rates, the free space where downloads land, the
        ports peers can reach it on, and what stops it from keeping its job list."""
        rates = [job.rates() for job in self.registry.all()]
        save_path = self.config["SAVE_PATH"]
        return {"download_rate": sum(down for down, _ in rates), "upload_rate": sum(up for _, up in rates),
                "free_bytes": torrent_files.free_bytes(save_path), "save_path": save_path,
                "listen_ports": sorted(self.session.listen_ports),
                "listen_problem": self.session.listen_problem(), "store_problem": self.store.unsaved_problem()}

    # Start-up, the periodic save, and shutdown ------------------------------------------------
    def restore(self):
        """Bring back every stored job; unfinished ones run again in their own worker."""
        for record in self.store.load():
            job = Job.from_record(record)
            if job.state in (JobState.DOWNLOADING, JobState.QUEUED):
                job.state = JobState.FETCHING_METADATA
            with self.registry.lock:
                self.registry.add(job)
                if job.state != JobState.FAILED:
                    self._start(job)

    def save_upload_totals(self):
        """Record the upload totals that grew, at most every resume_interval, in one write.

        libtorrent keeps them in the resume data only, which is saved for them at shutdown alone
        (see downloader.PERIODIC_RESUME_FLAGS): a crash would lose every byte seeded since the
        last clean stop, and the share ratio with it. Called about once a second by the alert
        thread; it also retries the changes that the job store could not take.
        """
        now = time.monotonic()
        if now < self._upload_totals_due:  # most calls: not due, and the alert thread takes no lock
            return
        with self.registry.lock:
            if now < self._upload_totals_due or self.registry.closed:
                return
            self._upload_totals_due = now + self.resume_interval
            grown = [(job, job.live["all_time_upload"]) for job in self.registry.all()
                     if job.live.get("all_time_upload", 0) > job.durability.uploaded_saved]
            # With none grown, this still retries changes that the store could not take.
            self.store.save_upload_totals([(uploaded, job.info_hash) for job, uploaded in grown])
            for job, uploaded in grown:
                job.durability.uploaded_saved = uploaded

    def shutdown(self, timeout=10):
        """Stop taking work, save resume data for every torrent, and end the workers."""
        with self.registry.lock:
            if self.registry.closed:
                return
            self.registry.closed = True
            jobs = self.registry.all()
        resume_files = {}
        self.session.close(functools.partial(self._keep_resume_by_key, resume_files), timeout)
        for job in jobs:
            job.run.inbox.put(STOP)
        for job in jobs:
            if job.run.worker is not None:
                job.run.worker.join(timeout)
        self.store.close()
        self.services.resume_files.write_all(resume_files)
        self.crash_marker.clear()

    def _keep_resume_by_key(self, resume_files, keys, data):
        job = next((job for job in map(self.registry.by_key, keys) if job is not None), None)
        data = self.services.resume_files.worth_keeping(job, data) if job else None
        if data is not None:
            resume_files[self.services.resume_files.path(job)] = data
