#!/usr/bin/env bash
# The data directory's size while the README's walkthrough runs: the
# datagen call stream at 5,000 rows/s and the walkthrough's seven views
# (tumbling KPIs, sliding failures, sessions, an hourly count, a self
# interval join, per-cell counts and a view over them), checkpointing every
# second. Prints the data directory's size, the write-ahead log's share,
# and the views' rows every INTERVAL seconds for MINUTES minutes.
#
#   cargo build --release && benches/walkthrough_disk.sh            # 3 minutes
#   MINUTES=10 benches/walkthrough_disk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
bin="${SLUICE_BIN:-$target/release/sluice}"
minutes="${MINUTES:-3}"
interval="${INTERVAL:-30}"
port="${PORT:-55499}"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

"$bin" --listen "127.0.0.1:$port" --data-dir "$dir/data" --log warn &
pid=$!
for _ in $(seq 1 100); do
  psql -h 127.0.0.1 -p "$port" -U sluice -X -q -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.1
done
psql -h 127.0.0.1 -p "$port" -U sluice -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE calls WITH ('connector' = 'datagen', 'rows-per-second' = '5000');
CREATE MATERIALIZED VIEW kpi AS
SELECT window_start, window_end, cell_id, COUNT(*) AS calls,
       COUNT(*) FILTER (WHERE status <> 'ok') AS failures, AVG(duration_ms) AS avg_ms
FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, cell_id;
CREATE MATERIALIZED VIEW failures_1m AS
SELECT window_start, window_end, cell_id, COUNT(*) AS failures
FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
WHERE status <> 'ok' GROUP BY window_start, window_end, cell_id EMIT ON WINDOW CLOSE;
CREATE MATERIALIZED VIEW sessions WITH ('allowed-lateness' = '1 min') AS
SELECT window_start, window_end, msisdn, COUNT(*) AS calls
FROM TABLE(SESSION(TABLE calls PARTITION BY msisdn, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY window_start, window_end, msisdn;
CREATE MATERIALIZED VIEW hourly AS
SELECT window_start, cell_id, COUNT(*) AS calls
FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' HOUR))
GROUP BY window_start, window_end, cell_id EMIT EVERY INTERVAL '10' SECOND;
CREATE MATERIALIZED VIEW callbacks AS
SELECT f.msisdn, f.ts AS failed_at, r.ts AS retried_at
FROM calls f JOIN calls r
  ON f.msisdn = r.msisdn AND r.ts > f.ts AND r.ts <= f.ts + INTERVAL '1' MINUTE
WHERE f.status <> 'ok';
CREATE MATERIALIZED VIEW per_cell AS SELECT cell_id, COUNT(*) AS calls FROM calls GROUP BY cell_id;
CREATE MATERIALIZED VIEW busy_cells AS SELECT cell_id, calls FROM per_cell WHERE calls > 100;
SQL

size() { du -sb "$1" 2>/dev/null | cut -f1; }
mib() { echo $(( $1 / 1048576 )); }
echo "seconds  data_dir_MiB  wal_MiB  wal_files  view_rows"
elapsed=0
while [ "$elapsed" -lt $(( minutes * 60 )) ]; do
  sleep "$interval"
  elapsed=$(( elapsed + interval ))
  total=$(size "$dir/data")
  wal=0
  files=0
  for f in "$dir"/data/db/*.log; do
    [ -e "$f" ] || continue
    wal=$(( wal + $(stat -c %s "$f") ))
    files=$(( files + 1 ))
  done
  rows=$(psql -h 127.0.0.1 -p "$port" -U sluice -X -A -t -c \
    "SELECT (SELECT count(*) FROM kpi) + (SELECT count(*) FROM failures_1m) + (SELECT count(*) FROM sessions)
          + (SELECT count(*) FROM hourly) + (SELECT count(*) FROM callbacks) + (SELECT count(*) FROM per_cell)
          + (SELECT count(*) FROM busy_cells)")
  printf "%7d  %12d  %7d  %9d  %9s\n" "$elapsed" "$(mib "$total")" "$(mib "$wal")" "$files" "$rows"
done
