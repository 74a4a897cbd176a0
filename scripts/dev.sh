#!/usr/bin/env bash
# The two commands of the README, each doing all set-up first:
#   scripts/dev.sh demo    builds a local demo channel and summarizes it (no internet needed)
#   scripts/dev.sh test    runs every test (unit, actor, end-to-end), plus fmt and clippy, starting
#                          the local services they need (scripts/services.sh)
# and, for convenience:
#   scripts/dev.sh serve   runs the HTTP API on 127.0.0.1:8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export WHISPER_MODEL="$PWD/models/ggml-tiny.en.bin"

case "${1:-}" in
  demo)
    shift
    cargo run --quiet -- demo "$@"
    ;;
  serve)
    shift
    cargo run --quiet -- serve "$@"
    ;;
  test)
    shift
    # The servers the adapters' tests talk to (MongoDB protocol, …); the tests fail without them.
    scripts/services.sh
    cargo fmt --check
    cargo clippy --all-targets --quiet -- -D warnings
    # CT2_MODEL_DIR: the converter test checks the real model converts to the published size.
    export CT2_MODEL_DIR=$(scripts/ct2-model-dir) RUST_BACKTRACE=0
    if (($#)); then
      cargo test --all-targets "$@"
    else
      cargo test --all-targets -- --skip faults::
      # These stop and restart the shared PostgreSQL and RabbitMQ: alone, one at a time.
      cargo test --test integration faults:: -- --test-threads=1
    fi
    ;;
  *)
    echo "usage: scripts/dev.sh demo|test|serve [args…]" >&2
    exit 2
    ;;
esac
