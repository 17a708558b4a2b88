"""Jobs: one download per info hash, each run by a worker (a thread of this process by default)."""
from jobs.manager import JobManager
from jobs.model import JobError, JobState

__all__ = ["JobError", "JobManager", "JobState"]
