# syntax=docker/dockerfile:1
#
# timebucket in a container: `docker build -t timebucket:local .`
# The entrypoint is the CLI, so `docker run --rm timebucket:local worker`
# (or `topics`, `ingest FILE`, `show`, ...) runs one subcommand.
# See docs/docker.md.

# ---- build: librdkafka is compiled from source by rdkafka-sys ------------
# (with TLS against Debian's OpenSSL: libssl-dev here, libssl3 at runtime)
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config python3 libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY . .
# The cargo registry and target directory live in BuildKit caches, so a
# rebuild after a source change recompiles only timebucket, not librdkafka.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin timebucket \
 && cp target/release/timebucket /usr/local/bin/timebucket

# ---- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin timebucket
COPY --from=build /usr/local/bin/timebucket /usr/local/bin/timebucket
# Built-in copy of the topic definitions; compose mounts ./topics over it.
COPY topics /topics
ENV RUST_LOG=info \
    TOPICS_DIR=/topics
USER timebucket
ENTRYPOINT ["timebucket"]
CMD ["--help"]
