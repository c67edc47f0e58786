#!/usr/bin/env bash
# Sustained write load on a 3-node raft-kv cluster, watching that memory and
# disk stay bounded: snapshots every --snapshot-every entries must compact
# the WAL, and the Raft log in memory must be cut at each snapshot.
#
# Starts its own cluster on loopback (fsync on), runs `raft-kv-client bench`
# (puts over a fixed key space) for DURATION, and every INTERVAL seconds
# prints one line per node: RSS, data directory size, WAL segment and
# snapshot file count, applied and snapshot index. Ends with the first and
# last sample side by side. Everything it starts is stopped on exit.
#
# Environment:
#   DURATION=10m          load duration (e.g. 1h for the full soak)
#   INTERVAL=30           seconds between samples
#   CONNS=32              bench connections (closed loop)
#   RATE=                 if set, an open loop at this many puts per second
#                         instead (CONNS is then unused)
#   KEYS=10000            key space (the state machine's size is bounded by it)
#   VALUE_SIZE=100        value size in bytes
#   SNAPSHOT_EVERY=10000  --snapshot-every of the nodes
#   SEGMENT_BYTES=8388608 --segment-bytes of the nodes (small, so that
#                         compaction has whole segments to delete)
#   RAFT_KV_PORTS="5001 5002 5003"
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

DURATION=${DURATION:-10m}
INTERVAL=${INTERVAL:-30}
CONNS=${CONNS:-32}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10000}
SEGMENT_BYTES=${SEGMENT_BYTES:-8388608}
read -r -a ports <<<"${RAFT_KV_PORTS:-5001 5002 5003}"

log() { echo "==> $*" >&2; }
die() { echo "soak.sh: $*" >&2; exit 1; }

log "building raft-kv-server and raft-kv-client (release)"
cargo build --release -p raft-kv-server -p raft-kv-client
target_dir=${CARGO_TARGET_DIR:-$root/target}
server_bin=$target_dir/release/raft-kv-server
client_bin=$target_dir/release/raft-kv-client

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${ports[@]}"; do
    port_busy "$p" && die "port $p is already in use"
done

dir=$(mktemp -d -p /var/tmp raft-kv-soak.XXXXXX)
pids=()
bench_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [ -n "$bench_pid" ]; then kill "$bench_pid" 2>/dev/null || true; fi
    if [ "${#pids[@]}" -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$dir"; else echo "kept $dir" >&2; fi
}
trap cleanup INT TERM EXIT

peers=""
for i in 1 2 3; do peers+="${peers:+,}$i=http://127.0.0.1:${ports[$((i - 1))]}"; done
servers=""
for p in "${ports[@]}"; do servers+="${servers:+,}http://127.0.0.1:$p"; done
for i in 1 2 3; do
    "$server_bin" --node-id "$i" --port "${ports[$((i - 1))]}" --peers "$peers" \
        --data-dir "$dir/node-$i" --web-dir "$root/web/dist" \
        --snapshot-every "$SNAPSHOT_EVERY" --segment-bytes "$SEGMENT_BYTES" \
        --log-level warn >"$dir/node-$i.log" 2>&1 &
    pids+=($!)
done
deadline=$((SECONDS + 60))
until "$client_bin" --server "$servers" --timeout 2s put soak-health ok >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "the cluster does not serve; see $dir/node-*.log"
    sleep 0.2
done

field() { # status-json key
    python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], "-"))' "$1" 2>/dev/null || echo -
}
sample() { # label
    local i pid rss du segs snaps st
    for i in 1 2 3; do
        pid=${pids[$((i - 1))]}
        rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo -)
        du=$(du -sm "$dir/node-$i" 2>/dev/null | cut -f1)
        segs=$(find "$dir/node-$i" -name 'wal-*.log' | wc -l)
        snaps=$(find "$dir/node-$i" -name 'snap-*.snap' | wc -l)
        st=$(curl -fsS --max-time 2 "http://127.0.0.1:${ports[$((i - 1))]}/status" || echo '{}')
        printf '%-8s node %d  rss %7s MiB  disk %5s MiB  segments %3s  snapshots %2s  applied %10s  snapshot %10s\n' \
            "$1" "$i" "$rss" "$du" "$segs" "$snaps" \
            "$(field applied_index <<<"$st")" "$(field snapshot_index <<<"$st")"
    done
}

if [ -n "${RATE:-}" ]; then
    load=(--rate "$RATE")
    log "load: $RATE puts/s (open loop) over $KEYS keys of $VALUE_SIZE bytes, for $DURATION"
else
    load=(-c "$CONNS")
    log "load: $CONNS connections, puts over $KEYS keys of $VALUE_SIZE bytes, for $DURATION"
fi
"$client_bin" bench --server "$servers" --workload put "${load[@]}" --keys "$KEYS" \
    --value-size "$VALUE_SIZE" --duration "$DURATION" --json --quiet >"$dir/bench.json" \
    2>"$dir/bench.log" &
bench_pid=$!
started=$SECONDS
sample "t=0s" | tee "$dir/first"
while kill -0 "$bench_pid" 2>/dev/null; do
    sleep "$INTERVAL"
    kill -0 "$bench_pid" 2>/dev/null || break
    sample "t=$((SECONDS - started))s" | tee "$dir/last"
done
wait "$bench_pid" || die "the bench failed; see $dir/bench.log"
bench_pid=""
python3 - "$dir/bench.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
l = j["latency_us"]
print(f"bench: {j['ok']} puts in {j['elapsed_secs']:.0f} s = {j['throughput']:.0f}/s, "
      f"p50 {l['p50'] / 1000:.2f} ms, p99 {l['p99'] / 1000:.2f} ms, errors {j['errors']}")
EOF
echo "first and last sample:"
cat "$dir/first" "$dir/last"
