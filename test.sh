#!/usr/bin/env bash
# Install everything the tests need (Debian's opentracker, chromium, transmission-cli, redis-server and
# postgresql; Python packages, the cluster's too), then run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v opentracker >/dev/null || missing+=(opentracker)
command -v chromium >/dev/null || missing+=(chromium)
command -v transmission-remote >/dev/null || missing+=(transmission-cli)  # tests/test_transmission.py
# The cluster tier (tests/cluster_servers.py) starts its own servers; Debian's packages start none without systemd.
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-cluster.txt
exec .venv/bin/python -m pytest "$@"
