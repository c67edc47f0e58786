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
#   ETCD_PORTS="2579 12579 22579"   (peer ports are these + 1)
#   BENCH_DIR=...         data and logs (default: a fresh dir in /var/tmp,
#                         removed on exit unless KEEP=1)
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup cpu_per_put.sh

CONNS=${CONNS:-"1 64"}
DURATION=${DURATION:-8s}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
read -r -a etcd_ports <<<"${ETCD_PORTS:-2579 12579 22579}"
etcd_peer=""
for p in "${etcd_ports[@]}"; do etcd_peer+="${etcd_peer:+ }$((p + 1))"; done
ETCD_CLIENT_PORTS="${etcd_ports[*]}" ETCD_PEER_PORTS=$etcd_peer ports_from_env "4301 4302 4303" "" ""

ensure_etcd
build_raft_kv
check_ports_free
make_bench_dir raft-kv-cpu

ETCD_TOKEN=cpu
start_etcd_cluster
start_raft_kv_cluster
wait_etcd_serving
wait_raft_kv_serving

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
        read -r -a pids <<<"$(member_pids "$system")"
        if [ "$system" = etcd ]; then
            target=(--target etcd --etcd-endpoints "$etcd_endpoints")
        else
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
