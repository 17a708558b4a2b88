"""The change log behind incremental polls (jobs/changes.py): versions, tokens, removals, and the
registry's touch, which stamps a job only when what it shows changed."""
import pytest

from helpers import HASH_A, HASH_B, HASH_C
from jobs.changes import BadToken, ChangeLog
from jobs.model import Job, JobState
from jobs.registry import JobRegistry


def test_a_new_key_and_a_changed_signature_take_a_new_version():
    log = ChangeLog(epoch="abc")
    assert log.token() == "abc.0"
    assert log.stamp("a", (1,)) and log.stamp("b", (1,))
    assert log.version_of("a") == 1 and log.version_of("b") == 2
    assert not log.stamp("a", (1,))  # the same as shown: no new version
    assert log.token() == "abc.2"
    assert log.stamp("a", (2,))
    assert log.version_of("a") == 3
    assert log.changed_since(0) == ["a", "b"]  # newest change first
    assert log.changed_since(2) == ["a"]
    assert log.changed_since(3) == []


def test_no_signature_always_counts_as_a_change():
    log = ChangeLog()
    log.stamp("a")
    assert log.stamp("a") and log.stamp("a", (1,))
    assert log.version == 3


def test_removals_are_listed_since_a_token_until_the_key_comes_back():
    log = ChangeLog(epoch="e")
    for key in "abc":
        log.stamp(key, (0,))
    before = log.since(log.token())
    log.remove("b")
    log.remove("never-stamped")  # nothing to say about a key never shown
    assert log.removed_since(before) == ["b"]
    assert log.changed_since(before) == []
    assert log.version_of("b") == 0
    log.stamp("b", (0,))  # added again
    assert log.removed_since(before) == []
    assert log.changed_since(before) == ["b"]


def test_tokens_from_another_run_or_the_future_are_stale_and_garbage_is_refused():
    log = ChangeLog(epoch="aaaa")
    log.stamp("a", (0,))
    assert log.since("aaaa.1") == 1
    assert log.since("aaaa.0") == 0
    assert log.since("bbbb.1") is None  # another process: its versions mean nothing here
    assert log.since("aaaa.2") is None  # never given
    assert log.since("") is None  # a first poll
    for garbage in ("1", "aaaa", "aaaa.-1", "AAAA.1", "aaaa.1.2", "aaaa." + "9" * 40, "zz.1"):
        with pytest.raises(BadToken):
            log.since(garbage)


def test_a_token_older_than_the_removals_kept_is_stale():
    log = ChangeLog(removals_kept=2, epoch="e")
    for key in "abcd":
        log.stamp(key, (0,))
    start = log.token()
    log.remove("a")
    after_first = log.token()
    log.remove("b")
    assert log.since(start) == 4  # both removals still known
    log.remove("c")  # "a" is forgotten: a client that saw it could not be told
    assert log.since(start) is None
    assert log.since(after_first) == 5
    assert log.removed_since(5) == ["c", "b"]


def test_the_registry_stamps_a_job_only_when_what_it_shows_changed():
    registry = JobRegistry()
    job = Job(info_hash=HASH_A, save_path="/srv")
    other = Job(info_hash=HASH_B, save_path="/srv")
    registry.add(job)
    registry.add(other)
    registry.touch(job)  # its first look: stamped with what it shows
    token = registry.token()
    job.live = {"peers": 0, "total_wanted": 0, "total_wanted_done": 0, "all_time_upload": 0}
    registry.touch(job)
    assert registry.changed_since(token) == ([], [], token)  # a status with the same figures
    job.live = dict(job.live, total_wanted=100, total_wanted_done=50)
    registry.touch(job)
    jobs, removed, now = registry.changed_since(token)
    assert jobs == [job] and removed == [] and now != token
    job.state = JobState.PAUSED
    registry.touch(job)
    assert registry.changed_since(now)[0] == [job]


def test_the_registry_remembers_a_removed_job_and_ignores_touches_after():
    registry = JobRegistry()
    jobs = [Job(info_hash=key, save_path="/srv") for key in (HASH_A, HASH_B, HASH_C)]
    for job in jobs:
        registry.add(job)
    token = registry.token()
    registry.discard(jobs[1])
    jobs[1].state = JobState.CANCELLED
    registry.touch(jobs[1])  # a command's answer touches it after it left: no new stamp
    changed, removed, _ = registry.changed_since(token)
    assert changed == [] and removed == [HASH_B]
    assert registry.changed_since("0abc.0")[0] is None  # a stale token: the caller lists all


def test_the_registry_lists_the_jobs_whose_last_status_had_peers_until_they_lose_them_or_go():
    registry = JobRegistry()
    jobs = [Job(info_hash=key, save_path="/srv") for key in (HASH_A, HASH_B, HASH_C)]
    for job in jobs:
        registry.add(job)
        registry.touch(job)  # no status yet
    assert registry.with_peers() == []
    jobs[0].live = {"peers": 2, "download_rate": 100, "upload_rate": 5}
    jobs[1].live = {"peers": 1, "download_rate": 7, "upload_rate": 0}
    for job in jobs:
        registry.touch(job)
    assert registry.with_peers() == jobs[:2]
    jobs[0].live = dict(jobs[0].live, peers=0)
    registry.touch(jobs[0])
    registry.discard(jobs[1])
    assert registry.with_peers() == []
    registry.touch(jobs[1])  # touched after it left: not listed again
    assert registry.with_peers() == []


def test_the_registry_keeps_a_summary_until_something_changes():
    registry = JobRegistry()
    jobs = [Job(info_hash=key, save_path="/srv") for key in (HASH_A, HASH_B)]
    registry.add(*jobs)
    passes = []

    def paused(every_job):
        passes.append(len(every_job))
        return sum(job.state == JobState.PAUSED for job in every_job)

    assert registry.summary("paused", paused) == 0
    assert registry.summary("paused", paused) == 0 and passes == [2]  # nothing changed: kept
    jobs[0].state = JobState.PAUSED
    registry.touch(jobs[0])
    assert registry.summary("paused", paused) == 1
    registry.touch(jobs[0])  # the same again: no change, still kept
    assert registry.summary("paused", paused) == 1 and passes == [2, 2]
    registry.discard(jobs[0])
    assert registry.summary("paused", paused) == 0
    registry.add(Job(info_hash=HASH_C, save_path="/srv", state=JobState.PAUSED))
    assert registry.summary("paused", paused) == 1 and passes == [2, 2, 1, 2]


def test_the_registry_pages_its_whole_list_newest_first():
    registry = JobRegistry()
    jobs = [Job(info_hash=f"{number:040x}", save_path="/srv") for number in range(1, 8)]
    registry.add(*jobs)
    assert registry.newest(0, 3) == (jobs[::-1][:3], 7)
    assert registry.newest(6, 3) == ([jobs[0]], 7)
    assert registry.newest(9, 3) == ([], 7)
