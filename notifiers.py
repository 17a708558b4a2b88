"""Where notices go: a webhook, Apprise, Jellyfin or Emby, and Plex; and Secrets, which keeps
the tokens and passwords in their settings out of every message.

Each target's send(event) delivers one event (a dict, see jobs.notify.describe) or raises
DeliveryFailed with a short reason. Nothing here imports Flask or the jobs.
"""
import base64
import http.client
import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree

log = logging.getLogger(__name__)
TIMEOUT = 10  # seconds one request may take: a hung server holds the notifier up no longer
MAX_ANSWER_BYTES = 1024 * 1024  # a Plex section list is a few KiB
USER_AGENT = "hashdrop"
HIDDEN = "***"
MIN_SECRET_CHARS = 4  # shorter parts of a URL ("1", "on") would blank out ordinary words
EVENT_WORDS = {"added": "Added", "completed": "Completed", "failed": "Failed", "stalled": "Stalled"}


class DeliveryFailed(Exception):
    """A notice that did not arrive; the text says why, and status is the HTTP status, if any."""

    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.status = status


class Secrets:
    """The secret parts of the notice settings, and redact(), which blanks them out of a text."""

    def __init__(self, values=()):
        self.values = sorted({str(v) for v in values if v and len(str(v)) >= MIN_SECRET_CHARS},
                             key=len, reverse=True)  # longest first: a token inside a URL goes whole

    def redact(self, text):
        """text with every secret replaced by ***."""
        text = str(text)
        for value in self.values:
            text = text.replace(value, HIDDEN)
        return text

    def log_filter(self):
        """A logging filter that redacts records (Apprise's own log lines name hosts and paths)."""
        secrets = self

        class Redact(logging.Filter):
            def filter(self, record):
                record.msg, record.args = secrets.redact(record.getMessage()), None
                return True

        return Redact()


def url_secrets(url, whole=False):
    """The parts of a URL that may be secret: its user and password, its query string and each
    value in it; with whole, every part after the scheme (Apprise puts tokens in hosts and paths)."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.username, parts.password, parts.query, parts.fragment,
             *(value for _, value in urllib.parse.parse_qsl(parts.query))]
    if whole:
        found += [url.partition("://")[2], parts.netloc, parts.hostname,
                  *parts.path.split("/")]
    return [part for part in found if part]


def shown_url(url):
    """A URL as logs may show it: its user, password and query string replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username or parts.password:
        netloc = f"{HIDDEN}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, HIDDEN if parts.query else "", ""))


# HTTP -------------------------------------------------------------------------------------
def http_request(method, url, body=None, headers=None):
    """Send one request; return the answer's body, or raise DeliveryFailed saying why not."""
    url, credentials = without_userinfo(url)
    headers = {"User-Agent": USER_AGENT, **credentials, **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}", exc.code) from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(describe_os_error(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(describe_os_error(exc)) from None


def post_json(url, document, headers=None):
    body = json.dumps(document).encode()
    return http_request("POST", url, body, {"Content-Type": "application/json", **(headers or {})})


def without_userinfo(url):
    """The URL without user:password@ (urllib cannot send it), and the Basic header for it."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(bare), {"Authorization": f"Basic {token}"}


def describe_os_error(error):
    """A socket error as a few words a person reads in a notice."""
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer in {TIMEOUT} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


# Where a job's files are ------------------------------------------------------------------
def content_path(event):
    """The job's file (a one-file torrent) or its folder, as the media server should see it."""
    return os.path.join(event["save_path"], event["name"]) if event.get("name") else event["save_path"]


def content_folder(event):
    """The folder that holds the job's files: its own folder, or the save path for a lone file."""
    files = event.get("files") or []
    if len(files) == 1 and "/" not in files[0]:
        return event["save_path"]
    return content_path(event)


# Targets ----------------------------------------------------------------------------------
class Webhook:
    """A JSON POST of every event to HASHDROP_WEBHOOK_URL."""

    name = "Webhook"
    events = None  # every event

    def __init__(self, url):
        self.url = url
        self.where = shown_url(url)

    def send(self, event):
        post_json(self.url, event)


