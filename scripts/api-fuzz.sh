#!/usr/bin/env bash
# The API's contract, checked on the running server: its OpenAPI document validates as OpenAPI 3.1
# (openapi-spec-validator), and a schema-driven fuzz from that document (schemathesis; both
# installed into .venv by scripts/setup.sh) runs the stateless phases (examples, coverage, fuzzing) and the
# stateful one (following the document's links), every check, against a server that requires the
# bearer token and one that does not. Any failure fails the run.
#
# YouTube is a local HTTP server that answers 404 to everything: submitted jobs fail fast, handles
# are not found, and nothing leaves the machine. The seed is fixed, so a run is reproducible.
#
# Usage: scripts/api-fuzz.sh path/to/tubesum
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: scripts/api-fuzz.sh path/to/tubesum}
st=.venv/bin/st
[[ -x $st && -x .venv/bin/openapi-spec-validator ]] \
  || { echo "[api-fuzz] schemathesis or openapi-spec-validator is missing: run scripts/setup.sh" >&2; exit 1; }
log() { printf '\033[1m[api-fuzz]\033[0m %s\n' "$*" >&2; }

work=$(mktemp -d)
pids=()
cleanup() {
  # The servers are started inside $(…) (a subshell): their pids come back through files.
  for file in "$work"/*.pid; do [[ -f $file ]] && pids+=("$(cat "$file")"); done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for `pattern` in file $1 (a server's output) and prints its first capture group.
await_line() {
  local file=$1 pattern=$2 deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    if line=$(grep -oE "$pattern" "$file" | head -1) && [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    sleep 0.2
  done
  log "no '$pattern' within 60 s in $file:"; cat "$file" >&2
  return 1
}

mkdir -p "$work/youtube"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/youtube" >"$work/youtube.log" 2>&1 &
pids+=($!)
youtube=$(await_line "$work/youtube.log" 'port [0-9]+' | cut -d' ' -f2)
youtube="http://127.0.0.1:$youtube"

# Starts `tubesum serve` with its own data dir and the extra settings given; prints its address.
serve() {
  local name=$1; shift
  env TUBESUM_DATA_DIR="$work/$name" \
    TUBESUM_YOUTUBE__FEED_URL="$youtube/feeds/videos.xml?channel_id={channel_id}" \
    TUBESUM_YOUTUBE__VIDEO_URL="$youtube/watch?v={video_id}" \
    TUBESUM_YOUTUBE__CHANNEL_URL="$youtube/channel/{channel_id}/videos" \
    TUBESUM_YOUTUBE__HANDLE_URL="$youtube/@{handle}" \
    TUBESUM_STAGES__MAX_ATTEMPTS=1 \
    "$@" "$bin" serve --listen 127.0.0.1:0 >"$work/$name.log" 2>&1 &
  echo $! >"$work/$name.pid"
  await_line "$work/$name.log" 'listening on http://[0-9.:]+' | sed 's|.*http://||'
}

# Runs every phase and check against the server at $1 (plus any schemathesis options given).
fuzz() {
  local address=$1; shift
  # GET /events, /progress and /ops/events never end by design (live streams of everything);
  # tests/integration/live.rs and console.rs cover them. A job's stream ends with its job, which
  # fails at once here: it is fuzzed.
  "$st" --config-file scripts/api-fuzz.toml run "http://$address/openapi.json" --checks all --max-examples 100 --seed 20261130 \
    --exclude-path /events --exclude-path /progress --exclude-path /ops/events --request-timeout 20 \
    --generation-database none --no-color --report-dir "$work/reports" "$@"
}

token=fuzz-token-$RANDOM$RANDOM
with_token=$(serve with-token TUBESUM_SERVER__API_TOKEN="$token")
log "with the bearer token: $with_token"
# The document itself is valid OpenAPI 3.1.
curl -fsS -H "Authorization: Bearer $token" "http://$with_token/openapi.json" >"$work/openapi.json"
.venv/bin/openapi-spec-validator --schema 3.1 "$work/openapi.json"
fuzz "$with_token" -H "Authorization: Bearer $token"

without_token=$(serve without-token)
log "without a token: $without_token"
fuzz "$without_token"
log "no failures"
