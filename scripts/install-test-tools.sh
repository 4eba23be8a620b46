#!/usr/bin/env bash
# Installs what the tests need besides Rust and apt packages: the tansu
# Kafka-protocol broker, a Python venv with the clients the tests drive
# (psycopg 3, psycopg2, SQLAlchemy 2, pandas, pgcli), and node-postgres, all
# under ~/.cache/sluice-tools.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/install-broker.sh"
dest="${SLUICE_TOOLS:-$HOME/.cache/sluice-tools}"
packages="psycopg[binary]==3.2.9 psycopg2-binary==2.9.13 SQLAlchemy==2.0.59 pandas==2.2.3 pgcli==4.7.1"
if ! "$dest/venv/bin/python" -c "import psycopg, psycopg2, sqlalchemy, pandas, pgcli" 2>/dev/null; then
  [ -x "$dest/venv/bin/python" ] || python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install --quiet $packages
fi
"$dest/venv/bin/python" -c "import psycopg, psycopg2, sqlalchemy, pandas; print('psycopg', psycopg.__version__, 'psycopg2', psycopg2.__version__.split()[0], 'sqlalchemy', sqlalchemy.__version__, 'pandas', pandas.__version__)"

# node-postgres, for tests/clients/node_pg_check.js.
if ! [ -f "$dest/node/node_modules/pg/package.json" ]; then
  mkdir -p "$dest/node"
  (cd "$dest/node" && npm install --silent --no-audit --no-fund pg@8.23.1 >/dev/null)
fi
node -e "console.log('node-postgres', require('$dest/node/node_modules/pg/package.json').version)"
