"""Every job this process knows, by info hash and by each of its v1/v2 hashes, and what of them
changed since a token (jobs.changes); and the locks around job state and around adding jobs."""
import threading
import time
from contextlib import contextmanager
from itertools import islice

from jobs.changes import ChangeLog
from jobs.model import JobError
from jobs.view import shown_fields


class JobRegistry:
    """The jobs in the order they were added, and their aliases.

    Three locks, taken in this order when more than one is held:
    - `adding`: whoever adds jobs (a submit, the start-up) holds it across looking for the
      ones known already and adding the new ones. Job threads never take it, so a submit does
      not wait behind them: with thousands of jobs being added, the job-state lock below
      passes from thread to thread, and Python's locks are not fair, so a request that queued
      for it waited seconds (docs/design.md, "Submits while thousands of jobs are being added").
    - `lock` (reentrant): shared job state. Callers hold it across a read and the change that
      depends on it; the lifecycle and the steering hold it for every state change.
    - `_maps`, this class's own: the maps and the change log, held only for a few dict
      operations, never while calling out.
    """

    def __init__(self):
        self.adding = threading.Lock()
        self.lock = threading.RLock()
        self._maps = threading.Lock()
        self._submit_gate = None  # an Event while a submit adds jobs (see submitting())
        self.submitted_at = 0.0  # monotonic time the last submit ended (jobs/full_collections.py)
        self.closed = False  # shutting down: no job is added (set under `adding` and `lock`)
        self._jobs = {}  # info_hash -> Job, in the order they were added
        self._aliases = {}  # every v1/v2 hash of a job -> its info_hash
        self._changes = ChangeLog()  # what the page and the API show of each job, by version; under _maps
        self._with_peers = {}  # info_hash -> Job whose last status had peers (under _maps): with_peers()
        self._summaries = {}  # name -> (change log version, value): summary()

    @contextmanager
    def submitting(self):
        """Hold `adding`, and hold job threads at wait_for_submit() until the block ends.

        Every job thread that works meanwhile takes the GIL from the submit (a request, which
        answers once its jobs' threads are started): with thousands of jobs being added, ten
        submits of 1,000 in a row took 0.5-1 s each instead of 0.15. Each submit has its own
        event, so the threads it lets go do not hold up the next one.
        """
        with self.adding:
            self._submit_gate = gate = threading.Event()
            try:
                yield
            finally:
                self._submit_gate = None
                self.submitted_at = time.monotonic()
                gate.set()

    def wait_for_submit(self):
        """Return once no submit is adding jobs (see submitting()). Called by job threads, holding
        no lock, before each piece of work."""
        gate = self._submit_gate
        if gate is not None:
            gate.wait()

    def __len__(self):
        with self._maps:
            return len(self._jobs)

    def get(self, info_hash):
        """The job with this info hash, or None."""
        with self._maps:
            return self._jobs.get((info_hash or "").lower())

    def require(self, info_hash):
        """The job with this info hash, or a 404 JobError a person can read."""
        job = self.get(info_hash)
        if job is None:
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        return job

    def find(self, target):
        """The job that target (a hashes.Target) names under any of its hashes, or None."""
        with self._maps:
            return self._find(target)

    def known(self, targets):
        """The targets (hashes.Target) a job has already, under any of their hashes."""
        with self._maps:
            return [target for target in targets if self._find(target) is not None]

    def _find(self, target):
        for key in (target.v1_hash, target.v2_hash, target.info_hash):
            if key and key in self._aliases:
                return self._jobs.get(self._aliases[key])
        return None

    def by_key(self, key):
        """The job whose torrent libtorrent reports under this hash, or None."""
        with self._maps:
            return self._jobs.get(self._aliases.get(key))

    def add(self, *jobs):
        with self._maps:
            for job in jobs:
                self._jobs[job.info_hash] = job
                for key in job.keys():
                    self._aliases[key] = job.info_hash
                # No signature yet: the job's first touch (its first event) stamps it again anyway.
                self._changes.stamp(job.info_hash)

    def touch(self, job):
        """Stamp the job with a new version if what the page and the API show of it changed
        since it was last stamped; a job no longer registered (removed) is left alone."""
        signature = tuple(shown_fields(job).values())
        with self._maps:
            if self._jobs.get(job.info_hash) is job:
                self._changes.stamp(job.info_hash, signature)
                if job.live.get("peers"):
                    self._with_peers[job.info_hash] = job
                else:
                    self._with_peers.pop(job.info_hash, None)

    def token(self):
        """The change log's token for now."""
        with self._maps:
            return self._changes.token()

    def version(self, token):
        """The version a token stands for (jobs.changes.ChangeLog.since); None when stale."""
        with self._maps:
            return self._changes.since(token)

    def version_of(self, info_hash):
        with self._maps:
            return self._changes.version_of(info_hash)

    def changed_since(self, token):
        """(jobs changed since token, newest change first, info hashes removed since, the
        token for now); (None, [], token for now) when the token is stale. BadToken if malformed."""
        with self._maps:
            version = self._changes.since(token)
            if version is None:
                return None, [], self._changes.token()
            jobs = [self._jobs[key] for key in self._changes.changed_since(version)]
            return jobs, self._changes.removed_since(version), self._changes.token()

    def add_alias(self, job, key):
        with self._maps:
            self._aliases[key] = job.info_hash

    def discard(self, job):
        with self._maps:
            if self._jobs.pop(job.info_hash, None) is not None:
                self._changes.remove(job.info_hash)
            self._with_peers.pop(job.info_hash, None)
            for key in [k for k, v in self._aliases.items() if v == job.info_hash]:
                del self._aliases[key]

    def all(self):
        """Every job, oldest first."""
        with self._maps:
            return list(self._jobs.values())

    def with_peers(self):
        """The jobs whose last status had peers, as touch() last saw them: only they move
        bytes (Job.rates). Asking each of 10,000 jobs was a third of the page's time."""
        with self._maps:
            return list(self._with_peers.values())

    def newest(self, start, count):
        """count jobs newest first from position start, and how many there are: a page of the
        whole list without copying all of it."""
        with self._maps:
            return list(islice(reversed(self._jobs.values()), start, start + count)), len(self._jobs)

    def summary(self, name, compute):
        """compute(every job, oldest first), kept under `name` until the change log's next
        version: whatever a job shows changes, or one comes or goes. A page's counts per filter
        at 10,000 jobs need not pass over them all again while nothing changed."""
        with self._maps:
            version = self._changes.version
            kept = self._summaries.get(name)
            if kept is not None and kept[0] == version:
                return kept[1]
            jobs = list(self._jobs.values())
        value = compute(jobs)
        with self._maps:
            self._summaries[name] = (version, value)
        return value

    def matching(self, states=None, text=""):
        """The jobs in `states` (every job for None) whose name or hash holds `text` in any
        case, oldest first."""
        jobs = [job for job in self.all() if states is None or job.state in states]
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
        chosen = [job for job in self.all() if predicate(job)]
        return [job.info_hash for job in sorted(chosen, key=lambda job: job.rank())]

    def queue_order(self):
        """(info hash, rank) of every job, first in the queue first."""
        return sorted(((job.info_hash, job.rank()) for job in self.all()), key=lambda pair: pair[1])
