"""The runner seam: what starts a job's download. By default one daemon thread per job in this
process, running downloader(task); HASHDROP_RUNNER=module:factory names another (a task queue
that runs the same downloader elsewhere), built with the app's config."""
import threading

from config import load_factory
from downloader import downloader


class ThreadRunner:
    """Starts each job's downloader in a named daemon thread of this process."""

    def start(self, task):
        """Start downloader(task); return the worker (is_alive(), join(timeout))."""
        thread = threading.Thread(target=downloader, args=(task,), name=f"job-{task.info_hash[:8]}", daemon=True)
        thread.start()
        return thread


def runner_from_config(config):
    """The runner HASHDROP_RUNNER names: "thread" (the default), or "module:factory" called with
    the config, which returns an object with start(task) -> worker."""
    name = config.get("RUNNER") or "thread"
    if name == "thread":
        return ThreadRunner()
    return load_factory(name, "RUNNER")(config)

