#!/usr/bin/env bash
# Runs the throughput benchmark's query in Apache Flink 1.20.1 (local
# MiniCluster, same SQL, same file, same parallelism) for comparison.
# Needs Java 17 (javac, java). Flink's jars come from the PyPI package
# apache-flink-libraries (pinned), the only Flink distribution on the
# registries this machine reaches.
#
#   cargo bench --bench throughput     # generates target/bench-data/calls-5000000-1000.json
#   benches/flink/run.sh [file] [parallelism]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
file="${1:-$here/../../target/bench-data/calls-5000000-1000.json}"
parallelism="${2:-2}"
cache="${SLUICE_TOOLS:-$HOME/.cache/sluice-tools}/flink"
lib="$cache/apache-flink-libraries-1.20.1/deps/lib"
if [ ! -d "$lib" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps "apache-flink-libraries==1.20.1" -d "$cache"
  tar xzf "$cache/apache-flink-libraries-1.20.1.tar.gz" -C "$cache"
fi
cp="$(ls "$lib"/*.jar | tr '\n' ':')"
build="$cache/classes"
mkdir -p "$build"
javac -d "$build" -cp "$cp" "$here/FlinkBench.java"
opens=""
for p in java.util java.lang java.lang.reflect java.io java.net java.nio sun.nio.ch java.util.concurrent java.time java.text; do
  opens="$opens --add-opens=java.base/$p=ALL-UNNAMED"
done
/usr/bin/time -f "peak memory %M KiB" java $opens --add-opens=java.sql/java.sql=ALL-UNNAMED \
  -cp "$build:$cp" FlinkBench "$file" "$parallelism" 2>&1 | grep -E "flink seconds|peak memory"
