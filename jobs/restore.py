"""Bringing back the stored jobs at start: every one listed at once, and the unfinished ones'
workers started in the background, so the page answers at once while ten thousand jobs come
back (docs/design.md, "What survives what")."""
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from jobs.model import Job, JobState

STARTED_AT_ONCE = 50  # jobs whose workers start under one taking of the registry's lock
SPARE_THREADS = 16  # kept free at start-up for the web server (waitress starts 4) and libtorrent


@dataclass
class RestoreProgress:
    """How many of the stored jobs' workers have started, of how many."""

    total: int = 0
    started: int = 0


class Restorer:
    """Reads the store once, registers every job, and starts the workers in the "restorer"
    thread, oldest first; the shutdown stops it at its next job and joins it."""

    def __init__(self, store, registry, take_number, start_or_fail):
        self.store = store
        self.registry = registry
        self._take_number = take_number  # () -> the next job number
        self._start_or_fail = start_or_fail  # (job) -> whether its worker started
        self._progress = RestoreProgress()
        self._thread = None

    def restore(self):
        jobs = [self._restored(record) for record in self.store.load()]
        with self.registry.adding:
            self.registry.add(*jobs)
        to_start = [job for job in jobs if job.state != JobState.FAILED]
        self._progress = RestoreProgress(total=len(to_start))
        self._thread = threading.Thread(target=self._start_all, args=(to_start,), name="restorer", daemon=True)
        self._thread.start()

    def progress(self):
        """{"started": n, "total": N} while workers are being started, else None."""
        progress = self._progress
        return None if progress.started >= progress.total else dict(vars(progress))

    def join(self, timeout):
        if self._thread is not None:
            self._thread.join(timeout)

    def _restored(self, record):
        """A stored job as it comes back: numbered if it was stored before numbers; one that ran
        looks for its metadata again (its resume data brings it at once)."""
        job = Job.from_record(record)
        if not job.number:  # stored by a hashdrop before job numbers
            job.number = self._take_number()
            self.store.update(job.info_hash, number=job.number)
        if job.state in (JobState.DOWNLOADING, JobState.QUEUED):
            job.state = JobState.FETCHING_METADATA
        return job

    def _start_all(self, jobs):
        """Start each job's worker unless it was removed, started (a Retry) or the app began
        shutting down meanwhile.

        The registry's lock is taken once per STARTED_AT_ONCE jobs, not once per job: the job
        threads started so far take it in turn, and Python's locks are not fair, so each taking
        can wait behind all of them.

        Spare threads are held meanwhile and let go after: where the system has few threads to
        give, the jobs it has none for fail (and can be retried), and the web server still gets
        its own.
        """
        with spare_threads(SPARE_THREADS):
            for start in range(0, len(jobs), STARTED_AT_ONCE):
                with self.registry.lock:
                    if self.registry.closed:
                        return
                    for job in jobs[start:start + STARTED_AT_ONCE]:
                        if job.removal is None and job.run.worker is None:
                            self._start_or_fail(job)
                        self._progress.started += 1


@contextmanager
def spare_threads(count):
    """Hold up to count idle threads for the duration of the block, then let them end."""
    release, held = threading.Event(), []
    try:
        for number in range(count):
            thread = threading.Thread(target=release.wait, name=f"spare-{number}", daemon=True)
            thread.start()
            held.append(thread)
    except RuntimeError:  # fewer to give than asked for: hold what there is
        pass
    try:
        yield
    finally:
        release.set()
        for thread in held:
            thread.join()
