# roomring: one image for every role (dev, node, gateway, ctl), configured
# by ROOMRING_* environment variables.
#
#   docker build -t roomring .                         # builds from source
#   podman build --build-arg BINARY=prebuilt \
#     --build-arg RUNTIME=localhost/bookworm-minbase -t roomring .
#
# BINARY=prebuilt takes target/release/roomring from the build context
# instead of compiling (for hosts that cannot pull a Rust image: see
# scripts/container-smoke). RUNTIME names the base of the final image.
ARG BUILDER=docker.io/library/rust:1.95-bookworm
ARG RUNTIME=docker.io/library/debian:bookworm-slim
ARG BINARY=source

FROM ${BUILDER} AS source
WORKDIR /src
# Dependencies first, in their own layer: a change to src/ rebuilds only
# the crate.
COPY Cargo.toml Cargo.lock ./
COPY loadtest/Cargo.toml loadtest/Cargo.toml
RUN mkdir -p src benches loadtest/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > loadtest/src/main.rs \
 && echo 'fn main() {}' > benches/ring.rs && echo 'fn main() {}' > benches/codec.rs \
 && cargo build --release --locked --bin roomring \
 && rm -rf src loadtest/src benches
COPY src ./src
COPY static ./static
COPY benches ./benches
COPY loadtest/src ./loadtest/src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin roomring \
 && mkdir -p /out && cp target/release/roomring /out/roomring

FROM scratch AS prebuilt
COPY target/release/roomring /out/roomring

FROM ${BINARY} AS binary

FROM ${RUNTIME}
RUN useradd --system --no-create-home --uid 10001 roomring
COPY --from=binary /out/roomring /usr/local/bin/roomring
USER 10001
EXPOSE 8080 7000
# SIGTERM drains a node and closes a gateway's clients with 1012.
STOPSIGNAL SIGTERM
# mimalloc commits its arenas lazily: about 9 MB less RSS per process.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0 \
    ROOMRING_PROBE=http://127.0.0.1:8080/healthz
# Gateways and dev: GET /healthz. Nodes: set ROOMRING_PROBE=127.0.0.1:7000
# (their link port, which answers TCP).
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/roomring", "probe"]
ENTRYPOINT ["/usr/local/bin/roomring"]
CMD ["dev", "--listen", "0.0.0.0:8080"]
