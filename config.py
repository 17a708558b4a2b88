"""Every setting hashdrop has: its default, its HASHDROP_* environment variable, and what it accepts.

Nothing else reads HASHDROP_* from the environment: create_app calls load(), and the server
asks server_settings() where to listen before any app exists.
"""
import importlib
import importlib.util
import json
import logging
import os
import urllib.parse
from typing import NamedTuple

import torrent_urls

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
    "SEED_IDLE_MINUTES": None,
    "RESUME_INTERVAL": 10,
    "DISK_IO": "pread",
    "RECV_BUFFER": 0,
    "PART_SUFFIX": ".part",
    "OUTGOING_INTERFACES": "",  # libtorrent's outgoing_interfaces; "" lets the system choose
    "RUNNER": "thread",
    "STORE": "sqlite",  # "postgres" keeps jobs in HASHDROP_DATABASE_URL's database (store.postgres)
    # Cluster mode (#22): the jobs in PostgreSQL, the download nodes reached through Redis.
    "MODE": "embedded",  # or "cluster"
    "DATABASE_URL": "",  # postgresql://user:password@host/database
    "BROKER_URL": "",  # redis://host:6379/0
    # A download node's timings (seconds) and whether every node sees the same save path.
    "VISIBILITY_TIMEOUT": 3600,  # Redis redelivers a task unacknowledged this long (a no-op: the claim)
    "NODE_LEASE": 60,  # a node silent this long is offline; with shared storage its downloads move
    "RECONCILE_SECONDS": 5,  # how often a node applies the pause/resume/remove stored for its jobs
    "SHARED_STORAGE": False,  # true: every node's save path is the same shared folder
    "WATCH_DIR": "",  # a folder whose .torrent and .magnet files become jobs; "" for none
    "URL_ALLOW": ["public"],  # where the RPC's torrent-add may fetch .torrent URLs from (torrent_urls)
    "URL_TIMEOUT": 30,  # seconds one such fetch may take, redirects included
    "INCOMPLETE_PATH": "",  # where jobs download before they move into SAVE_PATH; "" downloads in place
    "UMASK": "022",  # octal; 022: new files are 0644 and folders 0755, readable by a media server
    # Who is told what became of a job (jobs/notify.py); each is off while empty.
    "WEBHOOK_URL": "",
    "APPRISE_URLS": [],
    "JELLYFIN_URL": "",
    "JELLYFIN_TOKEN": "",
    "PLEX_URL": "",
    "PLEX_TOKEN": "",
    "PLEX_SECTION": "",  # the library section's number; "" finds it from the folder
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
BOOLEANS = ("DHT", "LSD", "UPNP", "NATPMP", "SHARED_STORAGE")
COUNTS = ("MAX_ACTIVE", "DOWNLOAD_LIMIT", "UPLOAD_LIMIT", "RECV_BUFFER")  # whole numbers, at least 0
LIMITS = ("MAX_REQUEST_BYTES", "MAX_UPLOAD_BYTES", "MAX_LINES", "MAX_LINE_CHARS",
          "IDLE_TIMEOUT", "SESSION_DAYS", "MAX_JOBS", "URL_TIMEOUT")  # at least 1
TEXTS = ("OUTGOING_INTERFACES", "RUNNER", "STORE", "WATCH_DIR", "INCOMPLETE_PATH")
TIMEOUTS = ("METADATA_TIMEOUT", "STALL_TIMEOUT", "VISIBILITY_TIMEOUT", "NODE_LEASE",
            "RECONCILE_SECONDS")  # seconds, at least 1
# The names HASHDROP_DISK_IO takes; downloader.DISK_BACKENDS maps each to libtorrent's constructor.
DISK_IO_CHOICES = ("pread", "mmap", "posix")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MODES = ("embedded", "cluster")
# Each cluster URL setting: the schemes it takes, an example, and the packages it needs
# (requirements-cluster.txt), which embedded mode never imports.
CLUSTER_URLS = {
    "DATABASE_URL": (("postgresql", "postgres"), "postgresql://user:password@host/database",
                     ("psycopg",)),
    "BROKER_URL": (("redis", "rediss", "redis+socket"), "redis://host:6379/0", ("celery", "redis")),
}


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


