"""`python app.py` in a subprocess on loopback, driven over HTTP, and what /proc says about a process."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from swarm import free_port, loopback_app_env, wait_until

ROOT = Path(__file__).resolve().parent.parent
HTTP_TIMEOUT = 60  # seconds for any one request
IDLE_REOPEN = 30  # seconds idle after which a kept-alive connection is opened anew (see request())
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class AppServer:
    """hashdrop as a user runs it (`python app.py`, waitress), on 127.0.0.1 with discovery off."""

    def __init__(self, workdir, tracker_url, save_path=None):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = loopback_app_env(self.port, save_path or workdir / "downloads", workdir / "data", tracker_url)
        self.log_path = workdir / "server.log"
        self.process = None
        self._connection = None
        self._last_used = 0.0  # monotonic time of the last request on the connection
        self._cookie = None
        self._token = None

    @property
    def pid(self):
        """The server process's id."""
        return self.process.pid

    def start(self, timeout=30):
        """Start the server and wait until it answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=self.env, cwd=ROOT,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout, f"the app did not start; see {self.log_path}", interval=0.1)
        return self

    def _answers(self):
        """True once GET /api/jobs answers; fail at once if the server exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the app exited {self.process.returncode}: {log_tail(self.log_path)}")
        try:
            return self.request("GET", "/api/jobs")[0] == 200
        except OSError:
            self._close_connection()
            return False

    def stop(self, timeout=20):
        """SIGTERM (the app saves resume data and exits), then SIGKILL if it hangs."""
        self._close_connection()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    # HTTP ------------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None):
        """One request on the kept-alive connection: (status, response headers, body bytes).

        The server closes a connection idle for HASHDROP_IDLE_TIMEOUT (60 s): one idle for half
        of that is opened anew before a request (a POST lost to a closing connection cannot be
        sent again blindly), and a GET that still meets a closed one is sent again."""
        if time.monotonic() - self._last_used > IDLE_REOPEN:
            self._close_connection()
        try:
            return self._request(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if method != "GET":
                raise
            return self._request(method, path, body, headers)

    def _request(self, method, path, body=None, headers=None):
        self._last_used = time.monotonic()
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            self._connection.request(method, path, body=body, headers=headers or {})
            response = self._connection.getresponse()
            answer = response.status, response.headers, response.read()
            self._last_used = time.monotonic()
            return answer
        except (OSError, http.client.HTTPException):
            self._close_connection()  # the next request opens a new one
            raise

    def timed(self, method, path, body=None, headers=None, expect=200):
        """Seconds from sending a request to having read all of its answer."""
        started = time.perf_counter()
        status, _, _ = self.request(method, path, body, headers)
        elapsed = time.perf_counter() - started
        if status != expect:
            raise RuntimeError(f"{method} {path} answered {status}, not {expect}")
        return elapsed

    def api(self, method, path, body=None):
        """Call the JSON API; return the decoded answer (None for an empty one)."""
        data = json.dumps(body).encode() if body is not None else None
        status, _, text = self.request(method, path, data, {"Content-Type": "application/json"})
        if status >= 400:
            raise RuntimeError(f"{method} {path} answered {status}: {text[:300]!r}")
        return json.loads(text) if text else None

    def job(self, info_hash):
        """One job as the API shows it."""
        return self.api("GET", f"/api/jobs/{info_hash}")

    def jobs(self):
        """Every job as the API shows it."""
        return self.api("GET", "/api/jobs")

    def submit_api(self, items):
        """Start jobs through POST /api/jobs (for setting up, not for timing)."""
        return self.api("POST", "/api/jobs", {"hashes": list(items)})

    def submit_form(self, items):
        """POST /start-downloads as the page's form does; return the seconds until the 303."""
        if self._token is None:
            self.fetch_token()
        body = urllib.parse.urlencode({"csrf_token": self._token, "downloads": "\n".join(items)})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": self._cookie}
        # The 303 is the answer: a browser's GET / that follows is another request.
        return self.timed("POST", "/start-downloads", body, headers, expect=303)

    def fetch_token(self):
        """Read a CSRF token and its session cookie from the page, as a browser would."""
        status, headers, page = self.request("GET", "/")
        match = TOKEN.search(page.decode())
        if status != 200 or match is None:
            raise RuntimeError(f"GET / answered {status} without a csrf_token")
        self._token = match.group(1)
        # Kept as first set: flashed messages then never pile up in the cookie.
        self._cookie = headers["Set-Cookie"].split(";", 1)[0]

    def _close_connection(self):
        """Drop the kept-alive connection; the next request opens a new one."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def log_tail(path, limit=2000):
    """The end of a log file, for error messages."""
    try:
        return Path(path).read_text(errors="replace")[-limit:]
    except OSError as error:
        return f"<no log: {error}>"


# /proc ----------------------------------------------------------------------------------

def cpu_seconds(pid):
    """User + system CPU time a process has used so far (utime + stime of /proc/<pid>/stat)."""
    return stat_seconds(f"/proc/{pid}/stat")


def stat_seconds(path):
    """utime + stime of a /proc stat file (a process's or a thread's); 0 once it has gone."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_seconds(pid):
    """{thread id: CPU seconds} for each thread a process has now."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    return {task.name: stat_seconds(task / "stat") for task in tasks}


class CpuMeter:
    """The CPU a process uses from now until stop(): in all, and in its busiest thread."""

    def __init__(self, pid):
        self.pid = pid
        self.total = cpu_seconds(pid)
        self.threads = thread_seconds(pid)

    def stop(self):
        """(CPU seconds in all, CPU seconds of the busiest thread) since the meter was made."""
        now = thread_seconds(self.pid)
        busiest = max((seconds - self.threads.get(tid, 0.0) for tid, seconds in now.items()), default=0.0)
        return cpu_seconds(self.pid) - self.total, busiest


def proc_status(pid):
    """{"rss_mib": VmRSS, "hwm_mib": VmHWM (peak), "threads": Threads} from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key] = value.split()
    return {"rss_mib": int(values["VmRSS"][0]) / 1024, "hwm_mib": int(values["VmHWM"][0]) / 1024,
            "threads": int(values["Threads"][0])}


def wait_quiet(pid, timeout=60, window=0.5, below=0.10):
    """Wait until a process uses less than `below` of a core over `window` seconds; return whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)  # measuring over a window, not synchronising
        if (cpu_seconds(pid) - before) / window < below:
            return True
    return False
