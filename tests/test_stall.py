"""Stalled jobs: the timers and reasons alone (jobs/stall.py), then on the loopback swarm a magnet
nobody seeds and a download whose seeder leaves, each stalled and back to work when a seeder comes."""
import re
from pathlib import Path

import pytest

from jobs.stall import LAST_RETRY, StallClock, StallLimits, data_reason, metadata_reason, span
from swarm import check_files, job_of, wait_for_state, wait_until

MiB = 1024 * 1024
LIMITS = StallLimits(metadata_timeout=1800, stall_timeout=7200, remove_after=0)


def status(done=0, peers=0, seeds=0, copies=0.5, checking=False):
    return {"total_wanted": 100, "total_wanted_done": done, "peers": peers, "seeds": seeds,
            "distributed_copies": copies, "checking": checking}


# The timers alone -----------------------------------------------------------------------------
def test_a_magnet_is_stalled_once_it_has_waited_the_metadata_timeout():
    clock = StallClock()
    clock.restart(0)
    assert clock.next_check(False, False, LIMITS) == 1800
    assert not clock.observe(status(peers=2, seeds=1), has_metadata=False, now=1000)  # peers, no file list
    assert not clock.stall_due(False, LIMITS, 1799)
    assert clock.stall_due(False, LIMITS, 1800)
    assert clock.peers_seen == 2


@pytest.mark.parametrize("sign", [
    status(done=10), status(peers=1, seeds=1), status(peers=2, copies=1.0),
])
def test_bytes_in_or_a_peer_with_what_it_lacks_put_the_stall_off(sign):
    clock = StallClock()
    clock.restart(0)
    assert not clock.observe(status(done=5), has_metadata=True, now=1)  # the baseline
    assert clock.observe({**sign, "total_wanted_done": max(sign["total_wanted_done"], 5)}, True, now=7000)
    assert not clock.stall_due(True, LIMITS, 7201)
    assert clock.stall_due(True, LIMITS, 7000 + 7200)


def test_peers_without_the_missing_pieces_and_no_bytes_do_not():
    clock = StallClock()
    clock.restart(0)
    for moment in range(1, 7200, 600):
        assert not clock.observe(status(done=63, peers=2, copies=0.9), True, now=moment)
    assert clock.stall_due(True, LIMITS, 7200)


def test_checking_files_is_work_and_the_pieces_found_are_no_download():
    clock = StallClock()
    clock.restart(0)
    assert not clock.observe(status(done=0, checking=True), True, now=7000)  # counts as busy...
    assert not clock.stall_due(True, LIMITS, 7200)
    assert not clock.observe(status(done=60), True, now=7001)  # ...and what it found is a baseline
    assert clock.stall_due(True, LIMITS, 7000 + 7200)


def test_a_stalled_job_asks_again_with_back_off_up_to_an_hour():
    clock = StallClock()
    clock.stall(has_metadata=True, limits=LIMITS, now=0)
    moments = []
    now = 0
    for _ in range(9):
        now = clock.next_check(True, True, LIMITS)
        assert not clock.retry_due(now - 1) and clock.retry_due(now)
        clock.retried(True, LIMITS, now)
        moments.append(now)
    gaps = [later - earlier for earlier, later in zip([0] + moments, moments)]
    assert gaps == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert max(gaps) == LAST_RETRY


def test_short_timeouts_make_short_retries_and_removal_comes_when_due():
    limits = StallLimits(metadata_timeout=3, stall_timeout=5, remove_after=10)
    clock = StallClock()
    clock.stall(has_metadata=False, limits=limits, now=100)
    assert clock.next_check(True, False, limits) == 103  # a first retry no later than the timeout
    clock.retried(False, limits, 103)
    assert clock.next_check(True, False, limits) == 109
    clock.retried(False, limits, 109)
    assert clock.next_check(True, False, limits) == 110  # the removal comes first now
    assert not clock.remove_due(limits, 109.9) and clock.remove_due(limits, 110)
    assert not clock.remove_due(LIMITS, 10 ** 9)  # 0: never


def test_the_reasons_say_what_a_person_needs_to_know():
    assert metadata_reason(1800, 0) == "no peer sent the file list in 30 min; 0 peers seen"
    assert metadata_reason(3, 1) == "no peer sent the file list in 3 s; 1 peer seen"
    assert data_reason(7200, 0.634, [0.61, 0.612]) == "no seed for 2 h; 63 % done, 2 peers with 61 %"
    assert data_reason(7200, 0.999, [0.2, 0.5, 0.61]) == "no seed for 2 h; 99 % done, 3 peers with up to 61 %"
    assert data_reason(5, 0.5, []) == "no seed for 5 s; 50 % done, no peer connected"
    assert [span(s) for s in (3, 60, 5430, 86400)] == ["3 s", "1 min", "1 h 30 min 30 s", "24 h"]


def test_the_settings_default_to_half_an_hour_two_hours_and_never(make_app):
    from config import DEFAULTS, ConfigError

    assert (DEFAULTS["METADATA_TIMEOUT"], DEFAULTS["STALL_TIMEOUT"], DEFAULTS["STALLED_REMOVE_AFTER"]) == (1800, 7200, 0)
    assert make_app(STALLED_REMOVE_AFTER="").config["STALLED_REMOVE_AFTER"] == 0
    limits = make_app(METADATA_TIMEOUT="60", STALL_TIMEOUT=90, STALLED_REMOVE_AFTER="86400").extensions[
        "hashdrop"].lifecycle.stalls.limits
    assert limits == StallLimits(60, 90, 86400)
    with pytest.raises(ConfigError, match="HASHDROP_STALL_TIMEOUT must be a whole number, not '2h'"):
        make_app(STALL_TIMEOUT="2h")
    with pytest.raises(ConfigError, match="HASHDROP_METADATA_TIMEOUT must be at least 1"):
        make_app(METADATA_TIMEOUT=0)
    with pytest.raises(ConfigError, match="HASHDROP_STALLED_REMOVE_AFTER must be at least 0"):
        make_app(STALLED_REMOVE_AFTER=-1)


