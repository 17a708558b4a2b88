"""The job state machine alone: jobs with no torrent, a store in memory, no libtorrent session."""
import threading

import pytest

from jobs.durability import ResumeFiles
from jobs.lifecycle import Lifecycle
from jobs.model import Job, JobState, Removal
from jobs.ownership import FileLedger, Ownership
from jobs.part_files import PartFiles
from jobs.registry import JobRegistry
from jobs.seeding import SessionSeedLimits
from jobs.slots import SlotQueue
from jobs.stall import StallLimits
from doubles import MemoryJobStore

STATUS = {"total_wanted": 8, "total_size": 8, "total_wanted_done": 8, "download_rate": 0, "upload_rate": 0,
          "all_time_upload": 0, "all_time_download": 8, "peers": 0, "seeds": 0, "finished": True,
          "checking": False}


class QuietSession:
    """What the lifecycle asks of the session for jobs with no torrent: whom to tell of new hashes."""

    def __init__(self):
        self.listening = {}

    def listen(self, keys, listener):
        self.listening.update(dict.fromkeys(keys, listener))

    def redial(self, handle):
        raise AssertionError("a job with no torrent has nothing to redial")


@pytest.fixture
def machine(tmp_path):
    """A lifecycle with one download slot, and a helper that adds a stored job to it."""
    registry, store = JobRegistry(), MemoryJobStore()
    ownership = Ownership(FileLedger(str(tmp_path / "written")), str(tmp_path), ".part")
    lifecycle = Lifecycle(registry, SlotQueue(1), QuietSession(), store, PartFiles(".part", registry.lock, ownership),
                          ResumeFiles(str(tmp_path / "resume")), seed_session=SessionSeedLimits())

    def add(letter, state=JobState.FETCHING_METADATA):
        job = Job(info_hash=letter * 40, save_path=str(tmp_path), state=state)
        registry.add(job)
        store.save_many([job.record()])
        return job

    lifecycle.add = add
    return lifecycle


def stored_state(machine, job):
    return machine.store.records[job.info_hash]["state"]


def test_metadata_starts_the_download_while_a_slot_is_free_and_queues_after(machine):
    first, second = machine.add("a"), machine.add("b")
    machine.handle(first, "metadata", ("First", ["1" * 40]))
    machine.handle(second, "metadata", ("Second", ["2" * 40]))
    assert (first.state, second.state) == (JobState.DOWNLOADING, JobState.QUEUED)
    assert first.name == "First" and first.has_metadata
    assert machine.store.records[first.info_hash]["name"] == "First"
    assert stored_state(machine, second) == "queued"
    assert machine.registry.by_key("1" * 40) is first  # the v2 hash of its metadata finds it too
    assert machine.session.listening["2" * 40] == second.run.inbox.put


def test_a_finished_job_with_nothing_buffered_completes_and_frees_its_slot(machine):
    job = machine.add("a")
    machine.handle(job, "metadata", ("Film", []))
    assert job.info_hash in machine.slots
    machine.handle(job, "status", STATUS)
    assert job.state == JobState.COMPLETED and job.completed_at is not None and not job.finishing
    assert stored_state(machine, job) == "completed"
    assert job.info_hash not in machine.slots and len(machine.slots) == 0
    assert job.live["total_wanted_done"] == 8


def test_a_finishing_job_completes_at_the_flush_not_before(machine):
    job = machine.add("a")
    machine.handle(job, "finished", STATUS)  # translate() asked for the flush already
    assert job.state == JobState.FETCHING_METADATA and job.finishing
    machine.handle(job, "flushed", None)
    assert job.state == JobState.COMPLETED and not job.finishing


def test_a_finishing_job_waits_for_its_renames(machine):
    job = machine.add("a")
    job.marks.renaming.update({0, 1})
    machine.handle(job, "finished", STATUS)
    machine.handle(job, "flushed", None)
    assert job.state == JobState.FETCHING_METADATA  # its files do not have their names yet
    machine.handle(job, "renamed", (0, True))
    assert job.state == JobState.FETCHING_METADATA
    machine.handle(job, "renamed", (1, False))
    assert job.state == JobState.COMPLETED and job.marks.unrenamable == {1}


def test_an_error_fails_the_job_with_its_reason_and_frees_its_slot(machine):
    job, waiting = machine.add("a"), machine.add("b")
    machine.handle(job, "metadata", ("Film", []))
    machine.handle(job, "error", "No space left on device: /srv/Film.mkv")
    assert job.state == JobState.FAILED and job.error == "No space left on device: /srv/Film.mkv"
    assert machine.store.records[job.info_hash]["error"] == job.error
    assert len(machine.slots) == 0
    machine.handle(waiting, "metadata", ("Next", []))
    assert waiting.state == JobState.DOWNLOADING


