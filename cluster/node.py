"""A download node: one Celery worker (threads pool) with one libtorrent session, the existing
jobs.JobManager over this node's jobs in PostgreSQL, and the threads that keep it in step.

The worker's bootstep (NodeStep) makes the Node as the worker starts and shuts it down as it
stops; the download task (cluster.tasks) and the control commands (cluster.control) find it
with current(). A download task is the lease on one download slot: it claims the job, hands it
to the JobManager, and returns once the job no longer needs a slot (docs/design.md, "Cluster
mode: the node").
"""
import logging
import os
import threading

from celery import bootsteps, signals

from cluster import live
from cluster.celery_app import DOWNLOAD_TASK, DOWNLOADS_QUEUE, direct_queue
from cluster.job_settings import rate_limits_of
from cluster.keeper import Keeper
from cluster.node_store import NodeStore
from downloader import TorrentSession, session_settings
from jobs.manager import JobManager
from jobs.model import RUNNING, Job, JobError, JobState
from jobs.ownership import FileLedger
from jobs.runner import ThreadRunner
from store.postgres import PostgresJobStore

log = logging.getLogger(__name__)
SLOT_CHECK_SECONDS = 0.2  # how often a download task looks whether its job still needs the slot
SHARED_LEDGER = ".hashdrop/written"  # in the shared save path (HASHDROP_SHARED_STORAGE)
STOP_TIMEOUT = 10  # seconds the node waits for its download tasks, then for libtorrent's resume data
_current = None  # the Node of this worker process, once its bootstep has started it


def current():
    """This worker's Node; RuntimeError before the bootstep made it."""
    if _current is None:
        raise RuntimeError("the hashdrop node is not running in this process")
    return _current


