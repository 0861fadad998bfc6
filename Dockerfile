# syntax=docker/dockerfile:1
# withdrawd and withdraw-console, built in a Rust image and shipped on Debian slim with only
# libpq (PostgreSQL's client library, which diesel links) and CA certificates added, as a
# non-root user with a read-only root filesystem in mind: the only writable path the
# embedded profile needs is the data directory (a volume); the production profile needs none.

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a code change does not rebuild them.
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY core/Cargo.toml core/Cargo.toml
COPY daemon/Cargo.toml daemon/Cargo.toml
COPY tui/Cargo.toml tui/Cargo.toml
RUN mkdir -p core/src daemon/src tui/src \
 && echo 'fn main() {}' > daemon/src/main.rs && echo 'fn main() {}' > tui/src/main.rs \
 && touch core/src/lib.rs tui/src/lib.rs \
 && cargo fetch --locked
COPY core core
COPY daemon daemon
COPY tui tui
COPY migrations migrations
RUN cargo build --release --locked -p withdrawd -p withdraw-console \
 && install -D -m 0755 target/release/withdrawd /out/withdrawd \
 && install -D -m 0755 target/release/withdraw-console /out/withdraw-console

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 /var/lib/withdrawd
COPY --from=build /out/ /usr/local/bin/
# Kubernetes' runAsNonRoot checks the numeric UID.
USER 65532:65532
ENV WITHDRAW__DATA_DIR=/var/lib/withdrawd
VOLUME ["/var/lib/withdrawd"]
EXPOSE 8080 8081 8082
ENTRYPOINT ["/usr/local/bin/withdrawd", "--log-format", "json"]
CMD ["--help"]
