# timebucket in a container: `docker build -t timebucket:local .`
# The entrypoint is the CLI, so `docker run --rm timebucket:local worker`
# (or `topics`, `ingest FILE`, `show`, ...) runs one subcommand.
# See docs/docker.md.
#
# Build arguments (the defaults are what users build):
#   RUST_IMAGE     the build stage's base             (rust:1-bookworm)
#   RUNTIME_IMAGE  the runtime stage's base           (debian:bookworm-slim)
#   BINARY         where the binary comes from: `cargo` compiles it in the
#                  build stage; `prebuilt` copies prebuilt/timebucket from
#                  the build context instead (a binary cargo built for the
#                  same Debian release). The test suite builds both
#                  (scripts/images): `cargo` on a local stand-in for the
#                  rust image, `prebuilt` with the binary cargo built.
# Needs BuildKit (the default builder of current Docker): it builds only the
# stages the runtime stage uses, so `prebuilt` never runs cargo.
# No syntax directive: the builder's own Dockerfile frontend is used, so
# building needs no image but the two bases.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY=cargo

# ---- cargo: librdkafka is compiled from source by rdkafka-sys ---------------
# (with TLS against Debian's OpenSSL: libssl-dev here, libssl3 at runtime)
FROM ${RUST_IMAGE} AS cargo
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config python3 libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY . .
# The cargo registry and target directory live in BuildKit caches, so a
# rebuild after a source change recompiles only timebucket, not librdkafka.
# COPY keeps the context's modification times, and cargo trusts them: a tree
# whose files are older than the cached build (another checkout, an older
# copy) would look up to date and yield the other tree's binary. Touching
# the copied sources makes cargo build the workspace's own crates from them
# (this step runs only when the context changed).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    find . -path ./target -prune -o -type f -exec touch {} + \
 && cargo build --release --locked --bin timebucket \
 && cp target/release/timebucket /usr/local/bin/timebucket

# ---- prebuilt: a binary from the build context -----------------------------
FROM scratch AS prebuilt
COPY prebuilt/timebucket /usr/local/bin/timebucket

# The stage chosen by BINARY.
FROM ${BINARY} AS binary

# ---- runtime: no compiler, no cargo, a non-root user -----------------------
FROM ${RUNTIME_IMAGE}
# ca-certificates (TLS to brokers) and libssl3 (librdkafka's TLS); apt runs
# only when the base lacks them (debian:bookworm-slim does).
RUN if ! dpkg-query -W ca-certificates libssl3 >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates libssl3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin timebucket
COPY --from=binary /usr/local/bin/timebucket /usr/local/bin/timebucket
# Built-in copy of the topic definitions; compose mounts ./topics over it.
COPY topics /topics
ENV RUST_LOG=info \
    TOPICS_DIR=/topics
USER timebucket
# A worker's readiness (joined its consumer group), asked by the binary
# itself: the image has no curl. Other subcommands set their own check
# (docker-compose.yml does for the dashboard).
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
  CMD ["timebucket", "health", "http://127.0.0.1:9180/readyz"]
ENTRYPOINT ["timebucket"]
CMD ["--help"]