# On the swarm -----------------------------------------------------------------------------------
def rpc(client, method, **arguments):
    """One Transmission RPC call through the session-id handshake; its arguments."""
    body = {"method": method, "arguments": arguments}
    session = client.post("/transmission/rpc", json=body).headers["X-Transmission-Session-Id"]
    answer = client.post("/transmission/rpc", json=body, headers={"X-Transmission-Session-Id": session}).get_json()
    assert answer["result"] == "success", answer
    return answer["arguments"]


def state_cell(client, info_hash):
    page = client.get("/?show=stalled").get_data(as_text=True)
    row = re.search(rf'<tr id="job-{info_hash}".*?</tr>', page, re.S)
    return row.group() if row else ""


@pytest.mark.swarm
def test_a_magnet_nobody_seeds_is_stalled_and_comes_back_when_a_seeder_appears(
        make_app, tracker, seeder, seed_new):
    torrent = seed_new(2 * MiB, seeded=False)  # the tracker knows it; nobody has it yet
    settings = {"TRACKERS": [tracker.announce_url], "METADATA_TIMEOUT": 3}
    app = make_app(**settings)
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    stalled = wait_for_state(app, torrent.info_hash, "stalled", timeout=20)
    # "1 peer" happens: the tracker may hand the app its own address.
    assert re.fullmatch(r"no peer sent the file list in 3 s; \d+ peers? seen", stalled["error"]), stalled
    row = state_cell(client, torrent.info_hash)
    assert '<td class="state">Stalled' in row and stalled["error"] in row and ">Pause<" in row
    assert [job["info_hash"] for job in client.get("/api/jobs?state=stalled").get_json()] == [torrent.info_hash]
    shown = rpc(client, "torrent-get", fields=["status", "error", "errorString", "isStalled"])["torrents"]
    assert shown == [{"status": 4, "error": 1, "errorString": stalled["error"], "isStalled": True}]

    # Stored as stalled, it comes back stalled, and tries on.
    app.extensions["hashdrop"].shutdown()
    again = make_app(**settings)
    assert job_of(again, torrent.info_hash)["state"] == "stalled"
    seeder.add(torrent)
    wait_for_state(again, torrent.info_hash, "completed", timeout=60)
    check_files(torrent, again.config["SAVE_PATH"])
    assert job_of(again, torrent.info_hash)["error"] is None


@pytest.mark.swarm
def test_a_download_whose_seeder_leaves_is_stalled_gives_its_slot_up_and_resumes_when_it_returns(
        make_app, tracker, seeder, seed_new):
    leaving = seed_new(4 * MiB, upload_limit=512 * 1024)
    waiting = seed_new(2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url], MAX_ACTIVE=1, STALL_TIMEOUT=3)
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [leaving.info_hash]})
    wait_until(lambda: job_of(app, leaving.info_hash)["downloaded_bytes"] >= MiB, 30, "too few bytes arrived")
    client.post("/api/jobs", json={"hashes": [waiting.info_hash]})
    wait_for_state(app, waiting.info_hash, "queued")
    assert job_of(app, leaving.info_hash)["state"] == "downloading"  # 512 KiB/s: never 3 s without bytes

    seeder.remove(leaving)
    stalled = wait_for_state(app, leaving.info_hash, "stalled", timeout=20)
    assert re.fullmatch(r"no seed for 3 s; \d+ % done, no peer connected", stalled["error"]), stalled
    assert 0.2 < stalled["progress"] < 1
    # Its slot went to the queued job, which completes meanwhile.
    wait_for_state(app, waiting.info_hash, "completed", timeout=30)
    check_files(waiting, app.config["SAVE_PATH"])
    assert job_of(app, leaving.info_hash)["state"] == "stalled"

    seeder.add(leaving)
    wait_for_state(app, leaving.info_hash, "completed", timeout=60)
    check_files(leaving, app.config["SAVE_PATH"])


@pytest.mark.swarm
def test_jobs_stalled_longer_than_the_limit_are_removed_with_their_files_kept(make_app, tracker, seeder, seed_new):
    torrent = seed_new(4 * MiB, upload_limit=512 * 1024)
    app = make_app(TRACKERS=[tracker.announce_url], STALL_TIMEOUT=2, STALLED_REMOVE_AFTER=2)
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_until(lambda: job_of(app, torrent.info_hash)["downloaded_bytes"] >= MiB, 30, "too few bytes arrived")
    seeder.remove(torrent)
    wait_for_state(app, torrent.info_hash, "stalled", timeout=20)
    wait_until(lambda: client.get(f"/api/jobs/{torrent.info_hash}").status_code == 404, 20,
               "the stalled job was not removed")
    assert (Path(app.config["SAVE_PATH"]) / f"{torrent.name}.part").stat().st_size > 0
    wait_until(lambda: app.extensions["hashdrop"].session.handles() == [], 10, "its torrent stayed")
