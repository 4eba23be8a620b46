# Sourced by the Flink benchmark scripts: Flink 1.20.1's jars (from the
# PyPI package apache-flink-libraries, pinned: the only Flink distribution
# on the registries this machine reaches), cached; the class path in $cp,
# the compiled classes in $build (after `compile File.java`), and the JVM
# flags Flink needs on Java 17 in $opens.
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
compile() { javac -d "$build" -cp "$cp" "$1"; }
opens="--add-opens=java.sql/java.sql=ALL-UNNAMED"
for p in java.util java.lang java.lang.reflect java.io java.net java.nio sun.nio.ch java.util.concurrent java.time java.text; do
  opens="$opens --add-opens=java.base/$p=ALL-UNNAMED"
done