class AppriseTarget:
    """One Apprise URL (ntfy, Gotify, Discord, e-mail…): a short title and body per event."""

    events = None

    def __init__(self, url):
        self.url = url
        self.name = f"Apprise ({url.partition('://')[0]})"
        self.where = f"{url.partition('://')[0]}://{HIDDEN}"  # Apprise keeps tokens in hosts and paths

    def send(self, event):
        import apprise  # only when configured: it loads a hundred plugins

        notifier = apprise.Apprise()
        if not notifier.add(self.url):
            raise DeliveryFailed("Apprise does not know this URL")
        if not notifier.notify(title=human_title(event), body=human_body(event)):
            raise DeliveryFailed("the service did not take it")


def human_title(event):
    """'Completed: <name>'."""
    word = EVENT_WORDS.get(event["event"], event["event"].capitalize())
    return f"{word}: {event.get('name') or event['hash']}"


def human_body(event):
    """A line a person reads on a phone: the reason, or where the files are."""
    detail = event.get("error") or event.get("reason")
    if detail:
        return detail
    if event["event"] == "completed":
        return f"{len(event['files'])} file(s), {event['size']:,} bytes, in {event['save_path']}"
    return f"Into {event['save_path']}"


class Jellyfin:
    """Tell Jellyfin (or Emby) that a completed job's files are new, so it scans just them."""

    name = "Jellyfin"
    events = {"completed"}

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.where = shown_url(self.url)
        # Jellyfin 12 reads the token only from Authorization (X-Emby-Token is "legacy" and off
        # by default there); Emby reads X-Emby-Token. Both are sent.
        self.headers = {"Authorization": f'MediaBrowser Token="{token}"', "X-Emby-Token": token}

    def send(self, event):
        update = {"Updates": [{"Path": content_path(event), "UpdateType": "Created"}]}
        try:
            post_json(f"{self.url}/Library/Media/Updated", update, self.headers)
        except DeliveryFailed as exc:
            if exc.status not in (404, 405):
                raise
            # A server without the endpoint: scan every library instead.
            http_request("POST", f"{self.url}/Library/Refresh", b"", self.headers)


class Plex:
    """Ask Plex to scan the folder of a completed job (a partial scan of its library section)."""

    name = "Plex"
    events = {"completed"}

    def __init__(self, url, token=None, section=None):
        self.url = url.rstrip("/")
        self.where = shown_url(self.url)
        self.token = token
        self.section = section

    def send(self, event):
        folder = content_folder(event)
        section = self.section or self.section_for(folder)
        if section is None:  # no library holds the folder (or Plex sees it under another path)
            http_request("GET", self.address("/library/sections/all/refresh"))
        else:
            http_request("GET", self.address(f"/library/sections/{section}/refresh", path=folder))

    def address(self, endpoint, **query):
        if self.token:
            query["X-Plex-Token"] = self.token
        return f"{self.url}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def section_for(self, folder):
        """The key of the library section whose folder holds folder (the deepest), or None."""
        answer = http_request("GET", self.address("/library/sections"), headers={"Accept": "application/xml"})
        try:
            root = ElementTree.fromstring(answer)
        except ElementTree.ParseError:
            raise DeliveryFailed("its section list is not XML") from None
        best, best_length = None, -1
        for directory in root.iter("Directory"):
            for location in directory.iter("Location"):
                place = (location.get("path") or "").rstrip("/")
                if place and (folder == place or folder.startswith(place + "/")) and len(place) > best_length:
                    best, best_length = directory.get("key"), len(place)
        return best


def targets_from_config(config):
    """The targets the settings name, and the Secrets of their URLs and tokens."""
    targets, secrets = [], []
    if config["WEBHOOK_URL"]:
        targets.append(Webhook(config["WEBHOOK_URL"]))
        secrets += url_secrets(config["WEBHOOK_URL"])
    for url in config["APPRISE_URLS"]:
        targets.append(AppriseTarget(url))
        secrets += url_secrets(url, whole=True)
    if config["JELLYFIN_URL"]:
        targets.append(Jellyfin(config["JELLYFIN_URL"], config["JELLYFIN_TOKEN"]))
        secrets += [config["JELLYFIN_TOKEN"], *url_secrets(config["JELLYFIN_URL"])]
    if config["PLEX_URL"]:
        targets.append(Plex(config["PLEX_URL"], config["PLEX_TOKEN"], config["PLEX_SECTION"]))
        secrets += [config["PLEX_TOKEN"], *url_secrets(config["PLEX_URL"])]
    return targets, Secrets(secrets)
