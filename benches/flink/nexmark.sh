#!/usr/bin/env bash
# Runs Nexmark queries as written in Apache Flink 1.20.1 (local MiniCluster,
# Nexmark's own Flink settings, same query files, same events, same
# parallelism) for comparison with
# `cargo bench --bench nexmark`. Flink has no nexmark connector here, so it
# reads the events from the JSON file the Sluice benchmark writes:
#
#   SOURCE=files EVENTS=10000000 cargo bench --bench nexmark
#   benches/flink/nexmark.sh [events] [parallelism] [q0 q1 ...]
#
# Prints, per query (each in its own JVM), the seconds from the INSERT to
# the job's end, and the JVM's CPU seconds and peak memory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
events="${1:-10000000}"
parallelism="${2:-2}"
shift 2 || true
queries=("$@")
if [ ${#queries[@]} -eq 0 ]; then
  queries=(q0 q1 q2 q3 q4 q5 q7 q8 q9 q10 q13 q15 q16 q17 q18 q19 q20 q21 q22)
fi
data="$here/../../target/bench-data/nexmark-$events"
[ -f "$data/_ddl.sql" ] || { echo "no events in $data: run SOURCE=files EVENTS=$events cargo bench --bench nexmark first" >&2; exit 1; }
. "$here/setup.sh"
compile "$here/FlinkNexmark.java"
out="$(mktemp -d)"
mkdir -p "$out/data"
# q13's side input, as Nexmark's SideInputGenerator writes it.
seq 0 9999 | awk '{ print $1 "," $1 }' > "$out/data/side_input.txt"
for q in "${queries[@]}"; do
  /usr/bin/time -f "flink $q peak memory %M KiB, CPU %U s user %S s system" java $opens \
    -cp "$build:$cp" FlinkNexmark "$data/_ddl.sql" "$here/../../tests/data/nexmark" "$out" "$parallelism" "$q" 2>&1 \
    | grep --line-buffered -E "^flink "
done
rm -rf "$out"
