#!/usr/bin/env bash
# raft-kv vs etcd on this machine, one command.
#
# Installs Debian's etcd-server (and jq, protoc) when missing, builds raft-kv
# in release mode, starts a 3-member etcd cluster and a 3-node raft-kv
# cluster on loopback (fsync on both: etcd's defaults, raft-kv without
# --no-fsync), then runs `raft-kv-client bench` in alternation against
# raft-kv, etcd through gRPC and etcd through its HTTP/JSON gateway for every
# workload and connection count, and prints a markdown table (also written
# to docs/bench/results.md). Everything it starts is stopped on exit.
#
# Environment:
#   CONNS="1 16 64 256"    connection counts
#   WORKLOADS="put get"    bench workloads (put; get = linearizable read;
#                          get-stale = serializable/stale read)
#   DURATION=10s           measured time per run
#   WARMUP=1s              warm-up per run (excluded)
#   VALUE_SIZE=100         value size in bytes
#   PUT_KEYS=1000000       key space of puts (mostly a new key per put)
#   GET_KEYS=1000          key space of reads (preloaded before the reads)
#   OUT=docs/bench/results.md   where the table goes ("-": nowhere)
#   ETCD_GRPC=1            also load etcd through its gRPC API (raft-kv-client
#                          built with the etcd-grpc feature; installs Debian's
#                          protobuf-compiler for protoc when missing); 0: only
#                          the HTTP/JSON gateway
#   PLOT=1                 also draw the figures (bench/plot, built here) into
#                          the SVG beside OUT; 0: no plot. The figures are
#                          always written as CSV beside OUT (results.csv for
#                          results.md; with OUT=- into BENCH_DIR only)
#   GROW_KEYS=1000000      then a run whose state grows: rounds of puts of new keys
#                          (DURATION each, at GROW_CONNS, alternating the systems)
#                          until raft-kv holds GROW_KEYS keys (0: no growth run);
#                          its table has the keys after each round, and at the end
#                          each member's RSS against the raw key+value bytes and
#                          raft-kv's snapshot write amplification
#   GROW_CONNS="64 256"    connection counts of the growth rounds
#   GROW_MAX_ROUNDS=40     stop growing after this many rounds anyway
#   RAFT_KV_ARGS="..."     extra raft-kv-server flags, e.g. "--snapshot-every 0"
#                          to measure without snapshots
#   BENCH_DIR=...          data and logs (default: a fresh dir in /var/tmp)
#   KEEP=1                 keep the default BENCH_DIR after the run
#   RAFT_KV_PORTS="4001 4002 4003"
#   ETCD_CLIENT_PORTS="2379 12379 22379"
#   ETCD_PEER_PORTS="2380 12380 22380"
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup compare_etcd.sh

CONNS=${CONNS:-"1 16 64 256"}
WORKLOADS=${WORKLOADS:-"put get"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-100}
PUT_KEYS=${PUT_KEYS:-1000000}
GET_KEYS=${GET_KEYS:-1000}
OUT=${OUT:-docs/bench/results.md}
ETCD_GRPC=${ETCD_GRPC:-1}
PLOT=${PLOT:-1}
GROW_KEYS=${GROW_KEYS:-1000000}
GROW_CONNS=${GROW_CONNS:-"64 256"}
GROW_MAX_ROUNDS=${GROW_MAX_ROUNDS:-40}
read -r -a RK_ARGS <<<"${RAFT_KV_ARGS:-}"
ports_from_env "4001 4002 4003" "2379 12379 22379" "2380 12380 22380"

ensure_etcd
ensure_commands jq=jq
if [ "$ETCD_GRPC" != 0 ]; then
    # The etcd-client crate compiles etcd's .proto files with protoc.
    ensure_commands protoc=protobuf-compiler
    CLIENT_FEATURES=etcd-grpc
fi
build_raft_kv
if [ "$PLOT" != 0 ]; then
    log "building the plotter (bench/plot)"
    cargo build --release --manifest-path bench/plot/Cargo.toml
    plot_bin=${CARGO_TARGET_DIR:-$root/bench/plot/target}/release/raft-kv-bench-plot
    [ -x "$plot_bin" ] || die "the plotter was not built at $plot_bin"
