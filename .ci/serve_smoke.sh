#!/usr/bin/env bash
# Smoke run of `make serve` on the embedded default: start, health check,
# one end-to-end message over REST + WebSocket, SIGTERM, clean exit.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d)
api_port=18080
gw_port=18765
logf="$data/serve.log"
setsid make serve ARGS="--data-dir $data/d --api-port $api_port --gateway-port $gw_port" \
    >"$logf" 2>&1 &
pgid=$!
cleanup() { kill -KILL -- "-$pgid" 2>/dev/null || true; }
trap cleanup EXIT
up=0
for _ in $(seq 120); do
    if curl -fsS "http://127.0.0.1:$api_port/healthz" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.5
done
if [ "$up" != 1 ]; then echo "parley serve did not answer /healthz"; cat "$logf"; exit 1; fi
.venv/bin/python .ci/smoke_client.py "http://127.0.0.1:$api_port" "ws://127.0.0.1:$gw_port"
kill -TERM -- "-$pgid"
for _ in $(seq 60); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
if kill -0 -- "-$pgid" 2>/dev/null; then echo "parley serve did not stop on SIGTERM"; cat "$logf"; exit 1; fi
grep -q "Parley stopped." "$logf" || { echo "no clean shutdown"; cat "$logf"; exit 1; }
trap - EXIT
echo "serve smoke: OK"
