"""The floor under a submit's latency: starting threads as a submit does, with nothing else of
the app, in the benchmark's own process (bench.py's latency part, library.py's submits)."""
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # cpus.py: how the app starts a submit's threads

import cpus  # noqa: E402
import futexes  # noqa: E402
from config import DEFAULTS  # noqa: E402


class ThreadStarts:
    """Start threads as a submit does, with nothing else of the app: the floor under its latency.

    `asleep` threads sleep meanwhile, as the jobs' threads do in the app. The process's futex
    table has room for them, as the app's has (futexes.py), the threads start from one CPU
    (cpus.py), and each waits until the last has started, then ends.
    """

    def __init__(self, asleep, threads_at_most=DEFAULTS["MAX_JOBS"]):
        futexes.make_room(threads_at_most)  # as the app's runner does for HASHDROP_MAX_JOBS
        self._stop = threading.Event()
        self._asleep = [threading.Thread(target=self._stop.wait, daemon=True) for _ in range(asleep)]

    def __enter__(self):
        for thread in self._asleep:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._asleep:
            thread.join(5)

    def time(self, count):
        """Seconds to start `count` threads."""
        submit_lock = threading.Lock()
        with submit_lock:
            started = time.perf_counter()
            with cpus.starting_on_this_cpu():
                threads = [threading.Thread(target=self._wait_for, args=(submit_lock,), daemon=True)
                           for _ in range(count)]
                for thread in threads:
                    thread.start()
            elapsed = time.perf_counter() - started
        for thread in threads:
            thread.join(5)
        return elapsed

    @staticmethod
    def _wait_for(submit_lock):
        with submit_lock:
            pass
        cpus.all_cpus()
