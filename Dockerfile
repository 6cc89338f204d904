# terra-sink container image.
#
#   docker build -t terra-sink .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://... -e TERRA_SIGNING_SECRET=... terra-sink
#   (or: docker compose up --build, with TERRA_SIGNING_SECRET in ./.env)
#
# The build needs no database: sqlx's query macros read the committed .sqlx/ data
# (SQLX_OFFLINE=true); scripts/sqlx-prepare.sh keeps it current.

FROM rust:1-bookworm AS builder
WORKDIR /build
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only: build a stub crate against the real manifest and lock file, so this
#    layer stays cached until Cargo.toml, Cargo.lock, .cargo/ or benches/ change. (benches/ is
#    copied because Cargo.toml declares a [[bench]] target, whose file must exist.)
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin terra-sink \
    && rm -rf src target/release/.fingerprint/terra-sink-* \
        target/release/deps/terra_sink-* target/release/deps/libterra_sink-* \
        target/release/terra-sink target/release/terra-sink.d

# 2. The service itself (sources, migrations embedded at compile time, .sqlx/ query data).
COPY . .
RUN cargo build --release --locked --bin terra-sink \
    && install -m 0755 target/release/terra-sink /usr/local/bin/terra-sink

FROM debian:bookworm-slim
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
# `terra-sink healthcheck` GETs http://127.0.0.1:8080/healthz (no curl in the image); if you
# change the port in TERRA_SINK_BIND, override this with `terra-sink healthcheck --url ...`.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["terra-sink", "healthcheck"]
ENTRYPOINT ["terra-sink"]
CMD ["serve"]
