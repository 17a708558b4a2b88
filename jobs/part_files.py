"""Unfinished files as jobs see them: named <name><suffix> until complete, so a media server
scanning the save path does not take a half-downloaded film for a whole one."""
import torrent_files
from jobs.model import JobState


class PartFiles:
    """Marks and unmarks a job's files with HASHDROP_PART_SUFFIX ("" marks nothing).

    libtorrent posts file_renamed_alert once a file has its new name on disk: the indices of
    the renames asked for wait in job.marks.renaming until then. Each method that reads a
    torrent's files returns quietly when the torrent was removed meanwhile (RuntimeError).
    """

    def __init__(self, suffix, lock):
        self.suffix = suffix
        self._lock = lock  # the registry's: job.marks.marked_for is read under it

    def match_names(self, params, save_path):
        """Point add parameters at each file where it is on disk, marked or not."""
        torrent_files.match_names_on_disk(params, save_path, self.suffix)

    def mark_before_download(self, job):
        """Its metadata is in: mark its files before their first byte, or take back kept ones."""
        torrent = job.run.torrent
        if not self.suffix or torrent is None:
            return
        try:
            indices, kept = torrent_files.mark_before_download(torrent.handle, job.save_path, self.suffix)
            if kept:
                torrent.handle.force_recheck()
        except RuntimeError:
            return
        job.marks.renaming.update(indices)

    def mark_partial(self, job):
        """Give a downloading job's unfinished files the suffix, once it knows which.

        Runs on each status: the first one after the files were checked, and the first after
        more files were chosen (total_wanted changes), rename; the others return at once.
        """
        live = job.live
        if job.state not in (JobState.DOWNLOADING, JobState.QUEUED) or live.get("finished") \
                or live.get("checking") or live.get("total_wanted") == job.marks.marked_for:
            return
        if self.mark_unfinished(job):
            job.marks.marked_for = live.get("total_wanted")

    def mark_unfinished(self, job):
        """Give the job's unfinished wanted files the suffix; return whether it could look.

        A failed job calls this whatever its last status said: a magnet's first pieces can land
        under the files' own names before they are marked, and a full disk can fail it before
        the first status marks them.
        """
        torrent = job.run.torrent
        if not self.suffix or torrent is None or not job.has_metadata:
            return False
        try:
            marked = torrent_files.mark_partial(torrent.handle, self.suffix, skip=job.marks.unrenamable)
        except RuntimeError:
            return False
        job.marks.renaming.update(marked)
        return True

    def unmark_complete(self, job):
        """Rename a finishing job's complete files back from the suffix; True if any.

        Its pieces are written by now (flushed); the job is completed once the renames are done.
        """
        torrent = job.run.torrent
        if torrent is None or not job.has_metadata:
            return False
        try:
            indices = torrent_files.unmark_complete(torrent.handle, skip=job.marks.unrenamable)
        except RuntimeError:
            return False
        job.marks.renaming.update(indices)
        return bool(indices)

    def want_files(self, job, handle, wanted):
        """Download exactly the files whose indices are in wanted, naming new ones first:
        libtorrent copies a new file's first pieces in at once."""
        if self.suffix:
            was_wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            torrent_files.mark_before_download(handle, job.save_path, self.suffix, wanted - was_wanted)
        with self._lock:
            job.marks.marked_for = None  # mark what is wanted now at the next status
        torrent_files.set_wanted_files(handle, wanted)
