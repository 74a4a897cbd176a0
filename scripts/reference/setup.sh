#!/usr/bin/env bash
# Installs the stacks tubesum is measured against, from PyPI into ./.venv-reference, idempotently:
#   - faster-whisper (CTranslate2), for scripts/reference/faster_whisper_bench.py; its model is the
#     tiny.en CTranslate2 model scripts/setup.sh installs into ./.venv (see scripts/ct2-model-dir)
#   - Celery and psycopg, for scripts/reference/celery_pipeline.py (the pipeline as Celery tasks)
#   - Flask, psycopg and gunicorn, for scripts/reference/flask_jobs.py (GET /jobs/{id} in Python)
set -euo pipefail
cd "$(dirname "$0")/../.."

FASTER_WHISPER=faster-whisper==1.2.1
CTRANSLATE2=ctranslate2==4.8.5
CELERY=celery==5.7.0
PSYCOPG=psycopg[binary]==3.3.9
FLASK=flask==3.1.3
GUNICORN=gunicorn==27.0.1
VENV=.venv-reference

log() { printf '\033[1m[reference]\033[0m %s\n' "$*" >&2; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
installed() { "$VENV/bin/pip" show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed faster-whisper)" != "${FASTER_WHISPER#*==}" ] || [ "$(installed ctranslate2)" != "${CTRANSLATE2#*==}" ]; then
  log "installing $FASTER_WHISPER and $CTRANSLATE2 into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$FASTER_WHISPER" "$CTRANSLATE2"
fi
if [ "$(installed celery)" != "${CELERY#*==}" ] || [ "$(installed psycopg-binary)" != "${PSYCOPG#*==}" ] \
  || [ "$(installed flask)" != "${FLASK#*==}" ] || [ "$(installed gunicorn)" != "${GUNICORN#*==}" ]; then
  log "installing $CELERY, $PSYCOPG, $FLASK and $GUNICORN into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$CELERY" "$PSYCOPG" "$FLASK" "$GUNICORN"
fi
log "ready: $VENV with $FASTER_WHISPER, $CTRANSLATE2, $CELERY, $PSYCOPG, $FLASK, $GUNICORN"
