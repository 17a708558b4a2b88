"""The cluster's servers for tests: PostgreSQL and Redis on 127.0.0.1, each from a temporary
directory, started without systemd and stopped again (docs: /work/shared/scale-out-notes.md §1 Q3)."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from swarm import CLIENT_HOST, Service, _log_tail, free_port, wait_until

START_TIMEOUT = 30.0  # seconds; initdb takes about 1 s here, pg_ctl start 0.1 s, redis 0.01 s


def postgres_bin_dir():
    """The newest installed PostgreSQL's bin folder (Debian keeps them out of PATH), or None."""
    bin_dirs = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if bin_dirs:
        return max(bin_dirs, key=lambda bin_dir: int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_postgres():
    """Why PostgreSQL servers cannot be started here, or None when they can."""
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; test.sh does it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run PostgreSQL as"
    return None


def missing_redis():
    """Why a Redis server cannot be started here, or None when it can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; test.sh does it)"
    return None


class PostgresServer(Service):
    """A PostgreSQL cluster of its own on 127.0.0.1 and a free port, fsync off (a test's data is
    thrown away), its unix socket in its own folder; stop() and start() again keep the data."""

    def __init__(self, host=CLIENT_HOST):
        self.host = host
        self.port = None
        self.dir = None
        self.bin = postgres_bin_dir()

    @property
    def data(self):
        return self.dir / "data"

    @property
    def log(self):
        return self.dir / "postgres.log"

    def url(self, database="postgres"):
        """A libpq URL for one database of this server (user postgres, no password: trust)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, *command):
        """Run one of PostgreSQL's programs, as the postgres user when we are root (initdb refuses root)."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, str(self.bin / command[0]), *command[1:]], capture_output=True,
                                text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise AssertionError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}"
                                 f"\n{_log_tail(self.log)}")
        return result

    def start(self):
        """Make the cluster the first time (initdb), then start it and wait until it accepts connections."""
        if self.dir is None:
            # Not pytest's tmp_path: the postgres user must reach it, and /tmp/pytest-of-root is 0700.
            self.dir = Path(tempfile.mkdtemp(prefix="hashdrop-postgres-", dir="/tmp"))
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres")
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                      "-E", "UTF8", "--locale", "C")
            self.port = free_port(socket.SOCK_STREAM, self.host)
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(START_TIMEOUT)),
                  "-o", options, "start")
        return self

    def running(self):
        """Whether the server's process is up (pg_ctl status)."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        status = subprocess.run([*prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                                capture_output=True, timeout=START_TIMEOUT)
        return status.returncode == 0

    def stop(self, remove=True):
        """Stop the server (fast: open sessions are ended); remove its folder unless told not to."""
        if self.dir is None:
            return
        if self.data.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class RedisServer(Service):
    """redis-server on 127.0.0.1 and a free port, its files in a temporary folder; append-only on, so
    restart() keeps what was queued, as a production Redis with appendonly yes does."""

    def __init__(self, host=CLIENT_HOST):
        self.host = host
        self.port = None
        self.dir = None
        self.process = None

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log(self):
        return self.dir / "redis.log"

    def start(self):
        """Start redis-server (the first time on a new free port) and wait until it answers PING."""
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="hashdrop-redis-", dir="/tmp"))
            self.port = free_port(socket.SOCK_STREAM, self.host)
        command = ["redis-server", "--bind", self.host, "--port", str(self.port), "--dir", str(self.dir),
                   "--save", "", "--appendonly", "yes", "--logfile", str(self.log)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._answers, START_TIMEOUT, f"redis-server did not start: {command}")
        return self

    def _answers(self):
        """Whether Redis answers PING (its inline protocol: no client package needed); fail if it exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited {self.process.returncode}: {_log_tail(self.log)}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _terminate(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # redis-server exits in about 0.1 s, its append-only file written
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self):
        """Stop Redis and start it again on the same port with the same files."""
        self._terminate()
        return self.start()

    def stop(self):
        """Stop Redis and remove its folder."""
        self._terminate()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
