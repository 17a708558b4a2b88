"""The web app's copy of every job of the cluster: rows from PostgreSQL merged with the nodes'
live views from Redis, held in a jobs.registry.JobRegistry so the page, the API and the RPC
list, filter, search and poll them (?since=) exactly as in embedded mode.

cluster.web refreshes it about every second, and applies its own writes at once: a page read
never waits for the database, and what a person just did shows in the answer to it.
"""
import time
from collections import deque

from cluster.job_settings import rate_limits_of
from jobs import listing
from jobs.model import RUNNING, Job
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
        self._made_of = {}  # info_hash -> (row, live view, lease) its view was last made of (refresh)
        self._applied_at = {}  # info_hash -> time.monotonic() this web app last changed it (apply)
        self._leases = {}  # node name -> whether its lease runs, as last read
        self._live = {}  # info_hash -> the live view its node last published
        self._removed = deque()  # (monotonic time, job number) of the jobs that went

    def refresh(self, rows, leases, live, read_at):
        """Make the copy what the database (rows: PostgresJobStore.listing, read from
        time.monotonic() read_at on) and Redis say now. The views are made before the lock is
        taken: a page read waits for the swap alone. A job this web app changed (apply) after
        read_at is left as it is: the rows may predate that change, or that new job."""
        fresh, present = [], set()
        for row in rows:
            if row["desired"] in REMOVING:
                continue
            present.add(row["info_hash"])
            # A job is made again only when what it is made of changed: most rows, most seconds,
            # did not, and making a thousand takes the interpreter from the requests for 30 ms.
            made_of = (row, live.get(row["info_hash"]), leases.get(row["node"]))
            if self._made_of.get(row["info_hash"]) != made_of:
                fresh.append(self._made(row, leases, made_of[1]))
                self._made_of[row["info_hash"]] = made_of
        with self.registry.lock:
            self._leases, self._live = leases, live
            for job, shown in fresh:
                if self._applied_at.get(job.info_hash, 0) < read_at:
                    self._take(job, shown)
                else:
                    self._made_of.pop(job.info_hash, None)
            for job in self.registry.all():
                if job.info_hash not in present and self._applied_at.get(job.info_hash, 0) < read_at:
                    self.forget(job.info_hash)
            self._applied_at = {h: at for h, at in self._applied_at.items() if at >= read_at}

    def apply(self, row):
        """Take one job's row as it is now (new, changed, or removed when its desired state says so)."""
        if row["desired"] in REMOVING:
            self.forget(row["info_hash"])
            return
        with self.registry.lock:
            self._applied_at[row["info_hash"]] = time.monotonic()
            self._made_of.pop(row["info_hash"], None)  # the next refresh makes it from its row again
            self._take(*self._made(row, self._leases, self._live.get(row["info_hash"])))

    @staticmethod
    def _made(row, leases, live):
        """(the job as a jobs.model.Job, its view) from its row and its node's live view."""
        job = Job.from_record({**row, "torrent": None})
        return job, merged_view(job, row, leases, live)

    def _take(self, job, shown):
        """Hold this copy of the job if its view changed; the registry stamps it changed."""
        if self._shown.get(job.info_hash) == shown:
            return
        self._shown[job.info_hash] = shown
        self.registry.add(job)  # in place of the old copy, keeping its place

    def forget(self, info_hash):
        """The job is gone: out of the listings, and its number among the recently removed."""
        with self.registry.lock:
            self._applied_at[info_hash] = time.monotonic()  # a refresh read before must not bring it back
            job = self.registry.get(info_hash)
            if job is None:
                return
            self.registry.discard(job)
            self._shown.pop(info_hash, None)
            self._made_of.pop(info_hash, None)
            self._removed.append((time.monotonic(), job.number))
            while self._removed and self._removed[0][0] < time.monotonic() - REMOVALS_KEPT_SECONDS:
                self._removed.popleft()

    def view(self, job, now):
        """The job as the page and the API show it (jobs.view.job_view's keys, and node, offline)."""
        shown = self._shown.get(job.info_hash) or merged_view(job, {}, {}, None)
        return {**shown, "waiting_seconds": int((now - job.added_at).total_seconds())}

    # The listings, as jobs.JobManager's (jobs.listing), with this mirror's views.
    def jobs(self, states=None, text=""):
        return listing.every_job(self.registry, states, text, view=self.view)

    def newest_first(self, start, count, states=None, text="", since=""):
        return listing.newest_first(self.registry, start, count, states, text, since, view=self.view)

    def changes(self, since, states=None, text=""):
        """GET /api/jobs?since=: what changed and went since the token (BadToken if it is none)."""
        return listing.changes(self.registry, since, states, text, view=self.view)

    def counts(self):
        return listing.counts(self.registry)

    def has_changing(self):
        """Whether some job runs: the page keeps polling while one does."""
        return any(job.state in RUNNING for job in self.registry.all())

    def rates(self):
        """(download, upload) bytes/s over every job, as their nodes last published them."""
        with self.registry.lock:
            shown = list(self._shown.values())
        return sum(view["download_rate"] for view in shown), sum(view["upload_rate"] for view in shown)

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
    rates = rate_limits_of(row)  # as stored: the node applies them (jobs.details() is the node's own)
    view.update(download_limit=rates.get("download", 0), upload_limit=rates.get("upload", 0))
    return view
