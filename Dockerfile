# One image, every process: `polymeter up | gateway | ingest | stats | feedback | keys`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p polymeter && cp target/release/polymeter /polymeter

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/polymeter polymeter \
    && mkdir -p /var/lib/polymeter && chown polymeter /var/lib/polymeter
COPY --from=build /polymeter /usr/local/bin/polymeter
USER polymeter
WORKDIR /var/lib/polymeter
ENV POLYMETER_DATA_DIR=/var/lib/polymeter/data \
    POLYMETER_CREDENTIALS=/var/lib/polymeter/data/credentials.toml \
    POLYMETER_LOG_FORMAT=json
ENTRYPOINT ["polymeter"]
CMD ["up", "--gateway-listen", "0.0.0.0:8080"]
