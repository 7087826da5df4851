# syntax=docker/dockerfile:1
#
# The relay:        docker build -t outbox-relay .
# The examples:     docker build --target examples -t outbox-examples .   (docker-compose.yml)
#
# Runtime: Debian slim with glibc, the allocator the relay's memory figures were measured
# with (docs/benchmarks.md), CA certificates for amqps:// and TLS to PostgreSQL, curl for the
# health check; a non-root user.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p outbox-relay \
    && install -D target/release/outbox-relay /out/outbox-relay

FROM build AS build-examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p outbox-examples \
    && install -D -t /out target/release/quickstart target/release/domain-service target/release/consumer

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin outbox

FROM runtime AS examples
COPY --from=build-examples /out/ /usr/local/bin/
USER 10001:10001
CMD ["domain-service"]

FROM runtime AS relay
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/outbox-relay /usr/local/bin/outbox-relay
USER 10001:10001
# Build check: the binary starts in the runtime image (its libraries are all there).
RUN ["outbox-relay", "--version"]
ENV OUTBOX_HTTP_ADDR=0.0.0.0:9187
EXPOSE 9187
# Liveness of the process; readiness (database and broker reachable) is /readyz. If you move
# the endpoints with OUTBOX_HTTP_ADDR, override this check too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null", "http://127.0.0.1:9187/healthz"]
ENTRYPOINT ["outbox-relay"]
CMD ["run"]
