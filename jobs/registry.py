"""Every job this process knows, by info hash and by each of its v1/v2 hashes, under one lock,
and what of them changed since a token (jobs.changes)."""
import threading

from jobs.changes import ChangeLog
from jobs.model import JobError
from jobs.view import shown_fields


class JobRegistry:
    """The jobs in the order they were added, and their aliases. Callers hold `lock` across a
    read and the change that depends on it; each method takes it too (it is reentrant)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.closed = False  # shutting down: no job is added
        self._jobs = {}  # info_hash -> Job, in the order they were added
        self._aliases = {}  # every v1/v2 hash of a job -> its info_hash
        self.changes = ChangeLog()  # what the page and the API show of each job, by version

    def __len__(self):
        with self.lock:
            return len(self._jobs)

    def get(self, info_hash):
        """The job with this info hash, or None."""
        with self.lock:
            return self._jobs.get((info_hash or "").lower())

    def require(self, info_hash):
        """The job with this info hash, or a 404 JobError a person can read."""
        job = self.get(info_hash)
        if job is None:
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        return job

    def find(self, target):
        """The job that target (a hashes.Target) names under any of its hashes, or None."""
        with self.lock:
            for key in (target.v1_hash, target.v2_hash, target.info_hash):
                if key and key in self._aliases:
                    return self._jobs.get(self._aliases[key])
        return None

    def by_key(self, key):
        """The job whose torrent libtorrent reports under this hash, or None."""
        with self.lock:
            return self._jobs.get(self._aliases.get(key))

    def add(self, job):
        with self.lock:
            self._jobs[job.info_hash] = job
            for key in job.keys():
                self._aliases[key] = job.info_hash
            # No signature yet: a submit of 1,000 adds them under this lock, and the job's
            # first touch (its first event) stamps it again anyway.
            self.changes.stamp(job.info_hash)

    def touch(self, job):
        """Stamp the job with a new version if what the page and the API show of it changed
        since it was last stamped; a job no longer registered (removed) is left alone."""
        with self.lock:
            if self._jobs.get(job.info_hash) is job:
                self.changes.stamp(job.info_hash, tuple(shown_fields(job).values()))

    def changed_since(self, token):
        """(jobs changed since token, newest change first, info hashes removed since, the
        token for now); (None, [], token for now) when the token is stale. BadToken if malformed."""
        with self.lock:
            version = self.changes.since(token)
            if version is None:
                return None, [], self.changes.token()
            jobs = [self._jobs[key] for key in self.changes.changed_since(version)]
            return jobs, self.changes.removed_since(version), self.changes.token()

    def add_alias(self, job, key):
        with self.lock:
            self._aliases[key] = job.info_hash

    def discard(self, job):
        with self.lock:
            if self._jobs.pop(job.info_hash, None) is not None:
                self.changes.remove(job.info_hash)
            for key in [k for k, v in self._aliases.items() if v == job.info_hash]:
                del self._aliases[key]

    def all(self):
        """Every job, oldest first."""
        with self.lock:
            return list(self._jobs.values())

    def matching(self, states=None, text=""):
        """The jobs in `states` (every job for None) whose name or hash holds `text` in any
        case, oldest first."""
        with self.lock:
            jobs = [job for job in self._jobs.values() if states is None or job.state in states]
        if text:
            text = text.casefold()
            jobs = [job for job in jobs if text in (job.name or "").casefold() or text in job.info_hash]
        return jobs

    @staticmethod
    def matches(job, states=None, text=""):
        """Whether matching(states, text) would list the job."""
        text = text.casefold()
        return ((states is None or job.state in states)
                and (not text or text in (job.name or "").casefold() or text in job.info_hash))

    def keys_in_order(self, predicate):
        """The info hashes of the jobs for which predicate(job) holds, in queue order
        (Job.rank: by age, unless moved)."""
        with self.lock:
            chosen = [job for job in self._jobs.values() if predicate(job)]
        return [job.info_hash for job in sorted(chosen, key=lambda job: job.rank())]

    def queue_order(self):
        """(info hash, rank) of every job, first in the queue first."""
        with self.lock:
            return sorted(((job.info_hash, job.rank()) for job in self._jobs.values()),
                          key=lambda pair: pair[1])
