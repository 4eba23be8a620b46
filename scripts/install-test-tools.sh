#!/usr/bin/env bash
# Installs what the tests need besides Rust and apt packages: the tansu
# Kafka-protocol broker and a Python venv with psycopg 3, both under
# ~/.cache/sluice-tools.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/install-broker.sh"
dest="${SLUICE_TOOLS:-$HOME/.cache/sluice-tools}"
if ! "$dest/venv/bin/python" -c "import psycopg" 2>/dev/null; then
  python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install --quiet "psycopg[binary]==3.2.9"
fi
"$dest/venv/bin/python" -c "import psycopg; print('psycopg', psycopg.__version__)"
