"""The web app's copy of every job of the cluster: rows from PostgreSQL merged with the nodes'
live views from Redis, held in a jobs.registry.JobRegistry so the page, the API and the RPC
list, filter, search and poll them (?since=) exactly as in embedded mode.

cluster.web refreshes it about every second, and applies its own writes at once: a page read
never waits for the database, and what a person just did shows in the answer to it.
"""
import time
from collections import deque

from jobs.model import Job
from jobs.registry import JobRegistry
from jobs.view import shown_fields

REMOVING = ("remove", "remove_files")  # a removed job is gone for the page while its node deletes it
# What a node's live view (cluster.live) knows better than the row: the torrent's figures now.
LIVE_FIELDS = ("progress", "total_bytes", "torrent_bytes", "downloaded_bytes", "uploaded_bytes", "ratio",
               "download_rate", "upload_rate", "peers", "seeds", "eta_seconds", "checking", "verify_pending",
               "moving", "tracker", "notice", "has_metadata", "fetching_file_list", "disk_free_bytes",
               "v1_hash", "v2_hash")
REMOVALS_KEPT_SECONDS = 600  # removed_numbers() looks back at most this far (the RPC asks for 60 s)


class JobMirror:
    """Every job to show, each as a jobs.model.Job (for the registry's filters) and its view."""

    def __init__(self):
        self.registry = JobRegistry()
        self._shown = {}  # info_hash -> the job's view without its waiting time
        self._leases = {}  # node name -> whether its lease runs, as last read
        self._live = {}  # info_hash -> the live view its node last published
        self._removed = deque()  # (monotonic time, job number) of the jobs that went

    def refresh(self, rows, leases, live):
        """Make the copy what the database (rows: PostgresJobStore.listing) and Redis say now."""
        registry = self.registry
        with registry.lock:
            self._leases, self._live = leases, live
            present = set()
            for row in rows:
                if row["desired"] not in REMOVING:
                    present.add(row["info_hash"])
                    self.apply(row)
            for job in registry.all():
                if job.info_hash not in present:
                    self.forget(job.info_hash)

    def apply(self, row):
        """Take one job's row as it is now (new, changed, or removed when its desired state says so)."""
        if row["desired"] in REMOVING:
            self.forget(row["info_hash"])
            return
        job = Job.from_record({**row, "torrent": None})
        shown = merged_view(job, row, self._leases, self._live.get(job.info_hash))
        with self.registry.lock:
            if self._shown.get(job.info_hash) == shown:
                return
            self._shown[job.info_hash] = shown
            self.registry.add(job)  # in place of the old copy, keeping its place; stamped changed

    def forget(self, info_hash):
        """The job is gone: out of the listings, and its number among the recently removed."""
        with self.registry.lock:
            job = self.registry.get(info_hash)
            if job is None:
                return
            self.registry.discard(job)
            self._shown.pop(info_hash, None)
            self._removed.append((time.monotonic(), job.number))
            while self._removed and self._removed[0][0] < time.monotonic() - REMOVALS_KEPT_SECONDS:
                self._removed.popleft()

    def view(self, job, now):
        """The job as the page and the API show it (jobs.view.job_view's keys, and node, offline)."""
        shown = self._shown.get(job.info_hash) or merged_view(job, {}, {}, None)
        return {**shown, "waiting_seconds": int((now - job.added_at).total_seconds())}

    def leases(self):
        """{node name: whether its lease runs}, as last read."""
        return dict(self._leases)

    def removed_numbers(self, seconds):
        """The numbers of the jobs that went in the last `seconds` seconds."""
        since = time.monotonic() - seconds
        with self.registry.lock:
            return [number for at, number in self._removed if at >= since]


def merged_view(job, row, leases, live):
    """A job's view: its row's (state, error, name...), the live figures its node published, and
    the node that holds it, offline when that node's lease ran out."""
    view = shown_fields(job)
    view["disk_free_bytes"] = None
    if live:
        view.update({name: live[name] for name in LIVE_FIELDS if name in live})
        view["name"] = view["name"] or live.get("name")
        view["seeding"] = view["seeding"] and live.get("seeding", True)
    node = row.get("node")
    view.update(node=node, offline=bool(node) and not leases.get(node, False), desired=row.get("desired", "run"))
    return view
