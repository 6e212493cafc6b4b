#!/usr/bin/env bash
# The built-in demo: two box workers and a head on loopback serving the
# synthetic tiny model split across them, a few requests, then boxtop when the
# terminal is interactive. Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BOX=./bin/box
HEAD=127.0.0.1:${BOX_DEMO_PORT:-8080}
W1=127.0.0.1:50052 W2=127.0.0.1:50062
logs=$(mktemp -d /tmp/box-demo.XXXXXX)
pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "stopping (SIGTERM to head, then workers)..."
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped. logs in $logs"
}
trap cleanup INT TERM EXIT

$BOX worker --listen $W1 --admin 127.0.0.1:50053 --threads 1 2>"$logs/worker1.log" & pids+=($!)
$BOX worker --listen $W2 --admin 127.0.0.1:50063 --threads 1 2>"$logs/worker2.log" & pids+=($!)
sleep 0.5
$BOX serve --demo --listen $HEAD --rpc $W1,$W2 --no-local 2>"$logs/head.log" & pids=($! "${pids[@]}")

# box chat waits for the head's /health, then streams an answer: no curl needed.
echo "box demo: the tiny synthetic model (random weights: expect gibberish) split over two workers"
echo
for i in 1 2 3; do
	printf '  answer %s: ' "$i"
	if ! $BOX chat --url "http://$HEAD" --wait 60s --max-tokens 24 "Say hello to box."; then
		cat "$logs/head.log"
		exit 1
	fi
done
req='{"model":"box-demo","max_tokens":24,"messages":[{"role":"user","content":"Say hello to box."}]}'
echo
echo "OpenAI API:  http://$HEAD/v1"
echo "try:         curl http://$HEAD/v1/chat/completions -H 'Content-Type: application/json' -d '$req'"
echo "cluster:     curl http://$HEAD/v1/cluster"
echo "workers:     curl http://127.0.0.1:50053/v1/connections"
echo
if [ -t 0 ] && [ -t 1 ] && $BOX top --help >/dev/null 2>&1; then
	$BOX top --head "http://$HEAD" || true
else
	echo "Ctrl-C to stop."
	wait "${pids[0]}"
fi
