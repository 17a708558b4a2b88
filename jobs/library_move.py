"""The incomplete folder (HASHDROP_INCOMPLETE_PATH): jobs download there, and a finished job's files
move into the library (the save path and the job's category) before the job is completed."""
import logging
import os

import downloader
import torrent_files
from downloader import JobRefused
from jobs.durability import remove_quietly
from jobs.ownership import remove_empty_folders

log = logging.getLogger(__name__)

# The ending files have while they move when HASHDROP_PART_SUFFIX is empty: across disks libtorrent
# copies each file under the name it has, and the library must not show a half-copied film.
MOVE_SUFFIX = ".part"
MOVE_FAILED = "Could not move the files into the library"


class MoveRefused(JobRefused):
    """A job's files cannot move into the library; the text says why."""


class LibraryMove:
    """Moves finished jobs out of the incomplete folder with libtorrent's move_storage, so that they
    seed from the library, and puts a move that a crash cut short back in order at the next start.

    The store keeps where a job's files are (save_path) and, while they move, where to (moving_to):
    save_path changes only once libtorrent has said the move is done.
    """

    def __init__(self, incomplete_root, save_root, suffix, store, lock):
        self.incomplete_root = incomplete_root
        self.save_root = save_root
        self.suffix = suffix or MOVE_SUFFIX
        self.store = store
        self._lock = lock  # the registry's: job.moving_to and job.save_path change under it

    def needed(self, job):
        """Whether the job's files are in the incomplete folder, and move when it finishes."""
        return bool(self.incomplete_root) and torrent_files.resolves_inside(job.save_path, self.incomplete_root)

    def library_path(self, job):
        """The folder a job's files end up in: the save path, and its category."""
        return os.path.abspath(os.path.join(self.save_root, job.category))

    def folders(self, job):
        """Where a file of the job's could meet a file it did not write: where it downloads, and
        the library folder it moves into."""
        return [job.save_path, self.library_path(job)] if self.needed(job) else [job.save_path]

    def taken(self, job, paths):
        """The names in the job's library folder, of these paths of its torrent (or marked
        unfinished), that something is on disk under already."""
        library = self.library_path(job)
        names = (name for path in paths for name in dict.fromkeys((path, path + self.suffix)))
        return [name for name in names if os.path.lexists(os.path.join(library, name))]

    def check_names(self, job, handle, wanted):
        """Before a job in the incomplete folder writes its files (indices in wanted): raise
        MoveRefused if one of their names is taken in the library, where they could not move."""
        if not self.needed(job):
            return
        _, named = torrent_files.named_files(handle)
        taken = self.taken(job, [path for index, path, _ in named if index in wanted])
        if taken:
            raise MoveRefused(taken_message(job, self.library_path(job), taken))

    def begin(self, job):
        """Mark the files unfinished, or, once they are, start the move. Raises MoveRefused."""
        try:
            if not self.mark_for_move(job):
                self.start(job)
        except RuntimeError:  # removed meanwhile
            pass

    def mark_for_move(self, job):
        """Give the job's files that have their own names the unfinished suffix before they move;
        return True if renames were asked for (renamed() brings the job back once they are done)."""
        handle = job.run.torrent.handle
        indices = torrent_files.mark_for_move(handle, job.save_path, self.suffix, skip=job.marks.unrenamable)
        job.marks.renaming.update(indices)
        return bool(indices)

    def start(self, job, library=None):
        """Record the move, then have libtorrent move the job's files into its library folder
        (or into `library`, a folder in the save path a person chose). Raises MoveRefused when a
        name is taken there or the move cannot be recorded."""
        handle = job.run.torrent.handle
        _, named = torrent_files.named_files(handle)
        library = library or self.library_path(job)
        moving = [path for _, path, on_disk in named if os.path.lexists(os.path.join(job.save_path, on_disk))]
        refusal = self._refusal(job, library, moving)
        if refusal:
            raise MoveRefused(refusal)
        self._make_folders(library, moving)
        with self._lock:
            job.moving_to = library
            self.store.update(job.info_hash, moving_to=library)
        problem = self.store.unsaved_problem()
        if problem:  # a crash mid-move would leave files half moved with nothing saying so
            with self._lock:
                job.moving_to = None
            raise MoveRefused(f"The move into {library} was not started: {problem}")
        log.info("job %s: moving its files from %s into %s", job.info_hash, job.save_path, library)
        torrent_files.move_storage(handle, library)

    def _make_folders(self, library, paths):
        """Make the folders the files move into. libtorrent would too, but where it cannot (a
        read-only disk) it goes on to copy, and reports the copy's "No such file or directory"."""
        try:
            for folder in sorted({os.path.dirname(os.path.join(library, path)) for path in paths}):
                os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            remove_empty_folders(library, paths, self.save_root)
            raise MoveRefused(f"{MOVE_FAILED}: {downloader.describe_error(exc)}") from None

    def _refusal(self, job, library, paths):
        """Why the files cannot move into library, or None."""
        outside = [path for path in paths
                   if not torrent_files.resolves_inside(os.path.join(library, path), self.save_root)]
        if outside:
            return (f"{', '.join(sorted(outside)[:3])} would be moved outside the save path (a folder "
                    f"on the way is a link that leads out of {library}): the files stay in {job.save_path}.")
        taken = self.taken(job, paths)
        if taken:
            return taken_message(job, library, taken)
        return None

    def moved(self, job, path):
        """libtorrent has moved the files and seeds from path: record it, and keep resume data
        that names the new place."""
        with self._lock:
            job.save_path = path
            job.moving_to = None
            self.store.update(job.info_hash, save_path=path, moving_to=None)
        log.info("job %s: its files are in %s", job.info_hash, path)
        try:
            downloader.save_resume(job.run.torrent.handle)
        except (AttributeError, RuntimeError):  # removed meanwhile
            pass

    def failed(self, job, name_taken):
        """A move that failed: libtorrent put back what it had renamed, and left what it had
        copied. Delete those copies where the file is still in the incomplete folder: nothing was
        under their names when the move began, unless the move failed on a name taken
        (name_taken), in which case libtorrent moved nothing."""
        library = job.moving_to
        torrent = job.run.torrent
        if library and torrent is not None and not name_taken:
            try:
                _, named = torrent_files.named_files(torrent.handle)
            except RuntimeError:  # removed meanwhile
                named = []
            for _, _, on_disk in named:
                if os.path.lexists(os.path.join(job.save_path, on_disk)):
                    remove_quietly(os.path.join(library, on_disk))
            remove_empty_folders(library, [on_disk for _, _, on_disk in named], self.save_root)
        with self._lock:
            job.moving_to = None
            self.store.update(job.info_hash, moving_to=None)

    def recover(self, job, params):
        """At start, before its torrent is added: put in order the files of a job whose move was
        cut short (a crash, a shutdown mid-move). A cross-disk move whose copies were all made
        (libtorrent deletes originals only once every file is copied) goes on into the library;
        any other goes back: copies that may be partial are deleted, renamed files renamed back.
        The job then moves again when it finishes. Raises OSError if a file cannot be put back."""
        library = job.moving_to
        if params is not None and params.ti is not None:
            places = self._places(job, params, library)
            copied = not torrent_files.same_disk(job.save_path, library) \
                and any(in_library and not here for _, here, in_library in places)
            if copied:
                self._roll_forward(job, library, places)
            else:
                self._roll_back(job, library, places)
        with self._lock:
            job.moving_to = None
            self.store.update(job.info_hash, save_path=job.save_path, moving_to=None)

    def _places(self, job, params, library):
        """(path, its name in save_path or None, its name in library or None) of each file."""
        renamed = params.renamed_files
        places = []
        for index, path in torrent_files.real_files(params.ti.layout()):
            names = list(dict.fromkeys((renamed.get(index, path), path + self.suffix, path)))
            places.append((path, first_on_disk(job.save_path, names), first_on_disk(library, names)))
        return places

    def _roll_forward(self, job, library, places):
        log.warning("job %s: its move into %s was cut short after every file was copied; "
                    "it goes on from there", job.info_hash, library)
        for _, here, in_library in places:
            if here and in_library:
                remove_quietly(os.path.join(job.save_path, here))
        remove_empty_folders(job.save_path, [path for path, _, _ in places], self.incomplete_root)
        with self._lock:
            job.save_path = library

    def _roll_back(self, job, library, places):
        log.warning("job %s: its move into %s was cut short; its files go back to %s and move again "
                    "once checked", job.info_hash, library, job.save_path)
        for _, here, in_library in places:
            if not in_library:
                continue
            if here:
                remove_quietly(os.path.join(library, in_library))  # a copy, maybe partial
            else:
                target = os.path.join(job.save_path, in_library)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.rename(os.path.join(library, in_library), target)
        remove_empty_folders(library, [path for path, _, _ in places], self.save_root)


def first_on_disk(folder, names):
    """The first of names that is on disk in folder, or None."""
    return next((name for name in names if os.path.lexists(os.path.join(folder, name))), None)


def taken_message(job, library, taken):
    """Why the job's files cannot move: names in the library are taken by files it did not write."""
    names = ", ".join(sorted(taken)[:3])
    more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
    return (f"{names}{more} is already in {library}, where this job's files go once downloaded, "
            f"and hashdrop does not replace a file it did not write: its files stay in {job.save_path}. "
            "Move that file away (or add the torrent with another category), then Retry.")
