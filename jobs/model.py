"""The job model: its states, the job record and its small parts, and what a submit did."""
import json
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from jobs.seeding import SeedLimits
from jobs.stall import StallClock

# A shown rate is the bytes of the last RATE_WINDOW seconds of statuses; with less than
# MIN_RATE_SPAN between the two counts it is libtorrent's own.
RATE_WINDOW = 2.0
MIN_RATE_SPAN = 0.5
MESSAGES_PER_KIND = 5  # flashed messages live in the session cookie, which browsers cap at 4 KB


class JobState(str, Enum):
    QUEUED = "queued"
    FETCHING_METADATA = "fetching_metadata"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"  # no peer has what it lacks: it holds no slot and asks again now and then


RUNNING = {JobState.QUEUED, JobState.FETCHING_METADATA, JobState.DOWNLOADING, JobState.STALLED}
TIMED = {JobState.FETCHING_METADATA, JobState.DOWNLOADING}  # stalled after a wait with no sign of life
ENDED = {JobState.FAILED, JobState.CANCELLED}  # no torrent in the session: no status comes


class JobError(Exception):
    """An action on a job that cannot be done; status is the HTTP status that fits."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


def utcnow():
    return datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class RateMeter:
    """Transfer rates measured from the byte counts of the last few seconds of statuses.

    libtorrent's rates are running averages that take in a fifth of each second's bytes
    (stat.cpp), so they lag: a download at 4 MiB/s showed 1.3 MiB/s, and 29 s left for 9,
    four seconds in. Used from the job's thread only.
    """

    byte_counts: deque = field(default_factory=deque)  # (monotonic time, all-time down, up)

    def measure(self, status, now):
        """The status, with its rates replaced by the ones measured over RATE_WINDOW."""
        counts = self.byte_counts
        if counts and now - counts[-1][0] > RATE_WINDOW:
            counts.clear()  # no status for a while: what came in between is not a rate
        counts.append((now, status["all_time_download"], status["all_time_upload"]))
        while len(counts) > 2 and now - counts[0][0] > RATE_WINDOW:
            counts.popleft()
        then, down, up = counts[0]
        span = now - then
        if span < MIN_RATE_SPAN:
            return status
        return {**status,
                "download_rate": int(max(0, status["all_time_download"] - down) / span),
                "upload_rate": int(max(0, status["all_time_upload"] - up) / span)}


@dataclass
class PartMarks:
    """What a job knows of its files on disk: the unfinished-file suffix and renames under way,
    and the files it found there and did not write (see jobs.ownership)."""

    marked_for: int | None = None  # total_wanted when its unfinished files were last marked
    renaming: set = field(default_factory=set)  # indices of files with a rename under way
    unrenamable: set = field(default_factory=set)  # indices of files whose rename failed
    held: dict = field(default_factory=dict)  # index -> name on disk of a file it did not write, to check
    adopted: set = field(default_factory=set)  # indices of such files that held its data whole
    refused: set = field(default_factory=set)  # indices of such files that did not: the job failed


@dataclass
class Durability:
    """What a job's files and resume data can be trusted for across a crash."""

    synced: bool = False  # completed and its files fsynced: its resume data may vouch for them
    restored: bool = False  # brought back at start, not retried since: its files should be on disk
    uploaded_saved: int = 0  # its upload total as the store last recorded it


@dataclass
class JobRun:
    """A job's download where it runs: its worker, its torrent in the session, its inbox."""

    worker: object = None  # what the runner started (a threading.Thread by default)
    torrent: object = None  # downloader.SessionDownloader once added
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # events from the alert thread
    detached: bool = False  # the worker let go of its torrent, and no longer deletes files
    redial_due: bool = False  # its held files were just released: dial its seeds once it wants them
    held_for_sort: bool = False  # in upload mode until its files are sorted (see jobs.task)
    added_at: float | None = None  # time.time() as its torrent was added: files made since are its own
    names_before: frozenset = frozenset()  # what the save path held then, for a magnet (see jobs.task)
    active_at: float = 0.0  # time.monotonic() its upload total last grew while seeding; 0: not yet seen
    active_bytes: int = 0  # that upload total
    verify: str | None = None  # a check a person asked for: "asked", then "checking" until it ends
    file_list_known: threading.Event = field(default_factory=threading.Event)  # set at its metadata
    rate_limits: dict = field(default_factory=dict)  # its own limits asked for before its torrent was added

    def is_running(self):
        return self.worker is not None and self.worker.is_alive()


