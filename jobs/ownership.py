"""Which files are a job's own: a job writes only files it created (or that already hold exactly
its torrent's data), never leaves the save path, and deletes only what it wrote."""
import json
import logging
import os
import time
from dataclasses import dataclass, field

import torrent_files
from downloader import JobRefused
from jobs.durability import remove_quietly, write_atomically

log = logging.getLogger(__name__)


class UnsafePath(JobRefused):
    """A file of the torrent would be written outside the save path; the text says which."""


@dataclass
class FileSort:
    """A torrent's files, by whose they are on disk (indices)."""

    new: set = field(default_factory=set)  # under neither name on disk: the job creates them
    own: set = field(default_factory=set)  # on disk, and the job's own by its record
    foreign: dict = field(default_factory=dict)  # index -> path on disk that the job did not write
    outside: dict = field(default_factory=dict)  # index -> path that leads out of the save path


class FileLedger:
    """The files each job created, by path in its torrent, one JSON file per info hash.

    A record outlives its job when the job is removed with its files kept: re-added, the job
    takes its own earlier files back. A job with no record (added before records were kept)
    counts every file of its resume data as its own, as it always did.
    """

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, info_hash):
        return os.path.join(self.directory, f"{info_hash}.json")

    def written(self, info_hash):
        """The paths the job created, or None if it has no record."""
        try:
            with open(self._path(info_hash), "rb") as f:
                return set(json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("the record of %s's files cannot be read (%s): none counts as its own", info_hash, exc)
            return set()

    def claim(self, info_hash, paths, known=None):
        """Record paths as created by the job, on disk before libtorrent may write them."""
        known = self.written(info_hash) if known is None else known
        paths = set(paths)
        if known is not None and paths <= known:
            return
        write_atomically(self._path(info_hash), json.dumps(sorted((known or set()) | paths)).encode())

    def forget(self, info_hash):
        remove_quietly(self._path(info_hash))


class Ownership:
    """Sorts a job's files before it may write them, and deletes only what it wrote."""

    def __init__(self, ledger, save_root, suffix, incomplete_root=""):
        self.ledger = ledger
        self.save_root = save_root
        self.suffix = suffix
        self.incomplete_root = incomplete_root  # HASHDROP_INCOMPLETE_PATH, "" for none

    def root(self, job):
        """The folder a job's files must stay inside: the incomplete folder while they are in
        it, else the save path. The record's paths are the torrent's, so they follow a move."""
        if self.incomplete_root and torrent_files.resolves_inside(job.save_path, self.incomplete_root):
            return self.incomplete_root
        return self.save_root

    def sort(self, job, files, wanted, renamed):
        """Sort the wanted ones of files ((index, path) pairs) by whose they are on disk;
        renamed maps an index to its name on disk where that differs."""
        written = self.ledger.written(job.info_hash)
        result, root = FileSort(), self.root(job)
        for index, path in files:
            if index not in wanted:
                continue
            full = os.path.join(job.save_path, path)
            if not torrent_files.resolves_inside(full, root):
                result.outside[index] = path
                continue
            on_disk = torrent_files.existing_name(job.save_path, path, self.suffix, renamed.get(index))
            if on_disk is None or made_since(os.path.join(job.save_path, on_disk), job.run.added_at):
                result.new.add(index)
            elif written is not None and path in written:
                result.own.add(index)
            else:
                result.foreign[index] = on_disk
        return result

    def claim(self, job, paths):
        self.ledger.claim(job.info_hash, paths)

    def claim_every_file(self, job, layout, known=None):
        """Record every file of a torrent's file_storage as the job's (see FileLedger.claim)."""
        self.ledger.claim(job.info_hash, [path for _, path in torrent_files.real_files(layout)], known)

    def claim_resumed(self, job, params):
        """A job with resume data and no record was added before records were kept: every file
        of its torrent counts as its own, as it always did."""
        if params.ti is not None and self.ledger.written(job.info_hash) is None:
            self.claim_every_file(job, params.ti.layout(), known=set())

    def check_inside(self, job, params):
        """Raise UnsafePath if a file of the torrent (its metadata known) would leave the save path."""
        if params.ti is None:
            return
        root = self.root(job)
        outside = {index: path for index, path in torrent_files.real_files(params.ti.layout())
                   if not torrent_files.resolves_inside(os.path.join(job.save_path, path), root)}
        if outside:
            raise UnsafePath(outside_message(job, outside))

    def delete_written(self, job, files):
        """Delete the job's own files ((index, path, path on disk) triples), then the folders
        they leave empty, and libtorrent's part file; never a file it did not write."""
        written, root = self.ledger.written(job.info_hash), self.root(job)
        for _, path, on_disk in files:
            if written and path in written:
                for name in {on_disk, path, path + self.suffix}:
                    delete_inside(os.path.join(job.save_path, name), root)
        delete_inside(os.path.join(job.save_path, f".{job.info_hash}.parts"), root)
        remove_empty_folders(job.save_path, [path for _, path, _ in files], root)
        self.ledger.forget(job.info_hash)


def delete_inside(path, root):
    """Delete the file at path if it is one (not a link) and inside root."""
    if os.path.isfile(path) and not os.path.islink(path) and torrent_files.resolves_inside(path, root):
        remove_quietly(path)


def made_since(path, moment):
    """Whether the file at path came into being (or last changed its inode) after moment:
    libtorrent can create a magnet's files before the job's thread has sorted them.

    moment is moment_of_add()'s, for a magnet; time.time() of the add for a torrent whose files
    are known at the add (they are held before libtorrent may write). A file made before the
    moment has a ctime at or before it: the safe side, a file a person put there is never taken
    for the job's."""
    if moment is None:
        return False
    try:
        return os.lstat(path).st_ctime > moment
    except OSError:
        return False


COARSE_CLOCK = 5  # Linux's CLOCK_REALTIME_COARSE, which Python 3.11's time module does not name
TICK_WAIT_LIMIT = 0.05  # seconds: the coarse clock moves every 4 ms here (1-10 ms elsewhere)


def moment_of_add():
    """time.time() now, returned once the file system's clock has passed it, for a magnet's add.

    File systems stamp ctimes from a coarse clock (CLOCK_REALTIME_COARSE, up to 4 ms behind
    time.time() here). Taken at the add alone, a file libtorrent made in the same tick came out
    older than the add and stayed after "remove with files" (a test failed now and then); timed
    by the coarse clock instead, a file a person wrote in that tick counted as the job's and was
    deleted with it. Waiting here until the coarse clock is past the moment (a tick or two, in the
    job's thread) leaves neither: whatever is made after the wait has a later ctime, whatever
    was made before the moment an earlier one."""
    moment = time.time()
    deadline = moment + TICK_WAIT_LIMIT
    while coarse_time() <= moment and time.time() < deadline:
        time.sleep(0.0005)
    return moment


def coarse_time():
    """The file system's clock (Linux), or time.time() where there is no such clock."""
    try:
        return time.clock_gettime(COARSE_CLOCK)
    except (AttributeError, OSError):
        return time.time()


def remove_empty_folders(save_path, paths, save_root):
    """Remove the folders of paths (relative to save_path) that are empty now, deepest first."""
    folders = {os.path.dirname(path) for path in paths}
    for path in list(folders):
        while path:
            folders.add(path)
            path = os.path.dirname(path)
    for folder in sorted(folders - {""}, key=len, reverse=True):
        full = os.path.join(save_path, folder)
        if torrent_files.resolves_inside(full, save_root) and not os.path.islink(full):
            try:
                os.rmdir(full)
            except OSError:
                pass  # not empty (or not there): it holds something the job did not write


def outside_message(job, outside):
    """Why the job cannot write its files: they would leave the save path."""
    paths = ", ".join(sorted(outside.values())[:3])
    return (f"{paths} would be written outside the save path (a folder on the way is a link that "
            f"leads out of {job.save_path}): hashdrop writes only inside its save path.")
