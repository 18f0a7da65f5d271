# syntax=docker/dockerfile:1
# oci-connector container image.
#   docker build -t oci-connector .
#   docker run --rm -p 5000:5000 -p 9090:9090 -v "$PWD/my-conf:/etc/oci-connector:ro" oci-connector
# The image's default configuration is the example in conf/ (listening on loopback,
# so mount your own settings to serve other hosts; see docs/operations.md).

FROM rust:1.95-bookworm AS build
# cmake and clang build the native parts of the TLS stack.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Declared as a [[bench]] target in Cargo.toml, so cargo wants it present.
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oci-connector \
 && cp target/release/oci-connector /usr/local/bin/oci-connector

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 oci-connector \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin oci-connector
COPY --from=build /usr/local/bin/oci-connector /usr/local/bin/oci-connector
COPY conf/ /etc/oci-connector/
USER 10001:10001
# 5000: the registry API (pull/push through the proxy); 9090: admin (metrics, health, status).
EXPOSE 5000 9090
# Pingora writes its pid file and upgrade socket to /tmp (mount a tmpfs there when
# the root filesystem is read-only).
ENTRYPOINT ["/usr/local/bin/oci-connector"]
CMD ["serve", "--config", "/etc/oci-connector/oci-connector.yaml"]
