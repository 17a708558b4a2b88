"""What survives a crash: resume files, the crash marker, atomic writes and fsync of finished files."""
import logging
import os
import threading

import downloader
import torrent_files

log = logging.getLogger(__name__)


class ResumeFiles:
    """libtorrent's resume data of each job (with its metadata), one file per job in resume_dir."""

    def __init__(self, resume_dir):
        self.resume_dir = resume_dir
        os.makedirs(resume_dir, exist_ok=True)

    def path(self, job):
        return os.path.join(self.resume_dir, f"{job.info_hash}.resume")

    def read(self, job):
        """The job's kept resume data as add parameters, and whether it vouches for its pieces."""
        path = self.path(job)
        try:
            with open(path, "rb") as f:
                data = f.read()
            return torrent_files.params_from_resume(data), torrent_files.vouched(data)
        except FileNotFoundError:
            return None, False
        except Exception as exc:
            log.warning("resume data %s is damaged (%s); the files will be rechecked", path, exc)
            os.replace(path, f"{path}.damaged")
            return None, False

    def save(self, job, data):
        """Keep libtorrent's resume data (with the metadata) for the next start."""
        data = self.worth_keeping(job, data)
        if data is None:
            return
        try:
            write_atomically(self.path(job), data)
        except OSError as exc:
            log.warning("cannot keep resume data for %s: %s", job.info_hash, exc)

    @staticmethod
    def worth_keeping(job, data):
        """The resume data to keep for the job, or None for a removed job."""
        if job.removal is not None:
            return None
        if job.durability.synced:  # else a completed job's files would be checked after the next crash
            data = torrent_files.vouch(data)
        return data

    def remove(self, job):
        remove_quietly(self.path(job))

    def write_all(self, files):
        """Write {path: data} at shutdown, logging what could not be written."""
        # The syncs also put what the resume data claims on disk, not only in the page cache.
        for path, exc in write_all_atomically(files).items():
            log.warning("cannot keep resume data %s: %s", path, exc)


class CrashMarker:
    """A file that is there while the app runs: found at start, the last run did not shut down cleanly."""

    def __init__(self, path):
        self.path = path
        self.unclean_start = os.path.exists(path)
        if self.unclean_start:
            log.warning("hashdrop did not shut down cleanly last time: "
                        "unfinished downloads are checked against their files before they go on")
        write_atomically(path, f"{os.getpid()}\n".encode())

    def clear(self):
        remove_quietly(self.path)


def sync(job):
    """fsync a completed job's files, then ask for resume data that vouches for them.

    Runs in the job's thread, after the job is completed, so it delays no one: until it is
    done, the job's resume data does not vouch, and a crash means a recheck of its files.
    """
    torrent = job.run.torrent
    if job.durability.synced or torrent is None:
        return
    try:
        torrent_files.sync_files(torrent.handle, job.save_path)
        job.durability.synced = True
        downloader.save_resume(torrent.handle)
    except RuntimeError:  # removed meanwhile
        pass
    except OSError as exc:
        log.warning("cannot sync the files of %s to disk: %s", job.info_hash, exc)


def write_atomically(path, data):
    """Write bytes to path so that a crash leaves either the old or the new file, readable by
    this user alone (resume data, the secret key and the logins are nobody else's)."""
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb", opener=private) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        remove_quietly(tmp)  # a full disk: what was written of it would only take more room
        raise
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_all_atomically(files):
    """Write {path: bytes} so that a crash leaves each file old or new; return {path: OSError}.

    Two syncs for all the files rather than two fsyncs each: at shutdown a library of 1,000
    jobs writes 1,000 resume files, and on a hard disk, at several ms a fsync, 2,000 fsyncs
    would outlast the 10 s a shutdown is given.
    """
    failed, written = {}, []
    for path, data in files.items():
        tmp = temporary_name(path)
        try:
            with open(tmp, "wb", opener=private) as f:
                f.write(data)
            written.append((tmp, path))
        except OSError as exc:
            failed[path] = exc
            remove_quietly(tmp)
    os.sync()  # every new file whole on disk before any name points at it
    for tmp, path in written:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            failed[path] = exc
            remove_quietly(tmp)
    os.sync()
    return failed


def private(name, flags):
    """open()'s opener for a new file that this user alone may read."""
    return os.open(name, flags, 0o600)


def temporary_name(path):
    return f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass

