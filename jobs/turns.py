"""Turns for the job threads' one burst of work: adding their torrent to the session.

A submit of 1,000 starts 1,000 threads that each read the job's files, add its torrent and
attach it; a restart with 10,000 jobs starts 10,000. Let go at once, they wanted Python's GIL
together; each waiter wakes every 5 ms to ask for it, and the process spent its time in the
kernel passing it around (a restart with 10,000 jobs ran 10,000 threads at 190 % CPU, mostly
system time, for minutes; ten submits of 1,000 in a row took seconds each). Here a few add at
a time while the others sleep without a timeout, and none while a submit is starting threads.
"""
import threading
from contextlib import contextmanager

ADDING_AT_ONCE = 4  # libtorrent adds torrents one at a time in its own thread; a few overlap the file reads


class AddTurns:
    """At most `at_once` holders at a time, and none while closed() is held."""

    def __init__(self, at_once=ADDING_AT_ONCE):
        self._changed = threading.Condition(threading.Lock())
        self._free = at_once
        self._closed = 0  # how many closed() blocks are open

    def __enter__(self):
        with self._changed:
            while self._closed or not self._free:
                self._changed.wait()
            self._free -= 1
        return self

    def __exit__(self, *exc_info):
        with self._changed:
            self._free += 1
            self._changed.notify()

    @contextmanager
    def closed(self):
        """No turn is given until the block ends; turns held already run on."""
        with self._changed:
            self._closed += 1
        try:
            yield
        finally:
            with self._changed:
                self._closed -= 1
                if not self._closed:
                    self._changed.notify(self._free)
