"""How a job reacts to its torrent's events: one handler per event, and the state moves they make."""
import logging
import time

import downloader
import torrent_files
from jobs import durability
from jobs.library_move import MOVE_FAILED, LibraryMove, MoveRefused
from jobs.model import RUNNING, TIMED, JobState, utcnow
from jobs.notify import Notifier
from jobs.ownership import UnsafePath
from jobs.part_files import refused_message
from jobs.seeding import reason_to_stop
from jobs.stall import StallLimits
from jobs.stall_watch import StallWatch

log = logging.getLogger(__name__)


class Lifecycle:
    """The job state machine. Events come in the job's own thread (see jobs.task); user
    commands (jobs.manager) share its moves. Shared job state changes under the registry's lock."""

    def __init__(self, registry, slots, session, store, part_files, resume_files, seed_session,
                 library_move=None, notifier=None, stall_limits=StallLimits()):
        self.registry = registry
        self.lock = registry.lock
        self.slots = slots
        self.session = session
        self.store = store
        self.part_files = part_files
        self.resume_files = resume_files
        self.seed_session = seed_session  # jobs.seeding.SessionSeedLimits, which session-set changes
        # No incomplete folder unless given one (HASHDROP_INCOMPLETE_PATH): nothing moves.
        self.library_move = library_move or LibraryMove("", "", "", store, self.lock)
        self.notifier = notifier or Notifier([], registry.lock)  # none: nobody is told
        self.stalls = StallWatch(self, stall_limits)
        self._handlers = {
            "status": self.on_status, "metadata": self.on_metadata, "finished": self.on_finished,
            "error": self.on_error, "tracker": self.on_tracker, "resume_data": self.resume_files.save,
            "checked": self.on_checked, "flushed": self.flushed, "renamed": self.renamed, "moved": self.moved,
            "move_failed": self.move_failed, "tick": self.stalls.on_tick,
        }

    def handle(self, job, event, value):
        """Apply one event from libtorrent (see downloader.translate) to the job, and stamp it
        changed if what the page and the API show of it changed (most events change it)."""
        self._handlers[event](job, value)
        self.registry.touch(job)

    # Events ---------------------------------------------------------------------------
    def on_checked(self, job, _value=None):
        """libtorrent has checked the files: a check a person asked for is done. A short check
        can begin and end between two status batches, which then never show it "checking"."""
        job.run.verify = None

    def on_status(self, job, status):
        job.live = job.rate_meter.measure(status, time.monotonic())
        if job.run.verify is not None:  # a check asked for: pending until libtorrent has done it
            job.run.verify = "checking" if status.get("checking") else (
                None if job.run.verify == "checking" else "asked")
        self.stalls.watch(job, status)
        if job.run.redial_due and status["total_wanted"] > 0:
            self.redial_if_due(job)
        if not status["finished"] and not status.get("checking"):
            job.durability.synced = False  # pieces to fetch (more files, or lost ones): not on disk yet
            if job.state == JobState.COMPLETED and job.has_metadata:
                self.download_again(job)
        if status["finished"] and job.state in (JobState.DOWNLOADING, JobState.QUEUED, JobState.STALLED):
            self.finish(job)
        if job.state == JobState.COMPLETED:
            self.check_seed_limits(job)
        self.part_files.mark_partial(job)
        if job.marks.held and not status.get("checking"):
            refused = self.part_files.settle_held(job)
            if refused:
                self.stop_with(job, refused_message(job, refused))

    def on_metadata(self, job, value):
        """Record the name, sort the files, then start downloading if a slot is free.

        The metadata itself is kept with the resume data, asked for as it arrived. The files
        are named first: libtorrent is downloading already (unless something was on disk under
        the torrent's name, see jobs.task.before_metadata), and the store's writes can wait.
        """
        name, keys = value
        self.part_files.mark_before_download(job)
        self.session.listen(keys, job.run.inbox.put)
        with self.lock:
            job.name = name
            job.has_metadata = True
            for key in keys:
                self.registry.add_alias(job, key)
            self.store.update(job.info_hash, name=name)
            fetched_file_list, job.fetching_file_list = job.fetching_file_list, False
            held, job.run.held_for_sort = job.run.held_for_sort, False
            if held and not self.sort_files(job):
                return
            if not held and not fetched_file_list:
                self.part_files.claim_all(job)
            if job.state in (JobState.FETCHING_METADATA, JobState.STALLED):
                self.want_download(job)
            elif fetched_file_list and job.state == JobState.PAUSED and job.run.torrent:
                job.run.torrent.pause()  # its files can be chosen now; Resume downloads them
        job.run.file_list_known.set()

    def on_finished(self, job, status):
        """translate() has asked libtorrent to write the torrent out (flush) already."""
        job.live = status
        # Not finished by the time of its status: more files were wanted meanwhile, or none
        # was yet (files held for a choice, released as the metadata came). A completed job
        # comes here when rechecked, or when more files were wanted and are done.
        if status["finished"] and (job.state in RUNNING or job.state == JobState.COMPLETED):
            self.finish(job, flush_asked=True)

    def on_error(self, job, error):
        if job.state == JobState.FAILED and job.error:
            return  # a torrent error follows the file error that caused it, which says more
        self.set_state(job, JobState.FAILED, error=error)
        self.part_files.mark_unfinished(job)  # a library would take unfinished files for finished ones

    def on_tracker(self, job, text):
        job.tracker = text

    # State moves ------------------------------------------------------------------------
    def set_state(self, job, state, error=None):
        """Move a job to a new state, record it, and hand its slot on when it frees one."""
        with self.lock:
            if job.removal is not None or (job.state == state and job.error == error):
                return
            entered = job.state != state
            if state != job.state and state in TIMED:
                job.stall.restart(time.monotonic())
            job.state = state
            job.error = error
            if state == JobState.COMPLETED and job.completed_at is None:
                job.completed_at = utcnow()
            if state != JobState.DOWNLOADING:
                self.release_slot(job)
            self.store.update(job.info_hash, state=state.value, error=error,
                              completed_at=job.record()["completed_at"])
            self.registry.touch(job)  # a person's command changes state outside handle() too
            if entered:
                self.notifier.entered(job, state)  # queued: the job's thread does not wait for it

    def release_slot(self, job):
        """Give up the job's download slot, if it holds one, to the first queued job."""
        with self.lock:
            if job.info_hash not in self.slots:  # most calls: it held none, and nobody moves up
                return
            waiting = self.registry.keys_in_order(
                lambda other: other.state == JobState.QUEUED and other.run.torrent is not None)
            next_key = self.slots.release(job.info_hash, waiting)
            if next_key is not None:
                self.want_download(self.registry.get(next_key))

    def stop_with(self, job, reason):
        """Fail the job for a reason a person can act on; its torrent stops where it is."""
        self.set_state(job, JobState.FAILED, error=reason)
        if job.run.torrent is not None:
            job.run.torrent.pause()

    def want_download(self, job):
        """Download now if a slot is free, else queue (the torrent then only uploads)."""
        if not self.release_held_files(job):
            return
        slot = self.slots.take(job.info_hash)
        was_queued = job.state == JobState.QUEUED
        self.set_state(job, JobState.DOWNLOADING if slot else JobState.QUEUED)
        torrent = job.run.torrent
        if torrent:
            torrent_files.set_flag(torrent.handle, "upload_mode", not slot)
            torrent.resume()
            if slot and was_queued:
                downloader.reconnect(torrent.handle)  # seeds dropped it while it was upload-only

    def sort_files(self, job, wanted=None):
        """Sort the files the job wants (all it wants now, by default) before it writes them
        (jobs.part_files.want_files); False if it cannot go on (it failed, saying why)."""
        torrent = job.run.torrent
        if torrent is None or not job.has_metadata:
            return True
        handle = torrent.handle
        try:
            if wanted is None:
                wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            self.library_move.check_names(job, handle, wanted)
            self.part_files.want_files(job, handle, wanted)
        except (UnsafePath, MoveRefused) as exc:
            self.stop_with(job, str(exc))
            return False
        except RuntimeError:  # removed meanwhile
            pass
        return True

    def release_held_files(self, job):
        """Want every file of a job whose files all wait for a choice (it was added paused
        before its metadata, see jobs.task), or again the files it refused to take over.
        Return False if the job cannot go on."""
        torrent = job.run.torrent
        if torrent is None or not job.has_metadata:
            return True
        handle = torrent.handle
        try:
            wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            retry = set(job.marks.refused)
            if wanted and not retry:
                return True
            every_file = set(range(handle.torrent_file().num_files()))
        except RuntimeError:  # removed meanwhile
            return True
        if not self.sort_files(job, (wanted | retry) or every_file):
            return False
        if retry:  # its check counted pieces of the file it refused: count again
            handle.force_recheck()
        job.run.redial_due = True
        return True

    def redial_if_due(self, job):
        """Wanting nothing, a held job's torrent may have finished: then it let its seeds go and
        will not dial them again (see TorrentSession.redial). Once its new priorities show
        (libtorrent applies them after a disk job), make it, if no peer is left. Without this
        it waited for the next announce."""
        torrent = job.run.torrent
        job.run.redial_due = False
        if torrent is not None and not job.live.get("peers"):
            try:
                self.session.redial(torrent.handle)
            except RuntimeError:  # removed meanwhile
                pass

    def download_again(self, job):
        """A completed job has pieces to fetch again (more files chosen, or lost after a crash)."""
        with self.lock:
            if job.state != JobState.COMPLETED or job.removal is not None:
                return
            self.record_seeding(job, True)
            self.want_download(job)
            if job.run.torrent:  # seeds dropped it once it was finished
                self.session.redial(job.run.torrent.handle)

    def record_seeding(self, job, seeding):
        """Mark whether a completed job seeds, kept across a restart; its idle time starts over."""
        with self.lock:
            job.seeding_stopped = not seeding
            job.run.active_at = 0.0
            self.store.update(job.info_hash, seeding_stopped=int(not seeding))
            self.registry.touch(job)  # the alert thread's seed-limit check comes here outside handle()

    def check_seed_limits(self, job, now=None):
        """Stop seeding once the job's share ratio or idle limit is reached (see jobs.seeding).

        Idle is the time since its upload total last grew: a seed with no peer is idle too.
        """
        now = time.monotonic() if now is None else now
        with self.lock:
            if (job.state != JobState.COMPLETED or job.seeding_stopped or job.removal is not None
                    or not job.run.torrent):
                return
            uploaded = job.uploaded()
            if not job.run.active_at or uploaded != job.run.active_bytes:
                job.run.active_at, job.run.active_bytes = now, uploaded
            reason = reason_to_stop(job.seed_limits, self.seed_session, job.share_ratio(),
                                    now - job.run.active_at)
            if reason is None:
                return
            log.info("%s stops seeding: %s", job.label(), reason)
            self.record_seeding(job, False)
            job.run.torrent.pause()

    # Finishing: flushed, then renamed, then completed --------------------------------------
    def finish(self, job, flush_asked=False):
        """Every wanted piece is in: complete the job once libtorrent has written them all out.

        libtorrent says finished while the last blocks can still sit in its write buffer (a
        1 GiB file was seen incomplete on disk for up to 0.9 s after). The job is completed at
        the cache_flushed_alert of the flush asked for here, when its files are whole for
        whoever reads them.
        """
        with self.lock:
            if job.finishing:
                return
            job.finishing = True
            torrent = job.run.torrent
            buffered = torrent is not None and job.has_metadata
        if flush_asked:
            return
        if not buffered:  # no torrent or no metadata yet: nothing of it can be in a buffer
            self.flushed(job)
            return
        try:
            downloader.flush(torrent.handle)
        except RuntimeError:  # removed meanwhile
            self.flushed(job)

    def flushed(self, job, _value=None):
        """libtorrent's buffers for this torrent are on disk: a finishing job is completed,
        once its files have their own names back."""
        with self.lock:
            if not job.finishing:
                return
        if job.marks.renaming or job.moving_to:
            return  # renamed() or moved() comes back here
        if self.library_move.needed(job):
            self.move_to_library(job)
            return
        if self.part_files.unmark_complete(job):
            return  # renamed() comes back here once the renames are done
        with self.lock:
            job.finishing = False
            if job.state in RUNNING:
                self.set_state(job, JobState.COMPLETED)
        if job.state == JobState.COMPLETED:
            durability.sync(job)
        self.check_seed_limits(job)

    # Moving: from the incomplete folder into the library (jobs.library_move) -----------------
    def move_to_library(self, job):
        """A finishing job in the incomplete folder: mark its files unfinished, then move them.
        It stays downloading, moving, until libtorrent says the files are in the library."""
        if job.run.torrent is None or job.state not in RUNNING:
            with self.lock:
                job.finishing = False  # paused or failed meanwhile: it moves when it finishes again
            return
        try:
            self.library_move.begin(job)  # renames first: renamed() comes back to flushed()
        except MoveRefused as exc:
            self.fail_move(job, str(exc))

    def moved(self, job, path):
        """The files are in the library, and libtorrent seeds from there: give them their names."""
        if job.moving_to is None:
            return  # not a move of the job's (or one put in order at start)
        self.library_move.moved(job, path)
        self.flushed(job)

    def move_failed(self, job, value):
        """The move failed: the files stay in the incomplete folder, and the job fails saying why."""
        reason, name_taken = value
        self.library_move.failed(job, name_taken)
        self.fail_move(job, f"{MOVE_FAILED}: {reason}")

    def fail_move(self, job, reason):
        with self.lock:
            job.finishing = False  # a Retry finishes, and moves, again
        self.stop_with(job, reason)

    def renamed(self, job, value):
        """One of the job's files was renamed (or could not be: it keeps its name)."""
        index, ok = value
        renaming = job.marks.renaming
        tracked = index in renaming
        renaming.discard(index)
        if not ok:
            job.marks.unrenamable.add(index)
        if renaming:
            return
        if job.finishing:
            self.flushed(job)  # it was waiting for its renames
        elif tracked and job.run.torrent:
            # Renames alone do not make the periodic save (they are libtorrent's "state"),
            # and resume data that names a file wrongly loses it after a crash.
            try:
                downloader.save_resume(job.run.torrent.handle)
            except RuntimeError:  # removed meanwhile
                pass
