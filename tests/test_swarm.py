"""The loopback swarm works: a bare libtorrent client downloads every payload intact from it."""
import time

import libtorrent as lt
import pytest

from swarm import (
    SLOW_SEEDER_HOST,
    Seeder,
    SeederError,
    check_files,
    hermetic_settings,
    make_payload,
    make_torrent,
    start_download,
    wait_until,
)

pytestmark = pytest.mark.swarm

KINDS = ["single", "multi", "v2", "hybrid"]
KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def client():
    """A bare hermetic libtorrent session on 127.0.0.1, as a downloading peer."""
    session = lt.session(hermetic_settings(stop_tracker_timeout=1))
    try:
        yield session
    finally:
        session.pause()  # no more traffic; the session ends when the fixture lets go of it


def finish(handle, timeout=20):
    """Wait until a download has every piece."""
    wait_until(lambda: handle.status().is_seeding, timeout, f"{handle.status().name} did not complete")


@pytest.mark.parametrize("kind", KINDS)
def test_download_through_tracker(client, swarm_payloads, tmp_path, kind):
    torrent = swarm_payloads[kind]
    finish(start_download(client, torrent.magnet(), tmp_path))
    check_files(torrent, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_download_from_seeder_address_alone(client, swarm_payloads, seeder, tmp_path, kind):
    torrent = swarm_payloads[kind]
    magnet = torrent.magnet(peer=seeder.peer, tracker=False)
    assert "tr=" not in magnet
    finish(start_download(client, magnet, tmp_path))
    check_files(torrent, tmp_path)


def test_magnet_carries_both_hashes_of_a_hybrid(swarm_payloads):
    torrent = swarm_payloads["hybrid"]
    params = lt.parse_magnet_uri(torrent.magnet())
    assert str(params.info_hashes.v1) == torrent.info_hash
    assert str(params.info_hashes.v2) == torrent.v2_hash
    assert params.trackers == [torrent.tracker_url]


def test_v2_only_torrent_has_no_v1_hash(swarm_payloads):
    torrent = swarm_payloads["v2"]
    assert torrent.info_hash is None
    assert torrent.key == torrent.v2_hash
    assert len(torrent.v2_hash) == 64
    assert torrent.tracker_hashes() == [torrent.v2_hash[:40]]


def test_stats_count_uploaded_payload(client, seed_new, seeder, tmp_path):
    torrent = seed_new({"a.bin": MiB, "b/c.bin": 300 * KiB}, version="hybrid")
    assert seeder.uploaded(torrent) == 0
    finish(start_download(client, torrent.magnet(), tmp_path))
    check_files(torrent, tmp_path)
    # At least everything once; end-game mode may send a block twice.
    assert seeder.uploaded(torrent) >= torrent.total_size


def test_new_torrents_have_new_hashes(seed_new):
    first, second = seed_new(MiB, seeded=False), seed_new(MiB, seeded=False)
    assert first.info_hash != second.info_hash


def test_unlisted_torrent_is_refused_by_tracker(client, tracker, tmp_path):
    torrent = make_torrent(make_payload(tmp_path / "seed", "unlisted.bin", 100 * KiB), tracker.announce_url)
    start_download(client, torrent.magnet(), tmp_path / "download")

    def refused():
        return any(isinstance(alert, lt.tracker_error_alert) for alert in client.pop_alerts())

    wait_until(refused, 10, "the tracker accepted a torrent not on its whitelist")


def test_seeder_refuses_missing_content(seeder, tracker, tmp_path):
    torrent = make_torrent(make_payload(tmp_path / "seed", "gone.bin", 100 * KiB), tracker.announce_url)
    tracker.add(torrent)
    (tmp_path / "seed" / "gone.bin").unlink()
    with pytest.raises(SeederError, match="incomplete"):
        seeder.add(torrent)
    assert torrent.key not in seeder.stats()


def test_hermetic_settings_refuse_unknown_names():
    assert hermetic_settings(upload_rate_limit=1)["upload_rate_limit"] == 1
    with pytest.raises(KeyError, match="enable_dhtt"):
        hermetic_settings(enable_dhtt=False)


def test_upload_limits_hold_for_loopback_peers(client, seed_new, tmp_path):
    """A per-torrent limit and a whole-seeder limit both slow a client on 127.0.0.1."""
    limit = 256 * KiB
    per_torrent = seed_new(4 * MiB, upload_limit=limit)
    whole_seeder = seed_new(4 * MiB, seeded=False)
    with Seeder(host=SLOW_SEEDER_HOST, upload_limit=limit, log_dir=tmp_path) as slow:
        slow.add(whole_seeder)
        started = time.monotonic()
        handles = [
            start_download(client, per_torrent.magnet(), tmp_path / "per-torrent"),
            start_download(client, whole_seeder.magnet(peer=slow.peer, tracker=False), tmp_path / "whole"),
        ]
        wait_until(
            lambda: all(handle.status().total_payload_download >= limit // 4 for handle in handles),
            15,
            "limited downloads did not start",
        )
        elapsed = time.monotonic() - started
        progress = [handle.status().progress for handle in handles]
    # Unlimited, 4 MiB crosses loopback in tens of milliseconds; limited, a second's worth of
    # bytes takes at least about a second. Only lower bounds: a slow machine cannot break them.
    assert elapsed >= 0.25
    assert max(progress) < 0.5
