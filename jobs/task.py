"""What a job's worker is handed: downloader(task) adds the job's torrent, attaches it, and
passes its events on. The task binds one job to the lifecycle that reacts to them."""
import os
import queue
import time
from contextlib import contextmanager
from dataclasses import dataclass

import cpus
import torrent_files
from downloader import DataMissing, SessionClosed
from jobs.model import JobState
from jobs.ownership import moment_of_add


@dataclass
class JobServices:
    """What a job's task uses of the jobs package, built once by the JobManager."""

    session: object  # downloader.TorrentSession
    registry: object  # jobs.registry.JobRegistry
    slots: object  # jobs.slots.SlotQueue
    lifecycle: object  # jobs.lifecycle.Lifecycle
    part_files: object  # jobs.part_files.PartFiles
    ownership: object  # jobs.ownership.Ownership
    resume_files: object  # jobs.durability.ResumeFiles
    crash_marker: object  # jobs.durability.CrashMarker
    library_move: object  # jobs.library_move.LibraryMove
    folder_names: object  # jobs.folder_names.FolderNames
    add_turns: object  # jobs.turns.AddTurns


class JobTask:
    """One job's download, as downloader.downloader() drives it (see its docstring)."""

    def __init__(self, job, services):
        self.job = job
        self.info_hash = job.info_hash
        self.inbox = job.run.inbox
        self.session = services.session
        self._jobs = services
        self._sort_at_attach = False  # see add_params

    def keys(self):
        return self.job.keys()

    @contextmanager
    def turn_to_add(self):
        """Held while the worker adds its torrent (jobs.turns), then takes back every CPU.

        A new job's thread waits here first: were it to go on and add its torrent, it would
        take the GIL from the request that is still starting the other threads (a 100-hash
        submit took up to 70 ms instead of 25). It widens its CPUs only after the wait: until
        a new thread blocks, the request that started it waits on the CPU they share.
        """
        with self._jobs.add_turns:
            if self._jobs.registry.closed:  # shutting down: the next start adds it
                raise SessionClosed()
            cpus.all_cpus()
            yield

    def next_message(self):
        """The next (event, value) from the inbox, or ("tick", None) once the job's stall timer
        is due with nothing come in (jobs.stall_watch)."""
        timeout = self._jobs.lifecycle.stalls.seconds_to_check(self.job)
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return "tick", None

    def handle(self, event, value):
        self._jobs.registry.wait_for_submit()  # see JobRegistry.submitting
        self._jobs.lifecycle.handle(self.job, event, value)

    def fail(self, error):
        self._jobs.lifecycle.set_state(self.job, JobState.FAILED, error=error)

    # Adding ----------------------------------------------------------------------------
    def add_params(self):
        """libtorrent's add parameters: resume data if kept, else the .torrent or the magnet."""
        job, jobs = self.job, self._jobs
        params, vouched = jobs.resume_files.read(job)
        resumed = params is not None
        if job.moving_to:  # its move into the library was cut short: files back in order first
            known = params if resumed or not job.metainfo else torrent_files.params_from_torrent(job.metainfo)
            jobs.library_move.recover(job, known)
        if resumed:
            self._check_kept_files(params, vouched)
            jobs.ownership.claim_resumed(job, params)
        os.makedirs(job.save_path, exist_ok=True)
        if params is None and job.metainfo:
            params = torrent_files.params_from_torrent(job.metainfo)
            jobs.part_files.match_names(params, job.save_path)
        if params is None:
            params = torrent_files.params_from_magnet(job.magnet)
        jobs.ownership.check_inside(job, params)
        params.save_path = job.save_path
        torrent_files.set_flag(params, "sequential_download", job.sequential)
        # A new torrent whose files are known (an uploaded one) is sorted as it is attached.
        self._sort_at_attach = not resumed and torrent_files.has_metadata(params)
        if torrent_files.has_metadata(params):
            job.run.added_at = time.time()  # its files are held before libtorrent may write them
        else:  # where it downloads, and where its files will move
            job.run.names_before = jobs.folder_names.names_in_all(jobs.library_move.folders(job))
            job.run.added_at = moment_of_add()  # see jobs.ownership.made_since
        hold = self._sort_at_attach and self._hold_or_claim(params.ti.name(), params.ti.layout())
        self._set_start_flags(params, hold)
        # After a crash the store's total is newer than the resume data's (see save_upload_totals).
        params.total_uploaded = max(params.total_uploaded, job.durability.uploaded_saved)
        return params

    def _check_kept_files(self, params, vouched):
        """Point resume data at the files on disk, and decide how far it is believed."""
        job, unclean_start = self.job, self._jobs.crash_marker.unclean_start
        if params.renamed_files or not vouched:
            self._jobs.part_files.match_names(params, job.save_path)
        if job.durability.restored and job.state != JobState.PAUSED \
                and torrent_files.data_missing(params, job.save_path):
            # A library on a disk that is not mounted (yet): downloading on would fill the
            # empty mount point, and seeding would fail on every read. Transmission says "No
            # data found!" here too.
            raise DataMissing(f"No data found in {job.save_path}: is its disk connected? "
                              "Retry once it is (or to download it again).")
        # After a crash, only resume data saved once the files were fsynced is believed: other
        # resume data can claim pieces that were still in libtorrent's buffers or in the page
        # cache. A clean shutdown syncs everything (see JobManager.shutdown).
        job.durability.synced = vouched or (not unclean_start and job.state == JobState.COMPLETED)
        if unclean_start and not vouched:
            torrent_files.drop_piece_claims(params)

    def _set_start_flags(self, params, hold):
        """Whether the torrent starts paused, downloading, or only uploading: it has no slot
        yet, or its files are held until they are sorted (hold)."""
        job = self.job
        with self._jobs.registry.lock:
            job.has_metadata = torrent_files.has_metadata(params)
            if job.state == JobState.COMPLETED:
                paused, slot = job.seeding_stopped, True
            elif job.state == JobState.PAUSED:
                # Paused before its metadata came: it fetches the metadata all the same, so that
                # its files can be chosen before any byte of them moves; libtorrent downloads no
                # file whose priority was not set (default_dont_download).
                job.fetching_file_list = not job.has_metadata
                paused, slot = not job.fetching_file_list, False
            elif job.state == JobState.STALLED:
                paused, slot = False, True  # holds no slot, but downloads what a peer may bring
            else:
                paused, slot = False, not job.has_metadata or self._jobs.slots.take(job.info_hash)
        # A torrent with metadata but no slot runs in upload mode: it requests no piece and
        # starts at once when a slot frees. One without metadata must not: a seed drops a peer
        # that says it is upload-only before sending it the metadata.
        torrent_files.set_flag(params, "paused", paused)
        torrent_files.set_flag(params, "upload_mode", hold or (not slot and job.has_metadata))
        torrent_files.set_flag(params, "default_dont_download", job.fetching_file_list)

    def _hold_or_claim(self, name, layout):
        """As a new torrent's files become known, before libtorrent may write one: True if
        something is on disk under the torrent's name (its files must be sorted first, see
        jobs.part_files.want_files); else record every file as the job's, and False."""
        if self._taken(name):
            return True
        self._jobs.ownership.claim_every_file(self.job, layout)
        return False

    def _taken(self, name, names=None):
        """Whether anything is on disk under the torrent's name (or that name marked); with
        names, whether it was among them."""
        suffix = self._jobs.part_files.suffix
        candidates = [name, name + suffix] if suffix else [name]
        if names is not None:
            return any(candidate in names for candidate in candidates)
        return any(os.path.lexists(os.path.join(folder, candidate)) for candidate in candidates
                   for folder in self._jobs.library_move.folders(self.job))

    def before_metadata(self, handle, name):
        """In the alert thread, as a magnet's metadata arrives and libtorrent is about to write:
        if the save path held anything under the torrent's name when the torrent was added,
        hold the download (upload mode) until the job's thread has sorted its files. Else none
        of its files can be someone else's, and the job's thread records them as its own.
        (What is on disk now may be libtorrent's own first writes: this thread can lag.)"""
        if self.job.fetching_file_list or not self._taken(name, self.job.run.names_before):
            return  # held for a person's choice already (default_dont_download), or nothing to fear
        try:
            torrent_files.set_flag(handle, "upload_mode", True)
        except RuntimeError:  # removed meanwhile
            return
        self.job.run.held_for_sort = True
        self.job.run.redial_due = True  # seeds may drop it while it only uploads

    # In the session, and out of it -------------------------------------------------------
    def attach(self, torrent):
        """The torrent is in the session: listen to it, and match it to the job's state,
        which may have changed while it was being added."""
        job, lifecycle = self.job, self._jobs.lifecycle
        self._jobs.registry.wait_for_submit()  # see JobRegistry.submitting
        keys = torrent_files.info_hash_keys(torrent.handle.info_hashes())
        with self._jobs.registry.lock:
            job.run.torrent = torrent
            if job.run.rate_limits:  # asked for while it was being added
                torrent_files.set_rate_limits(torrent.handle, **job.run.rate_limits)
                job.run.rate_limits.clear()
            if self._sort_at_attach and not lifecycle.sort_files(job):
                pass  # it cannot go on: it failed, saying why
            elif job.state == JobState.PAUSED:
                if not job.fetching_file_list:
                    torrent.pause()
            elif job.state == JobState.COMPLETED:
                pass
            elif job.state == JobState.STALLED:  # stored as stalled: it tries on
                lifecycle.stalls.resumed_stalled(job)
                torrent.resume()
            elif not job.has_metadata:
                lifecycle.set_state(job, JobState.FETCHING_METADATA)
                torrent.resume()
            else:
                lifecycle.want_download(job)
            self._jobs.registry.touch(job)  # added: it may know its files now (resume data, a .torrent)
        if job.has_metadata:  # its files can be listed and chosen from now on
            job.run.file_list_known.set()
        self.session.listen(keys, self.inbox.put)
        # The first status arrives with the next batch; ask now so metadata-less jobs show
        # their peers at once.
        torrent.handle.post_status()

    def detach(self, torrent):
        """The worker is ending: its torrent leaves the session, unless the app stops."""
        job, registry = self.job, self._jobs.registry
        with registry.lock:
            job.run.torrent = None
            job.run.detached = True
            self._jobs.lifecycle.release_slot(job)
            closing = registry.closed
            delete_files = job.removal is not None and job.removal.delete_files
        self.session.forget(job.keys(), self.inbox.put)
        if torrent is None or torrent.handle is None:
            return
        self.session.forget(torrent_files.info_hash_keys(torrent.handle.info_hashes()), self.inbox.put)
        if closing or not self.session.is_open():
            return
        if not delete_files:
            torrent.stop()
            return
        files = torrent_files.named_files(torrent.handle)[1] if torrent.handle.torrent_file() else []
        self.session.remove_and_wait(torrent.handle)
        self._jobs.ownership.delete_written(job, files)
