"""Tell the media server, the person and their scripts what became of a job: one `notifier`
thread delivers each event to each target, retrying with back-off, so that no job thread,
alert thread or request ever waits for a server on the network."""
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

import torrent_files
from jobs.model import utcnow
from notifiers import DeliveryFailed, Secrets

log = logging.getLogger(__name__)

# A job entering one of these states is an event of the same name ("added" comes from the
# submit). A new state that people want to hear of is one more name here.
EVENT_STATES = ("completed", "failed", "stalled")
# The job's text that goes with an event, and the field it goes in.
EVENT_DETAIL = {"failed": "error", "stalled": "reason"}
RETRY_DELAYS = (5, 30, 120, 600)  # seconds before each retry; then the notifier gives up


def describe(job, event):
    """The event as targets get it (the webhook's JSON body): a snapshot of the job now."""
    files = wanted_files(job)
    described = {
        "event": event,
        "hash": job.info_hash,
        "name": job.name,
        "category": job.category,
        "files": sorted((path for path, _ in files), key=torrent_files.natural_order),
        "size": sum(size for _, size in files) or job.live.get("total_wanted", 0),
        "save_path": job.save_path,
        "time": utcnow().isoformat(),
    }
    if event in EVENT_DETAIL:
        described[EVENT_DETAIL[event]] = job.error
    return described


def wanted_files(job):
    """(path relative to the save path, size) of each file the job wants; none before metadata."""
    torrent = job.run.torrent
    if torrent is None or not job.has_metadata:
        return []
    try:
        return torrent_files.wanted_files(torrent.handle)
    except RuntimeError:  # removed meanwhile
        return []


@dataclass(order=True)
class Delivery:
    """One event for one target, due at a monotonic time."""

    due: float
    order: int  # events due at once go out in the order they happened
    target: object = field(compare=False)
    event: dict = field(compare=False)
    job: object = field(compare=False)
    tries: int = field(default=0, compare=False)


class Notifier:
    """The queue of deliveries and the one thread that works through it."""

    def __init__(self, targets, lock, secrets=None, retry_delays=RETRY_DELAYS, touch=None):
        self.targets = list(targets)
        self.lock = lock  # the registry's: a job's notice is shared job state
        self.touch = touch or (lambda job: None)  # the registry's: a new notice shows (jobs.changes)
        self.secrets = secrets or Secrets()
        self.retry_delays = tuple(retry_delays)
        self._due = []  # a heap of Delivery
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._failing = {}  # (info_hash, target name) -> why its last try failed
        self._thread = None
        self._log_filter = None

    def start(self):
        """Start the notifier thread, if any target is configured."""
        if not self.targets:
            return
        self._log_filter = self.secrets.log_filter()
        logging.getLogger("apprise").addFilter(self._log_filter)
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()
        log.info("notices go to %s", ", ".join(f"{t.name} ({t.where})" for t in self.targets))

    def added(self, jobs):
        for job in jobs:
            self.emit(job, "added")

    def entered(self, job, state):
        """Called as a job enters a state (jobs.lifecycle.set_state, under the registry's lock)."""
        if state.value in EVENT_STATES:
            self.emit(job, state.value)

    def emit(self, job, event):
        """Queue the event for every target that takes it; returns at once."""
        targets = [t for t in self.targets if t.events is None or event in t.events]
        if not targets:
            return
        described = describe(job, event)
        with self._wake:
            if self._closed:
                return
            for target in targets:
                heapq.heappush(self._due, Delivery(time.monotonic(), next(self._order), target, described, job))
            self._wake.notify()

    def stop(self, timeout=10):
        """Drop what is still due, and end the thread once its delivery in hand is done."""
        with self._wake:
            self._closed = True
            dropped, self._due = len(self._due), []
            self._wake.notify()
        if dropped:
            log.warning("shutting down: %d notice(s) not sent", dropped)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._log_filter is not None:
            logging.getLogger("apprise").removeFilter(self._log_filter)

    # The notifier thread ------------------------------------------------------------------
    def _run(self):
        while (delivery := self._next()) is not None:
            self._deliver(delivery)

    def _next(self):
        """The next delivery once it is due, or None once stopped."""
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                if self._due and self._due[0].due <= now:
                    return heapq.heappop(self._due)
                self._wake.wait(self._due[0].due - now if self._due else None)
            return None

    def _deliver(self, delivery):
        target, event = delivery.target, delivery.event
        delivery.tries += 1
        try:
            target.send(event)
        except DeliveryFailed as exc:
            self._failed(delivery, self.secrets.redact(exc))
        except Exception as exc:  # a bug in a target: the thread must live on for the others
            # No traceback: its frames' messages may hold a URL with its token.
            log.error("%s: unexpected %s", target.name, self.secrets.redact(repr(exc)))
            self._failed(delivery, "unexpected error (see the log)")
        else:
            log.info("%s told: %s %s", target.name, event["event"], event["name"] or event["hash"])
            self._set_notice(delivery, None)

    def _failed(self, delivery, reason):
        """Retry later, or give up once every delay is spent; the job's notice says which."""
        target, event = delivery.target, delivery.event
        what = f"{event['event']} {event['name'] or event['hash']}"
        if delivery.tries > len(self.retry_delays):
            log.warning("%s: %s; gave up telling it of %s after %d tries", target.name, reason, what, delivery.tries)
            self._set_notice(delivery, f"{target.name}: {reason}; gave up after {delivery.tries} tries")
            return
        delay = self.retry_delays[delivery.tries - 1]
        log.warning("%s: %s; will tell it of %s again in %s s", target.name, reason, what, delay)
        self._set_notice(delivery, f"{target.name}: {reason}, retrying in {delay:g} s")
        delivery.due = time.monotonic() + delay
        with self._wake:
            if not self._closed:
                heapq.heappush(self._due, delivery)

    def _set_notice(self, delivery, text):
        """Show on the job why its targets were not told (None: this one was)."""
        key = (delivery.job.info_hash, delivery.target.name)
        with self.lock:
            if text is None:
                if self._failing.pop(key, None) is None:
                    return
            else:
                self._failing[key] = text
            texts = [text for (info_hash, _), text in self._failing.items() if info_hash == key[0]]
            delivery.job.notice = "; ".join(texts) or None
            self.touch(delivery.job)
