"""Pytest fixtures for the loopback swarm: an opentracker, a seeder, and payloads they serve."""
# tests/conftest.py loads these with `from swarm_fixtures import *` (or, instead, with
# `pytest_plugins = ["swarm_fixtures"]`; not both). Mark tests using them @pytest.mark.swarm.
import uuid

import pytest

from swarm import Seeder, Tracker, make_payload, make_torrent

__all__ = ["tracker", "seeder", "swarm_payloads", "seed_new"]

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def tracker():
    """Run one opentracker on 127.0.0.1 for the test session."""
    tracker = Tracker()
    try:
        yield tracker.start()
    finally:
        tracker.stop()


@pytest.fixture(scope="session")
def seeder(tracker, tmp_path_factory):
    """Run one seeder on 127.0.0.2 for the test session; it stops before the tracker does."""
    # It also accepts uTP, for the test that dials over it; every other client dials TCP.
    seeder = Seeder(log_dir=tmp_path_factory.mktemp("seeder"), utp=True)
    try:
        yield seeder.start()
    finally:
        seeder.stop()


@pytest.fixture(scope="session")
def swarm_payloads(tracker, seeder, tmp_path_factory):
    """Seed the standard torrents: {"single", "multi", "v2", "hybrid"} -> swarm.Torrent."""
    root = tmp_path_factory.mktemp("swarm-payloads")
    url = tracker.announce_url
    torrents = {
        "single": make_torrent(make_payload(root, "single.bin", 4 * MiB), url, "v1"),
        "multi": make_torrent(
            make_payload(root, "multi", {"one.bin": 2 * MiB, "sub/two.bin": MiB + 12345, "sub/three.txt": 1000}),
            url,
            "v1",
        ),
        "v2": make_torrent(make_payload(root, "v2-only.bin", 2 * MiB), url, "v2"),
        "hybrid": make_torrent(make_payload(root, "hybrid", {"a.bin": MiB, "b/c.bin": MiB}), url, "hybrid"),
    }
    tracker.add(*torrents.values())
    try:
        for torrent in torrents.values():
            seeder.add(torrent)
        yield torrents
    finally:
        for torrent in torrents.values():
            if torrent.key in seeder.torrents:
                seeder.remove(torrent)


@pytest.fixture
def seed_new(tracker, seeder, tmp_path):
    """Return seed(files, version, upload_limit, seeded, piece_size): a new Torrent with hashes of its own."""
    made = []

    def seed(files=MiB, version="v1", upload_limit=0, seeded=True, piece_size=None):
        # files: a size in bytes (one file) or {relative path: size} (a directory).
        # upload_limit: bytes/s for this torrent alone; it holds for loopback peers too.
        # seeded=False: only whitelisted, a torrent nobody has (metadata never comes).
        number = len(made)
        name = f"new-{number}.bin" if isinstance(files, int) else f"new-{number}"
        # A random seed: a test's torrents must not share hashes with any other test's.
        payload = make_payload(tmp_path / "seed-new", name, files, seed=uuid.uuid4().hex)
        torrent = make_torrent(payload, tracker.announce_url, version, piece_size)
        tracker.add(torrent)
        if seeded:
            seeder.add(torrent, upload_limit=upload_limit)
        made.append(torrent)
        return torrent

    try:
        yield seed
    finally:
        for torrent in made:
            if torrent.key in seeder.torrents:
                seeder.remove(torrent)
