#!/usr/bin/env bash
# Install hashdrop into .venv and serve it on http://127.0.0.1:5000 (HASHDROP_* settings apply).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec .venv/bin/python app.py