def test_a_removed_job_changes_state_no_more(machine):
    job = machine.add("a")
    job.removal = Removal(delete_files=True)
    machine.set_state(job, JobState.COMPLETED)
    assert job.state == JobState.FETCHING_METADATA and stored_state(machine, job) == "fetching_metadata"


def test_a_tracker_answer_is_kept_for_the_page(machine):
    job = machine.add("a")
    machine.handle(job, "tracker", "2 peers from http://127.0.0.1:6969/announce")
    assert job.tracker == "2 peers from http://127.0.0.1:6969/announce"


def test_a_check_too_short_for_any_status_to_show_still_ends_the_pending_mark(machine):
    job = machine.add("v", JobState.COMPLETED)
    job.run.verify = "asked"
    machine.handle(job, "status", STATUS)  # the check began and ended between two batches
    assert job.run.verify == "asked"
    machine.handle(job, "checked", None)
    assert job.run.verify is None


def test_the_same_state_again_writes_nothing(machine):
    job = machine.add("a")
    machine.set_state(job, JobState.PAUSED)
    machine.store.records[job.info_hash]["state"] = "untouched"
    machine.set_state(job, JobState.PAUSED)
    assert stored_state(machine, job) == "untouched"


def test_state_moves_from_many_threads_keep_one_slot(machine):
    """Metadata for many jobs at once, as their threads deliver it: one downloads, the rest queue."""
    jobs = [machine.add(letter) for letter in "abcdef"]
    threads = [threading.Thread(target=machine.handle, args=(job, "metadata", (job.info_hash, [])))
               for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    states = [job.state for job in jobs]
    assert states.count(JobState.DOWNLOADING) == 1 and states.count(JobState.QUEUED) == 5


MOVING = {**STATUS, "total_wanted_done": 2, "all_time_download": 2, "finished": False, "distributed_copies": 0.25}


def test_a_stalled_job_gives_its_slot_up_and_queues_when_a_peer_brings_what_it_lacks(machine):
    stuck, waiting = machine.add("a"), machine.add("b")
    machine.handle(stuck, "metadata", ("Stuck", []))
    machine.handle(stuck, "status", MOVING)
    machine.handle(stuck, "tick", None)  # woken before its time: nothing happens
    assert stuck.state == JobState.DOWNLOADING
    stuck.stall.since -= machine.stalls.limits.stall_timeout  # two hours with nothing, without waiting them
    assert machine.stalls.seconds_to_check(stuck) == 0
    machine.handle(stuck, "tick", None)
    assert stuck.state == JobState.STALLED and stored_state(machine, stuck) == "stalled"
    assert stuck.error == "no seed for 2 h; 25 % done, no peer connected" == machine.store.records[stuck.info_hash]["error"]
    assert len(machine.slots) == 0
    machine.handle(waiting, "metadata", ("Waiting", []))
    assert waiting.state == JobState.DOWNLOADING
    assert 0 < machine.stalls.seconds_to_check(stuck) <= 60  # its first re-announce
    machine.handle(stuck, "status", MOVING)  # still nothing new
    assert stuck.state == JobState.STALLED
    machine.handle(stuck, "status", {**MOVING, "peers": 1, "seeds": 1})  # a seed: back to work, queued
    assert stuck.state == JobState.QUEUED and stuck.error is None


def test_a_magnet_stalled_for_its_metadata_starts_when_the_metadata_comes(machine):
    job = machine.add("a")
    assert machine.stalls.seconds_to_check(job) == pytest.approx(1800, abs=1)
    job.stall.since -= 1800
    machine.handle(job, "tick", None)
    assert job.state == JobState.STALLED and job.error == "no peer sent the file list in 30 min; 0 peers seen"
    machine.handle(job, "metadata", ("Film", []))
    assert job.state == JobState.DOWNLOADING and job.error is None


def test_a_job_stalled_too_long_is_removed_when_set(machine):
    removed = []
    machine.stalls.remove = removed.append
    job = machine.add("a")
    machine.stalls.seconds_to_check(job)
    job.stall.since -= 1800
    machine.handle(job, "tick", None)
    job.stall.stalled_at -= 10 ** 6
    machine.handle(job, "tick", None)
    assert removed == []  # HASHDROP_STALLED_REMOVE_AFTER unset: kept
    machine.stalls.limits = StallLimits(remove_after=3600)
    machine.handle(job, "tick", None)
    assert removed == [job.info_hash]
