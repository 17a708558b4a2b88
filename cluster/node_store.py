"""The job store a download node's JobManager writes through: PostgreSQL, this node's jobs only,
every write fenced by the epoch of the node's claim.

A write that touches no row means another node (or the reaper) has taken the job since: this
node is fenced off it. It then drops the job locally and keeps the files (on_fenced). A write the
database cannot take now (down, restarting) is kept and tried again with the next write.
"""
import logging
import threading

from store.base import JobStore, StoreError, StoreWriteError
from store.postgres import RESIDENT  # states whose torrent stays on a node

log = logging.getLogger(__name__)


class NodeStore(JobStore):
    """jobs.JobManager's store on a node: loads only this node's resident jobs, never inserts."""

    def __init__(self, database, node, on_fenced=lambda info_hash: None):
        self.database = database  # store.postgres.PostgresJobStore
        self.node = node
        self.location = database.location
        self.on_fenced = on_fenced  # called (in the writer's thread, maybe under the registry lock)
        self._lock = threading.RLock()
        self._epochs = {}  # info_hash -> the epoch this node holds it at
        self._unsaved = {}  # info_hash -> {column: value} the database could not take yet
        self._problem = None

    # What the node holds ----------------------------------------------------------------
    def hold(self, info_hash, epoch):
        """The node claimed (or restored) the job at epoch: its writes are fenced by it from now on."""
        with self._lock:
            self._epochs[info_hash] = epoch
            self._unsaved.pop(info_hash, None)

    def let_go(self, info_hash):
        """The node no longer holds the job: nothing more of it is written."""
        with self._lock:
            self._epochs.pop(info_hash, None)
            self._unsaved.pop(info_hash, None)

    def epoch_of(self, info_hash):
        with self._lock:
            return self._epochs.get(info_hash)

    # The JobStore interface ------------------------------------------------------------------
    def load(self):
        """This node's jobs whose torrents stay in its session (seeding, paused, failed, stalled)."""
        records = [row for row in self.database.rows_of(self.node) if row["state"] in RESIDENT]
        for record in records:
            self.hold(record["info_hash"], record["epoch"])
        return records

    def last_number(self):
        return self.database.last_number()

    def save_many(self, records):
        raise StoreWriteError("a download node adds no jobs: the web app does")

    def update(self, info_hash, **fields):
        with self._lock:
            if info_hash in self._epochs:
                self._unsaved.setdefault(info_hash, {}).update(fields)
            self._write_unsaved()

    def save_upload_totals(self, totals):
        with self._lock:
            for uploaded, info_hash in totals:
                if info_hash in self._epochs:
                    self._unsaved.setdefault(info_hash, {})["uploaded_bytes"] = uploaded
            self._write_unsaved()

    def delete(self, info_hash):
        """Delete the job's row while this node still holds it (a row taken over stays)."""
        with self._lock:
            epoch = self._epochs.pop(info_hash, None)
            self._unsaved.pop(info_hash, None)
        if epoch is None:
            return
        try:
            self.database.delete_fenced(info_hash, self.node, epoch)
        except StoreError as exc:  # reconcile deletes it later: its desired state says remove
            log.warning("cannot delete job %s's row now: %s", info_hash, exc)

    def _write_unsaved(self):
        """Write every waiting change, fenced; a fenced-off job is let go and reported."""
        for info_hash in list(self._unsaved):
            fields, epoch = self._unsaved[info_hash], self._epochs.get(info_hash)
            try:
                held = epoch is not None and self.database.update_fenced(info_hash, self.node, epoch, **fields)
            except StoreError as exc:
                if self._problem is None:
                    log.warning("cannot write the job database: %s", exc)
                self._problem = str(exc)
                return
            self._problem = None
            del self._unsaved[info_hash]
            if not held and epoch is not None:
                log.warning("job %s was taken from %s (epoch %s): dropped here, files kept",
                            info_hash, self.node, epoch)
                self._epochs.pop(info_hash, None)
                self.on_fenced(info_hash)

    def unsaved_problem(self):
        with self._lock:
            if not self._unsaved:
                return None
            return (f"The job database {self.location} cannot be written ({self._problem}); changes to "
                    f"{len(self._unsaved)} jobs wait for the next write that succeeds.")

    def close(self):
        with self._lock:
            self._write_unsaved()
            if self._unsaved:
                log.error("changes to %d jobs are lost: %s", len(self._unsaved), self._problem)
        self.database.close()
