"""The job lists the page, the JSON API and the RPC read: every job, the table's page, the
changes since a token, the counts per state. None takes the registry's job-state lock, which
job threads pass around (a poll must not queue behind them), and the views are made outside any
lock: they ask the file system for free space, which can hang on a NAS. `view(job, now)` makes each dict:
jobs.view.job_view here, the cluster's mirror its own (cluster.mirror)."""
from collections import Counter, namedtuple
from operator import attrgetter

from jobs.changes import BadToken
from jobs.model import ENDED, RUNNING, JobState, utcnow
from jobs.view import job_view

STATE_OF = attrgetter("state")
TablePage = namedtuple("TablePage", "jobs total token changed")  # what newest_first gives the table


def every_job(registry, states=None, text="", view=job_view):
    """Every job (or those in `states` whose name or hash holds `text`) as a dict, oldest first."""
    now = utcnow()
    return [view(job, now) for job in registry.matching(states, text)]


def newest_first(registry, start, count, states=None, text="", since="", view=job_view):
    """count jobs (those in `states` whose name or hash holds `text`, in any case) as dicts,
    newest first from position start, how many there are, the token for now, and the info
    hashes of those changed since the token `since` (None when it is empty, stale or
    malformed: a table polled with it shows them all again)."""
    # The token first: whatever changes, comes or goes after it, the next poll sends.
    token = registry.token()
    if states is None and not text:
        page, total = registry.newest(start, count)
    else:
        jobs = registry.matching(states, text)
        end = max(0, len(jobs) - start)  # the page, newest first, without copying every job twice
        page, total = jobs[max(0, end - count):end][::-1], len(jobs)
    try:
        version = registry.version(since)
    except BadToken:
        version = None
    changed = None if version is None else {
        job.info_hash for job in page if registry.version_of(job.info_hash) > version}
    now = utcnow()
    return TablePage([view(job, now) for job in page], total, token, changed)


def changes(registry, since, states=None, text="", view=job_view):
    """GET /api/jobs?since=: the jobs changed since the token (all, with full, when it is empty
    or stale), the info hashes removed since (with states or text: also those changed that no
    longer match), and the token for now. BadToken when it is not a token."""
    changed, removed, token = registry.changed_since(since)
    full = changed is None
    if full:  # as GET /api/jobs lists them, oldest first
        shown = registry.matching(states, text)
    else:  # oldest change first
        shown = [job for job in reversed(changed) if registry.matches(job, states, text)]
        removed += [job.info_hash for job in changed if not registry.matches(job, states, text)]
    now = utcnow()
    return {"token": token, "jobs": [view(job, now) for job in shown], "removed": removed, "full": full}


def counts(registry):
    """How many jobs each state holds (the table's poll asks at every second: counted again
    only once something changed, see JobRegistry.summary)."""
    return dict(registry.summary("counts", count_states))  # the kept one stays as counted


def count_states(jobs):
    counted = Counter(map(STATE_OF, jobs))
    return {state.value: counted[state] for state in JobState}


def has_changing(registry):
    """Whether some job's row will change without a click: it runs, or libtorrent's first
    status for it is still to come (a job just started paused has no size or Files link yet).
    Newest first: those are the likeliest. Not kept as the counts are: a first status that
    shows nothing new is no change, and the page would poll on."""
    return any(job.state in RUNNING or job.fetching_file_list or (not job.live and job.state not in ENDED)
               for job in reversed(registry.all()))
