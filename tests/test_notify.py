"""Notices (jobs/notify.py, notifiers.py): the webhook, Apprise, Jellyfin and Plex are told what
became of a job, a server that is down never touches the job and is tried again, and the
secrets in their settings appear nowhere."""
import base64
import json
import logging
import threading
import urllib.parse

import pytest

from config import ConfigError
from jobs.model import Job, JobState
from jobs.notify import Notifier, describe
from notifiers import DeliveryFailed, Jellyfin, Plex, Secrets, shown_url, targets_from_config
from receiver import Receiver
from swarm import check_files, free_port, job_of, wait_for_state, wait_until

MiB = 1024 * 1024
WEBHOOK_SECRET = "hook-key-8c1f"
WEBHOOK_PASSWORD = "pw-hook-77e2"
JELLYFIN_TOKEN = "jf-token-0d5b9a"
PLEX_TOKEN = "plex-token-4e2c"
APPRISE_PASSWORD = "ap-pass-19f3"
SECRETS = (WEBHOOK_SECRET, WEBHOOK_PASSWORD, JELLYFIN_TOKEN, PLEX_TOKEN, APPRISE_PASSWORD)


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def notice_settings(url, **more):
    """Every kind of notice, to one receiver, each with a secret in it."""
    host = url.partition("://")[2]
    return {
        "WEBHOOK_URL": f"http://hashdrop:{WEBHOOK_PASSWORD}@{host}/hook?key={WEBHOOK_SECRET}",
        "APPRISE_URLS": f"json://apprise:{APPRISE_PASSWORD}@{host}/apprise",
        "JELLYFIN_URL": url, "JELLYFIN_TOKEN": JELLYFIN_TOKEN,
        "PLEX_URL": url, "PLEX_TOKEN": PLEX_TOKEN,
        **more,
    }


# The notifier alone: targets that fail as told, a lock of its own --------------------------------
class FlakyTarget:
    """Fails the first `failures` sends with `reason` (or raises `crash`), then records events."""

    where = "nowhere"

    def __init__(self, name="Flaky", failures=0, reason="connection refused", crash=None, events=None):
        self.name, self.failures, self.reason, self.crash, self.events = name, failures, reason, crash, events
        self.tries, self.received = 0, []

    def send(self, event):
        self.tries += 1
        if self.crash:
            raise self.crash
        if self.tries <= self.failures:
            raise DeliveryFailed(self.reason)
        self.received.append(event)


@pytest.fixture
def notifier():
    made = []

    def make(*targets, delays=(0.05, 0.05, 0.05), secrets=None):
        made.append(Notifier(targets, threading.RLock(), secrets, retry_delays=delays))
        made[-1].start()
        return made[-1]

    yield make
    for notifier in made:
        notifier.stop()
        assert not notifier._thread.is_alive()


def a_job(**fields):
    return Job(**{"info_hash": "ab" * 20, "save_path": "/srv/media/tv", "name": "Show", "category": "tv", **fields})


def test_an_event_is_retried_until_it_arrives_and_the_notice_clears(notifier):
    target = FlakyTarget(failures=2)
    job = a_job()
    notifier(target, delays=(0.3, 0.3)).emit(job, "added")
    first = wait_until(lambda: job.notice, 5, "no notice while it failed")
    assert first == "Flaky: connection refused, retrying in 0.3 s"
    wait_until(lambda: target.received, 5, "the event never arrived")
    wait_until(lambda: job.notice is None, 5, "the notice stayed after the event arrived")
    assert target.tries == 3 and target.received[0]["event"] == "added"


def test_the_notifier_gives_up_after_every_delay_and_says_so(notifier):
    target = FlakyTarget(failures=99, reason="HTTP 500 Internal Server Error")
    job = a_job()
    notifier(target, delays=(0.01, 0.01, 0.01)).emit(job, "completed")
    wait_until(lambda: job.notice and "gave up" in job.notice, 5, "it never gave up")
    assert job.notice == "Flaky: HTTP 500 Internal Server Error; gave up after 4 tries"
    assert target.tries == 4


