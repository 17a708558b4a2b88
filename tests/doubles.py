"""Other implementations of the two seams: a job store in memory, and a runner with a worker pool.

The state machine's tests use the store; the seam tests start the app with HASHDROP_STORE and
HASHDROP_RUNNER naming these, as a shared database or a task queue would be named.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from downloader import downloader
from store import JobStore, StoreWriteError


class MemoryJobStore(JobStore):
    """Every job's record in a dict; refuses new jobs while `full` is set."""

    location = "memory"

    def __init__(self, config=None):
        self.records = {}
        self.highest_number = 0
        self.full = False
        self.closed = False

    def load(self):
        return [dict(record) for record in self.records.values()]

    def last_number(self):
        return self.highest_number

    def save_many(self, records):
        if self.full:
            raise StoreWriteError("database or disk is full")
        for record in records:
            self.records[record["info_hash"]] = {"uploaded_bytes": 0, **record}
            self.highest_number = max(self.highest_number, record.get("number") or 0)

    def update(self, info_hash, **fields):
        if info_hash in self.records:
            self.records[info_hash].update(fields)
            self.highest_number = max(self.highest_number, fields.get("number") or 0)

    def save_upload_totals(self, totals):
        for uploaded, info_hash in totals:
            self.update(info_hash, uploaded_bytes=uploaded)

    def delete(self, info_hash):
        self.records.pop(info_hash, None)

    def unsaved_problem(self):
        return None

    def close(self):
        self.closed = True


class PoolWorker:
    """A job's download submitted to a pool: what the manager asks of a worker."""

    def __init__(self, future):
        self.future = future

    def is_alive(self):
        return not self.future.done()

    def join(self, timeout=None):
        try:
            self.future.exception(timeout)
        except TimeoutError:
            pass


class PoolRunner:
    """Runs downloader(task) on a fixed pool of worker threads, as a task queue's workers would."""

    instances = []  # every runner made, so that a test can find the app's

    def __init__(self, config):
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pool-worker")
        self.tasks = []
        self.lock = threading.Lock()
        PoolRunner.instances.append(self)

    def start(self, task):
        with self.lock:
            self.tasks.append(task.info_hash)
        return PoolWorker(self.pool.submit(downloader, task))