fi
jget() { jq -r "$1" "$2"; }
check_ports_free
make_bench_dir raft-kv-vs-etcd
measure_machine

# --- start the clusters -------------------------------------------------
log "starting etcd (3 members) and raft-kv (3 nodes) in $dir"
ETCD_TOKEN=bench
start_etcd_cluster
start_raft_kv_cluster
wait_etcd_serving
wait_raft_kv_serving
log "both clusters are up"

# --- runs ---------------------------------------------------------------
# Systems in the order they run (and their columns): raft-kv, etcd through
# gRPC (unless ETCD_GRPC=0), etcd through its HTTP/JSON gateway.
systems=(raft-kv)
[ "$ETCD_GRPC" = 0 ] || systems+=(etcd-grpc)
systems+=(etcd-gateway)
declare -A label=([raft-kv]=raft-kv [etcd-grpc]="etcd gRPC" [etcd-gateway]="etcd gateway")

bench() { # system conns workload out.json [extra args]
    local system=$1 conns=$2 workload=$3 out=$4
    shift 4
    local target_args
    case $system in
        etcd-gateway) target_args=(--target etcd --etcd-endpoints "$etcd_endpoints") ;;
        etcd-grpc) target_args=(--target etcd-grpc --etcd-endpoints "$etcd_endpoints") ;;
        *) target_args=(--server "$rk_servers") ;;
    esac
    "$client_bin" bench "${target_args[@]}" --json --quiet --timeout 10s \
        -c "$conns" --workload "$workload" --value-size "$VALUE_SIZE" "$@" >"$out" \
        2>>"$dir/bench.log" || echo "compare_etcd.sh: $system $workload c=$conns failed (see $dir/bench.log)" >&2
}

# Both etcd targets read the same cluster: one preload serves them.
for system in raft-kv etcd-gateway; do
    case " $WORKLOADS " in *" get"*)
        log "preloading $GET_KEYS keys into ${system%-gateway}"
        bench "$system" 64 get "$dir/preload-$system.json" --keys "$GET_KEYS" \
            --key-prefix get- --preload --ops 1
        ;;
    esac
done

ms() { awk -v u="$1" 'BEGIN { if (u == "" || u == "null") print "-"; else printf "%.2f", u / 1000 }'; }
cell() { # json -> "ops p50 p99 p99.9 max" cells
    local f=$1
    if [ ! -s "$f" ]; then echo "failed | - | - | - | -"; return; fi
    local tput p50 p99 p999 max errs
    tput=$(jget .throughput "$f"); p50=$(jget .latency_us.p50 "$f")
    p99=$(jget .latency_us.p99 "$f"); p999=$(jget .latency_us.p999 "$f")
    max=$(jget .latency_us.max "$f"); errs=$(jget .errors "$f")
    local ops
    ops=$(awk -v t="$tput" 'BEGIN { printf "%.0f", t }')
    [ "$errs" != 0 ] && ops+=" ($errs err)"
    echo "$ops | $(ms "$p50") | $(ms "$p99") | $(ms "$p999") | $(ms "$max")"
}
# The figures, one line per run, for the plotter and other tools.
csv=$dir/results.csv
echo "workload,connections,system,throughput,p50_ms,p99_ms,p999_ms,max_ms,errors" >"$csv"
figures() { # json -> "throughput,p50,p99,p99.9,max,errors" (empty fields when it failed)
    local f=$1
    if [ -s "$f" ]; then
        jq -r 'def ms: if . == null then "" else (. | round / 1000 | tostring) end;
            [(.throughput * 10 | round / 10 | tostring), (.latency_us.p50 | ms),
             (.latency_us.p99 | ms), (.latency_us.p999 | ms), (.latency_us.max | ms),
             (.errors | tostring)] | join(",")' "$f"
    else
        echo ",,,,,"
    fi
}
csv_row() { # workload conns system json
    echo "$1,$2,$3,$(figures "$4")" >>"$csv"
}
ratio() { # raft-kv.json other.json -> throughput ratio
    if [ -s "$1" ] && [ -s "$2" ]; then
        awk -v a="$(jget .throughput "$1")" -v b="$(jget .throughput "$2")" \
            'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
    else
        echo -
    fi
}

