"""What a folder holds, listed once for many jobs.

A magnet's job notes the names in its save path as its torrent is added (jobs.task), to tell
later whether a name was there before the job. A submit of 1,000 magnets into a library of
10,000 files listed that folder 1,000 times and kept 1,000 copies of the same names; here every
job added while the folder stays as it was shares one listing.
"""
import os
import threading
import time

import torrent_files

# A listing is reused only while the folder's modification time is what it was when listed, and
# only if that time was this long before the listing: the file system stamps times from a coarse
# clock, so a name added within the same tick as the change before it would leave the time as
# it was. Past this margin, any later change moves the time.
SETTLED_NS = 50_000_000


class FolderNames:
    """The names in each folder, listed again only when the folder changed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._listings = {}  # folder -> (its mtime_ns, when it was listed in ns, frozenset of names)

    def names(self, folder):
        """A frozenset of the names in folder (empty if it is not there)."""
        try:
            changed_at = os.stat(folder).st_mtime_ns
        except OSError:
            return frozenset()
        with self._lock:
            kept = self._listings.get(folder)
        if kept is not None and kept[0] == changed_at and kept[1] - changed_at >= SETTLED_NS:
            return kept[2]
        listed_at = time.time_ns()
        names = frozenset(torrent_files.names_in(folder))
        with self._lock:
            self._listings[folder] = (changed_at, listed_at, names)
        return names

    def names_in_all(self, folders):
        """The names in any of the folders (the one listing itself for a single folder)."""
        listings = [self.names(folder) for folder in folders]
        return listings[0] if len(listings) == 1 else frozenset().union(*listings)
