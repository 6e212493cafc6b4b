#!/usr/bin/env bash
# The built-in demo: two box workers and a head on loopback serving the
# synthetic tiny model split across them (--tensor-split 1,1), a few requests, then boxtop when
# the terminal is interactive (q in boxtop stops the demo). Ctrl-C stops
# everything cleanly.
#
# BOX_DEMO_PORT: the head's HTTP port (default 8080). The workers use
# 50052/50053 and 50062/50063.
set -euo pipefail
cd "$(dirname "$0")/.."
BOX=./bin/box
PORT=${BOX_DEMO_PORT:-8080}
HEAD=127.0.0.1:$PORT
W1=127.0.0.1:50052 W2=127.0.0.1:50062

# A port in use fails now, with its cause, instead of a minute later.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" 50052 50053 50062 50063; do
	if busy "$p"; then
		echo "box demo: port $p on 127.0.0.1 is in use by another program." >&2
		[ "$p" = "$PORT" ] && echo "  set BOX_DEMO_PORT to another port, e.g. BOX_DEMO_PORT=8081 make demo" >&2
		exit 1
	fi
done
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
$BOX serve --demo --listen $HEAD --rpc $W1,$W2 --tensor-split 1,1 --no-local 2>"$logs/head.log" & pids=($! "${pids[@]}")
headpid=${pids[0]}
# The head must come up: a head that exits (a bind error, a worker refused)
# ends the demo with its log.
health() {
	exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$HEAD" >&3
	grep -q '"status"' <&3
}
for _ in $(seq 600); do
	health 2>/dev/null && break
	if ! kill -0 "$headpid" 2>/dev/null; then
		echo "box demo: the head exited:" >&2
		tail -n 20 "$logs/head.log" >&2
		exit 1
	fi
	sleep 0.1
done

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
	# The URL and a curl line stay on boxtop's screen while the demo runs.
	$BOX top --head "http://$HEAD" --banner "box demo · OpenAI API http://$HEAD/v1 · q stops the demo
try: curl http://$HEAD/v1/chat/completions -H 'Content-Type: application/json' -d '$req'" || true
else
	echo "Ctrl-C to stop."
	wait "${pids[0]}"
fi