rows=()
for workload in $WORKLOADS; do
    case $workload in
        put) keyargs=(--keys "$PUT_KEYS" --key-prefix put-) ;;
        *) keyargs=(--keys "$GET_KEYS" --key-prefix get-) ;;
    esac
    for conns in $CONNS; do
        row="| $workload | $conns |"
        for system in "${systems[@]}"; do
            log "$workload  c=$conns  $system"
            bench "$system" "$conns" "$workload" "$dir/$workload-$conns-$system.json" \
                "${keyargs[@]}" --duration "$DURATION" --warmup "$WARMUP"
            row+=" $(cell "$dir/$workload-$conns-$system.json") |"
            csv_row "$workload" "$conns" "$system" "$dir/$workload-$conns-$system.json"
        done
        for system in "${systems[@]:1}"; do
            row+=" $(ratio "$dir/$workload-$conns-raft-kv.json" "$dir/$workload-$conns-$system.json") |"
        done
        rows+=("$row")
        echo "$row" >&2
    done
done

# --- growth run ---------------------------------------------------------
# Rounds of puts of new keys (a fresh prefix per round over a key space of
# 100 million: nearly every put adds a key) until raft-kv holds
# GROW_KEYS keys; every system gets the same rounds, alternating.
rk_keys() { curl -fsS "http://127.0.0.1:${rk_ports[0]}/status" | jq -r .keys; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
grow_table=""
if [ "$GROW_KEYS" -gt 0 ]; then
    grow_csv=$dir/grow.csv
    echo "round,connections,system,keys_after,throughput,p50_ms,p99_ms,p999_ms,max_ms,errors" >"$grow_csv"
    grow_rows=()
    round=0
    keys_now=$(rk_keys || echo 0)
    while [ "$keys_now" -lt "$GROW_KEYS" ] && [ "$round" -lt "$GROW_MAX_ROUNDS" ]; do
        round=$((round + 1))
        for conns in $GROW_CONNS; do
            row="| $round | $conns |"
            for system in "${systems[@]}"; do
                log "growth round $round  c=$conns  $system (raft-kv holds $keys_now keys)"
                f=$dir/grow-$round-$conns-$system.json
                bench "$system" "$conns" put "$f" --keys 100000000 \
                    --key-prefix "grow-$round-$conns-" --duration "$DURATION" --warmup "$WARMUP"
                row+=" $(cell "$f") |"
                [ "$system" != raft-kv ] || keys_now=$(rk_keys || echo "$keys_now")
                echo "$round,$conns,$system,$keys_now,$(figures "$f")" >>"$grow_csv"
            done
            grow_rows+=("$row $keys_now |")
            echo "$row $keys_now |" >&2
        done
    done
    # Memory and snapshot write amplification at the end of the growth.
    key_len=20 # "grow-R-CCC-" and about 8 digits
    raw_bytes=$(( keys_now * (key_len + VALUE_SIZE) ))
    mem_lines=()
    snap_total=0
    for i in 1 2 3; do
        kb=$(rss_kb "${pid[raft-kv:$i]}")
        sb=$(curl -fsS "http://127.0.0.1:${rk_ports[$((i - 1))]}/metrics" |
            awk '/^raft_snapshot_bytes_written_total / { print $2 }')
        snap_total=$(( snap_total + ${sb:-0} ))
        mem_lines+=("- raft-kv node $i: RSS $((kb / 1024)) MiB = $(awk -v r="$kb" -v b="$raw_bytes" 'BEGIN { printf "%.2f", r * 1024 / b }')x the raw bytes; snapshots wrote $(( ${sb:-0} / 1048576 )) MiB")
    done
    for i in 1 2 3; do
        kb=$(rss_kb "${pid[etcd:$i]}")
        mem_lines+=("- etcd member $i: RSS $((kb / 1024)) MiB")
    done
    grow_header="| round | connections |" grow_rule="|---:|---:|"
    for system in "${systems[@]}"; do
        grow_header+=" ${label[$system]} ops/s | p50 | p99 | p99.9 | max |"
        grow_rule+="---:|---:|---:|---:|---:|"
    done
    grow_table=$(
        echo "Growth run: puts of new keys, $DURATION per round and system, until raft-kv held $GROW_KEYS keys (it held $keys_now)."
        echo
        echo "$grow_header raft-kv keys after |"
        echo "$grow_rule---:|"
        [ "${#grow_rows[@]}" = 0 ] || printf '%s\n' "${grow_rows[@]}"
        echo
        echo "At the end: $keys_now keys of about $key_len + $VALUE_SIZE bytes = $((raw_bytes / 1048576)) MiB of raw key+value bytes per member."
        printf '%s\n' "${mem_lines[@]}"
        echo "- raft-kv snapshot write amplification: $(awk -v s="$snap_total" -v b="$raw_bytes" 'BEGIN { printf "%.2f", s / 3 / b }') bytes of snapshot file written per byte of client data, per member (all members: $((snap_total / 1048576)) MiB)"
    )
    [ "$OUT" = - ] || { mkdir -p "$(dirname "$OUT")"; cp "$grow_csv" "${OUT%.md}-grow.csv"; }
fi

# --- the table ----------------------------------------------------------
raft_kv_version=$("$client_bin" --version 2>/dev/null || echo raft-kv)
header="| workload | connections |" rule="|---|---:|"
for system in "${systems[@]}"; do
    header+=" ${label[$system]} ops/s | p50 | p99 | p99.9 | max |"
    rule+="---:|---:|---:|---:|---:|"
done
for system in "${systems[@]:1}"; do
    header+=" raft-kv/${label[$system]} |"
    rule+="---:|"
done
etcd_how="HTTP/JSON gateway"
[ "$ETCD_GRPC" = 0 ] || etcd_how="gRPC (the etcd-client crate) and the HTTP/JSON gateway, one after the other"
table=$(
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/compare_etcd.sh\`"
    echo "(CONNS=\"$CONNS\" DURATION=$DURATION WARMUP=$WARMUP, ${VALUE_SIZE}-byte values)."
    echo
    machine_lines
    echo "- raft-kv: $raft_kv_version, 3 nodes on loopback, fsync on; writes and linearizable reads to the leader"
    echo "- etcd: ${etcd_version:-etcd}, 3 members on loopback, defaults (fsync on); $etcd_how, connections spread over the members"
    echo "- Load generator \`raft-kv-client bench\` (closed loop) on the same machine; puts over $PUT_KEYS keys, gets over $GET_KEYS preloaded keys; latencies in ms"
    echo
    echo "$header"
    echo "$rule"
    printf '%s\n' "${rows[@]}"
    [ -z "${RAFT_KV_ARGS:-}" ] || { echo; echo "raft-kv-server ran with: $RAFT_KV_ARGS"; }
    [ -z "${grow_table:-}" ] || { echo; echo "$grow_table"; }
)
echo
echo "$table"
if [ "$OUT" = - ]; then
    csv_out=$csv svg_out=$dir/results.svg
else
    csv_out=${OUT%.md}.csv svg_out=${OUT%.md}.svg
    mkdir -p "$(dirname "$OUT")"
    cp "$csv" "$csv_out"
fi
if [ "$PLOT" != 0 ]; then
    "$plot_bin" "$csv_out" "$svg_out" \
        "raft-kv vs etcd, $(date -u '+%Y-%m-%d'), $cores cores, durable append ${fsync_ms} ms, ${VALUE_SIZE}-byte values" \
        || { log "the plotter failed: no plot"; PLOT=0; }
fi
if [ "$OUT" != - ]; then
    {
        echo "# raft-kv vs etcd"
        echo
        echo "$table"
        echo
        echo "The same figures: [$(basename "$csv_out")]($(basename "$csv_out"))."
        if [ "$PLOT" != 0 ]; then
            echo
            echo "![Throughput and p99 latency against connections]($(basename "$svg_out"))"
        fi
    } >"$OUT"
    log "table written to $OUT, figures to $csv_out"
    [ "$PLOT" = 0 ] || log "plot written to $svg_out"
elif [ -n "${BENCH_DIR:-}${KEEP:-}" ]; then
    log "figures in $csv_out"
    [ "$PLOT" = 0 ] || log "plot in $svg_out"
fi
