# tubesum: one image for the API and the stage workers.
#   docker build -t tubesum .
#   docker run -p 8080:8080 -e TUBESUM_SERVER__API_TOKEN=… -v $PWD/models:/app/models tubesum
# It listens on 0.0.0.0, so `serve` refuses to start without a token (server.api_token).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake libclang-dev libcurl4-openssl-dev libopenblas-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# whisper.cpp otherwise builds for the build machine's CPU (-march=native).
ENV GGML_NATIVE=OFF
RUN cargo build --release --locked && cp target/release/tubesum /usr/local/bin/tubesum

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates ffmpeg libcurl4 libopenblas0-pthread python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/yt-dlp && /opt/yt-dlp/bin/pip install --no-cache-dir yt-dlp==2026.10.26
COPY --from=build /usr/local/bin/tubesum /usr/local/bin/tubesum
WORKDIR /app
ENV PATH="/opt/yt-dlp/bin:${PATH}" \
    TUBESUM_DATA_DIR=/app/data \
    TUBESUM_SERVER__LISTEN=0.0.0.0:8080 \
    TUBESUM_WHISPER__MODEL=/app/models/ggml-tiny.en.bin
EXPOSE 8080
# Fetch a model into the mounted /app/models once: docker run … tubesum models fetch tiny.en --dir /app/models
ENTRYPOINT ["tubesum"]
CMD ["serve"]
