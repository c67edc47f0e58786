#!/usr/bin/env bash
# raft-kv vs etcd on this machine, one command.
#
# Installs Debian's etcd-server when `etcd` is missing, builds raft-kv in
# release mode, starts a 3-member etcd cluster and a 3-node raft-kv cluster
# on loopback (fsync on both: etcd's defaults, raft-kv without --no-fsync),
# then runs `raft-kv-client bench` against each in alternation for every
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
#   BENCH_DIR=...          data and logs (default: a fresh dir in /var/tmp)
#   RAFT_KV_PORTS="4001 4002 4003"
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CONNS=${CONNS:-"1 16 64 256"}
WORKLOADS=${WORKLOADS:-"put get"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-100}
PUT_KEYS=${PUT_KEYS:-1000000}
GET_KEYS=${GET_KEYS:-1000}
OUT=${OUT:-docs/bench/results.md}
read -r -a rk_ports <<<"${RAFT_KV_PORTS:-4001 4002 4003}"
etcd_client_ports=(2379 22379 32379)
etcd_peer_ports=(2380 22380 32380)

log() { echo "==> $*" >&2; }
die() { echo "compare_etcd.sh: $*" >&2; exit 1; }

# --- etcd ---------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
    log "etcd not found: installing Debian's etcd-server"
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client \
        || { "${sudo[@]}" apt-get update && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y etcd-server etcd-client; } \
        || die "could not install etcd-server"
fi
etcd_version=$(etcd --version 2>/dev/null | head -1)

# --- raft-kv ------------------------------------------------------------
log "building raft-kv-server and raft-kv-client (release)"
cargo build --release -p raft-kv-server -p raft-kv-client
target_dir=${CARGO_TARGET_DIR:-$root/target}
server_bin=$target_dir/release/raft-kv-server
client_bin=$target_dir/release/raft-kv-client
[ -x "$server_bin" ] && [ -x "$client_bin" ] || die "release binaries not found in $target_dir/release"

if command -v jq >/dev/null 2>&1; then
    jget() { jq -r "$1" "$2"; }
else
    jget() {
        python3 -c 'import json,sys
v=json.load(open(sys.argv[2]))
for k in sys.argv[1].lstrip(".").split("."):
    v=v.get(k) if isinstance(v,dict) else None
print("null" if v is None else v)' "$1" "$2"
    }
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${rk_ports[@]}" "${etcd_client_ports[@]}" "${etcd_peer_ports[@]}"; do
    port_busy "$p" && die "port $p is already in use"
done

dir=${BENCH_DIR:-$(mktemp -d -p /var/tmp raft-kv-vs-etcd.XXXXXX)}
mkdir -p "$dir"
pids=()
cleanup() {
    trap - INT TERM EXIT
    if [ "${#pids[@]}" -gt 0 ]; then
        log "stopping the clusters"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        sleep 0.5
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    if [ -z "${BENCH_DIR:-}" ] && [ -z "${KEEP:-}" ]; then
        rm -rf "$dir"
    else
        echo "data and logs kept in $dir" >&2
    fi
}
trap cleanup INT TERM EXIT

# --- the machine --------------------------------------------------------
cores=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
# 100 synchronous 512-byte writes in the directory the clusters use.
dd_out=$(LC_ALL=C dd if=/dev/zero of="$dir/fsync-probe" bs=512 count=100 oflag=dsync 2>&1 | tail -1)
rm -f "$dir/fsync-probe"
dd_secs=$(awk -F', ' '{print $(NF-1)}' <<<"$dd_out" | awk '{print $1}')
fsync_ms=$(awk -v s="$dd_secs" 'BEGIN { printf "%.3f", s * 1000 / 100 }')
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $cores cores; fsync'd 512-byte write ${fsync_ms} ms; load $load"

# --- start the clusters -------------------------------------------------
log "starting etcd (3 members) and raft-kv (3 nodes) in $dir"
initial=""
for i in 1 2 3; do
    initial+="${initial:+,}e$i=http://127.0.0.1:${etcd_peer_ports[$((i - 1))]}"
done
for i in 1 2 3; do
    c=http://127.0.0.1:${etcd_client_ports[$((i - 1))]}
    p=http://127.0.0.1:${etcd_peer_ports[$((i - 1))]}
    etcd --name "e$i" --data-dir "$dir/etcd/e$i" \
        --listen-client-urls "$c" --advertise-client-urls "$c" \
        --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
        --initial-cluster "$initial" --initial-cluster-token bench \
        --initial-cluster-state new >"$dir/etcd-e$i.log" 2>&1 &
    pids+=($!)
done
peers=""
for i in 1 2 3; do
    peers+="${peers:+,}$i=http://127.0.0.1:${rk_ports[$((i - 1))]}"
done
for i in 1 2 3; do
    "$server_bin" --node-id "$i" --port "${rk_ports[$((i - 1))]}" --peers "$peers" \
        --data-dir "$dir/raft-kv/node-$i" --web-dir "$root/web/dist" \
        --log-level warn >"$dir/raft-kv-$i.log" 2>&1 &
    pids+=($!)
done