def test_a_target_that_crashes_leaves_the_others_told(notifier, caplog):
    broken = FlakyTarget("Broken", crash=ValueError(f"bad token {JELLYFIN_TOKEN}"))
    good = FlakyTarget("Good")
    job = a_job()
    notifier(broken, good, delays=(), secrets=Secrets([JELLYFIN_TOKEN])).emit(job, "added")
    wait_until(lambda: good.received and broken.tries, 5, "the good target was not told after the crash")
    wait_until(lambda: job.notice, 5, "no notice for the broken target")
    assert job.notice == "Broken: unexpected error (see the log); gave up after 1 tries"
    assert JELLYFIN_TOKEN not in caplog.text and "***" in caplog.text


def test_targets_get_only_the_events_they_take(notifier):
    media, everything = FlakyTarget("Media", events={"completed"}), FlakyTarget("All")
    job = a_job()
    ours = notifier(media, everything)
    for event in ("added", "completed"):
        ours.emit(job, event)
    wait_until(lambda: len(everything.received) == 2 and media.received, 5, "events missing")
    assert [e["event"] for e in media.received] == ["completed"]
    assert [e["event"] for e in everything.received] == ["added", "completed"]


def test_stop_ends_the_thread_and_drops_what_is_due(notifier):
    target = FlakyTarget(failures=99)
    ours = notifier(target, delays=(60,))
    ours.emit(a_job(), "added")
    wait_until(lambda: target.tries == 1, 5, "the first try did not happen")
    ours.stop(timeout=5)
    assert not ours._thread.is_alive() and target.tries == 1
    ours.emit(a_job(), "completed")  # after stop: dropped, nothing raised
    assert ours._due == []


def test_events_are_data_driven_and_failed_carries_the_error():
    from jobs.lifecycle import Lifecycle  # noqa: F401  (the hook: Lifecycle.set_state calls entered)

    target = FlakyTarget()
    ours = Notifier([target], threading.RLock())
    job = a_job(error="No space left on device")
    for state in JobState:
        ours.entered(job, state)
    events = sorted(d.event["event"] for d in ours._due)
    # Entering completed or failed is an event; a "stalled" state, once it exists, is one more.
    assert events == sorted(s.value for s in JobState if s.value in ("completed", "failed", "stalled"))
    assert "completed" in events and "failed" in events
    failed = next(d.event for d in ours._due if d.event["event"] == "failed")
    assert failed["error"] == "No space left on device"
    assert set(failed) == {"event", "hash", "name", "category", "files", "size", "save_path", "time", "error"}


def test_a_state_change_through_the_lifecycle_queues_the_event(tmp_path):
    from doubles import MemoryJobStore
    from jobs.durability import ResumeFiles
    from jobs.lifecycle import Lifecycle
    from jobs.ownership import FileLedger, Ownership
    from jobs.part_files import PartFiles
    from jobs.registry import JobRegistry
    from jobs.seeding import SessionSeedLimits
    from jobs.slots import SlotQueue

    registry, store = JobRegistry(), MemoryJobStore()
    ours = Notifier([FlakyTarget()], registry.lock)
    ownership = Ownership(FileLedger(str(tmp_path / "written")), str(tmp_path), ".part")
    lifecycle = Lifecycle(registry, SlotQueue(1), None, store, PartFiles(".part", registry.lock, ownership),
                          ResumeFiles(str(tmp_path / "resume")), SessionSeedLimits(), notifier=ours)
    job = a_job(save_path=str(tmp_path))
    registry.add(job)
    store.save_many([job.record()])
    lifecycle.set_state(job, JobState.FAILED, error="gone")
    lifecycle.set_state(job, JobState.FAILED, error="gone again")  # not a new state: no new event
    assert [d.event["event"] for d in ours._due] == ["failed"]


# Secrets and settings -------------------------------------------------------------------------
def test_redact_blanks_every_secret_of_the_settings(make_app):
    config = make_app(**notice_settings("http://127.0.0.1:9")).config
    targets, secrets = targets_from_config(config)
    assert [t.name for t in targets] == ["Webhook", "Apprise (json)", "Jellyfin", "Plex"]
    text = " ".join([*SECRETS, config["WEBHOOK_URL"], *config["APPRISE_URLS"]])
    assert not any(secret in secrets.redact(text) for secret in SECRETS)
    assert shown_url(config["WEBHOOK_URL"]) == "http://***@127.0.0.1:9/hook?***"


