"""Settings (config.py): the defaults, HASHDROP_* from the environment, and each setting's
validation (disk I/O back end, receive buffer, seed ratio, part suffix, outgoing interfaces,
runner and store)."""
import os
import stat

import pytest

from app import create_app


def test_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHDROP_SAVE_PATH", str(tmp_path / "media"))
    monkeypatch.setenv("HASHDROP_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HASHDROP_LISTEN_INTERFACES", "127.0.0.1:0")
    for name in ("DHT", "LSD", "UPNP", "NATPMP"):
        monkeypatch.setenv(f"HASHDROP_{name}", "false")
    monkeypatch.setenv("HASHDROP_TRACKERS", "http://127.0.0.1:1/announce, udp://127.0.0.1:2")
    monkeypatch.setenv("HASHDROP_MAX_ACTIVE", "2")
    app = create_app()
    try:
        settings = app.extensions["hashdrop"].session.current_settings()
        assert settings["enable_dht"] is False and settings["enable_lsd"] is False
        assert settings["enable_upnp"] is False and settings["enable_natpmp"] is False
        assert settings["listen_interfaces"] == "127.0.0.1:0"
        assert app.config["TRACKERS"] == ["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"]
        assert app.config["MAX_ACTIVE"] == 2
        assert app.config["SAVE_PATH"] == str(tmp_path / "media")
        key_file = tmp_path / "state" / "secret_key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert app.secret_key == key_file.read_text().strip() and len(app.secret_key) >= 32
    finally:
        app.extensions["hashdrop"].shutdown()


def test_defaults_are_what_a_user_expects():
    from config import DEFAULTS
    assert DEFAULTS["LISTEN_INTERFACES"] == "0.0.0.0:6881"
    assert all(DEFAULTS[name] is True for name in ("DHT", "LSD", "UPNP", "NATPMP"))
    assert DEFAULTS["SAVE_PATH"] == "downloads"


def test_disk_io_picks_a_back_end_and_refuses_others(make_app):
    app = make_app(DISK_IO=" MMAP ")
    assert app.config["DISK_IO"] == "mmap" and app.extensions["hashdrop"].session.disk_io == "mmap"
    with pytest.raises(ValueError, match="HASHDROP_DISK_IO must be one of pread, mmap, posix, not 'zfs'"):
        make_app(DISK_IO="zfs")


def test_the_receive_buffer_defaults_to_the_systems_and_must_be_a_number(make_app):
    from config import DEFAULTS
    from config import ConfigError

    assert DEFAULTS["RECV_BUFFER"] == 0  # the system's size, with TCP's autotuning
    app = make_app(RECV_BUFFER="2097152")
    assert app.extensions["hashdrop"].session.current_settings()["recv_socket_buffer_size"] == 2097152
    with pytest.raises(ConfigError, match="HASHDROP_RECV_BUFFER must be a whole number, not '4M'"):
        make_app(RECV_BUFFER="4M")


@pytest.mark.parametrize("key, value, said", [
    ("SEED_RATIO", "lots", "HASHDROP_SEED_RATIO must be a number, not 'lots'"),
    ("SEED_RATIO", "-1", "HASHDROP_SEED_RATIO must be 0 or more"),
    ("SEED_IDLE_MINUTES", "soon", "HASHDROP_SEED_IDLE_MINUTES must be a number, not 'soon'"),
    ("SEED_IDLE_MINUTES", "nan", "HASHDROP_SEED_IDLE_MINUTES must be 0 or more"),
])
def test_a_seeding_limit_that_is_not_a_number_is_refused_with_a_sentence(make_app, key, value, said):
    from config import ConfigError

    with pytest.raises(ConfigError, match=said):
        make_app(**{key: value})


def test_the_seeding_limits_are_read_as_numbers_and_unset_is_no_limit(make_app):
    manager = make_app(SEED_RATIO="1.5", SEED_IDLE_MINUTES="30").extensions["hashdrop"]
    assert (manager.seed_session.ratio, manager.seed_session.idle_minutes) == (1.5, 30.0)
    manager = make_app(SEED_RATIO="", SEED_IDLE_MINUTES=None).extensions["hashdrop"]
    assert (manager.seed_session.ratio, manager.seed_session.idle_minutes) == (None, None)


