"""What the app does about once a second, in the alert thread (TorrentSession.on_tick): keep the
upload totals that grew, stop the seeds whose limits are reached, and run the GC's full
collections when they are due (jobs/full_collections.py)."""
import time

from jobs.full_collections import FullCollections
from jobs.model import JobState

SEED_CHECK_INTERVAL = 2.0  # seconds between checks of the seeds' idle limits


class PeriodicWork:
    def __init__(self, registry, store, lifecycle, resume_interval):
        self.registry = registry
        self.store = store
        self.lifecycle = lifecycle
        self.resume_interval = resume_interval
        self._upload_totals_due = 0.0  # monotonic time of the next save of upload totals
        self._seed_check_due = 0.0  # monotonic time of the next check of idle seeds
        self.full_collections = FullCollections()

    def tick(self):
        self.save_upload_totals()
        now = time.monotonic()
        if now >= self._seed_check_due:
            self._seed_check_due = now + SEED_CHECK_INTERVAL
            self.check_seed_limits()
        self.full_collections.hold()  # from the first tick: a manager whose session ticks
        self.full_collections.collect_if_due(len(self.registry), self.registry.submitted_at,
                                             adding=self.registry.adding.locked())

    def stop(self):
        """Hand the GC's full collections back to Python."""
        self.full_collections.release()

    def check_seed_limits(self):
        """Stop the seeds whose limits are reached: idle ones post no status to check them by."""
        for job in self.registry.matching({JobState.COMPLETED}):
            self.lifecycle.check_seed_limits(job)

    def save_upload_totals(self):
        """Record the upload totals that grew, at most every resume_interval, in one write.

        libtorrent keeps them in the resume data only, which is saved for them at shutdown alone
        (see downloader.PERIODIC_RESUME_FLAGS): a crash would lose every byte seeded since the
        last clean stop, and the share ratio with it. It also retries the changes that the job
        store could not take.
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
