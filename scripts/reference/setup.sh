#!/usr/bin/env bash
# Installs the reference transcriber, faster-whisper (CTranslate2), from PyPI into ./.venv-reference,
# idempotently, for scripts/reference/faster_whisper_bench.py. Its model is the tiny.en CTranslate2
# model scripts/setup.sh installs into ./.venv (see scripts/ct2-model-dir).
set -euo pipefail
cd "$(dirname "$0")/../.."

FASTER_WHISPER=faster-whisper==1.2.1
CTRANSLATE2=ctranslate2==4.8.5
VENV=.venv-reference

log() { printf '\033[1m[reference]\033[0m %s\n' "$*" >&2; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
installed() { "$VENV/bin/pip" show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed faster-whisper)" != "${FASTER_WHISPER#*==}" ] || [ "$(installed ctranslate2)" != "${CTRANSLATE2#*==}" ]; then
  log "installing $FASTER_WHISPER and $CTRANSLATE2 into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$FASTER_WHISPER" "$CTRANSLATE2"
fi
log "ready: $VENV with $FASTER_WHISPER, $CTRANSLATE2"
