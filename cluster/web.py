"""The web app's job manager in cluster mode (HASHDROP_MODE=cluster): the facade app.py and
transmission.py call instead of jobs.JobManager, with no libtorrent session in this process.

New jobs and what a person asks of a job (pause, resume, remove) are written to PostgreSQL
first, then sent through Celery: a download task per job to the shared queue (or to the node
that has its files), a remote-control command to the node that holds it. The database is the
truth: a message the broker did not take is sent again by this manager's loop, and a command a
node did not hear is applied by that node's reconcile. The listings come from cluster.mirror,
refreshed about every second. docs/design.md "Cluster mode: the web app" says why.
"""
import json
import logging
import threading
import time

import hashes
from cluster import live
from cluster.celery_app import make_celery
from cluster.dispatch import Dispatcher
from cluster.job_settings import JobSettingsOnNodes
from cluster.mirror import JobMirror
from cluster.not_yet import TorrentOnItsNode
from jobs.model import ENDED, JobError, JobState, utcnow
from jobs.seeding import SessionSeedLimits
from jobs.submit import category_for_dir, prepare_submit
from jobs.watch import WatchFolder
from store.base import StoreError, StoreWriteError
from store.postgres import PostgresJobStore

log = logging.getLogger(__name__)
SYNC_SECONDS = 1.0  # how often the copy of the jobs is read again (the nodes publish every second)


