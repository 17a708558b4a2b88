"""Every setting hashdrop has: its default, its HASHDROP_* environment variable, and what it accepts.

Nothing else reads HASHDROP_* from the environment: create_app calls load(), and the server
asks server_settings() where to listen before any app exists.
"""
import importlib
import json
import os
from typing import NamedTuple

DEFAULTS = {
    # Downloads and the libtorrent session (DATA_DIR defaults to Flask's instance folder).
    "SAVE_PATH": "downloads",
    "LISTEN_INTERFACES": "0.0.0.0:6881",
    "DHT": True,
    "LSD": True,
    "UPNP": True,
    "NATPMP": True,
    "TRACKERS": [],
    "MAX_ACTIVE": 5,
    "MAX_JOBS": 20000,  # jobs kept at once (each is a thread while it runs)
    "DOWNLOAD_LIMIT": 0,
    "UPLOAD_LIMIT": 0,
    "SEED_RATIO": None,
    "RESUME_INTERVAL": 10,
    "DISK_IO": "pread",
    "RECV_BUFFER": 0,
    "PART_SUFFIX": ".part",
    "OUTGOING_INTERFACES": "",  # libtorrent's outgoing_interfaces; "" lets the system choose
    "RUNNER": "thread",
    "STORE": "sqlite",
    "WATCH_DIR": "",  # a folder whose .torrent and .magnet files become jobs; "" for none
    # Stalled jobs (seconds): no file list after METADATA_TIMEOUT, or no progress and no peer
    # with the missing pieces for STALL_TIMEOUT; removed after STALLED_REMOVE_AFTER (0: never).
    "METADATA_TIMEOUT": 1800,
    "STALL_TIMEOUT": 7200,
    "STALLED_REMOVE_AFTER": 0,
    # Who may connect, and how much one request may carry.
    "HOST": "127.0.0.1",
    "USERNAME": "admin",
    "PASSWORD": None,
    "SECRET_KEY": None,  # None: a random key made once and kept in DATA_DIR/secret_key
    "SESSION_DAYS": 30,  # a login lasts this long at most, or until logout
    "ALLOWED_HOSTS": None,  # None: loopback and HOST (host_names)
    "MAX_REQUEST_BYTES": 1024 * 1024,
    "MAX_UPLOAD_BYTES": 32 * 1024 * 1024,
    "MAX_LINES": 1000,
    "MAX_LINE_CHARS": 4096,
    "IDLE_TIMEOUT": 60,  # seconds a connection may stay silent before waitress closes it
    # Where `python app.py` serves: serve.py reads these (and HOST, PASSWORD) through
    # server_settings, from the environment, before any app exists.
    "PORT": 5000,
    "TRUSTED_PROXY": None,
}
BOOLEANS = ("DHT", "LSD", "UPNP", "NATPMP")
COUNTS = ("MAX_ACTIVE", "DOWNLOAD_LIMIT", "UPLOAD_LIMIT", "RECV_BUFFER")  # whole numbers, at least 0
LIMITS = ("MAX_REQUEST_BYTES", "MAX_UPLOAD_BYTES", "MAX_LINES", "MAX_LINE_CHARS",
          "IDLE_TIMEOUT", "SESSION_DAYS", "MAX_JOBS")  # at least 1
TEXTS = ("OUTGOING_INTERFACES", "RUNNER", "STORE", "WATCH_DIR")
TIMEOUTS = ("METADATA_TIMEOUT", "STALL_TIMEOUT")  # seconds, at least 1
# The names HASHDROP_DISK_IO takes; downloader.DISK_BACKENDS maps each to libtorrent's constructor.
DISK_IO_CHOICES = ("pread", "mmap", "posix")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class ConfigError(ValueError):
    """A HASHDROP_ setting the app cannot use; the text says which one and what it accepts."""


class Server(NamedTuple):
    """Where the production server listens, and what decides whether it may (exposure_problem)."""
    host: str
    port: int
    trusted_proxy: "str | None"
    password: "str | None"


def load(app, test_config=None):
    """Fill app.config: every default, then HASHDROP_* (or test_config), then normalise and check."""
    config = app.config
    config.from_mapping(DEFAULTS, DATA_DIR=app.instance_path)
    if test_config is None:
        config.from_prefixed_env("HASHDROP")
    else:
        config.update(test_config)
    normalize_config(config)
    return config