@dataclass
class Removal:
    """A removed job, which its worker takes out of the session (with its files when asked)."""

    delete_files: bool = False


@dataclass
class Job:
    """One download: what was asked for, where it goes, its state, and what libtorrent last said."""

    info_hash: str
    save_path: str
    v1_hash: str | None = None
    v2_hash: str | None = None
    name: str | None = None
    magnet: str | None = None
    metainfo: bytes | None = None  # an uploaded .torrent file (a magnet's is kept with the resume data)
    category: str = ""
    sequential: bool = False
    number: int = 0  # its small id (the Transmission RPC's), never reused; 0 until given one
    labels: list = field(default_factory=list)  # as the RPC's clients set them, kept as given
    source: str = "form"  # what added it: "form", "api", "rpc" or "watch"
    queue_rank: float | None = None  # its place in the download queue; None: its number's place
    added_at: datetime = field(default_factory=utcnow)
    state: JobState = JobState.FETCHING_METADATA
    error: str | None = None
    completed_at: datetime | None = None
    has_metadata: bool = False
    fetching_file_list: bool = False  # paused, but fetching its metadata: it downloads no file
    finishing: bool = False  # every piece in; completed once libtorrent has written them out
    moving_to: str | None = None  # the library folder its files are being moved into (jobs.library_move)
    seeding_stopped: bool = False  # completed, and seeds no more (paused, or a seeding limit reached)
    seed_limits: SeedLimits = field(default_factory=SeedLimits)  # its own, as torrent-set gives them
    live: dict = field(default_factory=dict)  # the latest batched torrent status
    tracker: str | None = None  # what the last tracker answer said
    notice: str | None = None  # why a notice about it did not arrive (jobs.notify), while it did not
    rate_meter: RateMeter = field(default_factory=RateMeter)
    stall: StallClock = field(default_factory=StallClock)
    marks: PartMarks = field(default_factory=PartMarks)
    durability: Durability = field(default_factory=Durability)
    run: JobRun = field(default_factory=JobRun)
    removal: Removal | None = None

    def keys(self):
        """The hashes libtorrent may report this job's torrent under."""
        return [key for key in {self.info_hash, self.v1_hash, self.v2_hash} if key]

    def label(self):
        return self.name or self.info_hash

    def rank(self):
        """Its place in the download queue, lowest first: where it was moved, else by age."""
        return float(self.number) if self.queue_rank is None else self.queue_rank

    def uploaded(self):
        return self.live.get("all_time_upload", self.durability.uploaded_saved)

    def share_ratio(self):
        """Bytes uploaded per byte wanted, as HASHDROP_SEED_RATIO counts it; None before metadata."""
        wanted = self.live.get("total_wanted")
        return self.uploaded() / wanted if wanted else None

    def rates(self):
        """Bytes/s (in, out) now. With no peer nothing moves, whatever rate was last reported:
        a job with no peer left showed 200 KiB/s and "10 s left" for half a minute."""
        if not self.live.get("peers"):
            return 0, 0
        down = 0 if self.state == JobState.COMPLETED else self.live.get("download_rate", 0)
        return down, self.live.get("upload_rate", 0)

    def record(self):
        """The job's durable fields, as stored."""
        return {
            "info_hash": self.info_hash,
            "v1_hash": self.v1_hash,
            "v2_hash": self.v2_hash,
            "name": self.name,
            "magnet": self.magnet,
            "torrent": self.metainfo,
            "added_at": self.added_at.isoformat(),
            "state": self.state.value,
            "error": self.error,
            "save_path": self.save_path,
            "category": self.category,
            "sequential": int(self.sequential),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "number": self.number or None,
            "labels": json.dumps(self.labels),
            "source": self.source,
            "seeding_stopped": int(self.seeding_stopped),
            "seed_limits": self.seed_limits.to_text(),
            "queue_rank": self.queue_rank,
            "moving_to": self.moving_to,
        }

    @classmethod
    def from_record(cls, record):
        """A stored job as it was recorded (see record())."""
        completed_at = record["completed_at"]
        return cls(
            info_hash=record["info_hash"], v1_hash=record["v1_hash"], v2_hash=record["v2_hash"],
            name=record["name"], magnet=record["magnet"], metainfo=record["torrent"],
            added_at=datetime.fromisoformat(record["added_at"]), state=JobState(record["state"]),
            error=record["error"], save_path=record["save_path"], category=record["category"],
            sequential=bool(record["sequential"]), number=record.get("number") or 0,
            labels=stored_labels(record.get("labels")), source=record.get("source") or "form",
            seeding_stopped=bool(record.get("seeding_stopped")),
            seed_limits=SeedLimits.from_text(record.get("seed_limits")),
            queue_rank=record.get("queue_rank"),
            completed_at=datetime.fromisoformat(completed_at) if completed_at else None,
            moving_to=record.get("moving_to"),
            durability=Durability(restored=True, uploaded_saved=record["uploaded_bytes"]),
        )


