#!/usr/bin/env bash
# Install what the benchmark needs (Debian's opentracker, aria2, transmission-cli, redis-server and
# postgresql for the cluster part, and qbittorrent-nox where apt has it; the Python packages, the
# cluster's too), then run bench/bench.py on loopback.
# Extra arguments go to bench.py (--repeats N, --raw-variant KEY=JSON, --parts ..., --help).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
command -v opentracker >/dev/null || missing+=(opentracker)
command -v aria2c >/dev/null || missing+=(aria2)
command -v transmission-cli >/dev/null || missing+=(transmission-cli)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] || ! command -v qbittorrent-nox >/dev/null; then
  $sudo apt-get update -qq
fi
if ! command -v qbittorrent-nox >/dev/null; then
  # grep reads all of it: with pipefail, grep -q's early exit fails the pipe (SIGPIPE)
  if apt-cache policy qbittorrent-nox 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    missing+=(qbittorrent-nox)
  else
    echo "qbittorrent-nox is not in apt here; the bench runs without it" >&2
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-cluster.txt
exec .venv/bin/python bench/bench.py "$@"
