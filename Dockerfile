# terra-sink container image.
#
#   docker build -t terra-sink .
#   docker run --rm -p 127.0.0.1:8080:8080 -e DATABASE_URL=postgres://... -e TERRA_SIGNING_SECRET=... terra-sink
#   (or: docker compose up --build, with TERRA_SIGNING_SECRET in ./.env)
#
# The build needs no database: sqlx's query macros read the committed .sqlx/ data
# (SQLX_OFFLINE=true); scripts/sqlx-prepare.sh keeps it current.
#
# Dependencies are cached with cargo-chef: the planner stage reduces the workspace to a recipe
# (manifests and lock file only), the builder compiles the recipe's dependencies in a layer of
# their own, so changing only sources rebuilds only terra-sink.

# The toolchain is pinned (not `rust:1`), so an image build is reproducible; keep it at or above
# Cargo.toml's rust-version.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG CARGO_CHEF_VERSION=0.1.73

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /build
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. The recipe: what the dependency layer depends on, and nothing else.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin terra-sink

# 2. Dependencies (cached until Cargo.toml, Cargo.lock or .cargo/config.toml change: the recipe
#    holds all three), then the service itself (sources, migrations embedded at compile time,
#    .sqlx/ query data).
FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin terra-sink
COPY . .
RUN cargo build --release --locked --bin terra-sink \
    && install -m 0755 target/release/terra-sink /usr/local/bin/terra-sink

FROM debian:bookworm-slim
# ca-certificates is left unpinned on purpose: Debian replaces old versions in its archive, so a
# pinned one stops installing, and the newest root certificates are what is wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 terra-sink \
    && useradd --system --uid 10001 --gid terra-sink --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin terra-sink
COPY --from=builder /usr/local/bin/terra-sink /usr/local/bin/terra-sink

# An empty working directory: the binary reads ./.env if present, and none belongs in the image.
# Configure with environment variables (DATABASE_URL and TERRA_SIGNING_SECRET are required).
WORKDIR /app
USER 10001:10001
ENV TERRA_SINK_BIND=0.0.0.0:8080 \
    TERRA_SINK_LOG_FORMAT=json
EXPOSE 8080
# Readiness (the database answers and is migrated) on the port of TERRA_SINK_BIND, whatever it is
# set to at run time; `terra-sink healthcheck` needs no curl in the image.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["terra-sink", "healthcheck", "--ready"]
ENTRYPOINT ["terra-sink"]
CMD ["serve"]
