"""Fixtures: a hermetic app (loopback only, no DHT/LSD/UPnP/NAT-PMP) and its client."""
import os
import threading

import pytest

# Every process a test starts (the app by `python app.py`, the bench's clients) inherits these:
# no machine here may send a packet beyond loopback, and libtorrent's defaults would, at once.
from swarm import LOOPBACK_ENVIRONMENT  # noqa: E402  (swarm imports nothing of the app)

os.environ.update(LOOPBACK_ENVIRONMENT)

from flask.testing import FlaskClient  # noqa: E402

from app import create_app  # noqa: E402  (after the environment: nothing may start without it)

HERMETIC = {
    "LISTEN_INTERFACES": "127.0.0.1:0",
    "OUTGOING_INTERFACES": "127.0.0.1",
    "DHT": False,
    "LSD": False,
    "UPNP": False,
    "NATPMP": False,
    "SECRET_KEY": "test-only",
}


class ScriptClient(FlaskClient):
    """Flask's test client, calling the API as the README's scripts do: with X-Hashdrop: 1, without
    which a POST or DELETE that is not JSON is refused as a possible cross-site form."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_X_HASHDROP"] = "1"


@pytest.fixture
def make_app(tmp_path):
    """Create apps on loopback with their own save path and data dir; shut them down after."""
    apps = []

    def make(**config):
        settings = {
            **HERMETIC,
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,  # test_security.py turns it on
            "SAVE_PATH": str(tmp_path / "downloads"),
            "DATA_DIR": str(tmp_path / "data"),
            **config,
        }
        app = create_app(settings)
        app.test_client_class = ScriptClient
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["hashdrop"].shutdown()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def manager(app):
    return app.extensions["hashdrop"]


@pytest.fixture
def live_server(make_app):
    """Serve apps on a free loopback port in a thread; yields start(**config) -> base URL."""
    from werkzeug.serving import make_server

    servers = []

    def start(**config):
        app = make_app(**config)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(10)


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, with nothing that phones out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
from swarm_fixtures import *  # noqa: E402,F401,F403  (tracker, seeder, swarm_payloads, seed_new)
from cluster_fixtures import *  # noqa: E402,F401,F403  (postgres_server, redis_server, pg_database)