def normalize_config(config):
    """Turn environment strings into the types the app uses; raise ConfigError when wrong."""
    for key in BOOLEANS:
        config[key] = as_bool(key, config[key])
    for key in COUNTS:
        config[key] = as_int(key, config[key])
    config["SEED_RATIO"] = seed_ratio(config["SEED_RATIO"])
    config["TRACKERS"] = trackers(config["TRACKERS"])
    config["DISK_IO"] = disk_io(config["DISK_IO"])
    config["PART_SUFFIX"] = part_suffix(config["PART_SUFFIX"])
    for key in TIMEOUTS:
        config[key] = as_int(key, config[key], minimum=1)
    config["STALLED_REMOVE_AFTER"] = as_int("STALLED_REMOVE_AFTER", config["STALLED_REMOVE_AFTER"] or 0)
    for key in TEXTS:
        config[key] = as_text(config[key])
    config["SAVE_PATH"] = os.path.abspath(config["SAVE_PATH"])
    config["DATA_DIR"] = os.path.abspath(config["DATA_DIR"])
    normalize_access(config)


def normalize_access(config):
    """The login and limit settings security.init_app builds on: as typed, and whole numbers."""
    config["USERNAME"] = raw_setting(config, "USERNAME") or DEFAULTS["USERNAME"]
    config["PASSWORD"] = raw_setting(config, "PASSWORD") or None
    config["SECRET_KEY"] = raw_setting(config, "SECRET_KEY") or None
    config["ALLOWED_HOSTS"] = host_names(config)
    for key in LIMITS:
        config[key] = as_int(key, config[key], minimum=1)


def as_bool(key, value):
    """An environment value as a boolean, or a ConfigError that says what is accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"HASHDROP_{key} must be true or false, not {value!r}")


def as_int(key, value, minimum=0):
    """An environment value as a whole number of at least minimum, or a ConfigError that says so."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"HASHDROP_{key} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"HASHDROP_{key} must be at least {minimum}")
    return number


def as_text(value):
    """A setting as a string without surrounding blanks; unset (null) is ""."""
    return "" if value is None else str(value).strip()


def seed_ratio(value):
    """HASHDROP_SEED_RATIO as a number, or None (unset or empty: seed on)."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"HASHDROP_SEED_RATIO must be a number, not {value!r}") from None


def trackers(value):
    """HASHDROP_TRACKERS as a list of URLs: a JSON list, or comma or newline separated."""
    if isinstance(value, str):
        value = [t.strip() for t in value.replace("\n", ",").split(",")]
    return [t for t in value if t]


def disk_io(value):
    """HASHDROP_DISK_IO as one of DISK_IO_CHOICES, whatever its case and blanks."""
    name = str(value).strip().lower()
    if name not in DISK_IO_CHOICES:
        raise ConfigError(f"HASHDROP_DISK_IO must be one of {', '.join(DISK_IO_CHOICES)}, "
                          f"not {name!r}")
    return name


def part_suffix(value):
    """What unfinished files' names end with ("" for nothing): a few characters, no folder."""
    suffix = "" if value is None else str(value).strip()
    if len(suffix) > 32 or any(c in suffix for c in "/\\\0"):
        raise ConfigError(f"HASHDROP_PART_SUFFIX must be a short file name ending such as .part, "
                          f"or empty for none, not {suffix!r}")
    return suffix


def host_names(config):
    """HASHDROP_ALLOWED_HOSTS as a list of names; unset, loopback's names and HASHDROP_HOST."""
    value = config.get("ALLOWED_HOSTS")
    if value in (None, "", []):
        names = [*LOOPBACK_NAMES, str(config["HOST"])]
    elif isinstance(value, str):
        names = value.split(",")
    else:
        names = [str(name) for name in value]
    return [name.strip() for name in names if name.strip()]


def server_settings(environ=None):
    """HASHDROP_HOST, _PORT, _TRUSTED_PROXY and _PASSWORD as typed; a ConfigError for a bad port."""
    # Read before create_app, so a refusal opens no libtorrent session and no port.
    environ = os.environ if environ is None else environ
    port = environ.get("HASHDROP_PORT") or str(DEFAULTS["PORT"])
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"HASHDROP_PORT must be a port number (0-65535), not {port!r}.")
    return Server(host=environ.get("HASHDROP_HOST") or DEFAULTS["HOST"], port=int(port),
                  trusted_proxy=environ.get("HASHDROP_TRUSTED_PROXY") or DEFAULTS["TRUSTED_PROXY"],
                  password=environ.get("HASHDROP_PASSWORD"))


def raw_setting(config, key):
    """A setting exactly as typed, when it came from the environment."""
    # from_prefixed_env parses values as JSON, so HASHDROP_PASSWORD=1e5 would become 100000.0
    # and HASHDROP_PASSWORD=null no password at all; a password or a key must stay the text typed.
    value = config.get(key)
    raw = os.environ.get(f"HASHDROP_{key}")
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = raw
        if parsed == value:
            return raw
    return None if value is None else str(value)


def load_factory(name, setting):
    """The callable that "module:attribute" names, or a ConfigError that says why not."""
    module_name, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"HASHDROP_{setting} must be a known name or module:factory, "
                          f"not {name!r} ({exc})") from None
