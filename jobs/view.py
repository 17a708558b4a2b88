"""A job as the page and the JSON API show it."""
from dataclasses import asdict

from jobs.model import RUNNING, JobState, utcnow
from torrent_files import free_bytes


def job_view(job, now=None):
    """The job as a dict of plain values; now (UTC) measures how long it has waited."""
    now = now or utcnow()
    fields = shown_fields(job)
    remaining = fields["total_bytes"] - fields["downloaded_bytes"]
    return {**fields, "waiting_seconds": int((now - job.added_at).total_seconds()),
            "disk_free_bytes": short_of_space(job, remaining)}


def shown_fields(job):
    """What job_view shows that only a change to the job changes: not the time it has waited or
    the free space on its disk (which ask the clock and the file system). jobs.registry compares
    these to tell whether a job changed."""
    live = job.live
    total = live.get("total_wanted", 0)
    done = live.get("total_wanted_done", 0)
    rate, upload_rate = job.rates()
    ratio = job.share_ratio()
    completed = job.state == JobState.COMPLETED
    return {
        "number": job.number,
        "info_hash": job.info_hash,
        "v1_hash": job.v1_hash,
        "v2_hash": job.v2_hash,
        "name": job.name,
        "added_at": job.added_at.isoformat(),
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "state": job.state.value,
        "progress": round(1.0 if completed else (done / total if total else 0.0), 4),
        "total_bytes": total,
        "torrent_bytes": live.get("total_size", 0),
        "downloaded_bytes": total if completed and total else done,
        "uploaded_bytes": job.uploaded(),
        "ratio": None if ratio is None else round(ratio, 3),
        "download_rate": rate,
        "upload_rate": upload_rate,
        "peers": live.get("peers", 0),
        "seeds": live.get("seeds", 0),
        "eta_seconds": eta(job, rate, total, done),
        "seeding": completed and not job.seeding_stopped,
        "checking": live.get("checking", False),
        "verify_pending": job.run.verify is not None,
        "moving": job.moving_to is not None,  # its files move from the incomplete folder into the library
        "error": job.error,
        "tracker": job.tracker,
        "notice": job.notice,
        "save_path": job.save_path,
        "category": job.category,
        "sequential": job.sequential,
        "has_metadata": job.has_metadata,
        "fetching_file_list": job.fetching_file_list,
        "labels": list(job.labels),
        "source": job.source,
        "seed_limits": asdict(job.seed_limits),
    }


def eta(job, rate, total, done):
    """Seconds left at the current rate, for a downloading job that moves; else None."""
    if job.state == JobState.DOWNLOADING and rate > 0 and total > done:
        return int((total - done) / rate)
    return None


def short_of_space(job, remaining):
    """The free bytes on the save path's disk if fewer than the job still needs, else None."""
    if remaining <= 0 or job.state not in (*RUNNING, JobState.PAUSED):
        return None
    free = free_bytes(job.save_path)
    return free if free is not None and free < remaining else None
