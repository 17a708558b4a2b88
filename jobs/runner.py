"""The runner seam: what starts a job's download. By default one daemon thread per job in this
process, running downloader(task); HASHDROP_RUNNER=module:factory names another (a task queue
that runs the same downloader elsewhere), built with the app's config."""
import threading

from config import load_factory
from downloader import downloader
import futexes


class WorkerNotStarted(Exception):
    """A runner could not start a job's worker; the text is the system's reason."""


class ThreadRunner:
    """Starts each job's downloader in a named daemon thread of this process."""

    def __init__(self, max_threads=0):
        # Thousands of threads asleep in a 16-slot futex table made every wake-up walk a long
        # list (futexes.py): room for as many threads as jobs may be kept.
        self.futex_slots = futexes.make_room(max_threads) if max_threads else None

    def start(self, task):
        """Start downloader(task); return the worker (is_alive(), join(timeout)), or raise
        WorkerNotStarted when the system has no thread to give (pid or memory limits)."""
        thread = threading.Thread(target=downloader, args=(task,), name=f"job-{task.info_hash[:8]}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": pthread_create failed
            raise WorkerNotStarted(str(exc)) from None
        return thread


def runner_from_config(config):
    """The runner HASHDROP_RUNNER names: "thread" (the default), or "module:factory" called with
    the config, which returns an object with start(task) -> worker that raises WorkerNotStarted
    when it cannot start one."""
    name = config.get("RUNNER") or "thread"
    if name == "thread":
        return ThreadRunner(config["MAX_JOBS"])
    return load_factory(name, "RUNNER")(config)

