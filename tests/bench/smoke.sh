#!/usr/bin/env bash
# Correctness smoke of the load generator, not a benchmark: each mode runs
# briefly against a real echod on a loopback port and must pass with sane,
# non-zero figures in its JSON; servers that corrupt, duplicate, drop or
# withhold bytes must make it fail with the right error counted. Takes about
# 20 s; every wait is bounded and every process started here is stopped.
#
#   tests/bench/smoke.sh LOADGEN ECHOD      (or LOADGEN=... ECHOD=... in the environment)
set -euo pipefail

loadgen=${1:-${LOADGEN:-}}
echod=${2:-${ECHOD:-}}
if [ ! -x "$loadgen" ] || [ ! -x "$echod" ]; then
	echo "usage: $0 LOADGEN ECHOD" >&2
	exit 2
fi

tmp=$(mktemp -d)
procs=() # PID:SIGNAL that stops it
stop() { # PID SIGNAL: stops it within 5 s, then reaps it
	local state
	kill -"$2" "$1" 2>/dev/null || return 0
	for _ in $(seq 50); do
		state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || break
		[ "$state" != Z ] || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local p
	for p in "${procs[@]}"; do
		stop "${p%:*}" "${p#*:}"
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
check() { # NAME COMMAND...: counts whether COMMAND succeeds
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: $name" >&2
	fi
}

listening() { # PORT
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Below the ephemeral range, so no client of this test takes it meanwhile.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 12000))
		listening "$port" || break
	done
	echo "$port"
}

wait_for() { # COMMAND...: true once it succeeds, within 10 s
	for _ in $(seq 100); do
		"$@" && return 0
		sleep 0.1
	done
	echo "timed out waiting for: $*" >&2
	return 1
}

start_echod() { # NAME PORT MAX_CONNECTIONS; sets echod_pid
	cat >"$tmp/$1.conf" <<EOF
[server]
listen = 127.0.0.1:$2
drain_timeout = 1s
[limits]
max_connections = $3
max_connections_per_source = 0
[log]
target = stderr
connections = yes
EOF
	"$echod" -c "$tmp/$1.conf" 2>"$tmp/$1.log" &
	echod_pid=$!
	procs+=("$echod_pid:QUIT") # stop at once, workers too
}

# Servers that misbehave on purpose, one listener each, in one process:
# flip one bit at a stream offset, send a byte too many, close at once,
# never answer, answer 20 ms late. "MODE PORT" lines go to $tmp/bad.ports.
cat >"$tmp/bad.py" <<'EOF'
import os, socket, sys, threading, time

MODES = {"flip10": 10, "flip3M": 3000001, "dup": 0, "close": 0, "silent": 0, "slow": 20}

def serve(c, mode, arg):
    off = 0
    with c:
        try:
            while mode != "close":
                b = c.recv(65536)
                if not b:
                    return
                if mode == "silent":
                    continue
                if mode == "slow":
                    time.sleep(arg / 1000)
                if mode.startswith("flip") and off <= arg < off + len(b):
                    b = bytearray(b)
                    b[arg - off] ^= 1
                off += len(b)
                c.sendall(b)
                if mode == "dup":
                    c.sendall(b[:1])
        except OSError:
            pass

def listen(ls, mode, arg):
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, mode, arg), daemon=True).start()

lines = []
for mode, arg in MODES.items():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    lines.append("%s %d\n" % (mode, ls.getsockname()[1]))
    threading.Thread(target=listen, args=(ls, mode, arg), daemon=True).start()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.writelines(lines)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
threading.Event().wait()
EOF
python3 "$tmp/bad.py" "$tmp/bad.ports" &
procs+=("$!:TERM")

port=$(free_port)
start_echod main "$port" 2000
main_pid=$echod_pid
port2=$(free_port)
start_echod small "$port2" 2
wait_for listening "$port"
wait_for listening "$port2"
wait_for test -s "$tmp/bad.ports"
bad() { # MODE: its port
	awk -v m="$1" '$1 == m { print $2 }' "$tmp/bad.ports"
}

# run NAME WANT ARGS...: runs loadgen --json with ARGS, checks its exit status
# is WANT, keeps its JSON in $tmp/NAME.json.
run() {
	local name=$1 want=$2 rc=0
	shift 2
	timeout 60 "$loadgen" --json "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" || rc=$?
	check "$name: exit status $rc, expected $want $(head -c 300 "$tmp/$name.err")" \
		[ "$rc" -eq "$want" ]
}

# expect NAME PYTHON-CONDITION: the condition must hold for d, the JSON of
# run NAME. Checked together at the end (one interpreter, not one each).
expect() {
	printf '%s\t%s\n' "$1" "$2" >>"$tmp/expect.tsv"
}

p=(--port "$port")

# The four modes against echod.
run rate 0 "${p[@]}" --mode rate --duration 2 --clients 8
expect rate 'd["mode"] == "rate" and d["ok"] and d["completed"] > 0 and d["connections_per_s"] > 0'
expect rate 'd["bytes"] == d["completed"] * d["size"] and d["errors"]["total"] == 0'
expect rate '0 < d["latency_us"]["cycle"]["p50"] <= d["latency_us"]["cycle"]["p99"]'

