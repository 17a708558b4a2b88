"""What keeps a download node in step with the cluster, in two threads of its own:

- "node-keeper" (PostgreSQL): renews the node's lease every lease/3, pauses every torrent when
  it could not for lease/2 (self-fence: another node may take its jobs) and resumes them once
  it can; applies each of its jobs' desired state every HASHDROP_RECONCILE_SECONDS (what makes
  a pause or remove broadcast while the node was frozen or down take effect); and reaps the
  nodes whose lease ran out (with shared storage their downloads go to the shared queue, and
  their seeding, paused, failed and stalled jobs are adopted here).
- "node-live" (Redis): publishes the node's job views about every second (cluster.live).
"""
import logging
import threading
import time
from dataclasses import asdict

from cluster import live
from cluster.job_settings import rate_limits_of
from jobs.model import JobError, JobState
from jobs.seeding import SeedLimits
from store.base import StoreError

log = logging.getLogger(__name__)
LIVE_SECONDS = 1.0  # how often the node's job views go to Redis
# Resident jobs of an offline node adopted per reconcile round: every live node's round takes a
# batch, so a dead node's thousand seeding jobs spread over the others instead of all landing
# on the first node to look (each adopted job is a recheck of its files).
ADOPT_BATCH = 20


class Keeper:
    """The node's lease, reconcile, reaper and live-progress loops."""

    def __init__(self, node):
        self.node = node
        config = node.config
        self.lease = float(config["NODE_LEASE"])
        self.reconcile_every = float(config["RECONCILE_SECONDS"])
        self.shared = bool(config["SHARED_STORAGE"])
        self.renewed_at = 0.0  # monotonic time of the last renewal that succeeded
        self.self_fenced = False  # every torrent paused: the lease could not be renewed
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for name, loop in (("node-keeper", self._keep), ("node-live", self._publish)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout=10):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    # node-keeper ---------------------------------------------------------------------------------
    def _keep(self):
        renew_due = reconcile_due = 0.0
        last_round = time.monotonic()
        while not self._stop.wait(min(0.25, self.lease / 6)):
            now = time.monotonic()
            if now - last_round > self.lease / 2 and not self.self_fenced:
                # This process was frozen (SIGSTOP, a paused VM, swapping) long enough for its
                # lease to run out meanwhile: its jobs may be another node's now. Its torrents
                # stop before the renewal and reconcile below find out which.
                self._fence(f"was frozen for {now - last_round:.1f} s")
                renew_due = reconcile_due = now
            last_round = now
            try:
                if now >= renew_due:
                    renew_due = now + self.lease / 3
                    self._renew_or_fence()
                if now >= reconcile_due and not self.self_fenced:
                    reconcile_due = now + self.reconcile_every
                    self.reconcile()
                    self.reap()
            except StoreError as exc:  # the database is away: the lease above says what follows
                log.warning("node %s cannot reconcile now: %s", self.node.name, exc)
            except Exception:  # a failing round never ends the loop: the next one tries again
                log.exception("node %s: keeping in step failed", self.node.name)

    def renew(self):
        """Take or extend the node's lease; raise StoreError when the database cannot."""
        node = self.node
        node.database.renew_node(node.name, self.lease, node.slots, node.config["SAVE_PATH"],
                                 node.config["LISTEN_INTERFACES"])
        self.renewed_at = time.monotonic()

    def _renew_or_fence(self):
        try:
            self.renew()
        except StoreError as exc:
            log.warning("node %s cannot renew its lease: %s", self.node.name, exc)
            if not self.self_fenced and time.monotonic() - self.renewed_at > self.lease / 2:
                self._fence("cannot renew its lease")
            return
        if self.self_fenced:
            self.reconcile()  # first: jobs taken over meanwhile are dropped before they write
            self.self_fenced = False  # after: a reconcile that failed leaves the node fenced, to try again
            self.node.session.session.resume()
            log.info("node %s holds its lease again: torrents resumed", self.node.name)

    def _fence(self, why):
        log.warning("node %s %s: it pauses every torrent until it holds its lease again", self.node.name, why)
        self.self_fenced = True
        self.node.session.session.pause()

    def reconcile(self):
        """Apply the desired state stored for each of this node's jobs; drop the jobs it no longer
        holds (taken over: another epoch, or no row)."""
        node = self.node
        if node.stopping.is_set():
            return
        rows = {row["info_hash"]: row for row in node.database.rows_of(node.name)}
        for job in node.manager.registry.all():
            row = rows.get(job.info_hash)
            if self._taken_over(job.info_hash, row, running=job.info_hash in node.active()):
                log.info("job %s is no longer held by %s: dropped, files kept", job.info_hash, node.name)
                node.drop(job.info_hash)
            elif row is not None:
                self._apply(job, row["desired"])
                self._apply_limits(job, row)
        for info_hash, row in rows.items():
            if node.manager.registry.get(info_hash) is None and row["desired"] in ("remove", "remove_files"):
                node.database.delete_fenced(info_hash, node.name, row["epoch"])  # not resident here

    def _taken_over(self, info_hash, row, running=False):
        """Whether a job of the session is no longer this node's: its row is gone, another node
        (or nobody) holds it, or at a newer epoch than this node's claim. A job whose download
        task runs here may have been claimed after the rows were read, at an epoch this node has
        not recorded yet: it counts as taken only when its row, read again, names another node or
        none (the reaper queued it again while this node was frozen)."""
        node = self.node
        if running:
            if row is not None:
                return False
            row = node.database.row(info_hash)
            return row is None or row["node"] != node.name
        epoch = node.store.epoch_of(info_hash)
        if row is None or (epoch is not None and row["epoch"] < epoch):
            row = node.database.row(info_hash)  # read before a claim of this node's: look again
        return row is None or row["node"] != node.name or epoch is None or row["epoch"] > epoch

    def _apply(self, job, desired):
        manager = self.node.manager
        try:
            if desired in ("remove", "remove_files"):
                log.info("reconcile: removing %s%s", job.info_hash, " and its files" if desired == "remove_files" else "")
                manager.remove(job.info_hash, delete_files=desired == "remove_files")
            elif desired == "paused" and not (job.state == JobState.PAUSED or job.state in
                                              (JobState.FAILED, JobState.CANCELLED) or
                                              (job.state == JobState.COMPLETED and job.seeding_stopped)):
                log.info("reconcile: pausing %s", job.info_hash)
                manager.pause(job.info_hash)
        except JobError as exc:
            log.info("reconcile: %s: %s", job.info_hash, exc.message)

    def _apply_limits(self, job, row):
        """The job's own seeding and rate limits as stored, where they differ from what it has
        here (set while this node was unreachable, or before it restarted)."""
        if row["desired"] in ("remove", "remove_files"):
            return
        node = self.node
        try:
            limits = SeedLimits.from_text(row["seed_limits"])
            if limits != job.seed_limits:
                log.info("reconcile: seeding limits of %s", job.info_hash)
                node.manager.set_seed_limits(job.info_hash, asdict(limits))
            rates = rate_limits_of(row)
            if rates and rates != node.applied_rate_limits(job.info_hash):
                log.info("reconcile: rate limits of %s", job.info_hash)
                node.apply_rate_limits(job.info_hash, rates)
        except JobError as exc:
            log.info("reconcile: %s: %s", job.info_hash, exc.message)

    def reap(self):
        """With shared storage, give the unfinished jobs of every node whose lease ran out to the
        shared queue, and adopt a batch of its resident ones (seeding, paused, failed, stalled)
        here: they need no download slot, so no task waits for one (idempotent: a second
        reaper finds none left; the next round of any node adopts the next batch)."""
        if not self.shared:
            return  # sticky: a dead node's jobs wait for it, shown offline
        node = self.node
        for name in node.database.expired_nodes():
            if name == node.name:
                continue
            for info_hash in node.database.requeue_jobs_of(name):
                log.info("node %s is offline: %s queued again for any node", name, info_hash)
                node.dispatch(info_hash, sticky=False)
            for row in node.database.adopt_jobs_of(name, node.name, ADOPT_BATCH):
                log.info("node %s is offline: %s (%s) adopted by %s at epoch %s", name, row["info_hash"],
                         row["state"], node.name, row["epoch"])
                node.adopt(row)

    # node-live -------------------------------------------------------------------------------------
    def _publish(self):
        node = self.node
        while not self._stop.wait(LIVE_SECONDS):
            try:
                views = {view["info_hash"]: {**view, "node": node.name} for view in node.manager.jobs()}
                live.publish(node.redis, node.name, views)
            except Exception:
                log.exception("node %s: publishing live progress failed", node.name)
