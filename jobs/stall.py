"""Stalled jobs: when a job is stalled, when a stalled one asks for peers again, and the
sentence that says why. Pure timekeeping on monotonic seconds; jobs.lifecycle applies it."""
import math
from dataclasses import dataclass

FIRST_RETRY = 60.0  # seconds from stalling to the first re-announce...
LAST_RETRY = 3600.0  # ...doubling each time, up to this


@dataclass(frozen=True)
class StallLimits:
    """HASHDROP_METADATA_TIMEOUT, _STALL_TIMEOUT and _STALLED_REMOVE_AFTER, in seconds."""

    metadata_timeout: float = 1800
    stall_timeout: float = 7200
    remove_after: float = 0  # 0: stalled jobs are kept

    def timeout(self, has_metadata):
        """How long a job may wait without a sign of life before it is stalled."""
        return self.stall_timeout if has_metadata else self.metadata_timeout

    def first_retry(self, has_metadata):
        """Seconds to a stalled job's first re-announce: a minute, or sooner where the timeout
        that stalled it is shorter (a test's few seconds)."""
        return min(FIRST_RETRY, self.timeout(has_metadata))

    @classmethod
    def from_config(cls, config):
        return cls(float(config["METADATA_TIMEOUT"]), float(config["STALL_TIMEOUT"]),
                   float(config["STALLED_REMOVE_AFTER"]))


@dataclass
class StallClock:
    """One job's stall timers. Changed under the registry's lock."""

    since: float | None = None  # the wait began, or the last sign of life; None: not timed yet
    done: int | None = None  # wanted bytes done at the last status; None: no baseline yet
    peers_seen: int = 0  # the most peers connected at once since the wait began
    stalled_at: float | None = None  # when it was stalled (or brought back stalled at start)
    retries: int = 0  # re-announces since it was stalled
    next_retry: float | None = None  # when it asks the trackers and the DHT again

    def restart(self, now):
        """A new wait begins: the job downloads, or fetches its metadata, (again)."""
        self.since, self.done, self.peers_seen = now, None, 0
        self.stalled_at = self.next_retry = None
        self.retries = 0

    def observe(self, status, has_metadata, now):
        """Note a batched status (downloader.live_status); True if it shows life: wanted bytes
        came in, or a peer is connected that has what the job lacks."""
        self.peers_seen = max(self.peers_seen, status.get("peers", 0))
        if self.since is None:
            self.since = now
        if status.get("checking"):
            # Reading its files is work, not a stall; and the pieces it finds are no download.
            self.done = None
            self.since = now
            return False
        before, self.done = self.done, status.get("total_wanted_done", 0)
        if not has_metadata:
            return False  # only the metadata brings a magnet back (jobs.lifecycle.on_metadata)
        alive = (before is not None and self.done > before) or status.get("seeds", 0) > 0 \
            or status.get("distributed_copies", 0) >= 1  # the peers and the job hold every piece
        if alive:
            self.since = now
        return alive

    def stall_due(self, has_metadata, limits, now):
        return self.since is not None and now - self.since >= limits.timeout(has_metadata)

    def stall(self, has_metadata, limits, now):
        """The job is stalled now (or was, and the app started again): its retries begin."""
        self.stalled_at, self.retries = now, 0
        self.next_retry = now + limits.first_retry(has_metadata)

    def retry_due(self, now):
        return self.next_retry is not None and now >= self.next_retry

    def retried(self, has_metadata, limits, now):
        """It asked for peers again: the next time is twice as far, up to LAST_RETRY."""
        self.retries += 1
        self.next_retry = now + min(limits.first_retry(has_metadata) * 2 ** self.retries, LAST_RETRY)

    def remove_due(self, limits, now):
        return bool(limits.remove_after) and self.stalled_at is not None \
            and now - self.stalled_at >= limits.remove_after

    def next_check(self, stalled, has_metadata, limits):
        """When something is due: the stall of a timed job, or a stalled job's retry or removal."""
        if not stalled:
            return None if self.since is None else self.since + limits.timeout(has_metadata)
        due = [self.next_retry]
        if limits.remove_after and self.stalled_at is not None:
            due.append(self.stalled_at + limits.remove_after)
        return min((moment for moment in due if moment is not None), default=None)


def metadata_reason(timeout, peers_seen):
    """Why a magnet is stalled: "no peer sent the file list in 30 min; 0 peers seen"."""
    return f"no peer sent the file list in {span(timeout)}; {plural(peers_seen, 'peer')} seen"


def data_reason(timeout, done_fraction, peer_progress):
    """Why a download is stalled: "no seed for 2 h; 63 % done, 2 peers with 61 %".

    peer_progress holds each connected peer's share of the torrent (0 to 1)."""
    if not peer_progress:
        peers = "no peer connected"
    else:
        best = percent(max(peer_progress))
        alike = len({percent(progress) for progress in peer_progress}) == 1
        peers = f"{plural(len(peer_progress), 'peer')} with {'' if alike else 'up to '}{best} %"
    return f"no seed for {span(timeout)}; {percent(done_fraction)} % done, {peers}"


def percent(fraction):
    """Whole percent, rounded down: 99.9 % done is not 100."""
    return math.floor(max(0.0, min(1.0, fraction)) * 100)


def plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def span(seconds):
    """7200 -> "2 h", 1800 -> "30 min", 5430 -> "1 h 30 min 30 s", 3 -> "3 s"."""
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(part for part in parts if part) or "0 s"