etcd_endpoints=""
for p in "${etcd_client_ports[@]}"; do etcd_endpoints+="${etcd_endpoints:+,}http://127.0.0.1:$p"; done
rk_servers=""
for p in "${rk_ports[@]}"; do rk_servers+="${rk_servers:+,}http://127.0.0.1:$p"; done

# Healthy = a write commits through every member.
deadline=$((SECONDS + 60))
for p in "${etcd_client_ports[@]}"; do
    until curl -fsS -X POST "http://127.0.0.1:$p/v3/kv/put" \
        -d '{"key":"aGVhbHRo","value":"b2s="}' >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "etcd on port $p is not serving; see $dir/etcd-e*.log"
        sleep 0.2
    done
done
for p in "${rk_ports[@]}"; do
    until "$client_bin" --server "http://127.0.0.1:$p" --timeout 2s put health ok >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "raft-kv on port $p is not serving; see $dir/raft-kv-*.log"
        sleep 0.2
    done
done
log "both clusters are up"

# --- runs ---------------------------------------------------------------
bench() { # system conns workload out.json [extra args]
    local system=$1 conns=$2 workload=$3 out=$4
    shift 4
    local target_args
    if [ "$system" = etcd ]; then
        target_args=(--target etcd --etcd-endpoints "$etcd_endpoints")
    else
        target_args=(--server "$rk_servers")
    fi
    "$client_bin" bench "${target_args[@]}" --json --quiet --timeout 10s \
        -c "$conns" --workload "$workload" --value-size "$VALUE_SIZE" "$@" >"$out" \
        2>>"$dir/bench.log" || echo "compare_etcd.sh: $system $workload c=$conns failed (see $dir/bench.log)" >&2
}

for system in raft-kv etcd; do
    case " $WORKLOADS " in *" get"*)
        log "preloading $GET_KEYS keys into $system"
        bench "$system" 64 get "$dir/preload-$system.json" --keys "$GET_KEYS" \
            --key-prefix get- --preload --ops 1
        ;;
    esac
done

ms() { awk -v u="$1" 'BEGIN { if (u == "" || u == "null") print "-"; else printf "%.2f", u / 1000 }'; }
cell() { # json -> "ops p50 p99" cells
    local f=$1
    if [ ! -s "$f" ]; then echo "failed | - | -"; return; fi
    local tput p50 p99 errs
    tput=$(jget .throughput "$f"); p50=$(jget .latency_us.p50 "$f")
    p99=$(jget .latency_us.p99 "$f"); errs=$(jget .errors "$f")
    local ops
    ops=$(awk -v t="$tput" 'BEGIN { printf "%.0f", t }')
    [ "$errs" != 0 ] && ops+=" ($errs err)"
    echo "$ops | $(ms "$p50") | $(ms "$p99")"
}

rows=()
for workload in $WORKLOADS; do
    case $workload in
        put) keyargs=(--keys "$PUT_KEYS" --key-prefix put-) ;;
        *) keyargs=(--keys "$GET_KEYS" --key-prefix get-) ;;
    esac
    for conns in $CONNS; do
        for system in raft-kv etcd; do
            log "$workload  c=$conns  $system"
            bench "$system" "$conns" "$workload" "$dir/$workload-$conns-$system.json" \
                "${keyargs[@]}" --duration "$DURATION" --warmup "$WARMUP"
        done
        r=$dir/$workload-$conns-raft-kv.json e=$dir/$workload-$conns-etcd.json
        ratio=-
        if [ -s "$r" ] && [ -s "$e" ]; then
            ratio=$(awk -v a="$(jget .throughput "$r")" -v b="$(jget .throughput "$e")" \
                'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        fi
        rows+=("| $workload | $conns | $(cell "$r") | $(cell "$e") | $ratio |")
        echo "${rows[-1]}" >&2
    done
done

# --- the table ----------------------------------------------------------
raft_kv_version=$("$client_bin" --version 2>/dev/null || echo raft-kv)
table=$(
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/compare_etcd.sh\`"
    echo "(CONNS=\"$CONNS\" DURATION=$DURATION WARMUP=$WARMUP, ${VALUE_SIZE}-byte values)."
    echo
    echo "- Machine: $cores cores${cpu:+ ($cpu)}; load average at start: $load"
    echo "- Disk: a 512-byte write with O_DSYNC takes ${fsync_ms} ms (dd, 100 writes)"
    echo "- raft-kv: $raft_kv_version, 3 nodes on loopback, fsync on; writes and linearizable reads to the leader"
    echo "- etcd: ${etcd_version:-etcd}, 3 members on loopback, defaults (fsync on); HTTP/JSON gateway, connections spread over the members"
    echo "- Load generator \`raft-kv-client bench\` (closed loop) on the same machine; puts over $PUT_KEYS keys, gets over $GET_KEYS preloaded keys; latencies in ms"
    echo
    echo "| workload | connections | raft-kv ops/s | p50 | p99 | etcd ops/s | p50 | p99 | raft-kv/etcd |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
)
echo
echo "$table"
if [ "$OUT" != - ]; then
    mkdir -p "$(dirname "$OUT")"
    {
        echo "# raft-kv vs etcd"
        echo
        echo "$table"
    } >"$OUT"
    log "table written to $OUT"
fi
