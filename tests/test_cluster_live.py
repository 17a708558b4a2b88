"""The cluster's shared pieces that need no node: live progress in a real Redis (cluster/live.py),
the Celery app's settings (cluster/celery_app.py) and the node's settings (config.load_plain)."""
import importlib
import logging
import socket
import uuid

import pytest

from config import ConfigError, load_plain
from swarm import free_port

redis = pytest.importorskip("redis", reason="the cluster's packages are not installed")
live = importlib.import_module("cluster.live")
celery_app = importlib.import_module("cluster.celery_app")

pytestmark = pytest.mark.cluster
VIEW = {"info_hash": "a" * 40, "state": "downloading", "progress": 0.25, "name": "film.mkv"}


@pytest.fixture
def client(redis_server):
    client = live.connect(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def node():
    return f"dl{uuid.uuid4().hex[:8]}@test"  # a name of its own: the session's Redis is shared


def test_published_views_are_read_back_and_replaced_whole(client, node):
    other = {**VIEW, "info_hash": "b" * 40, "state": "paused"}
    assert live.publish(client, node, {VIEW["info_hash"]: VIEW, other["info_hash"]: other})
    assert live.read(client, [node]) == {VIEW["info_hash"]: VIEW, other["info_hash"]: other}
    assert live.publish(client, node, {other["info_hash"]: other})  # the first job went away
    assert live.read(client, [node]) == {other["info_hash"]: other}
    assert 0 < client.ttl(live.key(node)) <= live.LIVE_SECONDS


def test_views_of_several_nodes_merge_and_an_unknown_node_has_none(client, node):
    second = node.replace("dl", "dm")
    live.publish(client, node, {VIEW["info_hash"]: VIEW})
    live.publish(client, second, {"c" * 40: {**VIEW, "info_hash": "c" * 40}})
    assert set(live.read(client, [node, second, "nobody@test"])) == {"a" * 40, "c" * 40}
    assert live.read(client, []) == {}


def test_a_node_with_no_jobs_leaves_no_key(client, node):
    live.publish(client, node, {VIEW["info_hash"]: VIEW})
    live.publish(client, node, {})
    assert not client.exists(live.key(node))


def test_an_unreadable_view_is_skipped_not_raised(client, node, caplog):
    client.hset(live.key(node), mapping={"a" * 40: "{not json", "b" * 40: '{"state": "queued"}'})
    with caplog.at_level(logging.WARNING, logger="cluster.live"):
        assert live.read(client, [node]) == {"b" * 40: {"state": "queued"}}
    assert "unreadable view" in caplog.text


def test_redis_down_is_logged_and_never_raised(node, caplog):
    port = free_port(socket.SOCK_STREAM, "127.0.0.1")  # nothing listens there
    client = live.connect(f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="cluster.live"):
        assert live.publish(client, node, {VIEW["info_hash"]: VIEW}) is False
        assert live.read(client, [node]) == {}
    assert "cannot publish live progress" in caplog.text and "cannot read live progress" in caplog.text


def test_publishing_goes_on_after_a_redis_restart(redis_server, client, node):
    live.publish(client, node, {VIEW["info_hash"]: VIEW})
    redis_server.restart()
    # The pooled connection is dead now: the first write may fail (logged), the next reconnects.
    live.publish(client, node, {VIEW["info_hash"]: VIEW})
    assert live.publish(client, node, {VIEW["info_hash"]: VIEW})
    assert live.read(client, [node]) == {VIEW["info_hash"]: VIEW}


def cluster_environment(port, **settings):
    return {"HASHDROP_MODE": "cluster", "HASHDROP_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "HASHDROP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/hashdrop",
            **{f"HASHDROP_{key}": value for key, value in settings.items()}}


def test_the_celery_app_is_configured_for_long_downloads_and_connects_to_nothing():
    port = free_port(socket.SOCK_STREAM, "127.0.0.1")  # nothing listens: creating the app must not care
    config = load_plain(cluster_environment(port, VISIBILITY_TIMEOUT="7"))
    conf = celery_app.make_celery(config).conf
    assert (conf.task_acks_late, conf.worker_prefetch_multiplier, conf.worker_direct) == (True, 1, True)
    assert (conf.task_ignore_result, conf.task_serializer, conf.accept_content) == (True, "json", ["json"])
    assert conf.task_routes["hashdrop.download"] == {"queue": "hashdrop.downloads"}
    assert conf.broker_transport_options["visibility_timeout"] == 7 == conf.visibility_timeout
    assert conf.result_backend_transport_options["visibility_timeout"] == 7


def test_the_node_settings_and_their_defaults():
    config = load_plain(cluster_environment(1, SHARED_STORAGE="yes", NODE_LEASE="3"))
    assert (config["MODE"], config["STORE"], config["SHARED_STORAGE"], config["NODE_LEASE"]) == \
        ("cluster", "postgres", True, 3)
    assert (config["VISIBILITY_TIMEOUT"], config["RECONCILE_SECONDS"]) == (3600, 5)


@pytest.mark.parametrize("setting, value, said", [
    ("NODE_LEASE", "0", "HASHDROP_NODE_LEASE must be at least 1"),
    ("RECONCILE_SECONDS", "soon", "HASHDROP_RECONCILE_SECONDS must be a whole number, not 'soon'"),
    ("SHARED_STORAGE", "maybe", "HASHDROP_SHARED_STORAGE must be true or false, not 'maybe'"),
])
def test_a_bad_node_setting_is_a_clear_error(setting, value, said):
    with pytest.raises(ConfigError, match=said):
        load_plain(cluster_environment(1, **{setting: value}))


def test_importing_the_node_app_connects_to_nothing_and_starts_nothing():
    """`celery -A hashdrop_cluster` imports it: with nothing listening at either URL it still
    imports, with the download task and the control commands registered."""
    import os
    import subprocess
    import sys

    port = free_port(socket.SOCK_STREAM, "127.0.0.1")
    script = ("import threading, hashdrop_cluster\n"
              "from celery.worker.control import Panel\n"
              "assert 'hashdrop.download' in hashdrop_cluster.app.tasks\n"
              "assert {'hashdrop_pause', 'hashdrop_resume', 'hashdrop_remove', 'hashdrop_jobs'} <= set(Panel.data)\n"
              "print(threading.active_count())\n")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, **cluster_environment(port)},
                            capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"  # no thread started at import
