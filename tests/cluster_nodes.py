"""Download nodes for the cluster tier: each a real `celery -A hashdrop_cluster worker` subprocess
with its own libtorrent session on its own loopback address, save path and data folder."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from swarm import LOOPBACK_ENVIRONMENT, _log_tail, wait_until

REPO = Path(__file__).resolve().parent.parent
NODE_HOSTS = ("127.0.0.3", "127.0.0.4")  # the seeder is 127.0.0.2; tests using nodes run one at a time
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# Short cluster timings, so that leases, reconciles and redeliveries happen within a test.
TEST_TIMINGS = {"NODE_LEASE": "3", "RECONCILE_SECONDS": "1", "VISIBILITY_TIMEOUT": "30"}


def cluster_settings(broker_url, database_url, **settings):
    """The settings every process of a test cluster shares, as a dict for load_plain/make_celery."""
    return {"MODE": "cluster", "BROKER_URL": broker_url, "DATABASE_URL": database_url, **TEST_TIMINGS,
            **settings}


class Node:
    """One download node: start(), ready when it answers a ping; stop() (SIGTERM), kill9(),
    sigstop()/sigcont(); log() is what it wrote."""

    def __init__(self, celery, name, host, root, settings, concurrency=2, save_path=None):
        self.celery = celery  # a cluster.celery_app.make_celery app to ping it with
        self.name = f"{name}@test"
        self.host = host
        self.concurrency = concurrency
        self.save_path = Path(save_path or root / f"{name}-downloads")
        self.data_dir = root / f"{name}-data"
        self.log_path = root / f"{name}.log"
        self.settings = settings
        self.process = None
        self.started_in = None  # seconds from Popen to the first ping answered, at the last start

    def environment(self):
        return {
            **os.environ, **LOOPBACK_ENVIRONMENT,
            **{f"HASHDROP_{key}": value if isinstance(value, str) else json.dumps(value)
               for key, value in self.settings.items()},
            "HASHDROP_SAVE_PATH": str(self.save_path), "HASHDROP_DATA_DIR": str(self.data_dir),
            "HASHDROP_LISTEN_INTERFACES": f"{self.host}:0", "HASHDROP_OUTGOING_INTERFACES": self.host,
            "PYTHONPATH": str(REPO),
        }

    def start(self):
        command = [sys.executable, "-m", "celery", "-A", "hashdrop_cluster", "worker", "-P", "threads",
                   "-c", str(self.concurrency), "-n", self.name, "-Q", "hashdrop.downloads",
                   "-l", "INFO", "--without-mingle", "--without-gossip"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.environment(), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, START_TIMEOUT, f"node {self.name} did not start", interval=0.1)
        self.started_in = time.monotonic() - started
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"node {self.name} exited {self.process.returncode}: {_log_tail(self.log_path)}")
        if f"node {self.name} ready" not in self.log():
            return False
        try:
            return bool(self.celery.control.ping(destination=[self.name], timeout=0.5))
        except Exception:  # noqa: BLE001  a pooled broker connection that died with a Redis restart
            return False  # kombu makes a new one for the next ping

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait for the node to exit; the seconds it took (it is killed after timeout)."""
        if not self.running():
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGCONT)  # a frozen node cannot exit
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"node {self.name} did not exit within {timeout} s of SIGTERM: "
                                 f"{_log_tail(self.log_path)}") from None
        return time.monotonic() - started

    def kill9(self):
        if self.running():
            self.process.kill()
            self.process.wait(10)

    def sigstop(self):
        self.process.send_signal(signal.SIGSTOP)

    def sigcont(self):
        self.process.send_signal(signal.SIGCONT)