def load_plain(environ=None):
    """Every setting as load() makes it, without a Flask app: for a download node (Celery
    worker), which reads HASHDROP_* from the environment and serves no page. DATA_DIR defaults
    to the instance folder beside this file, as the app's does."""
    from flask import Config  # the same parsing of HASHDROP_* as the app's (JSON values)

    config = Config(os.path.dirname(os.path.abspath(__file__)))
    config.from_mapping(DEFAULTS, DATA_DIR=os.path.join(config.root_path, "instance"))
    if environ is None:
        config.from_prefixed_env("HASHDROP")
    else:
        config.update({key[len("HASHDROP_"):]: value for key, value in environ.items()
                       if key.startswith("HASHDROP_")})
    normalize_config(config)
    return config


def normalize_config(config):
    """Turn environment strings into the types the app uses; raise ConfigError when wrong."""
    for key in BOOLEANS:
        config[key] = as_bool(key, config[key])
    for key in COUNTS:
        config[key] = as_int(key, config[key])
    config["SEED_RATIO"] = optional_number("SEED_RATIO", config["SEED_RATIO"])
    config["SEED_IDLE_MINUTES"] = optional_number("SEED_IDLE_MINUTES", config["SEED_IDLE_MINUTES"])
    config["TRACKERS"] = trackers(config["TRACKERS"])
    config["URL_ALLOW"] = url_allow(config["URL_ALLOW"])
    config["DISK_IO"] = disk_io(config["DISK_IO"])
    config["PART_SUFFIX"] = part_suffix(config["PART_SUFFIX"])
    for key in TIMEOUTS:
        config[key] = as_int(key, config[key], minimum=1)
    config["STALLED_REMOVE_AFTER"] = as_int("STALLED_REMOVE_AFTER", config["STALLED_REMOVE_AFTER"] or 0)
    for key in TEXTS:
        config[key] = as_text(config[key])
    config["SAVE_PATH"] = os.path.abspath(config["SAVE_PATH"])
    config["DATA_DIR"] = os.path.abspath(config["DATA_DIR"])
    config["INCOMPLETE_PATH"] = incomplete_path(config["INCOMPLETE_PATH"], config["SAVE_PATH"])
    config["UMASK"] = umask(raw_setting(config, "UMASK"))
    normalize_cluster(config)
    normalize_notices(config)
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


