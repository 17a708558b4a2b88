#!/usr/bin/env bash
# Install everything the tests need (Debian's opentracker, chromium and transmission-cli, Python packages),
# then run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v opentracker >/dev/null || missing+=(opentracker)
command -v chromium >/dev/null || missing+=(chromium)
command -v transmission-remote >/dev/null || missing+=(transmission-cli)  # tests/test_transmission.py
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
