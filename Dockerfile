# roomring: one image for every role (dev, node, gateway, ctl).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY loadtest ./loadtest
COPY src ./src
COPY static ./static
RUN cargo build --release --locked --bin roomring

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 roomring
COPY --from=build /src/target/release/roomring /usr/local/bin/roomring
USER 10001
EXPOSE 8080 7000
# SIGTERM drains a node and closes a gateway's clients with 1012.
STOPSIGNAL SIGTERM
# mimalloc commits its arenas lazily: about 9 MB less RSS per process.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
ENTRYPOINT ["/usr/local/bin/roomring"]
CMD ["dev", "--listen", "0.0.0.0:8080"]
