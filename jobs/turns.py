"""Turns for new job threads to start their work: none while a submit starts threads.

A submit of 1,000 starts 1,000 threads that each go on to read the job's files, add its torrent
and attach it. Let go at once (all waiting on one event), the thousand wanted Python's GIL
together; each waiter wakes every 5 ms to ask for it, and ten submits of 1,000 in a row spent
more time in the kernel passing it around than adding torrents, and the next submit waited
behind them. Here they wait on a condition without a timeout while the turns are closed, and
are let through a few at a time, each letting the next one through.

A thread gives its turn back before adding its torrent: held across the add, it changed the
timing of a magnet's hold before its metadata (jobs.task.before_metadata) enough to lose that
race more often (docs/design.md, "Submits while thousands of jobs are being added").
"""
import threading
from contextlib import contextmanager

ADDING_AT_ONCE = 4  # threads let through at once as the turns open


class AddTurns:
    """At most `at_once` holders at a time, and none while closed() is held."""

    def __init__(self, at_once=ADDING_AT_ONCE):
        self._changed = threading.Condition(threading.Lock())
        self._free = at_once
        self._closed = 0  # how many closed() blocks are open

    def wait(self):
        """Return once a turn is free and the turns are open; the turn is given back at once."""
        with self:
            pass

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
