"""A loopback HTTP server that stands in for a webhook receiver, Jellyfin, Plex and an Apprise
json:// endpoint: it records every request and answers 204, or what a test sets per path."""
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from swarm import CLIENT_HOST, wait_until


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict
    body: bytes


class Receiver:
    """Record requests on 127.0.0.1:port; answers[path] = (status, body) overrides the 204."""

    def __init__(self, port=0):
        self.port = port
        self.requests = []
        self.answers = {}
        self.server = None
        self.thread = None
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://{CLIENT_HOST}:{self.port}"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.lock:
                    receiver.requests.append(Request(self.command, self.path, dict(self.headers), body))
                    status, answer = receiver.answers.get(self.path.partition("?")[0], (204, b""))
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((CLIENT_HOST, self.port), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(10)
            self.server = None

    def to(self, path):
        """The requests made to path (without the query string)."""
        with self.lock:
            return [r for r in self.requests if r.path.partition("?")[0] == path]

    def wait_for(self, path, count=1, timeout=20):
        """Wait until count requests reached path; return them."""
        return wait_until(lambda: len(self.to(path)) >= count and self.to(path), timeout,
                          f"{count} request(s) to {path} did not come; got {[r.path for r in self.requests]}")