def optional_number(key, value):
    """A setting such as HASHDROP_SEED_RATIO as a number of at least 0, or None (unset or empty: no limit)."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"HASHDROP_{key} must be a number, not {value!r}") from None
    if not number >= 0:  # NaN too
        raise ConfigError(f"HASHDROP_{key} must be 0 or more, not {value!r}")
    return number


def trackers(value):
    """HASHDROP_TRACKERS as a list of URLs: a JSON list, or comma or newline separated."""
    if isinstance(value, str):
        value = [t.strip() for t in value.replace("\n", ",").split(",")]
    return [t for t in value if t]


def url_allow(value):
    """HASHDROP_URL_ALLOW as torrent_urls rules: "public" and networks, comma separated or a JSON list."""
    try:
        return torrent_urls.allow_rules(value if isinstance(value, (str, list)) else str(value))
    except ValueError as exc:
        raise ConfigError(f"HASHDROP_URL_ALLOW: {exc}") from None


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


def incomplete_path(value, save_path):
    """HASHDROP_INCOMPLETE_PATH as an absolute folder ("" for none): not the save path, and not a
    folder that holds it (a job's move into the library would then move into its own folder)."""
    if not value:
        return ""
    path = os.path.abspath(value)
    real, library = os.path.realpath(path), os.path.realpath(save_path)
    if real == library or library.startswith(real.rstrip(os.sep) + os.sep):
        raise ConfigError(f"HASHDROP_INCOMPLETE_PATH must be a folder apart from the save path "
                          f"{save_path}, not {value!r}: jobs move from it into the save path.")
    return path


def umask(value):
    """HASHDROP_UMASK (octal text such as "022" or "002") as a number for os.umask."""
    text = "" if value is None else str(value).strip()
    if not (1 <= len(text) <= 4 and all(c in "01234567" for c in text)) or int(text, 8) > 0o777:
        raise ConfigError(f"HASHDROP_UMASK must be an octal umask such as 022 or 002, not {text!r}")
    return int(text, 8)


def normalize_cluster(config):
    """HASHDROP_MODE, the store and the cluster's URLs, checked; the packages a setting in use
    needs are looked for, not imported. Errors never show a URL: it may hold a password."""
    mode = as_text(config["MODE"]).lower() or DEFAULTS["MODE"]
    if mode not in MODES:
        raise ConfigError(f"HASHDROP_MODE must be embedded or cluster, not {mode!r}")
    config["MODE"] = mode
    for key in CLUSTER_URLS:
        config[key] = service_url(key, raw_setting(config, key) or "")
    used = []
    if mode == "cluster":
        used = ["DATABASE_URL", "BROKER_URL"]
        if config["STORE"] == DEFAULTS["STORE"]:
            config["STORE"] = "postgres"
    elif config["STORE"] == "postgres":
        used = ["DATABASE_URL"]
    setting = "HASHDROP_MODE=cluster" if mode == "cluster" else "HASHDROP_STORE=postgres"
    for key in used:  # every URL first: a missing one says more than a package not installed yet
        if not config[key]:
            raise ConfigError(f"{setting} needs HASHDROP_{key} ({CLUSTER_URLS[key][1]})")
    missing = [name for key in used for name in CLUSTER_URLS[key][2] if importlib.util.find_spec(name) is None]
    if missing:
        names = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise ConfigError(f"{setting} needs the {names} package{'s' if len(missing) > 1 else ''}: "
                          "pip install -r requirements-cluster.txt")


def service_url(key, url):
    """A cluster URL of one of the schemes CLUSTER_URLS names, or "" for none."""
    url = url.strip()
    if not url:
        return ""
    schemes, example, _ = CLUSTER_URLS[key]
    if urllib.parse.urlsplit(url).scheme.lower() not in schemes:
        raise ConfigError(f"HASHDROP_{key} must be a URL such as {example} (the value is not "
                          f"shown: it may hold a password)")
    return url


def normalize_notices(config):
    """The webhook, Apprise, Jellyfin and Plex settings, checked; errors never show a secret."""
    for key in ("WEBHOOK_URL", "JELLYFIN_URL", "PLEX_URL"):
        config[key] = http_url(key, as_text(config[key]))
    for key in ("JELLYFIN_TOKEN", "PLEX_TOKEN"):
        config[key] = raw_setting(config, key) or ""  # as typed: a token of digits stays text
    if config["JELLYFIN_URL"] and not config["JELLYFIN_TOKEN"]:
        raise ConfigError("HASHDROP_JELLYFIN_URL needs HASHDROP_JELLYFIN_TOKEN (an API key made "
                          "under Dashboard > API Keys)")
    section = as_text(config["PLEX_SECTION"])
    if section and not section.isdigit():
        raise ConfigError(f"HASHDROP_PLEX_SECTION must be a library section's number, not {section!r}")
    config["PLEX_SECTION"] = section
    config["APPRISE_URLS"] = apprise_urls(trackers(config["APPRISE_URLS"]))


def http_url(key, url):
    """An http:// or https:// URL with a host, or "" for none; the error does not repeat it."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"HASHDROP_{key} must be an http:// or https:// URL with a host name "
                          f"(the value is not shown: it may hold a password)")
    return url


def apprise_urls(urls):
    """The Apprise URLs, each one Apprise knows; only then is Apprise imported."""
    if not urls:
        return []
    try:
        import apprise
    except ImportError:
        raise ConfigError("HASHDROP_APPRISE_URLS needs the apprise package (pip install apprise)") from None
    def quiet(record):  # Apprise logs a URL it cannot parse, password and all
        return False

    logging.getLogger("apprise").addFilter(quiet)
    try:
        known = [apprise.Apprise.instantiate(url) is not None for url in urls]
    finally:
        logging.getLogger("apprise").removeFilter(quiet)
    for number, url in enumerate(urls, 1):
        if not known[number - 1]:
            raise ConfigError(f"HASHDROP_APPRISE_URLS: URL {number} ({url.partition('://')[0]}://…) is not one "
                              f"Apprise knows, or lacks a part it needs (the rest is not shown: it may hold "
                              f"a password)")
    return urls


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
