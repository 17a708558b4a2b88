#!/usr/bin/env bash
# Install everything the tests need (Debian's opentracker, chromium, transmission-cli, redis-server and
# postgresql; Python packages), then run the whole suite in two parts: every test but the cluster
# tier in .venv-embedded, which has no cluster package (Celery, Redis, psycopg), as a user who never
# installs them has; then the cluster tier in .venv, which has them. Extra arguments go to pytest.
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
pip_install() { "$1/bin/python" -m pip install --quiet --disable-pip-version-check "${@:2}"; }
# pytest's 5 is "no test selected": arguments that name tests of one part only.
run_part() { local status=0; "$@" || status=$?; [ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"; }
[ -x .venv-embedded/bin/python ] || python3 -m venv .venv-embedded
pip_install .venv-embedded -r requirements-dev.txt
if .venv-embedded/bin/python -c "import celery" 2>/dev/null; then
  echo "test.sh: .venv-embedded has the cluster's packages; remove it to test embedded mode without them" >&2
  exit 1
fi
run_part .venv-embedded/bin/python -m pytest -m "not cluster" "$@"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip_install .venv -r requirements-dev.txt -r requirements-cluster.txt
run_part .venv/bin/python -m pytest -m cluster "$@"
