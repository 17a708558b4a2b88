"""The job store interface: what keeps jobs between starts. SQLite is the embedded default
(store.sqlite); a shared database implements the same methods."""
import logging
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The job store cannot be opened or read; the text says which and what to do."""


class StoreWriteError(Exception):
    """The job store could not record new jobs; the text is the store's reason."""


class JobStore(ABC):
    """Every job's durable record (jobs.model.Job.record() plus uploaded_bytes), by info hash.

    A change the store cannot write (a full disk) is kept and written with the next write that
    succeeds; unsaved_problem() says so meanwhile. Methods may be called from any thread.
    """

    location = ""  # where the jobs are kept, for messages to a person

    @abstractmethod
    def load(self):
        """Every stored job as a dict of its record's fields and uploaded_bytes, oldest first."""

    @abstractmethod
    def last_number(self):
        """The highest job number ever stored (removed jobs count too), or 0: numbers are never
        given twice."""

    @abstractmethod
    def save_many(self, records):
        """Insert several jobs at once, all or none; raise StoreWriteError if they are not kept."""

    @abstractmethod
    def update(self, info_hash, **fields):
        """Change some fields of one job (kept for later if they cannot be written now)."""

    @abstractmethod
    def save_upload_totals(self, totals):
        """Record several jobs' uploaded bytes ((bytes, info_hash) pairs); retry what waits."""

    @abstractmethod
    def delete(self, info_hash):
        """Forget one job."""

    @abstractmethod
    def unsaved_problem(self):
        """A sentence for the page while changes wait to be written, else None."""

    @abstractmethod
    def close(self):
        """Write what waits, then let go of the store."""


class KeptChangesStore(JobStore):
    """The part both stores share: a job's change happened already, so when the database cannot
    take it (a full disk, a server down or restarting) it is kept, and written with the next
    change that can be written. A subclass has `_lock`, `_unsaved` ({info_hash: {column: value}},
    or None for a row to delete) and `_write_unsaved()`, which writes them all in one transaction."""

    def update(self, info_hash, **fields):
        """Change some columns of one job."""
        with self._lock:
            self._keep(info_hash, fields)
            self._write_unsaved()

    def save_upload_totals(self, totals):
        """Record several jobs' uploaded bytes ((bytes, info_hash) pairs); retry what waits."""
        with self._lock:
            for uploaded, info_hash in totals:
                self._keep(info_hash, {"uploaded_bytes": uploaded})
            if self._unsaved:
                self._write_unsaved()

    def delete(self, info_hash):
        """Forget one job."""
        with self._lock:
            self._unsaved[info_hash] = None
            self._write_unsaved()

    def _keep(self, info_hash, fields):
        waiting = self._unsaved.setdefault(info_hash, {})
        if waiting is not None:  # None: the row is to be deleted, and nothing changes that
            waiting.update(fields)

    usual_cause = ""  # what to check first when the database cannot be written, for a person

    def unsaved_problem(self):
        """A sentence for the page while changes wait to be written, else None."""
        with self._lock:
            if not self._unsaved:
                return None
            count = len(self._unsaved)
            return (f"The job database {self.location} cannot be written ({self._problem}). Changes to "
                    f"{count} job{'s' if count != 1 else ''} wait for the next write that succeeds, and "
                    f"are lost if hashdrop stops before it. {self.usual_cause}")

    def close(self):
        """Write what waits (logging what is lost if it cannot), then let go of the database."""
        with self._lock:
            if self._unsaved:
                self._write_unsaved()
                if self._unsaved:
                    log.error("changes to %d jobs are lost: %s", len(self._unsaved), self._problem)
            self._disconnect()