class Node:
    """Everything a download node holds, from the worker's start to its stop."""

    def __init__(self, config, name, slots, celery):
        self.config = {**config, "MAX_ACTIVE": slots}  # the Celery pool is the slot limit
        self.name = name
        self.slots = slots
        self.celery = celery
        self.direct_queue = direct_queue(name)  # this node's own queue, for jobs whose files it has
        self.stopping = threading.Event()  # SIGTERM: running downloads hand their jobs back
        self.database = self.store = self.manager = self.session = self.redis = self.keeper = None
        self._active = set()  # info hashes whose download task runs now
        self._rate_limits = {}  # info_hash -> the job's own rate limits as this node last applied them
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified as a download task ends

    # Start and stop --------------------------------------------------------------------------
    def start(self):
        """Open the database and the session, take the lease, restore this node's resident jobs,
        and hand back the jobs that were running here when the node last stopped."""
        self.database = PostgresJobStore(self.config["DATABASE_URL"])
        self.store = NodeStore(self.database, self.name, on_fenced=self._fenced)
        self.session = TorrentSession(session_settings(self.config), float(self.config["RESUME_INTERVAL"]),
                                      self.config["DISK_IO"])
        self.session.start()
        self.manager = JobManager(self.config, self.session, self.store, ThreadRunner(self.config["MAX_JOBS"]))
        if self.config["SHARED_STORAGE"]:
            # Which files each job wrote is kept beside the files, where every node sees it: a
            # node taking over a job then goes on with its files instead of refusing them.
            ledger = os.path.join(self.config["SAVE_PATH"], SHARED_LEDGER)
            self.manager.services.ownership.ledger = FileLedger(ledger)
        self.manager.notifier.start()
        self.session.on_tick = self.manager.tick
        self.redis = live.connect(self.config["BROKER_URL"])
        self.keeper = Keeper(self)
        self.keeper.renew()
        self.manager.restore()
        self._requeue_interrupted()
        self.keeper.start()
        log.info("node %s ready: %d slots, save path %s, listening on %s", self.name, self.slots,
                 self.config["SAVE_PATH"], self.config["LISTEN_INTERFACES"])

    def _requeue_interrupted(self):
        """Jobs this node held unfinished (it was killed, or stopped): queued again, and sent to
        its own queue (a duplicate of a task already there is a no-op)."""
        for row in self.database.rows_of(self.name):
            if JobState(row["state"]) in RUNNING and row["state"] != "stalled":
                if self.database.update_fenced(row["info_hash"], self.name, row["epoch"], state="queued"):
                    self.dispatch(row["info_hash"], sticky=True)

    def stop(self):
        """The worker stops: let the download tasks hand their jobs back, then shut the JobManager
        down (resume data saved), and publish that this node holds nothing live."""
        self.stopping.set()
        with self._idle:  # the tasks see `stopping` within SLOT_CHECK_SECONDS and hand their jobs back
            self._idle.wait_for(lambda: not self._active, STOP_TIMEOUT)
        if self.keeper is not None:
            self.keeper.stop()
        if self.manager is not None:
            self.manager.shutdown(STOP_TIMEOUT)
        elif self.database is not None:
            self.database.close()
        if self.redis is not None:
            live.publish(self.redis, self.name, {})
            self.redis.close()
        log.info("node %s stopped", self.name)

    # The download task -------------------------------------------------------------------------
    def download(self, info_hash):
        """Claim the job and run it until it no longer needs a slot; False if the claim was refused."""
        if self.stopping.is_set():  # a task taken as the node stops: send it on, unclaimed
            row = self.database.row(info_hash)
            self.dispatch(info_hash, sticky=bool(row) and row["node"] == self.name and not self.config["SHARED_STORAGE"])
            return False
        with self._lock:  # before the claim: reconcile leaves a job being claimed alone
            running_here = info_hash in self._active
            self._active.add(info_hash)
        try:
            epoch = None if running_here else self.database.claim(info_hash, self.name)
            if epoch is None:
                log.info("claim refused for %s on %s: not queued to run (a duplicate, redelivered, "
                         "paused or removed job)", info_hash, self.name)
                return False
            log.info("claimed %s on %s at epoch %s", info_hash, self.name, epoch)
            self.store.hold(info_hash, epoch)
            job = self._take(info_hash)
            if job is not None:
                self._wait_while_it_needs_a_slot(job)
                if self.stopping.is_set():
                    self._hand_back(job, epoch)
        finally:
            with self._lock:
                if not running_here:  # a duplicate leaves the first task's mark
                    self._active.discard(info_hash)
                self._idle.notify_all()
        return True

    def _take(self, info_hash):
        """Put the claimed job into the JobManager: a resident one (paused, failed) goes on, a new
        one is added and its worker started, as restore() does for a stored job."""
        manager = self.manager
        job = manager.registry.get(info_hash)
        if job is not None:
            try:
                manager.resume(info_hash)
            except JobError as exc:
                log.warning("job %s cannot go on: %s", info_hash, exc.message)
            # The claim wrote fetching_metadata; a job that needs no slot (a completed one seeds
            # again) says what it is instead.
            self.store.update(info_hash, state=job.state.value, error=job.error)
            return job
        record = self.database.row(info_hash)
        if record is None:  # removed since the claim
            return None
        job = self._job_from(record)
        self.store.update(info_hash, save_path=job.save_path)
        with manager.registry.adding, manager.registry.lock:
            if manager.registry.closed:
                return None
            manager.registry.add(job)
            manager._start_or_fail(job)
        return job

    def adopt(self, record):
        """Take over a resident job (seeding, paused, failed, stalled) of a node that went offline,
        whose row the reaper just moved here (shared storage): its torrent is added from the
        shared files as it was, seeding or paused, and holds no download slot. Its resume data
        stayed in the old node's data folder, so libtorrent checks the files (and takes the
        metadata from the stored .torrent, or from peers)."""
        info_hash, manager = record["info_hash"], self.manager
        self.store.hold(info_hash, record["epoch"])
        with manager.registry.adding, manager.registry.lock:
            if manager.registry.closed or manager.registry.get(info_hash) is not None:
                return  # stopping (the next start restores it), or still in this session: held again
            job = self._job_from(record)
            manager.registry.add(job)
            if job.state != JobState.FAILED:  # a failed job waits for a retry, as restore() leaves it
                manager._start_or_fail(job)
        self.store.update(info_hash, save_path=job.save_path)

    def _job_from(self, record):
        """A job of this node's from its row: in its own save path, with the rate limits stored
        for it (its torrent is added with them; its seeding limits are in the record)."""
        job = Job.from_record(record)
        job.save_path = self._own_save_path(job)
        limits = rate_limits_of(record)
        if limits:
            job.run.rate_limits.update(limits)
            with self._lock:
                self._rate_limits[job.info_hash] = limits
        return job

    def _own_save_path(self, job):
        """Where the job's files are on this node: its own save path (a completed job's files are
        in the library) or incomplete folder, and the job's category (the web app's save path,
        or another node's, is no folder of this machine's)."""
        unfinished = job.state != JobState.COMPLETED and self.config["INCOMPLETE_PATH"]
        root = self.config["INCOMPLETE_PATH"] if unfinished else self.config["SAVE_PATH"]
        return os.path.abspath(os.path.join(root, job.category))

    def _wait_while_it_needs_a_slot(self, job):
        registry = self.manager.registry
        while not self.stopping.wait(SLOT_CHECK_SECONDS):
            if registry.get(job.info_hash) is not job or job.state not in RUNNING \
                    or job.state == JobState.STALLED:
                return

    def _hand_back(self, job, epoch):
        """The node stops: queue the job again (fenced), its torrent paused (its resume data is
        saved as the session closes), and send it to this node's queue, or to every node's with
        shared storage."""
        registry, shared = self.manager.registry, self.config["SHARED_STORAGE"]
        with registry.lock:
            if registry.get(job.info_hash) is not job or job.state not in RUNNING:
                return
            # Paused here, not queued: a queued job with a torrent would take the slot another
            # job hands back (Lifecycle.release_slot) and download on while the node stops.
            job.state = JobState.PAUSED
            if job.run.torrent is not None:
                job.run.torrent.pause()
        fields = {"state": JobState.QUEUED.value, **({"node": None} if shared else {})}
        if not self.database.update_fenced(job.info_hash, self.name, epoch, **fields):
            return  # taken over meanwhile
        if shared:
            self.store.let_go(job.info_hash)
        self.dispatch(job.info_hash, sticky=not shared)
        log.info("handed %s back: queued, sent to %s", job.info_hash,
                 DOWNLOADS_QUEUE if shared else self.direct_queue)

    def dispatch(self, info_hash, sticky):
        """Send a download task for the job: to this node's own queue (sticky) or the shared one."""
        queue = self.direct_queue if sticky else DOWNLOADS_QUEUE
        try:
            self.celery.send_task(DOWNLOAD_TASK, (info_hash,), queue=queue)
        except Exception:  # the broker is down: the job stays queued; the restart or reaper sends it
            log.exception("cannot send %s to %s", info_hash, queue)

    def active(self):
        with self._lock:
            return set(self._active)

    # A job's own rate limits (cluster.job_settings) ----------------------------------------------
    def apply_rate_limits(self, info_hash, limits):
        """Cap a job's rates ({"download": bytes/s, "upload": ...}, 0: none) on its torrent, or as
        its torrent is added."""
        self.manager.set_job_rate_limits(info_hash, **limits)
        with self._lock:
            self._rate_limits[info_hash] = dict(limits)

    def applied_rate_limits(self, info_hash):
        """The job's rate limits as this node last applied them, or None."""
        with self._lock:
            return self._rate_limits.get(info_hash)

    def torrent_rate_limits(self, info_hash):
        """{"download_limit", "upload_limit"}: what the job's torrent has now, bytes/s (0: none);
        None while it has no torrent in the session."""
        job = self.manager.registry.get(info_hash)
        with self.manager.registry.lock:
            torrent = job.run.torrent if job is not None else None
        try:
            if torrent is not None:
                return {"download_limit": max(0, torrent.handle.download_limit()),
                        "upload_limit": max(0, torrent.handle.upload_limit())}
        except RuntimeError:  # removed meanwhile
            pass
        return {"download_limit": None, "upload_limit": None}

    # Fencing -------------------------------------------------------------------------------------
    def _fenced(self, info_hash):
        """Another node holds the job now: drop it here, files kept (in a thread: the caller may
        hold the registry's lock)."""
        threading.Thread(target=self.drop, args=(info_hash,), name=f"drop-{info_hash[:8]}", daemon=True).start()

    def drop(self, info_hash):
        """Take a job this node no longer holds out of its session, keeping its files."""
        self.store.let_go(info_hash)
        with self._lock:
            self._rate_limits.pop(info_hash, None)
        try:
            self.manager.remove(info_hash, delete_files=False)
        except JobError:
            pass  # gone already


class NodeStep(bootsteps.StartStopStep):
    """The worker's bootstep: the Node starts after the pool exists and stops before it."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.node = None
        # Before the consumer starts: a resumed job comes back to the node that has its files.
        worker.app.amqp.queues.select_add(direct_queue(worker.hostname))

    def start(self, worker):
        global _current
        self.node = Node(worker.app.hashdrop_config, worker.hostname, worker.concurrency, worker.app)
        self.node.start()
        _current = self.node

    def stop(self, worker):
        node, self.node = self.node, None  # once: a cold shutdown calls shutdown() after stop()
        if node is not None:
            node.stop()

    def shutdown(self, worker):
        self.stop(worker)


def on_shutting_down(**_):
    """SIGTERM (warm shutdown): running download tasks hand their jobs back and return at once,
    so the worker exits in seconds instead of waiting for hours-long downloads."""
    if _current is not None:
        _current.stopping.set()


def install(app, config):
    """Make app a hashdrop node's: its bootstep, tasks, control commands and shutdown signal."""
    from cluster import control, tasks  # noqa: F401  (control registers its commands on import)

    app.hashdrop_config = config
    app.steps["worker"].add(NodeStep)
    tasks.register(app)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
