#!/usr/bin/env bash
# The two commands of the README, each doing all set-up first:
#   scripts/dev.sh demo    builds a local demo channel and summarizes it (no internet needed)
#   scripts/dev.sh test    runs every test (unit, actor, end-to-end, both builds), plus fmt and
#                          clippy, starting the local services they need (scripts/services.sh)
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
    # The laptop build: no production drivers to compile (see the README's build table).
    cargo run --quiet --no-default-features --features embedded -- demo "$@"
    ;;
  serve)
    shift
    cargo run --quiet -- serve "$@"
    ;;
  test)
    shift
    # The servers the adapters' tests talk to (MongoDB protocol, …); the tests fail without them.
    scripts/services.sh
    cargo fmt --all --check
    # CT2_MODEL_DIR: the converter test checks the real model converts to the published size.
    export CT2_MODEL_DIR=$(scripts/ct2-model-dir) RUST_BACKTRACE=0
    if (($#)); then
      cargo test --workspace --all-targets "$@"
      exit
    fi
    # The embedded build (what `scripts/dev.sh demo` and a laptop get): no lapin, mongodb, rdkafka
    # or sqlx-postgres. Its binary kept aside (the default build reuses the path); a compiler
    # warning in it fails the run (cargo replays a fresh build's warnings). Its clippy lints are the
    # default build's below: the code only it compiles is a few cfg'd stubs, and a clippy pass of
    # its own checks every dependency again (~5 of CI's 40 minutes on 2 cores).
    # Each step says how long it took (the whole run must stay well inside CI's limit).
    step() { local start=$SECONDS; "$@"; echo "[test] $((SECONDS - start)) s: $*" >&2; }
    without_warnings() {
      local out
      out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
      if grep -q '^warning' <<<"$out"; then
        printf '%s\n' "$out" >&2
        echo "[test] warnings in: $*" >&2
        return 1
      fi
    }
    embedded=(--no-default-features --features embedded)
    step without_warnings cargo build "${embedded[@]}" --quiet
    mkdir -p target/embedded && cp target/debug/tubesum target/embedded/tubesum
    # The default build: every backend, every test of the workspace (the layer check included).
    step cargo clippy --workspace --all-targets --quiet -- -D warnings
    RUSTDOCFLAGS="-D warnings" step cargo doc --workspace --no-deps --quiet
    step cargo test --workspace --all-targets -- --skip faults::
    # The embedded binary end to end: the CLI tests again (summarize, serve, demo, and a production
    # backend refused with the feature it lacks), run against it instead of the default binary.
    TEST_TUBESUM_BIN=target/embedded/tubesum step cargo test --test integration cli::
    # The API's contract on the running embedded server: OpenAPI 3.1 valid, and a schemathesis fuzz
    # (stateless and stateful, with and without the token) that finds nothing.
    step scripts/api-fuzz.sh target/embedded/tubesum
    # The reference stacks the README's benchmarks are compared with still run (small, untimed).
    step scripts/reference/setup.sh
    step .venv-reference/bin/python scripts/reference/celery_pipeline.py --videos 20
    step .venv-reference/bin/python scripts/reference/flask_jobs.py --videos 20 --seconds 1
    # These stop and restart the shared PostgreSQL and RabbitMQ: alone, one at a time.
    step cargo test --test integration faults:: -- --test-threads=1
    ;;
  *)
    echo "usage: scripts/dev.sh demo|test|serve [args…]" >&2
    exit 2
    ;;
esac