def test_the_part_suffix_defaults_to_part_and_must_be_a_file_name_ending(make_app):
    from config import DEFAULTS
    from config import ConfigError

    assert DEFAULTS["PART_SUFFIX"] == ".part"  # as Transmission names unfinished files
    assert make_app(PART_SUFFIX=" .!hd ").extensions["hashdrop"].services.part_files.suffix == ".!hd"
    assert make_app(PART_SUFFIX="").extensions["hashdrop"].services.part_files.suffix == ""
    with pytest.raises(ConfigError, match="HASHDROP_PART_SUFFIX must be a short file name ending"):
        make_app(PART_SUFFIX="/incomplete")


def test_outgoing_interfaces_runner_and_store_default_and_lose_their_blanks(make_app):
    from config import DEFAULTS

    assert (DEFAULTS["OUTGOING_INTERFACES"], DEFAULTS["RUNNER"], DEFAULTS["STORE"]) == ("", "thread", "sqlite")
    config = make_app().config  # OUTGOING_INTERFACES aside: a test config may keep it on loopback
    assert (config["RUNNER"], config["STORE"]) == ("thread", "sqlite")
    config = make_app(OUTGOING_INTERFACES=" 127.0.0.1 ", RUNNER=" thread\n", STORE=" sqlite ").config
    assert (config["OUTGOING_INTERFACES"], config["RUNNER"], config["STORE"]) == ("127.0.0.1", "thread", "sqlite")


@pytest.mark.parametrize("settings, said", [
    ({"MODE": "swarm"}, "HASHDROP_MODE must be embedded or cluster, not 'swarm'"),
    ({"MODE": "cluster", "BROKER_URL": "redis://127.0.0.1:1/0"},
     r"HASHDROP_MODE=cluster needs HASHDROP_DATABASE_URL \(postgresql://user:password@host/database\)"),
    ({"MODE": " Cluster ", "DATABASE_URL": "postgresql://127.0.0.1:1/hashdrop"},
     r"HASHDROP_MODE=cluster needs HASHDROP_BROKER_URL \(redis://host:6379/0\)"),
    ({"STORE": "postgres"}, "HASHDROP_STORE=postgres needs HASHDROP_DATABASE_URL"),
    ({"STORE": "postgres", "DATABASE_URL": "mysql://hashdrop:pw-1234@127.0.0.1/hashdrop"},
     r"HASHDROP_DATABASE_URL must be a URL such as postgresql://user:password@host/database \(the value is not shown"),
    ({"BROKER_URL": "amqp://guest:pw-1234@127.0.0.1//"}, "HASHDROP_BROKER_URL must be a URL such as redis://host:6379/0"),
])
def test_the_cluster_settings_are_checked_and_their_errors_show_no_url(make_app, settings, said):
    from config import ConfigError

    with pytest.raises(ConfigError, match=said) as refused:
        make_app(**settings)
    assert "pw-1234" not in str(refused.value)


@pytest.mark.parametrize("settings, package", [
    ({"STORE": "postgres", "DATABASE_URL": "postgresql://127.0.0.1:1/hashdrop"}, "psycopg"),
    ({"MODE": "cluster", "DATABASE_URL": "postgres://127.0.0.1:1/hashdrop", "BROKER_URL": "redis://127.0.0.1:1/0"},
     "celery"),
])
def test_a_cluster_setting_without_its_package_says_what_to_install(make_app, monkeypatch, settings, package):
    import sys

    from config import ConfigError

    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: the import system finds nothing
    # Every missing package is named at once (without the cluster's packages, all of them).
    with pytest.raises(ConfigError, match=rf"needs the (\w+, )*(\w+ and )?\b{package}\b.* packages?: "
                                          r"pip install -r requirements-cluster\.txt"):
        make_app(**settings)


def test_embedded_mode_is_the_default_and_ignores_the_cluster_urls(make_app):
    from config import DEFAULTS

    assert (DEFAULTS["MODE"], DEFAULTS["DATABASE_URL"], DEFAULTS["BROKER_URL"]) == ("embedded", "", "")
    config = make_app(DATABASE_URL="postgresql://127.0.0.1:1/hashdrop", BROKER_URL="redis://127.0.0.1:1/0").config
    assert (config["MODE"], config["STORE"]) == ("embedded", "sqlite")
