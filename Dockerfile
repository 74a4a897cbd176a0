# tubesum: one image for the API and the stage workers.
#   docker build -t tubesum .
#   docker run -p 8080:8080 -e TUBESUM_SERVER__API_TOKEN=… -v $PWD/models:/app/models tubesum
# /app/models holds the Whisper models: ct2-tiny.en/ (a faster-whisper model directory, as
# scripts/setup.sh installs it) for the default engine, or ggml-tiny.en.bin for whisper.cpp.
# It listens on 0.0.0.0, so `serve` refuses to start without a token (server.api_token).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake libclang-dev libcurl4-openssl-dev libopenblas-dev pkg-config python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# whisper.cpp otherwise builds for the build machine's CPU (-march=native).
ENV GGML_NATIVE=OFF
RUN scripts/ctranslate2.sh && cargo build --release --locked && cp target/release/tubesum /usr/local/bin/tubesum \
    && mkdir -p /opt/ctranslate2 && cp .ctranslate2/lib/*.so.* /opt/ctranslate2/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates ffmpeg libcurl4 libopenblas0-pthread python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/yt-dlp && /opt/yt-dlp/bin/pip install --no-cache-dir yt-dlp==2026.10.26
COPY --from=build /usr/local/bin/tubesum /usr/local/bin/tubesum
# CTranslate2's library (and its OpenMP runtime), where the dynamic loader looks.
COPY --from=build /opt/ctranslate2/ /usr/local/lib/
RUN ldconfig
WORKDIR /app
ENV PATH="/opt/yt-dlp/bin:${PATH}" \
    TUBESUM_DATA_DIR=/app/data \
    TUBESUM_SERVER__LISTEN=0.0.0.0:8080 \
    TUBESUM_WHISPER__MODEL=/app/models/ggml-tiny.en.bin \
    TUBESUM_CTRANSLATE2__MODEL=/app/models/ct2-tiny.en
EXPOSE 8080
# For whisper.cpp instead (TUBESUM_TRANSCRIPTION__BACKEND=whisper), fetch a ggml model into the
# mounted /app/models once: docker run … tubesum models fetch tiny.en --dir /app/models
ENTRYPOINT ["tubesum"]
CMD ["serve"]