@pytest.mark.parametrize("settings, message", [
    ({"WEBHOOK_URL": f"ftp://u:{WEBHOOK_PASSWORD}@host/"}, "HASHDROP_WEBHOOK_URL must be an http"),
    ({"JELLYFIN_URL": "http://127.0.0.1:8096"}, "HASHDROP_JELLYFIN_URL needs HASHDROP_JELLYFIN_TOKEN"),
    ({"PLEX_URL": "http://127.0.0.1:32400", "PLEX_SECTION": "films"}, "HASHDROP_PLEX_SECTION must be"),
    ({"APPRISE_URLS": f"nosuchservice://{APPRISE_PASSWORD}@x"}, "HASHDROP_APPRISE_URLS: URL 1 \\(nosuchservice"),
])
def test_bad_notice_settings_are_refused_without_showing_a_secret(make_app, caplog, settings, message):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError, match=message) as refusal:
        make_app(**settings)
    shown = str(refusal.value) + caplog.text
    assert WEBHOOK_PASSWORD not in shown and APPRISE_PASSWORD not in shown


def test_no_notice_settings_no_notifier_thread(make_app):
    manager = make_app().extensions["hashdrop"]
    assert manager.notifier.targets == [] and manager.notifier._thread is None
    assert "notifier" not in [t.name for t in threading.enumerate()]


# The targets against a real HTTP server ---------------------------------------------------------
EVENT = {"event": "completed", "hash": "ab" * 20, "name": "Film (2024)", "category": "films",
         "files": ["Film (2024)/film.mkv", "Film (2024)/film.srt"], "size": 10,
         "save_path": "/srv/media/films", "time": "2025-01-01T00:00:00+00:00"}


def test_jellyfin_falls_back_to_a_full_refresh_where_media_updated_is_unknown(receiver):
    receiver.answers["/Library/Media/Updated"] = (404, b"")
    Jellyfin(receiver.url + "/", "tok-1234").send(EVENT)
    refresh = receiver.wait_for("/Library/Refresh")[0]
    assert refresh.method == "POST" and refresh.headers["X-Emby-Token"] == "tok-1234"
    assert refresh.headers["Authorization"] == 'MediaBrowser Token="tok-1234"'


def test_plex_refreshes_all_when_no_section_holds_the_folder(receiver):
    receiver.answers["/library/sections"] = (200, b'<MediaContainer><Directory key="1">'
                                                    b'<Location path="/elsewhere"/></Directory></MediaContainer>')
    Plex(receiver.url, None).send(EVENT)
    assert receiver.wait_for("/library/sections/all/refresh")[0].path == "/library/sections/all/refresh"