def stored_labels(text):
    """The labels a record holds (JSON text); none for a record made before labels."""
    try:
        labels = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(label) for label in labels] if isinstance(labels, list) else []


@dataclass
class SubmitResult:
    """What one submit did, line by line."""

    started: list = field(default_factory=list)     # Job
    duplicates: list = field(default_factory=list)  # hashes.Target repeated in the paste
    existing: list = field(default_factory=list)    # hashes.Target already a job
    rejected: list = field(default_factory=list)    # hashes.Rejected
    refused: str | None = None                      # the whole submit was refused
    refused_status: int = 400                       # and the HTTP status that says why

    def refuse(self, message, status=400):
        self.refused, self.refused_status = message, status
        return self

    def messages(self):
        """(message, category) pairs for flash(), in the order a person reads them."""
        if self.refused:
            return [(self.refused, "error")]
        out = first_few([(f"Skipped {r.text!r}: {r.reason}", "error") for r in self.rejected],
                        "more lines were skipped")
        out += first_few([(f"{label(t)} was pasted more than once; started it once.", "warning")
                          for t in self.duplicates], "more were pasted more than once")
        out += first_few([(f"{label(t)} is already in the list; nothing new started.", "warning")
                          for t in self.existing], "more are already in the list")
        if not (self.started or self.rejected or self.duplicates or self.existing):
            return [("Paste at least one info hash or magnet link.", "error")]
        count = len(self.started)
        names = ", ".join(job.label() for job in self.started[:5])
        more = f" and {count - 5} more" if count > 5 else ""
        found = f": {names}{more}" if count else ""
        out.append((f"Started {count} download{'s' if count != 1 else ''}{found}.",
                    "success" if count else "warning"))
        return out

    def to_dict(self, describe):
        """The result as the API answers it; describe(job) gives each started job's dict."""
        return {
            "started": [describe(job) for job in self.started],
            "duplicates": [{"info_hash": t.info_hash, "text": t.source} for t in self.duplicates],
            "existing": [{"info_hash": t.info_hash, "text": t.source} for t in self.existing],
            "rejected": [{"text": r.text, "reason": r.reason} for r in self.rejected],
            "messages": [{"text": m, "category": c} for m, c in self.messages()],
        }


def label(target):
    return target.name or target.info_hash


def first_few(messages, more):
    """The first MESSAGES_PER_KIND messages, and one line that counts the rest."""
    if len(messages) <= MESSAGES_PER_KIND:
        return messages
    rest = len(messages) - MESSAGES_PER_KIND
    return messages[:MESSAGES_PER_KIND] + [(f"…and {rest:,} {more}.", messages[0][1])]
