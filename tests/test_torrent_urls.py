"""Fetching .torrent files by URL (torrent_urls): a real HTTP server on loopback answers."""
import http.server
import threading
import time

import pytest

from torrent_files import MAX_TORRENT_BYTES
from torrent_urls import FetchError, allow_rules, fetch, is_allowed, shown

LOOPBACK = allow_rules("127.0.0.0/8")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        answer = self.server.routes.get(self.path.split("?")[0])
        if answer is None:
            self.send_error(404, "Not Found")
            return
        answer(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    """A web server on 127.0.0.1: routes[path] = function(handler); requests lists what came."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.routes, server.requests = {}, []
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def body(data, length=True):
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-bittorrent")
        if length:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return answer


def redirect(location):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.mark.parametrize("address, allowed", [
    ("93.184.216.34", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.1.10", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("0.0.0.0", False), ("100.64.0.1", False),
])
def test_by_default_only_public_addresses_are_fetched_from(address, allowed):
    assert is_allowed(address, allow_rules("public")) is allowed


def test_rules_add_networks_and_say_what_is_wrong():
    rules = allow_rules("public, 192.168.1.0/24,10.0.0.5")
    assert is_allowed("192.168.1.77", rules) and is_allowed("10.0.0.5", rules)
    assert not is_allowed("10.0.0.6", rules) and is_allowed("8.8.8.8", rules)
    assert allow_rules([]) == [] and not is_allowed("8.8.8.8", allow_rules(""))
    with pytest.raises(ValueError, match="'lan' is neither"):
        allow_rules("public,lan")


def test_messages_never_show_a_urls_secrets():
    assert shown("https://user:pw@tracker.example:8443/dl/5?apikey=SECRET") == "https://tracker.example:8443/dl/5"


def test_a_torrent_is_fetched_through_redirects_with_the_cookies_given(web):
    web.routes["/a.torrent"] = body(b"d4:infod4:name1:aee")
    web.routes["/old"] = redirect("/a.torrent")
    assert fetch(f"{web.url}/old?apikey=1", LOOPBACK, 10, cookies="uid=5") == ("torrent", b"d4:infod4:name1:aee")
    assert [path for path, _ in web.requests] == ["/old?apikey=1", "/a.torrent"]
    assert web.requests[0][1]["Cookie"] == "uid=5" and web.requests[0][1]["Host"] == web.url[7:]


def test_a_redirect_to_a_magnet_link_is_that_magnet(web):
    link = "magnet:?xt=urn:btih:" + "ab" * 20
    web.routes["/get"] = redirect(link)
    assert fetch(f"{web.url}/get", LOOPBACK, 10) == ("magnet", link)


def test_nothing_is_asked_of_an_address_the_rules_do_not_allow(web):
    web.routes["/a.torrent"] = body(b"d4:infod4:name1:aee")
    with pytest.raises(FetchError, match="127.0.0.1, which hashdrop does not fetch from"):
        fetch(f"{web.url}/a.torrent", allow_rules("public"), 10)
    web.routes["/away"] = redirect(f"{web.url.replace('127.0.0.1', '127.0.0.2')}/a.torrent")
    with pytest.raises(FetchError, match="127.0.0.2, which hashdrop does not fetch from"):
        fetch(f"{web.url}/away", allow_rules("127.0.0.1"), 10)  # a redirect is checked too
    assert [path for path, _ in web.requests] == ["/away"]


def test_errors_sizes_loops_and_silence_are_refused_with_a_reason(web, monkeypatch):
    web.routes["/big"] = body(b"x" * (MAX_TORRENT_BYTES + 1))
    web.routes["/big-unsaid"] = body(b"x" * (MAX_TORRENT_BYTES + 1), length=False)
    web.routes["/loop"] = redirect("/loop")
    web.routes["/silent"] = lambda handler: time.sleep(3)
    for path, said in (("/missing", "answered 404 Not Found"), ("/big", "a .torrent file may be at most"),
                       ("/big-unsaid", "is more than"), ("/loop", "redirected more than 5 times"),
                       ("/silent", "could not be fetched|did not answer in time")):
        with pytest.raises(FetchError, match=said):
            fetch(f"{web.url}{path}", LOOPBACK, 1)
    for url, said in (("ftp://127.0.0.1/a", "not an http or https URL"), ("http://:80/a", "not an http")):
        with pytest.raises(FetchError, match=said):
            fetch(url, LOOPBACK, 1)
