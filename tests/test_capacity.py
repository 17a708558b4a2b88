"""Where threads or the job cap run out: a submit starts every job it keeps or keeps none, and
hashdrop always starts, failing the jobs it has no thread for, with the system's reason."""
import json
import resource
import secrets
import signal
import urllib.error

import pytest

from swarm import Server, wait_until

MiB = 1024 * 1024
THREAD_ROOM = 200 * MiB  # address space past the started server's: some 16 threads' stacks


def address_space(pid):
    """The process's virtual memory size in bytes (VmSize)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def submit(server, count):
    """POST count new hashes; (status, answer)."""
    hashes = [secrets.token_hex(20) for _ in range(count)]
    try:
        return 201, server.request("POST", "/api/jobs", {"hashes": hashes})
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def server(tmp_path, tracker):
    started = Server(tmp_path, tracker)
    yield started
    started.stop(signal.SIGKILL)
    started.log.close()


def test_a_submit_the_system_has_no_threads_for_keeps_nothing(server):
    server.start()
    limit = address_space(server.process.pid) + THREAD_ROOM
    resource.prlimit(server.process.pid, resource.RLIMIT_AS, (limit, limit))
    status, answer = submit(server, 100)
    assert status == 503
    assert "could not start a download thread (can't start new thread); nothing was started" in answer["error"]
    assert server.get("/api/jobs") == []  # none half made: stored without a thread
    # The server goes on, for what it has threads for, once the taken-back jobs' threads end.
    wait_until(lambda: submit(server, 3)[0] == 201, 10, "no submit went through again")
    assert server.stop() == 0


def test_a_restart_with_too_few_threads_starts_and_fails_only_the_jobs_it_cannot_run(server):
    server.start()
    limit = address_space(server.process.pid) + THREAD_ROOM
    assert submit(server, 60)[0] == 201
    assert server.stop() == 0

    def few_threads():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    server.start(preexec_fn=few_threads)
    # The page answers at once; the jobs' threads start in the background, and "restoring" says so.
    wait_until(lambda: server.request("GET", "/api/status")["restoring"] is None, 20, "the jobs did not come back")
    jobs = server.get("/api/jobs")
    failed = [job for job in jobs if job["state"] == "failed"]
    assert len(jobs) == 60 and 0 < len(failed) < 60
    assert all(job["error"].startswith("Could not start a download thread: can't start new thread") for job in failed)
    status = server.request("GET", "/api/status")
    assert status["jobs"]["failed"] == len(failed)
    assert server.stop() == 0  # shutdown with jobs that never had a thread

    server.start()  # no limit: retried, they run
    for job in failed:
        assert server.request("POST", f"/api/jobs/{job['info_hash']}/resume")["state"] != "failed"
    wait_until(lambda: all(job["state"] == "fetching_metadata" for job in server.get("/api/jobs")), 10,
               "the retried jobs did not run")


def test_the_job_cap_refuses_more_and_says_so(make_app):
    client = make_app(MAX_JOBS=3).test_client()
    assert client.post("/api/jobs", json={"hashes": ["a" * 40, "b" * 40]}).status_code == 201
    response = client.post("/api/jobs", json={"hashes": ["c" * 40, "d" * 40]})
    assert response.status_code == 409
    assert "keeps at most 3 jobs (HASHDROP_MAX_JOBS) and holds 2" in response.get_json()["error"]
    assert len(client.get("/api/jobs").get_json()) == 2
    assert client.post("/api/jobs", json={"hashes": ["c" * 40]}).status_code == 201


def test_a_restart_with_thousands_of_jobs_lists_them_at_once_and_says_how_far_along_it_is(server):
    """3,000 jobs: the server answers with every job listed while their threads are still being
    started, the page says how many have, and then each is back as it was."""
    import re
    import urllib.request

    server.start()
    for _ in range(3):
        hashes = [secrets.token_hex(20) for _ in range(1000)]
        assert len(server.request("POST", "/api/jobs", {"hashes": hashes, "paused": True})["started"]) == 1000
    assert server.stop() == 0

    server.start()  # back once it answers
    assert len(server.get("/api/jobs")) == 3000
    sightings = []

    def restored():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as response:
            page = response.read().decode()
        found = re.search(r"Bringing back the jobs: ([\d,]+) of ([\d,]+) started\.", page)
        if found:
            sightings.append([int(number.replace(",", "")) for number in found.groups()])
        return not found and server.get("/api/status")["restoring"] is None

    wait_until(restored, 60, "the jobs did not all come back")
    assert sightings, "the page never said how far along the restart was"
    assert all(total == 3000 and 0 <= started <= total for started, total in sightings)
    assert [started for started, _ in sightings] == sorted(started for started, _ in sightings)
    jobs = server.get("/api/jobs")
    assert len(jobs) == 3000 and {job["state"] for job in jobs} == {"paused"}
