#!/usr/bin/env bash
# Sustained write load on a 3-node raft-kv cluster, watching that memory and
# disk stay bounded: automatic snapshots (every --snapshot-every entries,
# once the log is also half the last snapshot's size) must compact the WAL,
# and the Raft log in memory must be cut at each snapshot.
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
#   BENCH_DIR=...         data and logs (default: a fresh dir in /var/tmp)
#   KEEP=1                keep the default BENCH_DIR after the run
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup soak.sh

DURATION=${DURATION:-10m}
INTERVAL=${INTERVAL:-30}
CONNS=${CONNS:-32}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10000}
SEGMENT_BYTES=${SEGMENT_BYTES:-8388608}
# No etcd here: its ports are only placeholders for ports_from_env.
ports_from_env "5001 5002 5003" "2679 12679 22679" "2680 12680 22680"
for p in "${rk_ports[@]}"; do
    if port_busy "$p"; then die "port $p is already in use"; fi
done

build_raft_kv
make_bench_dir raft-kv-soak
RK_ARGS=(--snapshot-every "$SNAPSHOT_EVERY" --segment-bytes "$SEGMENT_BYTES")
start_raft_kv_cluster
wait_raft_kv_serving
bench_pid=""
# Expanded when the script exits (the pid of a bench still running).
# shellcheck disable=SC2016
on_exit '[ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null'

field() { # status-json key
    python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], "-"))' "$1" 2>/dev/null || echo -
}
sample() { # label
    local i p rss du segs snaps st
    for i in 1 2 3; do
        p=${pid[raft-kv:$i]}
        rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$p/status" 2>/dev/null || echo -)
        du=$(du -sm "$dir/raft-kv/node-$i" 2>/dev/null | cut -f1)
        segs=$(find "$dir/raft-kv/node-$i" -name 'wal-*.log' | wc -l)
        snaps=$(find "$dir/raft-kv/node-$i" -name 'snap-*.snap' | wc -l)
        st=$(curl -fsS --max-time 2 "http://127.0.0.1:$(port_of raft-kv "$i")/status" || echo '{}')
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
"$client_bin" bench --server "$rk_servers" --workload put "${load[@]}" --keys "$KEYS" \
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
