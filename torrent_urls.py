"""Fetching a .torrent file by URL, for the Transmission RPC's torrent-add: only from the
addresses HASHDROP_URL_ALLOW lets through, at most MAX_TORRENT_BYTES, within a timeout.

The RPC takes URLs from other machines (Sonarr, Prowlarr), so a URL must not be a way to probe
the LAN or the box itself: by default only public addresses are fetched from. The host is
resolved once, the address checked, and the connection made to that very address, so a name
that resolves elsewhere the second time (DNS rebinding) reaches nothing it was not allowed to.
Redirects are followed a few times, each checked the same way; one to a magnet link is taken
as that magnet (indexers such as Prowlarr answer so for magnet-only releases).
"""
import base64
import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import unquote, urljoin, urlsplit

from torrent_files import MAX_TORRENT_BYTES

PUBLIC = "public"  # every globally routable address: not loopback, private, link-local, ...
MAX_REDIRECTS = 5
USER_AGENT = "hashdrop (Transmission RPC)"


class FetchError(Exception):
    """The URL cannot be fetched; the text says why, for a person."""


def allow_rules(value):
    """HASHDROP_URL_ALLOW as a list of rules: "public" and networks ("192.168.1.0/24",
    "10.0.0.5"). A JSON list, or comma separated; raise ValueError naming a bad entry."""
    if isinstance(value, str):
        value = value.split(",")
    rules = []
    for entry in (str(item).strip() for item in value):
        if not entry:
            continue
        if entry.lower() == PUBLIC:
            rules.append(PUBLIC)
            continue
        try:
            rules.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is neither \"public\" nor an address or network "
                             "such as 192.168.1.0/24") from None
    return rules


def is_allowed(address, rules):
    """Whether an IP address (text) may be fetched from under these rules."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip.is_global if rule == PUBLIC else ip in rule for rule in rules)


def fetch(url, rules, timeout, cookies=""):
    """("torrent", bytes) or ("magnet", link) for a URL; FetchError with the reason otherwise."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        location, body = fetch_once(url, rules, deadline, cookies)
        if location is None:
            return "torrent", body
        if location.lower().startswith("magnet:"):
            return "magnet", location
        url = urljoin(url, location)
    raise FetchError(f"{shown(url)} redirected more than {MAX_REDIRECTS} times.")


def fetch_once(url, rules, deadline, cookies):
    """(redirect location, None) or (None, body) for one GET of url."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{shown(url)} is not an http or https URL.")
    address = checked_address(parts, rules, deadline)
    connection = pinned_connection(parts, address, remaining(deadline, url))
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else "") or "/",
                           headers=request_headers(parts, cookies))
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            return response.getheader("Location"), None
        if response.status != 200:
            raise FetchError(f"{shown(url)} answered {response.status} {response.reason}.")
        return None, read_body(response, url, deadline)
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{shown(url)} could not be fetched: {reason(exc)}.") from None
    finally:
        connection.close()


def checked_address(parts, rules, deadline):
    """The address to connect to for the URL's host: its first one, if the rules allow it."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{parts.hostname} cannot be found: {reason(exc)}.") from None
    address = found[0][4][0]
    if not is_allowed(address, rules):
        raise FetchError(f"{parts.hostname} is at {address}, which hashdrop does not fetch from "
                         "(HASHDROP_URL_ALLOW; by default public addresses only).")
    remaining(deadline, parts.geturl())
    return address


def pinned_connection(parts, address, timeout):
    """An HTTP(S) connection to the checked address that names the URL's host."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        return PinnedHTTPSConnection(parts.hostname, port, address, timeout)
    return PinnedHTTPConnection(parts.hostname, port, address, timeout)


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address given, not to whatever the host name resolves to now; the name
    still goes in the Host header."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """The same over TLS, the certificate checked against the host name (and SNI sent)."""

    default_port = 443

    def connect(self):
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


def request_headers(parts, cookies):
    headers = {"User-Agent": USER_AGENT, "Accept": "application/x-bittorrent, */*"}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    if cookies:
        headers["Cookie"] = cookies
    return headers


def read_body(response, url, deadline):
    """The body, at most MAX_TORRENT_BYTES, read before the deadline."""
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > MAX_TORRENT_BYTES:
        raise FetchError(f"{shown(url)} is {int(length):,} bytes; a .torrent file may be at most "
                         f"{MAX_TORRENT_BYTES:,}.")
    chunks, size = [], 0
    while True:
        remaining(deadline, url)  # each read waits at most the timeout left at the connection
        chunk = response.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_TORRENT_BYTES:
            raise FetchError(f"{shown(url)} is more than {MAX_TORRENT_BYTES:,} bytes; a .torrent "
                             "file is not that big.")
        chunks.append(chunk)


def remaining(deadline, url):
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"{shown(url)} did not answer in time.")
    return left


def shown(url):
    """The URL as messages show it: without its user name, password or query (API keys)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "The URL"


def reason(exc):
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
