"""The node's remote-control commands. Celery runs them in the worker's consumer thread (even
while every pool thread holds a download), so each is quick: libtorrent calls and one fenced
database write; deleting files goes to a thread of its own (a NAS can block).

The web app sends them with destination=[node], reply=True, timeout=1; it has written the
desired state in PostgreSQL first, so a command that never arrives is applied by the node's
reconcile (cluster.keeper) instead.
"""
import json
import logging
import threading

from celery.worker.control import control_command, inspect_command

from cluster import node as nodes
from jobs.model import JobError, JobState

log = logging.getLogger(__name__)


def _job_command(action, info_hash):
    """Run action(node) for a job of this node; {"ok": True}, or ok False and why."""
    try:
        node = nodes.current()
        if node.manager.registry.get(info_hash) is None:
            return {"ok": True, "held": False}  # not here (yet): the claim or reconcile will see the row
        action(node)
    except JobError as exc:
        return {"ok": False, "error": exc.message, "status": exc.status}
    except Exception as exc:  # a command never takes the consumer thread down
        log.exception("control command on %s failed", info_hash)
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "held": True}


@control_command(args=[("info_hash", str)], signature="<info_hash>")
def hashdrop_pause(state, info_hash):
    """Pause a job of this node (a seeding one stops seeding); its download task then returns."""
    return _job_command(lambda node: node.manager.pause(info_hash), info_hash)


@control_command(args=[("info_hash", str)], signature="<info_hash>")
def hashdrop_resume(state, info_hash):
    """A paused job needs a slot: the web app sends hashdrop.download to this node's queue too,
    so this only marks it. A completed job that stopped seeding seeds again at once."""
    def resume(node):
        job = node.manager.registry.get(info_hash)
        if job.state == JobState.COMPLETED:
            node.manager.resume(info_hash)
    return _job_command(resume, info_hash)


@control_command(args=[("info_hash", str), ("delete_files", bool)], signature="<info_hash> [delete_files]")
def hashdrop_remove(state, info_hash, delete_files=False):
    """Remove a job of this node (and its files, in a thread); its row goes too, fenced."""
    def remove(node):
        threading.Thread(target=_remove, args=(node, info_hash, bool(delete_files)),
                         name=f"remove-{info_hash[:8]}", daemon=True).start()
    return _job_command(remove, info_hash)


def _remove(node, info_hash, delete_files):
    try:
        node.manager.remove(info_hash, delete_files=delete_files)
    except JobError:
        pass  # removed meanwhile (reconcile)
    except Exception:
        log.exception("removing %s failed", info_hash)


@control_command(args=[("info_hash", str), ("limits", str)], signature="<info_hash> <limits as JSON>")
def hashdrop_seed_limits(state, info_hash, limits):
    """Set a job's own seeding limits (every key of jobs.seeding.SeedLimits, as JSON): it stops
    seeding at once if one is reached."""
    return _job_command(lambda node: node.manager.set_seed_limits(info_hash, json.loads(limits)), info_hash)


@control_command(args=[("info_hash", str), ("download", int), ("upload", int)],
                 signature="<info_hash> <download bytes/s> <upload bytes/s>")
def hashdrop_rate_limits(state, info_hash, download=0, upload=0):
    """Cap a job's own rates (bytes/s, 0: none) on its torrent."""
    limits = {"download": int(download), "upload": int(upload)}
    return _job_command(lambda node: node.apply_rate_limits(info_hash, limits), info_hash)


@control_command(args=[("info_hash", str)], signature="<info_hash>")
def hashdrop_verify(state, info_hash):
    """Check a job's files against its pieces again (libtorrent's force_recheck: it returns at once)."""
    return _job_command(lambda node: node.manager.verify(info_hash), info_hash)


@control_command(args=[("info_hash", str)], signature="<info_hash>")
def hashdrop_reannounce(state, info_hash):
    """Ask a job's trackers for peers again now."""
    return _job_command(lambda node: node.manager.reannounce(info_hash), info_hash)


@inspect_command()
def hashdrop_jobs(state):
    """This node's jobs, short: {info_hash: {state, progress, name, download_limit, upload_limit}}
    (celery inspect hashdrop_jobs); the limits are what the torrent has now (bytes/s, 0: none)."""
    node = nodes.current()
    return {view["info_hash"]: {"state": view["state"], "progress": view["progress"], "name": view["name"],
                                **node.torrent_rate_limits(view["info_hash"])}
            for view in node.manager.jobs()}
