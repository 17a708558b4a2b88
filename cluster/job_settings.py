"""A job's own settings and commands in cluster mode's web app: seeding and rate limits (what
Sonarr and Radarr send with torrent-set right after adding), verify and reannounce, and the
queue moves they send (accepted, changing nothing).

The limits are kept with the job's row first, then sent to the node that holds the job; a node
that was unreachable applies them at its next reconcile, and one that claims or adopts the job
later adds its torrent with them (cluster.node, cluster.keeper). Verify and reannounce need the
torrent now: they go to its node, and say so when it cannot be reached.
"""
import json
from dataclasses import asdict

from jobs.model import JobError
from jobs.seeding import SeedLimits, changed_limits
from store.base import StoreError

NODE_AWAY = "Its download node {node} {why}: ask again once it is back."
# 503, not 409: the RPC takes a 409 from verify for "nothing to do" and answers success.
NODE_AWAY_STATUS = 503


def rate_limits_of(row):
    """A row's own rate limits as {"download": bytes/s, "upload": bytes/s} (0: none); {} if never set."""
    try:
        stored = json.loads(row.get("rate_limits") or "{}")
        return {key: int(stored[key]) for key in ("download", "upload") if key in stored}
    except (ValueError, TypeError, AttributeError):
        return {}


class JobSettingsOnNodes:
    """The ClusterJobManager's methods for a job's own settings; it has get, job, _change, store
    and dispatcher."""

    def set_seed_limits(self, info_hash, changes):
        """Change a job's own seeding limits (jobs.seeding.changed_limits keys): stored, then
        applied by its node (which stops seeding once one is reached); the job as shown."""
        row = self._stored_row(info_hash)
        try:
            limits = changed_limits(SeedLimits.from_text(row["seed_limits"]), changes)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        self._tell_its_node(self._change(info_hash, seed_limits=limits.to_text()), "hashdrop_seed_limits",
                            limits=json.dumps(asdict(limits)))
        return self.job(info_hash)

    def set_job_rate_limits(self, info_hash, download=None, upload=None):
        """Cap one job's rates in bytes/s (0: none): stored, then applied by its node."""
        row = self._stored_row(info_hash)
        asked = {key: int(value) for key, value in (("download", download), ("upload", upload)) if value is not None}
        limits = {"download": 0, "upload": 0, **rate_limits_of(row), **asked}
        self._tell_its_node(self._change(info_hash, rate_limits=json.dumps(limits)), "hashdrop_rate_limits",
                            **limits)

    def _tell_its_node(self, row, command, **arguments):
        """Send a stored change to the node that holds the job, unless none does (a node that
        claims it reads the row) or it is offline (its reconcile applies it once it is back):
        Sonarr's torrent-set for a job on an offline node would wait for the command's timeout."""
        if row["node"] and not self.job(row["info_hash"])["offline"]:
            self.dispatcher.command(row["node"], command, info_hash=row["info_hash"], **arguments)

    def verify(self, info_hash):
        """Check the job's files against its pieces again, on its node."""
        self._on_its_node(info_hash, "hashdrop_verify", unplaced=JobError(
            "No download node holds this job yet: its files are checked as a node starts it.", 409))

    def reannounce(self, info_hash):
        """Ask the job's trackers for peers again now, on its node (nothing to do before one holds it)."""
        self._on_its_node(info_hash, "hashdrop_reannounce")

    def move_in_queue(self, info_hashes, where):
        """Accepted, and nothing moves: the cluster's download queue is the broker's, where the
        first node with a free slot takes the oldest queued job. Sonarr and Radarr send
        queue-move-top for a grab of "First" priority and show an error for anything but
        success (Transmission's RPC allows a no-op here)."""
        for info_hash in info_hashes:
            self.get(info_hash)  # 404 for an unknown one, as in embedded mode

    def _on_its_node(self, info_hash, command, unplaced=None):
        """Run command on the node that holds the job and wait for its answer; a JobError saying
        why when it cannot (no node, node offline or silent, the node's own refusal)."""
        shown = self.job(info_hash)
        node = shown["node"]
        if not node:
            if unplaced is not None:
                raise unplaced
            return
        if shown["offline"]:
            raise JobError(NODE_AWAY.format(node=node, why="is offline"), NODE_AWAY_STATUS)
        answer = self.dispatcher.ask(node, command, info_hash=info_hash)
        if answer is None:
            raise JobError(NODE_AWAY.format(node=node, why="did not answer"), NODE_AWAY_STATUS)
        if not answer.get("ok"):
            raise JobError(answer.get("error") or f"{node} refused it.", answer.get("status", 400))
        if not answer.get("held"):
            raise JobError(f"The job is moving to or from {node}; ask again in a few seconds.", NODE_AWAY_STATUS)

    def _stored_row(self, info_hash):
        """The job's row now (not the copy read a second ago: two quick changes both count)."""
        self.get(info_hash)
        try:
            row = self.store.row(info_hash)
        except StoreError as exc:
            raise JobError(f"{exc} Nothing was changed; try again once the database answers.", 503) from None
        if row is None:
            raise JobError(f"No job has the info hash {info_hash!r}.", 404)
        return row
