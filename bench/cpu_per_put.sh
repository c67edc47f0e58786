#!/usr/bin/env bash
# CPU time per acknowledged put, summed over the three members, for raft-kv
# and etcd side by side: user + system time of the member processes (from
# /proc/PID/stat) across a `raft-kv-client bench --workload put` run,
# divided by the puts acknowledged. Runs alternate between the systems.
#
# Environment:
#   CONNS="1 64"          connection counts
#   DURATION=8s           measured time per run
#   KEYS=100000           key space of the puts
#   VALUE_SIZE=100        value size in bytes
#   RAFT_KV_PORTS="4301 4302 4303"
#   ETCD_PORTS="2579 22579 32579"   (peer ports are these + 1)
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CONNS=${CONNS:-"1 64"}
DURATION=${DURATION:-8s}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
read -r -a rk_ports <<<"${RAFT_KV_PORTS:-4301 4302 4303}"
read -r -a etcd_ports <<<"${ETCD_PORTS:-2579 22579 32579}"

log() { echo "==> $*" >&2; }
die() { echo "cpu_per_put.sh: $*" >&2; exit 1; }

command -v etcd >/dev/null 2>&1 || die "etcd not found (bench/compare_etcd.sh installs Debian's etcd-server)"
cargo build --release -p raft-kv-server -p raft-kv-client
target_dir=${CARGO_TARGET_DIR:-$root/target}
server_bin=$target_dir/release/raft-kv-server
client_bin=$target_dir/release/raft-kv-client

dir=$(mktemp -d -p /var/tmp raft-kv-cpu.XXXXXX)
rk_pids=()
etcd_pids=()
cleanup() {
    trap - INT TERM EXIT
    kill -TERM "${rk_pids[@]}" "${etcd_pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup INT TERM EXIT

initial=""
for i in 1 2 3; do initial+="${initial:+,}e$i=http://127.0.0.1:$((etcd_ports[i - 1] + 1))"; done
for i in 1 2 3; do
    c=http://127.0.0.1:${etcd_ports[$((i - 1))]}
    p=http://127.0.0.1:$((etcd_ports[i - 1] + 1))
    etcd --name "e$i" --data-dir "$dir/etcd/e$i" --listen-client-urls "$c" \
        --advertise-client-urls "$c" --listen-peer-urls "$p" \
        --initial-advertise-peer-urls "$p" --initial-cluster "$initial" \
        --initial-cluster-token cpu --initial-cluster-state new >"$dir/etcd-$i.log" 2>&1 &
    etcd_pids+=($!)
done
peers=""
for i in 1 2 3; do peers+="${peers:+,}$i=http://127.0.0.1:${rk_ports[$((i - 1))]}"; done
for i in 1 2 3; do
    "$server_bin" --node-id "$i" --port "${rk_ports[$((i - 1))]}" --peers "$peers" \
        --data-dir "$dir/raft-kv/$i" --web-dir "$root/web/dist" --log-level warn \
        >"$dir/raft-kv-$i.log" 2>&1 &
    rk_pids+=($!)
done
etcd_endpoints=""
for p in "${etcd_ports[@]}"; do etcd_endpoints+="${etcd_endpoints:+,}http://127.0.0.1:$p"; done
rk_servers=""
for p in "${rk_ports[@]}"; do rk_servers+="${rk_servers:+,}http://127.0.0.1:$p"; done

deadline=$((SECONDS + 60))
until curl -fsS -X POST "http://127.0.0.1:${etcd_ports[0]}/v3/kv/put" \
    -d '{"key":"aGVhbHRo","value":"b2s="}' >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "etcd does not serve; see $dir/etcd-*.log"
    sleep 0.2
done
until "$client_bin" --server "$rk_servers" --timeout 2s put health ok >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "raft-kv does not serve; see $dir/raft-kv-*.log"
    sleep 0.2
done

ticks() { # pids... -> utime + stime in clock ticks
    local s=0 p
    for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$s"
}
hz=$(getconf CLK_TCK)

echo "| system | connections | puts/s | node CPU s | CPU per put, µs (3 members) |"
echo "|---|---:|---:|---:|---:|"
for conns in $CONNS; do
    for system in raft-kv etcd; do
        if [ "$system" = etcd ]; then
            pids=("${etcd_pids[@]}")
            target=(--target etcd --etcd-endpoints "$etcd_endpoints")
        else
            pids=("${rk_pids[@]}")
            target=(--server "$rk_servers")
        fi
        log "$system, $conns connections"
        before=$(ticks "${pids[@]}")
        "$client_bin" bench "${target[@]}" --workload put -c "$conns" --keys "$KEYS" \
            --key-prefix "cpu-$conns-" --value-size "$VALUE_SIZE" --duration "$DURATION" \
            --json --quiet >"$dir/out.json" 2>>"$dir/bench.log" || die "bench failed; see $dir/bench.log"
        after=$(ticks "${pids[@]}")
        python3 - "$dir/out.json" "$before" "$after" "$hz" "$system" "$conns" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
before, after, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
secs = (after - before) / hz
ok = max(j["ok"], 1)
print(f"| {sys.argv[5]} | {sys.argv[6]} | {j['throughput']:.0f} | {secs:.2f} | {secs / ok * 1e6:.0f} |")
EOF
    done
done
