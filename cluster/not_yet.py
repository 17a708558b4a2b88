"""What cluster mode's web app cannot do yet: everything that needs a job's torrent, which lives
in its download node's libtorrent session. Each answers a JobError with a sentence and a 400,
never a 500; a later step could reach the node through a control command with a reply
(cluster.job_settings does for verify and reannounce, which need no answer but "done")."""
from jobs.model import JobError

NOT_YET = "{what} is not available in cluster mode yet: the job's torrent is on its download node."
# Not 409: the RPC takes a 409 from verify or pause for "nothing to do" and answers success.
NOT_YET_STATUS = 400


def not_yet(what):
    """A method that names the job (a 404 if there is none) and refuses."""
    def refuse(self, info_hash, *args, **kwargs):
        self.get(info_hash)
        raise JobError(NOT_YET.format(what=what), NOT_YET_STATUS)
    refuse.__doc__ = f"{what}: not in cluster mode yet."
    return refuse


class TorrentOnItsNode:
    """The methods of jobs.JobManager that need the torrent; a facade with get(info_hash) mixes them in."""

    files = not_yet("A job's file list")
    set_files = not_yet("Choosing a job's files")
    details = not_yet("A job's trackers and peers")
    relocate = not_yet("Moving a job's files")

    def wait_for_file_list(self, info_hash, timeout):
        raise JobError(NOT_YET.format(what="Choosing files as a torrent is added") + " It was added paused.",
                       NOT_YET_STATUS)

    def set_rate_limits(self, download=None, upload=None):
        raise JobError("The session's rate limits are each download node's own in cluster mode: set "
                       "HASHDROP_DOWNLOAD_LIMIT and HASHDROP_UPLOAD_LIMIT where the node runs.", NOT_YET_STATUS)

    def set_session_seed_limits(self, **changes):
        if changes:
            raise JobError("The seeding limits are each download node's own in cluster mode: set "
                           "HASHDROP_SEED_RATIO and HASHDROP_SEED_IDLE_MINUTES where the node runs.",
                           NOT_YET_STATUS)
