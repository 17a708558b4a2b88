"""Fixtures: a hermetic app (loopback only, no DHT/LSD/UPnP/NAT-PMP) and its client."""
import pytest

from app import create_app

HERMETIC = {
    "LISTEN_INTERFACES": "127.0.0.1:0",
    "DHT": False,
    "LSD": False,
    "UPNP": False,
    "NATPMP": False,
    "SECRET_KEY": "test-only",
}


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
