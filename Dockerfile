# Sluice in a container: build from source, run on a slim Debian.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin sluice

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
EXPOSE 5433
VOLUME /var/lib/sluice
# Beyond loopback, clients log in with passwords: the superuser "sluice",
# whose password the container takes from SLUICE_PASSWORD.
ENTRYPOINT ["sluice", "--listen", "0.0.0.0:5433", "--data-dir", "/var/lib/sluice", "--auth", "password", "--superuser", "sluice"]
