"""Unfinished files as jobs see them: named <name><suffix> until complete, so a media server
scanning the save path does not take a half-downloaded film for a whole one."""
import libtorrent as lt

import torrent_files
from jobs.model import JobState
from jobs.ownership import UnsafePath, outside_message

CHECKED_STATES = {lt.torrent_status.downloading, lt.torrent_status.finished, lt.torrent_status.seeding}


class PartFiles:
    """Marks and unmarks a job's files with HASHDROP_PART_SUFFIX ("" marks nothing).

    libtorrent posts file_renamed_alert once a file has its new name on disk: the indices of
    the renames asked for wait in job.marks.renaming until then. Each method that reads a
    torrent's files returns quietly when the torrent was removed meanwhile (RuntimeError).
    """

    def __init__(self, suffix, lock, ownership):
        self.suffix = suffix
        self._lock = lock  # the registry's: job.marks.marked_for is read under it
        self.ownership = ownership

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
        if job.state not in (JobState.DOWNLOADING, JobState.QUEUED, JobState.STALLED) or live.get("finished") \
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
        """Download the files whose indices are in wanted, as far as they are the job's to write.

        New files are recorded as the job's and named first (libtorrent copies a new file's
        first pieces in at once); a file on disk that the job did not write is held until
        libtorrent's check shows whether it holds exactly the torrent's data (see settle_held).
        Raises UnsafePath, wanting nothing, if a file would be written outside the save path.
        """
        _, named = torrent_files.named_files(handle)
        renamed = {index: on_disk for index, path, on_disk in named if on_disk != path}
        paths = {index: path for index, path, _ in named}
        sort = self.ownership.sort(job, paths.items(), wanted, renamed)
        if sort.outside:
            raise UnsafePath(outside_message(job, sort.outside))
        self.ownership.claim(job, [paths[index] for index in sort.new])
        if self.suffix:
            was_wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            _, kept = torrent_files.mark_before_download(
                handle, job.save_path, self.suffix, (sort.new | sort.own) - was_wanted)
            if kept:
                handle.force_recheck()
        with self._lock:
            job.marks.marked_for = None  # mark what is wanted now at the next status
            job.marks.held = sort.foreign
            job.marks.refused.clear()
        torrent_files.set_wanted_files(handle, sort.new | sort.own | (job.marks.adopted & wanted))
        return sort

    def claim_all(self, job):
        """Record every file of the job's torrent as its own: nothing was on disk under its name."""
        torrent = job.run.torrent
        if torrent is None:
            return
        try:
            layout = torrent.handle.torrent_file().layout()
        except RuntimeError:  # removed meanwhile
            return
        self.ownership.claim_every_file(job, layout)

    def settle_held(self, job):
        """Once libtorrent has checked the files the job found on disk and did not write: want
        each that holds exactly its data (seeded as it is, never deleted); return the others,
        {index: name on disk}, which the job must not take over."""
        torrent = job.run.torrent
        if not job.marks.held or torrent is None:
            return {}
        handle = torrent.handle
        try:
            if handle.status().state not in CHECKED_STATES:
                return {}
            files, _ = torrent_files.named_files(handle)
            done = handle.file_progress(lt.torrent_handle.piece_granularity)
            held, job.marks.held = job.marks.held, {}
            whole = {index for index in held if done[index] == files.file_size(index)}
            job.marks.adopted |= whole
            wanted = {i for i, priority in enumerate(handle.get_file_priorities()) if priority > 0}
            torrent_files.set_wanted_files(handle, wanted | whole)
        except RuntimeError:  # removed meanwhile
            return {}
        job.marks.refused = set(held) - whole
        return {index: held[index] for index in job.marks.refused}


def refused_message(job, refused):
    """Why the job stopped: files on disk that it did not write, and that hold other data."""
    names = ", ".join(sorted(refused.values())[:3])
    more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
    return (f"{names}{more} is already in {job.save_path}, was not written by hashdrop and does not "
            "hold this torrent's data: hashdrop leaves it alone. Move it away (or add the torrent "
            "with another category), then Retry.")
