"""What a person does to a job: pause, resume (or retry), remove, and choose its files."""
import json
import time
from collections import deque

import downloader
import torrent_files
from downloader import STOP
from jobs.model import ENDED, JobError, JobState, Removal
from jobs.library_move import MoveRefused
from jobs.ownership import UnsafePath
from jobs.seeding import changed_limits
from jobs.slots import moved_ranks
from jobs.view import job_view

REMOVED_KEPT = 1000  # removed jobs' numbers remembered, for RPC clients that ask what went away


class Steering:
    """The user commands on jobs; each answers with the job as shown, or raises JobError."""

    def __init__(self, registry, lifecycle, services, store, start_or_fail):
        self.registry = registry
        self.lifecycle = lifecycle
        self.services = services
        self.session = services.session
        self.store = store
        self._start_or_fail = start_or_fail  # (job) -> whether its worker started
        self._removed = deque(maxlen=REMOVED_KEPT)  # (monotonic time, number) of removed jobs

    def get(self, info_hash):
        """The job with this info hash, or a 404 JobError."""
        return self.registry.require(info_hash)

    def _shown(self, job):
        """The job as shown, stamped changed if a command changed what shows (jobs.registry)."""
        self.registry.touch(job)
        return job_view(job)

    def pause(self, info_hash):
        """Pause a job; a completed job stops seeding. Return it as shown."""
        job = self.get(info_hash)
        with self.registry.lock:
            if job.state in ENDED:
                raise JobError(f"{job.state.value} jobs cannot be paused.", 409)
            if job.state == JobState.COMPLETED:
                self.lifecycle.record_seeding(job, False)
            elif job.state != JobState.PAUSED:
                self.lifecycle.set_state(job, JobState.PAUSED)
            job.fetching_file_list = False  # paused outright: no metadata either
            if job.run.torrent:
                job.run.torrent.pause()
        return self._shown(job)

    def resume(self, info_hash):
        """Resume a paused job (or retry a failed one); it may have to queue for a slot."""
        job = self.get(info_hash)
        with self.registry.lock:
            if job.state == JobState.COMPLETED:
                self.lifecycle.record_seeding(job, True)
                if job.run.torrent:
                    job.run.torrent.resume()
            elif job.state in (JobState.PAUSED, JobState.FAILED):
                self._go_on(job)
        return self._shown(job)

    def _go_on(self, job):
        """Start a paused or failed job's download again, in its worker or in a new one."""
        retry = job.state == JobState.FAILED
        job.error = None
        job.fetching_file_list = False  # a held job's files are all wanted as its metadata comes
        job.durability.restored = False  # a person asked: download again where files are missing
        if not job.run.is_running():
            job.state = JobState.FETCHING_METADATA
            self.store.update(job.info_hash, state=job.state.value, error=None)
            if not self._start_or_fail(job):
                raise JobError(job.error, 503)
            return
        torrent = job.run.torrent
        if torrent is not None and retry:
            torrent.handle.clear_error()
        if not job.has_metadata:
            self.lifecycle.set_state(job, JobState.FETCHING_METADATA)
            if torrent is not None:
                torrent.resume()
        else:
            self.lifecycle.want_download(job)
        if torrent is not None:
            downloader.reconnect(torrent.handle)

    def retry_failed(self):
        """Retry every failed job; return how many went on."""
        retried = 0
        for job in self.registry.matching({JobState.FAILED}):
            try:
                self.resume(job.info_hash)
                retried += 1
            except JobError:  # no thread for it: it stays failed, with the reason
                pass
        return retried

    def remove(self, info_hash, delete_files=False):
        """Forget a job; its worker removes the torrent (and its files when asked)."""
        job = self.get(info_hash)
        with self.registry.lock:
            self.forget(job, delete_files)
            # A failed job's worker has ended (and a failed job restored at start never had
            # one): its files are left for the manager to delete.
            files_left = delete_files and (job.run.worker is None or job.run.detached)
        if files_left:
            self._delete_files(job)
        self.services.resume_files.remove(job)
        self._removed.append((time.monotonic(), job.number))
        return self._shown(job)

    def forget(self, job, delete_files=False):
        """Take a job out of the registry, its slot and the store, and tell its worker to stop."""
        with self.registry.lock:
            job.state = JobState.CANCELLED
            job.removal = Removal(delete_files=delete_files)
            self.registry.discard(job)
            self.lifecycle.release_slot(job)
            self.store.delete(job.info_hash)
            job.run.inbox.put(STOP)

    def removed_numbers(self, seconds):
        """The numbers of the jobs removed in the last `seconds` seconds."""
        since = time.monotonic() - seconds
        return [number for at, number in list(self._removed) if at >= since]

    def set_labels(self, info_hash, labels):
        """Replace a job's labels, kept as given; return the job as shown."""
        job = self.get(info_hash)
        with self.registry.lock:
            job.labels = [str(label) for label in labels]
            self.store.update(job.info_hash, labels=json.dumps(job.labels))
        return self._shown(job)

    def set_seed_limits(self, info_hash, changes):
        """Change a job's own seeding limits (jobs.seeding.changed_limits keys); return it as shown."""
        job = self.get(info_hash)
        try:
            limits = changed_limits(job.seed_limits, changes)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        with self.registry.lock:
            job.seed_limits = limits
            self.store.update(job.info_hash, seed_limits=limits.to_text())
        self.lifecycle.check_seed_limits(job)
        return self._shown(job)

    def relocate(self, info_hash, category):
        """Move a job's files into another folder of the save path (a category: "" is the save
        path itself); a job still in the incomplete folder moves there once it finishes."""
        job = self.get(info_hash)
        library_move = self.services.library_move
        with self.registry.lock:
            torrent = job.run.torrent
            if job.moving_to is not None:
                raise JobError("Its files are moving now; ask again once they have moved.", 409)
            if torrent is None or job.state in ENDED:
                raise JobError("Only a job that runs or is paused can move its files: start it first.", 409)
            job.category = category
            self.store.update(job.info_hash, category=category)
            if library_move.needed(job):
                return self._shown(job)
            target = library_move.library_path(job)
            if target == job.save_path:
                return self._shown(job)
        try:
            library_move.start(job, target)
        except MoveRefused as exc:
            raise JobError(str(exc), 409) from None
        except RuntimeError:  # removed meanwhile
            pass
        return self._shown(job)

    def verify(self, info_hash):
        """Check the job's files against its pieces again; missing pieces are downloaded again."""
        torrent = self._torrent_with_metadata(info_hash)
        with self.registry.lock:
            job = self.get(info_hash)
            job.run.verify = "asked"
            self.registry.touch(job)
        torrent.handle.force_recheck()

    def move_in_queue(self, info_hashes, where):
        """Move jobs in the download queue: "top", "bottom", "up", "down" or to a position (0 is
        first); a job that waits for a slot gets the next one by this order."""
        for info_hash in info_hashes:
            self.get(info_hash)  # 404 for an unknown one, before anything moves
        with self.registry.lock:
            for info_hash, rank in moved_ranks(self.registry.queue_order(), info_hashes, where).items():
                self.registry.get(info_hash).queue_rank = rank
                self.store.update(info_hash, queue_rank=rank)

    def queue_positions(self):
        """{info hash: place in the download queue}, 0 first."""
        return {info_hash: place for place, (info_hash, _) in enumerate(self.registry.queue_order())}

    def reannounce(self, info_hash):
        """Ask the job's trackers for peers again now, if its torrent is in the session."""
        job = self.get(info_hash)
        with self.registry.lock:
            torrent = job.run.torrent
        if torrent is not None:
            downloader.reconnect(torrent.handle)

    def _delete_files(self, job):
        """Delete what a job with no torrent in the session wrote (its metadata tells which)."""
        params, _ = self.services.resume_files.read(job)
        if params is not None:
            self.services.ownership.claim_resumed(job, params)
        elif job.metainfo:
            params = torrent_files.params_from_torrent(job.metainfo)
        if params is None or not torrent_files.has_metadata(params):
            return  # no metadata, so no files
        self.services.part_files.match_names(params, job.save_path)
        renamed = params.renamed_files
        files = [(index, path, renamed.get(index, path))
                 for index, path in torrent_files.real_files(params.ti.layout())]
        self.services.ownership.delete_written(job, files)

    def wait_for_file_list(self, info_hash, timeout):
        """Wait up to timeout seconds for the job's metadata; return whether its files are known."""
        return self.get(info_hash).run.file_list_known.wait(timeout)

    def files(self, info_hash):
        """The job's files, once its metadata is known."""
        return torrent_files.file_list(self._torrent_with_metadata(info_hash).handle)

    def set_files(self, info_hash, wanted):
        """Choose which of the job's files to download, by index."""
        torrent = self._torrent_with_metadata(info_hash)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise JobError('"wanted" must be a list of file indices.')
        count = torrent.handle.torrent_file().num_files()
        outside = sorted(i for i in set(wanted) if not 0 <= i < count)
        if outside:  # else libtorrent would take them as "no file wanted" and unselect every file
            raise JobError(f"There is no file {outside[0]}: this torrent's files are numbered 0 to {count - 1}.")
        wanted = set(wanted)
        if not wanted:
            raise JobError("Choose at least one file. To download nothing, pause or remove the job.")
        try:
            self.services.part_files.want_files(self.get(info_hash), torrent.handle, wanted)
        except UnsafePath as exc:
            raise JobError(str(exc), 409) from None
        # libtorrent applies priorities asynchronously: answer with what was asked for.
        return [{**entry, "wanted": entry["index"] in wanted}
                for entry in torrent_files.file_list(torrent.handle)]

    def details(self, info_hash):
        """The job's trackers, peers, magnet link and own rate limits (bytes/s, 0 for none), as
        libtorrent knows them now."""
        job = self.get(info_hash)
        with self.registry.lock:
            torrent = job.run.torrent
        magnet = job.magnet or (f"magnet:?xt=urn:btih:{job.v1_hash}" if job.v1_hash
                                else f"magnet:?xt=urn:btmh:1220{job.info_hash}")
        answer = {"trackers": [], "peers": [], "magnet": magnet,
                  "download_limit": job.run.rate_limits.get("download", 0),
                  "upload_limit": job.run.rate_limits.get("upload", 0)}
        if torrent is None:
            return answer
        handle = torrent.handle
        try:
            return {"trackers": torrent_files.tracker_entries(handle), "peers": torrent_files.peer_entries(handle),
                    "magnet": torrent_files.magnet_link(handle) or magnet,
                    "download_limit": max(0, handle.download_limit()), "upload_limit": max(0, handle.upload_limit())}
        except RuntimeError:  # removed from the session meanwhile
            return answer

    def set_rate_limits(self, info_hash, download=None, upload=None):
        """Cap one job's rates in bytes/s (0: none); libtorrent keeps them in its resume data. A
        job whose torrent is not in the session yet (just added) gets them as it is added."""
        job = self.get(info_hash)
        limits = {key: int(value) for key, value in (("download", download), ("upload", upload))
                  if value is not None}
        with self.registry.lock:
            torrent = job.run.torrent
            if torrent is None:
                job.run.rate_limits.update(limits)
                return
        try:
            torrent_files.set_rate_limits(torrent.handle, **limits)
            downloader.save_resume(torrent.handle)
        except RuntimeError:  # removed meanwhile
            pass

    def _torrent_with_metadata(self, info_hash):
        job = self.get(info_hash)
        with self.registry.lock:
            torrent = job.run.torrent
            if torrent is None or not job.has_metadata:
                raise JobError("The file list is known once the metadata has arrived.", 409)
        return torrent
