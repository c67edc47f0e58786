#!/usr/bin/env bash
# The throughput cost of TLS: two 3-node raft-kv clusters side by side, one
# on plain HTTP and one with https for clients and mutual TLS between
# members (certificates from `raft-kv-server gen-certs`), loaded in
# alternation by `raft-kv-client bench` (which speaks https with --cacert).
# Prints a markdown table: mode, workload, ops/s, p50, p99.
#
# Environment:
#   CONNS=64              connections of every run
#   WORKLOADS="put get"   bench workloads (get = linearizable read)
#   ROUNDS=2              runs per mode and workload, alternating the modes
#   DURATION=10s          measured time per run
#   WARMUP=1s             warm-up per run (excluded)
#   VALUE_SIZE=100        value size in bytes
#   PLAIN_PORTS="4401 4402 4403"  TLS_PORTS="4411 4412 4413"
#   BENCH_DIR=...         data and logs (default: a fresh dir in /var/tmp,
#                         removed on exit unless KEEP=1)
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup tls_cost.sh

CONNS=${CONNS:-64}
WORKLOADS=${WORKLOADS:-"put get"}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-100}
read -r -a plain_ports <<<"${PLAIN_PORTS:-4401 4402 4403}"
read -r -a tls_ports <<<"${TLS_PORTS:-4411 4412 4413}"

build_raft_kv
for p in "${plain_ports[@]}" "${tls_ports[@]}"; do
    if port_busy "$p"; then die "port $p is already in use"; fi
done
make_bench_dir raft-kv-tls
certs=$dir/certs
"$server_bin" gen-certs "$certs" --nodes 3 >/dev/null
tls_client=(--cacert "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client-key.pem")

servers() { # scheme ports... -> comma-separated base URLs
    local scheme=$1 out="" p
    shift
    for p in "$@"; do out+="${out:+,}$scheme://127.0.0.1:$p"; done
    echo "$out"
}

start_cluster() { # mode
    local mode=$1 i ports scheme flags peers
    if [ "$mode" = tls ]; then ports=("${tls_ports[@]}") scheme=https; else ports=("${plain_ports[@]}") scheme=http; fi
    peers=""
    for i in 1 2 3; do peers+="${peers:+,}$i=$scheme://127.0.0.1:${ports[$((i - 1))]}"; done
    for i in 1 2 3; do
        flags=()
        if [ "$mode" = tls ]; then
            flags=(--cert-file "$certs/node-$i.pem" --key-file "$certs/node-$i-key.pem"
                --trusted-ca-file "$certs/ca.pem"
                --peer-cert-file "$certs/node-$i.pem" --peer-key-file "$certs/node-$i-key.pem"
                --peer-trusted-ca-file "$certs/ca.pem")
        fi
        "$server_bin" --node-id "$i" --port "${ports[$((i - 1))]}" --peers "$peers" \
            --data-dir "$dir/$mode/node-$i" --log-level warn ${flags[@]+"${flags[@]}"} \
            >>"$dir/$mode-$i.log" 2>&1 &
        pid[$mode:$i]=$!
        disown "$!"
    done
}

client() { # mode args...
    local mode=$1
    shift
    if [ "$mode" = tls ]; then
        "$client_bin" --server "$(servers https "${tls_ports[@]}")" "${tls_client[@]}" "$@"
    else
        "$client_bin" --server "$(servers http "${plain_ports[@]}")" "$@"
    fi
}

start_cluster plain
start_cluster tls
for mode in plain tls; do
    deadline=$((SECONDS + 60))
    until client "$mode" --timeout 2s put health ok >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "the $mode cluster is not serving; see $dir/$mode-*.log"
        sleep 0.2
    done
done

echo "| mode | workload | connections | ops/s | p50 | p99 |"
echo "|---|---|---:|---:|---:|---:|"
for workload in $WORKLOADS; do
    for round in $(seq "$ROUNDS"); do
        for mode in plain tls; do
            log "$mode, $workload, $CONNS connections, round $round"
            client "$mode" bench --workload "$workload" -c "$CONNS" --keys 100000 \
                --key-prefix "tls-$round-" --value-size "$VALUE_SIZE" \
                --duration "$DURATION" --warmup "$WARMUP" --json --quiet \
                >"$dir/out.json" 2>>"$dir/bench.log" || die "bench failed; see $dir/bench.log"
            python3 - "$dir/out.json" "$mode" "$workload" "$CONNS" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
lat = j["latency_us"]
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {j['throughput']:.0f} | {ms(lat['p50'])} | {ms(lat['p99'])} |")
PY
        done
    done
done
