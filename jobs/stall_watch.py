"""How jobs stall and come back: the timers of jobs/stall.py applied to jobs, in each job's thread.

A job's thread sleeps on its inbox only until its next stall timer is due (seconds_to_check,
see jobs.task.JobTask.next_message); waking with no event, it handles a "tick" (on_tick).
Statuses arrive only for torrents that changed, so a torrent that nobody serves sends none:
the timer has to come from the job's side.
"""
import logging
import time

import downloader
from jobs.model import TIMED, JobError, JobState
from jobs.stall import data_reason, metadata_reason

log = logging.getLogger(__name__)


class StallWatch:
    """Stalls jobs that wait too long for a peer, retries them with back-off, and puts them
    back to work the moment a peer has what they lack. State moves go through the lifecycle."""

    def __init__(self, lifecycle, limits):
        self.lifecycle = lifecycle
        self.lock = lifecycle.lock
        self.limits = limits
        self.remove = None  # (info_hash) -> None: Steering.remove, set by the JobManager

    def watch(self, job, status):
        """Time a running job by its statuses; a stalled one that shows life goes back to work,
        with a slot if one is free, else queued."""
        with self.lock:
            if job.state not in TIMED and job.state != JobState.STALLED:
                return
            alive = job.stall.observe(status, job.has_metadata, time.monotonic())
            if alive and job.state == JobState.STALLED:
                log.info("job %s: a peer has what it lacks; it is stalled no more", job.info_hash)
                self.lifecycle.want_download(job)

    def seconds_to_check(self, job):
        """How long the job's thread may sleep on its inbox before a timer is due; None: no timer."""
        with self.lock:
            stalled = job.state == JobState.STALLED
            if not stalled and job.state not in TIMED:
                return None
            if job.stall.since is None:  # a wait no status has timed yet: it starts now
                job.stall.restart(time.monotonic())
            due = job.stall.next_check(stalled, job.has_metadata, self.limits)
        return None if due is None else max(0.0, due - time.monotonic())

    def on_tick(self, job, _value=None):
        """The job's thread woke with no event: stall the job if its wait is over; if stalled,
        ask for peers again (trackers, DHT) or remove it (HASHDROP_STALLED_REMOVE_AFTER)."""
        now, limits = time.monotonic(), self.limits
        with self.lock:
            clock, has_metadata, torrent = job.stall, job.has_metadata, job.run.torrent
            if job.state in TIMED and clock.stall_due(has_metadata, limits, now):
                self.stall(job, now)
                return
            if job.state != JobState.STALLED:
                return
            remove = clock.remove_due(limits, now)
            retry = not remove and clock.retry_due(now)
            if retry:
                clock.retried(has_metadata, limits, now)
        if remove:
            log.warning("job %s stalled for %g s: removed, its files kept", job.info_hash, limits.remove_after)
            try:
                self.remove(job.info_hash)
            except JobError:  # a person removed it meanwhile
                pass
        elif retry and torrent is not None:
            try:
                downloader.announce_everywhere(torrent.handle)
            except RuntimeError:  # removed meanwhile
                pass

    def stall(self, job, now):
        """Give up the job's slot, saying why; its torrent runs on (not paused, not upload-only),
        so a peer that comes shows in its statuses."""
        timeout = self.limits.timeout(job.has_metadata)
        if not job.has_metadata:
            reason = metadata_reason(timeout, job.stall.peers_seen)
        else:
            wanted = job.live.get("total_wanted") or 0
            done = job.live.get("total_wanted_done", 0) / wanted if wanted else 0.0
            reason = data_reason(timeout, done, downloader.peer_progress(job.run.torrent))
        log.warning("job %s is stalled: %s", job.info_hash, reason)
        self.lifecycle.set_state(job, JobState.STALLED, error=reason)
        job.stall.stall(job.has_metadata, self.limits, now)

    def resumed_stalled(self, job):
        """A job stored as stalled is back in the session: it tries on, its timers from now."""
        with self.lock:
            job.stall.stall(job.has_metadata, self.limits, time.monotonic())