run count 0 "${p[@]}" --mode rate --count 50 --size 1000 --duration 10
expect count 'd["completed"] == 50 and d["bytes"] == 50000'

run source 0 "${p[@]}" --mode rate --count 20 --source 127.0.0.2,127.0.0.3
for a in 127.0.0.2 127.0.0.3; do
	check "source: echod saw connections from $a" grep -q "remote_addr=$a " "$tmp/main.log"
done

run stream 0 "${p[@]}" --mode stream --duration 2 --clients 2
expect stream 'd["gb_per_s"] > 0 and d["mb_per_s"] > 0 and d["bytes"] > 1000000'
expect stream 'd["completed"] == 2 and d["errors"]["total"] == 0'

run latency 0 "${p[@]}" --mode latency --duration 2 --clients 4
expect latency 'all(d["latency_us"][k]["count"] > 0 for k in ("rtt", "cycle"))'
expect latency 'all(0 < v["p50"] <= v["p99"] <= v["p999"] <= v["max"] for v in d["latency_us"].values())'

run hold 0 "${p[@]}" --mode hold --clients 200 --hold 1 --server-pid "$main_pid"
expect hold 'd["hold"]["opened"] == d["hold"]["echoed"] == d["hold"]["echoed_after_hold"] == 200'
expect hold 'd["server"]["workers"] >= 200 and d["server"]["worker_private_kib"] > 0'
expect hold 'all(d["server"]["master_rss_kib_" + k] > 0 for k in ("before", "open", "after"))'

# Errors and their threshold: an echod that takes two connections at a time
# refuses most of eight clients, by closing them.
run limit 1 --port "$port2" --mode rate --duration 1 --clients 8
expect limit 'd["completed"] > 0 and d["errors"]["eof"] + d["errors"]["reset"] > 0'
run limit-tolerated 0 --port "$port2" --mode rate --duration 1 --clients 8 --max-errors 1000000000

run refused 1 --port "$(free_port)" --mode rate --duration 0.5
expect refused 'd["errors"]["refused"] > 0 and d["completed"] == 0'

run unfinished 1 "${p[@]}" --mode rate --count 100000000 --duration 0.5
expect unfinished 'd["unfinished"] and d["completed"] > 0'

# Each byte is checked, in short messages and deep in a stream; a mismatch
# fails the run whatever --max-errors allows.
run flip 1 --port "$(bad flip10)" --mode rate --duration 0.5 --max-errors 1000000000
expect flip 'd["errors"]["mismatch"] > 0'
run flip-stream 1 --port "$(bad flip3M)" --mode stream --duration 1 --clients 1
expect flip-stream 'd["errors"]["mismatch"] == 1 and d["bytes"] == 3000001'
run dup 1 --port "$(bad dup)" --mode latency --duration 0.5 --clients 2
expect dup 'd["errors"]["mismatch"] > 0'
run close 1 --port "$(bad close)" --mode hold --clients 20
expect close 'd["errors"]["eof"] + d["errors"]["reset"] == 20 and d["hold"]["opened"] == 0'
run silent 1 --port "$(bad silent)" --mode rate --duration 1 --clients 2 --timeout 0.3
expect silent 'd["errors"]["timeout"] > 0 and d["completed"] == 0'

# Latencies are in microseconds: a server that answers after 20 ms.
run slow 0 --port "$(bad slow)" --mode latency --duration 1 --clients 2
expect slow 'all(20000 <= v["p50"] < 1000000 for v in d["latency_us"].values())'

rc=0
"$loadgen" --mode nonsense >/dev/null 2>&1 || rc=$?
check "usage error: exit status $rc, expected 64" [ "$rc" -eq 64 ]

# Too few descriptors for the connections asked for, and no privilege to
# raise the limit: said clearly, exit 71.
unpriv=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	unpriv=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all)
fi
if [ "$(id -u)" -ne 0 ] || [ ${#unpriv[@]} -gt 0 ]; then
	rc=0
	(ulimit -n 64 && ulimit -Hn 64 && exec "${unpriv[@]}" "$loadgen" "${p[@]}" --mode hold \
		--clients 1000) >/dev/null 2>"$tmp/nofile.err" || rc=$?
	check "nofile: exit status $rc, expected 71" [ "$rc" -eq 71 ]
	check "nofile: the message names RLIMIT_NOFILE" grep -q RLIMIT_NOFILE "$tmp/nofile.err"
fi

# Each failed expectation is a line "NAME: CONDITION"; their count, the status.
expect_rc=0
python3 - "$tmp" >"$tmp/expect.out" <<'EOF' || expect_rc=$?
import json, sys
failed = 0
for line in open(sys.argv[1] + "/expect.tsv"):
    name, cond = line.rstrip("\n").split("\t", 1)
    try:
        ok = eval(cond, {"d": json.load(open("%s/%s.json" % (sys.argv[1], name)))})
    except (ValueError, KeyError, TypeError) as e:
        ok = False
        cond += " (%r)" % e
    if not ok:
        failed += 1
        print("%s: %s" % (name, cond))
sys.exit(min(failed, 100))
EOF
sed 's/^/FAIL: /' "$tmp/expect.out" >&2
expectations=$(wc -l <"$tmp/expect.tsv")
passed=$((passed + expectations - expect_rc))
failed=$((failed + expect_rc))

echo "loadgen smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
