# syntax=docker/dockerfile:1
# Multi-stage build of the `eventbus` server: a Rust build stage, then a small runtime image
# that runs as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p eventbus-server --bin eventbus \
    && install -D target/release/eventbus /out/eventbus

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home eventbus
COPY --from=build /out/eventbus /usr/local/bin/eventbus
USER eventbus
WORKDIR /data
ENV HOST=0.0.0.0 \
    PORT=3002 \
    EVENT_STORE_URL=sqlite:///data/eventbus.db \
    EVENT_ARCHIVE_URL=file:///data/archive \
    LOG_FORMAT=json
EXPOSE 3002
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/eventbus", "health"]
ENTRYPOINT ["/usr/local/bin/eventbus"]
CMD ["serve"]
