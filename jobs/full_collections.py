"""The cyclic GC's full collections: short, and run when no submit is under way.

A full collection walks every object the GC tracks, holding the GIL: about 54 per job (its
thread's conditions and events, its model), so 240-330 ms with a library of 10,000 here.
Python starts one by itself once the long-lived objects have grown by a quarter since the last:
with 10,000 jobs that was every second or third submit of 1,000, and inside it (a 0.2 s submit
took 0.58 s). While a job manager runs, Python's own full collections are off (the young
generations are still collected as Python does), and the manager's periodic work calls
`collect_if_due` about once a second. It runs one when the number of jobs has changed by a
quarter since the last, never while a submit is under way, and once none has come for QUIET
seconds (with submits never stopping, between two of them MAX_WAIT after it was due); then it
freezes what is left (gc.freeze): the jobs that lived through it are not walked again, so the
next one walks only what came since (a submit's thousand jobs: tens of ms). A removed job's
objects, frozen, wait for the collection that thaws everything first, every THAW_INTERVAL, the
one that still takes the full 300 ms at 10,000 jobs. docs/design.md, "Full collections".
"""
import gc
import threading
import time

GROWTH = 0.25  # a change in the number of jobs, against the last count, that makes one due
MIN_CHANGE = 100  # jobs: a small library is due by THAW_INTERVAL alone
THAW_INTERVAL = 600.0  # seconds between collections of everything, frozen objects too
QUIET = 5.0  # seconds since the last submit before a due one runs: a script's submits come in bursts
MAX_WAIT = 60.0  # seconds a due one waits for a quiet moment, at most
OFF = 1 << 30  # as the third GC threshold: never reached

_held = 0  # managers running in this process, each holding Python's full collections off
_thresholds = None  # the thresholds before the first of them
_lock = threading.Lock()


class FullCollections:
    """One job manager's schedule of full collections (see the module's docstring)."""

    def __init__(self, clock=time.monotonic, collect=None):
        self._clock = clock
        self._collect = collect or collect_and_freeze  # collect(thaw)
        self._thawed = clock()  # when everything was last collected (or the schedule began)
        self._jobs_then = 0  # the number of jobs at the last collection
        self._due_since = None  # when the next one became due, while it waits for quiet
        self._holding = False

    def hold(self):
        """Turn Python's own full collections off while this schedule runs."""
        global _held, _thresholds
        with _lock:
            if self._holding:
                return
            if _held == 0:
                _thresholds = gc.get_threshold()
                gc.set_threshold(_thresholds[0], _thresholds[1], OFF)
            _held += 1
            self._holding = True

    def release(self):
        """Hand full collections back to Python once no schedule holds them, and every frozen
        object with them."""
        global _held
        with _lock:
            if not self._holding:
                return
            self._holding = False
            _held -= 1
            if _held == 0:
                gc.unfreeze()
                gc.set_threshold(*_thresholds)

    def collect_if_due(self, jobs, last_submit, adding=False):
        """Run a full collection if one is due and the moment is quiet; return whether it ran.

        `jobs` is the number of jobs now, `last_submit` the monotonic time the last submit ended,
        `adding` whether jobs are being added now (a submit's jobs counted while it runs made
        the collection due in its middle).
        """
        now = self._clock()
        if self._due_since is None:
            if not self._due(jobs, now):
                return False
            self._due_since = now
        if adding or (now - last_submit < QUIET and now - self._due_since < MAX_WAIT):
            return False  # never inside a submit; between two, once they keep coming MAX_WAIT
        thaw = now - self._thawed >= THAW_INTERVAL
        self._collect(thaw)
        self._jobs_then, self._due_since = jobs, None
        if thaw:
            self._thawed = self._clock()
        return True

    def _due(self, jobs, now):
        change = abs(jobs - self._jobs_then)
        return change >= max(MIN_CHANGE, GROWTH * self._jobs_then) or now - self._thawed >= THAW_INTERVAL


def collect_and_freeze(thaw):
    """A full collection of what is not frozen (of everything, with thaw), then freeze the rest."""
    if thaw:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
