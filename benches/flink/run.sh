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
. "$here/setup.sh"
compile "$here/FlinkBench.java"
/usr/bin/time -f "peak memory %M KiB" java $opens \
  -cp "$build:$cp" FlinkBench "$file" "$parallelism" 2>&1 | grep -E "flink seconds|peak memory"
