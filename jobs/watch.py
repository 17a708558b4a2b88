"""The watch folder ("torrent blackhole"): .torrent and .magnet files dropped there become jobs."""
import logging
import os
import threading
import time
from dataclasses import dataclass

import hashes
from torrent_files import MAX_TORRENT_BYTES

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
SETTLE_SECONDS = 1.0  # a file must keep its size and mtime this long before it is read
MAX_MAGNET_BYTES = 1024 * 1024
KINDS = (".torrent", ".magnet")
ADDED, INVALID = ".added", ".invalid"


class NotUsable(Exception):
    """A dropped file hashdrop cannot add; the text says why, and goes beside it."""


@dataclass
class Sighting:
    """A file's size and mtime as a poll saw them, and since when (monotonic) they have held."""

    size: int
    mtime_ns: int
    since: float


class WatchFolder:
    """Poll one folder and its subfolders (each a category) and submit what settles there."""

    def __init__(self, manager, directory, poll_seconds=POLL_SECONDS, settle_seconds=SETTLE_SECONDS):
        self.manager = manager
        self.directory = os.path.abspath(directory)
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.stop_event = threading.Event()
        self._seen = {}  # path -> Sighting, for files not yet taken
        self._last_error = None
        self._thread = None

    def start(self):
        """Make the folder if need be and start the named polling thread."""
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:  # a NAS not mounted yet: the poll keeps trying
            log.warning("cannot make the watch folder %s: %s", self.directory, exc)
        self._thread = threading.Thread(target=self._run, name="watch-folder", daemon=True)
        self._thread.start()
        log.info("watching %s for .torrent and .magnet files", self.directory)

    def stop(self, timeout=10):
        """Tell the thread to stop and wait for it; a file half-submitted is finished first."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self):
        # Polling rather than inotify: inotify sees nothing written to an NFS or SMB mount by
        # another machine, which is where a NAS's Sonarr or a script on another box drops files.
        while True:
            try:
                self.poll()
            except Exception:  # never let one odd file or a vanished mount end the watching
                log.exception("the watch folder poll failed")
            if self.stop_event.wait(self.poll_seconds):
                return

    def poll(self, now=None):
        """Look at every candidate file once; submit each that has settled since the last look."""
        now = time.monotonic() if now is None else now
        present = {}
        for path, category in self._candidates():
            sighting = self._settled(path, now)
            if sighting is None:
                continue
            present[path] = sighting
            if now - sighting.since >= self.settle_seconds and not self.stop_event.is_set():
                self._take(path, category)
                del present[path]
        self._seen = present

    def _candidates(self):
        """(path, category) of each .torrent or .magnet file in the folder or one level below."""
        for entry, category in self._listing(self.directory, ""):
            if entry.is_dir(follow_symlinks=False):
                yield from ((sub.path, entry.name) for sub, _ in self._listing(entry.path, entry.name)
                            if sub.is_file() and sub.name.endswith(KINDS))
            elif entry.is_file() and entry.name.endswith(KINDS):
                yield entry.path, category

    def _listing(self, directory, category):
        """The folder's visible entries; none (and a log line when the reason changes) if unreadable."""
        try:
            entries = [entry for entry in os.scandir(directory) if not entry.name.startswith(".")]
        except OSError as exc:
            if str(exc) != self._last_error:
                log.warning("cannot read the watch folder: %s", exc)
                self._last_error = str(exc)
            return []
        if directory == self.directory:
            self._last_error = None
        return [(entry, category) for entry in entries]

    def _settled(self, path, now):
        """This poll's Sighting of the file, its since carried over if nothing changed; None if gone."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        before = self._seen.get(path)
        if before and (before.size, before.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return before
        return Sighting(stat.st_size, stat.st_mtime_ns, now)

    def _take(self, path, category):
        """Submit the file and rename it .added, or .invalid with the reason beside it."""
        try:
            result = self._submit(path, category)
            if result.refused:
                raise NotUsable(result.refused)
            if not (result.started or result.existing or result.duplicates):
                raise NotUsable("; ".join(f"{r.text!r}: {r.reason}" for r in result.rejected)
                                or "it holds no info hash or magnet link")
        except NotUsable as exc:
            self._set_aside(path, str(exc))
            return
        except OSError as exc:  # gone or unreadable between polls: look again next time
            log.warning("cannot read %s from the watch folder: %s", path, exc)
            return
        log.info("added %s from the watch folder%s", os.path.basename(path),
                 f" (category {category})" if category else "")
        rename(path, path + ADDED)

    def _submit(self, path, category):
        """Submit one file through the facade, as the form would, with source "watch"."""
        name = os.path.basename(path)
        options = {"category": category, "source": "watch", "paused": not self.manager.start_added_torrents}
        if name.endswith(".torrent"):
            data = read_at_most(path, MAX_TORRENT_BYTES)
            return self.manager.submit(hashes.parse_text(""), uploads=[(name, data)], **options)
        data = read_at_most(path, MAX_MAGNET_BYTES)
        return self.manager.submit_text(data.decode("utf-8", "replace"), **options)

    def _set_aside(self, path, reason):
        """Rename a file hashdrop cannot add to <name>.invalid, and write why to <name>.invalid.txt."""
        log.warning("set aside %s from the watch folder: %s", os.path.basename(path), reason)
        try:
            with open(path + INVALID + ".txt", "w", encoding="utf-8") as f:
                f.write(reason + "\n")
        except OSError as exc:
            log.warning("cannot write why %s was set aside: %s", path, exc)
        rename(path, path + INVALID)


def read_at_most(path, limit):
    """The file's bytes; NotUsable if it holds more than limit."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotUsable(f"it is larger than {limit // 1024:,} KiB")
    return data


def rename(path, target):
    """Rename a handled file; if that fails it would be taken again, so say so loudly."""
    try:
        os.replace(path, target)
    except OSError as exc:
        log.error("cannot rename %s to %s (it will be read again): %s", path, target, exc)