class ClusterJobManager(JobSettingsOnNodes, TorrentOnItsNode):
    """Every job of every download node, as the page, the API and the RPC ask for them."""

    def __init__(self, config, store, dispatcher, redis):
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self.redis = redis
        self.mirror = JobMirror()
        self.registry = self.mirror.registry
        self.seed_session = SessionSeedLimits(config["SEED_RATIO"], config["SEED_IDLE_MINUTES"])
        self.start_added_torrents = True  # the RPC's session-set changes it until the next start
        self.watch_folder = None
        self._last_number = 0
        self._lock = threading.Lock()  # one submit at a time: numbers and duplicates
        self._stop = threading.Event()
        self._wake = threading.Event()  # jobs wait to be sent: the dispatch thread sends them at once
        self._threads = []
        self._problem = None  # why the last read of the database failed, while it does
        self._reap_due = 0.0

    @classmethod
    def from_config(cls, config):
        """Open the database, make the Celery app (it connects when it first sends), read the jobs
        and start the loop that keeps them fresh."""
        store = PostgresJobStore(config["DATABASE_URL"])
        manager = cls(config, store, Dispatcher(make_celery(config)), live.connect(config["BROKER_URL"]))
        manager.start()
        return manager

    def start(self):
        """Read the jobs, then start the two threads: the refresh ("cluster-web") and the one that
        sends the download tasks ("cluster-dispatch"), so that no request waits for the broker."""
        self._last_number = self.store.last_number()
        self.sync()
        for name, target in (("cluster-web", self._refresh_loop), ("cluster-dispatch", self._dispatch_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake.set()  # what waited while the web app was down

    # Submitting ---------------------------------------------------------------------------
    def submit_text(self, text, **options):
        return self.submit(hashes.parse_text(text or ""), **options)

    def submit_items(self, items, **options):
        return self.submit(hashes.parse_items(items), **options)

    def submit(self, parsed, uploads=(), category="", paused=False, sequential=False, labels=(),
               source="form"):
        """Store a job per new target and uploaded .torrent file before answering; the dispatch
        thread sends each one's download task right after."""
        result, targets, options = prepare_submit(self.config, parsed, uploads, category, paused, sequential,
                                                  labels, source)
        if result.refused:
            return result
        with self._lock:
            if self._stop.is_set():
                return result.refuse("hashdrop is shutting down; nothing was started.", 503)
            new_jobs = self._new_jobs(targets, options, result)
            refusal = self._over_the_cap(len(new_jobs))
            if refusal:
                return result.refuse(refusal, 409)
            try:
                self._record_new(new_jobs)
            except (StoreError, StoreWriteError) as exc:
                return result.refuse(f"The job database {self.store.location} could not record the new "
                                     f"downloads ({exc}); nothing was started.", 507)
        self._wake.set()
        result.started = new_jobs
        return result

    def _new_jobs(self, targets, options, result):
        """A new job (queued, or paused) per target not already a job; the others go to existing."""
        new_jobs, taken = [], set()
        for target, metainfo in targets:
            if self.registry.find(target) or target.info_hash in taken:
                result.existing.append(target)
                continue
            job = options.new_job(target, metainfo)
            job.state = JobState.PAUSED if options.paused else JobState.QUEUED
            new_jobs.append(job)
            taken.add(target.info_hash)
        return new_jobs

    def _over_the_cap(self, count):
        cap, held = self.config["MAX_JOBS"], len(self.registry)
        if held + count <= cap:
            return None
        return (f"hashdrop keeps at most {cap:,} jobs (HASHDROP_MAX_JOBS) and holds {held:,}: these "
                f"{count:,} would be too many; nothing was started. Remove finished jobs first.")

    def _record_new(self, new_jobs):
        """Number the jobs and insert them (one statement); then show them, held by no node."""
        if not new_jobs:
            return
        first = self._last_number
        for number, job in enumerate(new_jobs, first + 1):
            job.number = number
        records = [{**job.record(), "desired": "paused" if job.state == JobState.PAUSED else "run"}
                   for job in new_jobs]
        try:
            self.store.insert_new(records)
        finally:
            self._last_number = first + len(new_jobs)  # numbers only go up, a refused one's too
        for record in records:
            self.mirror.apply({**record, "uploaded_bytes": 0, "node": None, "epoch": 0})

    def describe_submit(self, result):
        now = utcnow()
        return result.to_dict(lambda job: self.mirror.view(job, now))

    # Steering ---------------------------------------------------------------------------
    def get(self, info_hash):
        return self.registry.require(info_hash)

    def job(self, info_hash):
        return self.mirror.view(self.get(info_hash), utcnow())

    def _change(self, info_hash, **fields):
        """Write a person's change of a job to the database and show it; the job's new row."""
        try:
            row = self.store.change_job(info_hash, **fields)
        except StoreError as exc:
            raise JobError(f"{exc} Nothing was changed; try again once the database answers.", 503) from None
        if row is None:
            self.mirror.forget(info_hash)
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        self.mirror.apply(row)
        return row

    def pause(self, info_hash):
        """Pause a job (a completed one stops seeding): in the database, then on its node."""
        job = self.get(info_hash)
        if job.state in ENDED:
            raise JobError(f"{job.state.value} jobs cannot be paused.", 409)
        if job.state == JobState.COMPLETED:
            row = self._change(job.info_hash, desired="paused", seeding_stopped=1)
        else:
            row = self._change(job.info_hash, desired="paused", state=JobState.PAUSED.value)
        if row["node"]:  # with none, its task (if any) finds it paused and does nothing
            self.dispatcher.command(row["node"], "hashdrop_pause", info_hash=job.info_hash)
        return self.job(job.info_hash)

    def resume(self, info_hash):
        """Resume a paused job or retry a failed one: queued again, on the node that has its files."""
        job = self.get(info_hash)
        if job.state == JobState.COMPLETED:
            row = self._change(job.info_hash, desired="run", seeding_stopped=0)
            if row["node"]:
                self.dispatcher.command(row["node"], "hashdrop_resume", info_hash=job.info_hash)
        elif job.state in (JobState.PAUSED, JobState.FAILED):
            row = self._change(job.info_hash, desired="run", state=JobState.QUEUED.value, error=None,
                               dispatched_at=None)  # its task goes to its node's queue (undispatched)
            if row["node"]:
                self.dispatcher.command(row["node"], "hashdrop_resume", info_hash=job.info_hash)
            self._wake.set()
        return self.job(job.info_hash)

    def retry_failed(self):
        retried = 0
        for job in self.registry.matching({JobState.FAILED}):
            try:
                self.resume(job.info_hash)
                retried += 1
            except JobError:
                pass
        return retried

    def remove(self, info_hash, delete_files=False):
        """Remove a job: at once if no node took it yet; else its node removes it (and its files)."""
        job = self.get(info_hash)
        shown = self.job(job.info_hash)
        try:
            unplaced = self.store.delete_unplaced(job.info_hash)
        except StoreError as exc:
            raise JobError(f"{exc} Nothing was removed; try again once the database answers.", 503) from None
        if unplaced:
            self.mirror.forget(job.info_hash)
            return shown
        row = self._change(job.info_hash, desired="remove_files" if delete_files else "remove")
        self.dispatcher.command(row["node"], "hashdrop_remove", info_hash=job.info_hash, delete_files=delete_files)
        return shown

    def removed_numbers(self, seconds):
        return self.mirror.removed_numbers(seconds)

    def set_labels(self, info_hash, labels):
        job = self.get(info_hash)
        self._change(job.info_hash, labels=json.dumps([str(label) for label in labels]))
        return self.job(job.info_hash)

    def find(self, target):
        job = self.registry.find(target)
        return self.mirror.view(job, utcnow()) if job is not None else None

    def category_for_dir(self, directory):
        return category_for_dir(self.config["SAVE_PATH"], directory)

    def queue_positions(self):
        return {info_hash: position for position, (info_hash, _) in enumerate(self.registry.queue_order())}

    # Listing (cluster.mirror) -------------------------------------------------------------
    def jobs(self, states=None, text=""):
        return self.mirror.jobs(states, text)

    def newest_first(self, start, count, states=None, text="", since=""):
        return self.mirror.newest_first(start, count, states, text, since)

    def changes(self, since, states=None, text=""):
        return self.mirror.changes(since, states, text)

    def counts(self):
        return self.mirror.counts()

    def has_changing(self):
        return self.mirror.has_changing()

    def status(self):
        """Transfer rates over every node's jobs, the nodes and their leases, and what is wrong."""
        download_rate, upload_rate = self.mirror.rates()
        return {"download_rate": download_rate, "upload_rate": upload_rate,
                "free_bytes": None, "save_path": self.config["SAVE_PATH"], "listen_ports": [],
                "restoring": None, "listen_problem": None, "nodes": self.mirror.leases(),
                "store_problem": self._problem or self._broker_problem()}

    def _broker_problem(self):
        problem = self.dispatcher.problem
        return None if problem is None else (f"The broker does not take messages ({problem}). New jobs are "
                                             "kept and sent to the download nodes once it does.")

    # The threads: fresh copies and nodes whose lease ran out; the tasks to send ---------------
    def _refresh_loop(self):
        while not self._stop.wait(SYNC_SECONDS):
            try:
                self.sync()
            except Exception:  # a bug: logged, and the next round tries again; the page goes on
                log.exception("the cluster-web loop failed")

    def sync(self):
        """Read every job and node again, and reap the nodes that went silent."""
        try:
            read_at = time.monotonic()
            rows, leases = self.store.listing(), self.store.node_leases()
            live_views = live.read(self.redis, [name for name, alive in leases.items() if alive])
            self.mirror.refresh(rows, leases, live_views, read_at)
            if time.monotonic() >= self._reap_due:
                self._reap_due = time.monotonic() + self.config["NODE_LEASE"] / 3
                self._reap()
        except StoreError as exc:
            if self._problem is None:
                log.warning("%s", exc)
            self._problem = f"{exc} The list shows the jobs as they were; changes wait until it answers."
            return
        self._problem = None

    def _dispatch_loop(self):
        """Send the download tasks of the jobs that wait for one: at once when woken (a submit, a
        resume), and every SYNC_SECONDS for those the broker did not take. The only sender, so a
        job's task is sent once (a duplicate would be refused by the claim anyway)."""
        while not self._stop.is_set():
            self._wake.wait(SYNC_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._send_waiting()
            except StoreError as exc:  # sync() shows it on the page; sent once the database answers
                log.debug("cannot read the jobs to send: %s", exc)
            except Exception:
                log.exception("the cluster-dispatch loop failed")

    def _send_waiting(self):
        """Send the tasks of the queued jobs not sent yet ((info_hash, node): a node's own queue
        for a job it has files of) and record those the broker took."""
        waiting = self.store.undispatched()
        if not waiting:
            return
        sent = set(self.dispatcher.downloads(waiting))
        # If this fails, they are sent again: the claim refuses the second.
        self.store.mark_dispatched([(info_hash, node) for info_hash, node in waiting if info_hash in sent])
        if len(sent) < len(waiting):
            log.info("sent %d of %d waiting download tasks; the rest when the broker takes them",
                     len(sent), len(waiting))
    def _reap(self):
        """With shared storage, the unfinished jobs of a node whose lease ran out are queued again
        for any node (fenced off the old one); without, they wait for their node, shown offline."""
        if not self.config["SHARED_STORAGE"]:
            return
        for node in self.store.expired_nodes():
            for info_hash in self.store.requeue_jobs_of(node):
                self.store.change_job(info_hash, dispatched_at=None)
                log.info("%s: its node %s is offline; queued again for any node", info_hash, node)
                self._wake.set()

    def watch(self, directory):
        self.watch_folder = WatchFolder(self, directory)
        self.watch_folder.start()

    def shutdown(self, timeout=10):
        """Stop the threads (and the watch folder) and close the database; the nodes go on."""
        if self.watch_folder is not None:
            self.watch_folder.stop(timeout)
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self.store.close()