def test_plex_with_a_section_scans_only_the_folder(receiver):
    Plex(receiver.url, "tok-5678", section="7").send(EVENT)
    request = receiver.wait_for("/library/sections/7/refresh")[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
    assert query == {"path": ["/srv/media/films/Film (2024)"], "X-Plex-Token": ["tok-5678"]}
    assert not receiver.to("/library/sections")  # the section was given: no need to look


def test_an_error_answer_is_a_reason(receiver):
    receiver.answers["/Library/Media/Updated"] = (401, b"")
    with pytest.raises(DeliveryFailed, match="HTTP 401 Unauthorized"):
        Jellyfin(receiver.url, "wrong").send(EVENT)


# A real download, told to a real receiver -----------------------------------------------------
def sections_xml(save_path):
    return (f'<?xml version="1.0"?><MediaContainer size="2">'
            f'<Directory key="2" title="Music"><Location id="2" path="/srv/music"/></Directory>'
            f'<Directory key="3" title="Films"><Location id="3" path="{save_path}"/></Directory>'
            f'</MediaContainer>').encode()


def everything_shown(app, client):
    return json.dumps(client.get("/api/jobs").get_json()) + client.get("/").get_data(as_text=True)


@pytest.mark.swarm
def test_a_completed_download_is_told_to_every_target_exactly(make_app, tracker, seed_new, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    torrent = seed_new({"one.bin": MiB, "sub/two.bin": 300000})
    app = make_app(TRACKERS=[tracker.announce_url], **notice_settings(receiver.url))
    save_path = app.config["SAVE_PATH"]
    receiver.answers["/library/sections"] = (200, sections_xml(save_path))
    client = app.test_client()
    assert client.post("/api/jobs", json={"hashes": [torrent.info_hash], "category": ""}).status_code == 201
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, save_path)
    folder = f"{save_path}/{torrent.name}"

    added, completed = receiver.wait_for("/hook", count=2)
    for request, event in ((added, "added"), (completed, "completed")):
        assert request.method == "POST" and request.path == f"/hook?key={WEBHOOK_SECRET}"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(
            f"hashdrop:{WEBHOOK_PASSWORD}".encode()).decode()
        assert json.loads(request.body)["event"] == event
    body = json.loads(completed.body)
    assert {k: v for k, v in body.items() if k != "time"} == {
        "event": "completed", "hash": torrent.info_hash, "name": torrent.name, "category": "",
        "files": [f"{torrent.name}/one.bin", f"{torrent.name}/sub/two.bin"], "size": MiB + 300000,
        "save_path": save_path}

    jellyfin = receiver.wait_for("/Library/Media/Updated")
    assert len(jellyfin) == 1 and jellyfin[0].method == "POST"
    assert json.loads(jellyfin[0].body) == {"Updates": [{"Path": folder, "UpdateType": "Created"}]}
    assert jellyfin[0].headers["X-Emby-Token"] == JELLYFIN_TOKEN
    assert jellyfin[0].headers["Authorization"] == f'MediaBrowser Token="{JELLYFIN_TOKEN}"'

    assert receiver.wait_for("/library/sections")[0].path == f"/library/sections?X-Plex-Token={PLEX_TOKEN}"
    refresh = receiver.wait_for("/library/sections/3/refresh")[0]
    assert refresh.method == "GET"
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(refresh.path).query) == {
        "path": [folder], "X-Plex-Token": [PLEX_TOKEN]}

    apprise = receiver.wait_for("/apprise", count=2)
    assert [json.loads(r.body)["title"] for r in apprise] == [
        f"Added: {torrent.info_hash}", f"Completed: {torrent.name}"]  # a bare hash: no name yet when added
    assert apprise[0].headers["Authorization"] == "Basic " + base64.b64encode(
        f"apprise:{APPRISE_PASSWORD}".encode()).decode()

    assert job_of(app, torrent.info_hash)["notice"] is None
    shown = everything_shown(app, client) + caplog.text
    assert "Jellyfin told: completed" in caplog.text
    assert f"Webhook (http://***@127.0.0.1:{receiver.port}/hook?***)" in caplog.text
    assert not [secret for secret in SECRETS if secret in shown]


@pytest.mark.swarm
def test_a_server_that_is_down_leaves_the_job_completed_and_is_told_once_it_is_up(
        make_app, tracker, seed_new, caplog):
    port = free_port()
    torrent = seed_new(2 * MiB)
    app = make_app(TRACKERS=[tracker.announce_url], JELLYFIN_URL=f"http://127.0.0.1:{port}",
                   JELLYFIN_TOKEN=JELLYFIN_TOKEN, WEBHOOK_URL=f"http://127.0.0.1:{port}/hook?key={WEBHOOK_SECRET}")
    client = app.test_client()
    client.post("/api/jobs", json={"hashes": [torrent.info_hash]})
    wait_for_state(app, torrent.info_hash, "completed")
    check_files(torrent, app.config["SAVE_PATH"])

    wait_until(lambda: "Jellyfin" in (job_of(app, torrent.info_hash)["notice"] or ""), 10, "no notice")
    notice = job_of(app, torrent.info_hash)["notice"]
    assert "Jellyfin: connection refused, retrying in 5 s" in notice
    assert "Webhook: connection refused, retrying in" in notice
    assert "Jellyfin: connection refused" in client.get("/").get_data(as_text=True)
    assert job_of(app, torrent.info_hash)["state"] == "completed"

    receiver = Receiver(port).start()
    try:
        update = receiver.wait_for("/Library/Media/Updated", timeout=20)[0]
        assert json.loads(update.body)["Updates"][0]["Path"] == f"{app.config['SAVE_PATH']}/{torrent.name}"
        assert {json.loads(r.body)["event"] for r in receiver.wait_for("/hook", count=2, timeout=40)} == {
            "added", "completed"}
        wait_until(lambda: job_of(app, torrent.info_hash)["notice"] is None, 10, "the notice stayed")
    finally:
        receiver.stop()
    shown = everything_shown(app, client) + caplog.text
    assert not [secret for secret in SECRETS if secret in shown]
