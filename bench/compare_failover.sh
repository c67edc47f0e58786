#!/usr/bin/env bash
# raft-kv vs etcd: failover time, memory per value and cold-restart time.
#
# Installs Debian's etcd-server when `etcd` is missing, builds raft-kv in
# release mode, starts a 3-member etcd cluster and a 3-node raft-kv cluster
# on loopback (fsync on both: etcd's defaults, raft-kv without --no-fsync;
# default election settings on both: raft-kv --tick-ms 50 --election-ticks 10,
# etcd --heartbeat-interval 100 --election-timeout 1000) and measures:
#
#  1. Failover: SIGKILL the leader, then time until the first write succeeds
#     through a surviving member (a client tries the survivors in turn, each
#     request cut after PROBE_TIMEOUT). The killed member is restarted and the
#     cluster must be healthy again before the next run. RUNS runs per system,
#     alternating between the systems; median, min and max.
#  2. Memory: VmRSS of every member after loading KEYS values of VALUE_SIZE
#     bytes (`raft-kv-client bench --preload`), as MiB per million values.
#  3. Cold restart with those keys: SIGTERM all three members, start them
#     again, time until a linearizable read of a known key succeeds through
#     any member; also raft-kv's own "loaded persisted state ... took_ms".
#
# Prints a markdown table (also written to docs/bench/failover.md). Everything
# it starts is stopped on exit.
#
# Environment:
#   RUNS=5                 failover runs per system
#   KEYS=1000000           values loaded before the memory and restart figures
#   VALUE_SIZE=100         value size in bytes
#   PROBE_TIMEOUT=0.5      per-request timeout (s) of the failover/restart probes
#   HEALTH_TIMEOUT=120     deadline (s) of every wait for a healthy cluster
#   OUT=docs/bench/failover.md   where the table goes ("-": nowhere)
#   BENCH_DIR=...          data and logs (default: a fresh dir in /var/tmp)
#   KEEP=1                 keep the default BENCH_DIR after the run
#   RAFT_KV_PORTS="4101 4102 4103"
#   ETCD_CLIENT_PORTS="2479 12479 22479"
#   ETCD_PEER_PORTS="2480 12480 22480"
#
# Needs bash 5 ($EPOCHREALTIME), curl and jq (installed with etcd if missing).
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup compare_failover.sh

RUNS=${RUNS:-5}
KEYS=${KEYS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-0.5}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-120}
OUT=${OUT:-docs/bench/failover.md}

[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 or newer (\$EPOCHREALTIME)"
ports_from_env "4101 4102 4103" "2479 12479 22479" "2480 12480 22480"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $KEYS =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive integer"

ensure_etcd
ensure_commands jq=jq
build_raft_kv
check_ports_free
make_bench_dir raft-kv-failover

now_us() { echo "${EPOCHREALTIME/./}"; }
b64() { printf '%s' "$1" | base64 -w0; }

# --- the machine --------------------------------------------------------
measure_machine

# --- members ------------------------------------------------------------
ETCD_TOKEN=failover
# Election settings left at their defaults (--tick-ms 50 --election-ticks 10);
# the node module at info level logs "loaded persisted state ... took_ms".
RK_LOG_LEVEL='warn,raft_kv_server::node=info'

# --- requests (each cut after $t seconds) -------------------------------
# put: 0 once the write is acknowledged.
declare -A b64_cache=()
put() { # system i key value timeout
    local system=$1 port t=$5 out k v
    port=$(port_of "$1" "$2")
    if [ "$system" = etcd ]; then
        # Encoded once per string (when called outside a subshell), so the
        # failover probe loop forks no more than raft-kv's.
        k=${b64_cache[$3]:-$(b64 "$3")} v=${b64_cache[$4]:-$(b64 "$4")}
        b64_cache[$3]=$k b64_cache[$4]=$v
        out=$(curl -fsS --max-time "$t" -X POST "http://127.0.0.1:$port/v3/kv/put" \
            -d "{\"key\":\"$k\",\"value\":\"$v\"}" 2>/dev/null) && [[ $out == *'"header"'* ]]
    else
        curl -fsS -o /dev/null --max-time "$t" -X PUT -H 'content-type: application/json' \
            -d "{\"value\":\"$4\"}" "http://127.0.0.1:$port/key/$3" 2>/dev/null
    fi
}
# get: prints the value of a linearizable read (nothing when absent).
get() { # system i key timeout
    local system=$1 port t=$4
    port=$(port_of "$1" "$2")
    if [ "$system" = etcd ]; then
        curl -fsS --max-time "$t" -X POST "http://127.0.0.1:$port/v3/kv/range" \
            -d "{\"key\":\"$(b64 "$3")\"}" 2>/dev/null | jq -r '.kvs[0].value // empty' | base64 -d
    else
        curl -fsS --max-time "$t" "http://127.0.0.1:$port/key/$3" 2>/dev/null | jq -r '.value // empty'
    fi
}
# leader_of: prints the member index (1..3) this member names as leader, or nothing.
leader_of() { # system i
    local system=$1 port
    port=$(port_of "$1" "$2")
    if [ "$system" = etcd ]; then
        # The gateway prints uint64 ids as strings (etcdctl's JSON prints them
        # as numbers, which jq would round).
        local id j
        id=$(curl -fsS --max-time 1 -X POST "http://127.0.0.1:$port/v3/maintenance/status" -d '{}' \
            2>/dev/null | jq -r '.leader // empty') || return 0
        [ -n "$id" ] && [ "$id" != 0 ] || return 0
        for j in 1 2 3; do
            [ "$(etcd_member_id "$j")" != "$id" ] || { echo "$j"; return 0; }
        done
    else
        curl -fsS --max-time 1 "http://127.0.0.1:$port/status" 2>/dev/null | jq -r '.leader // empty' || true
    fi
}
declare -A etcd_ids=()
etcd_member_id() { # i -> etcd's member id (stable across restarts; cached once known)
    if [ -n "${etcd_ids[$1]:-}" ]; then echo "${etcd_ids[$1]}"; return 0; fi
    curl -fsS --max-time 1 -X POST "http://127.0.0.1:$(port_of etcd "$1")/v3/maintenance/status" \
        -d '{}' 2>/dev/null | jq -r '.header.member_id // empty' || true
}

# Healthy: every running member knows the same leader, and a write through
# each member followed by a linearizable read through it succeeds (so a
# restarted member has caught up). Prints the leader's index.
wait_healthy() { # system
    local system=$1 deadline=$((SECONDS + HEALTH_TIMEOUT)) i l leader ok v
    while :; do
        ok=1 leader=""
        for i in 1 2 3; do
            l=$(leader_of "$system" "$i")
            if [ -z "$l" ] || { [ -n "$leader" ] && [ "$l" != "$leader" ]; }; then ok=""; break; fi
            leader=$l
        done
        if [ -n "$ok" ]; then
            for i in 1 2 3; do
                v=ok-$RANDOM
                if ! put "$system" "$i" "health-$i" "$v" 2 \
                    || [ "$(get "$system" "$i" "health-$i" 2)" != "$v" ]; then
                    ok=""
                    break
                fi
            done
        fi
        # The leader may have changed while we wrote: ask again.
        if [ -n "$ok" ] && [ "$(leader_of "$system" "$leader")" = "$leader" ]; then
            echo "$leader"
            return 0
        fi
        [ $SECONDS -lt "$deadline" ] \
            || die "$system is not healthy after ${HEALTH_TIMEOUT}s; see $dir/$system-*.log"
        sleep 0.1
    done
}

# --- start the clusters -------------------------------------------------
log "starting etcd (3 members) and raft-kv (3 nodes) in $dir"
start_etcd_cluster
start_raft_kv_cluster
for system in etcd raft-kv; do wait_healthy "$system" >/dev/null; done
for i in 1 2 3; do etcd_ids[$i]=$(etcd_member_id "$i"); done
log "both clusters are up"

# --- 1. failover --------------------------------------------------------
declare -A failover=([raft-kv]="" [etcd]="")
declare -A failover_failed=([raft-kv]=0 [etcd]=0)
failover_once() { # system run
    local system=$1 run=$2 leader survivors=() i t0 t1="" deadline ms
    leader=$(wait_healthy "$system")
    for i in 1 2 3; do [ "$i" = "$leader" ] || survivors+=("$i"); done
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    t0=$(now_us)
    kill -KILL "${pid[$system:$leader]}"
    while [ -z "$t1" ] && [ $SECONDS -lt "$deadline" ]; do
        for i in "${survivors[@]}"; do
            if put "$system" "$i" failover "run-$run" "$PROBE_TIMEOUT"; then
                t1=$(now_us)
                break
            fi
        done
    done
    reap 10 "${pid[$system:$leader]}"
    pid[$system:$leader]=""
    if [ -n "$t1" ]; then
        ms=$(((t1 - t0) / 1000))
        failover[$system]+="${failover[$system]:+ }$ms"
        log "failover $system run $run: killed member $leader, first write after $ms ms"
    else
        failover_failed[$system]=$((failover_failed[$system] + 1))
        log "failover $system run $run: no write within ${HEALTH_TIMEOUT}s"
    fi
    start_member "$system" "$leader"
    wait_healthy "$system" >/dev/null
}
for run in $(seq 1 "$RUNS"); do
    for system in raft-kv etcd; do failover_once "$system" "$run"; done
done

# --- 2. memory ----------------------------------------------------------
rss_mib() { # pid -> VmRSS in MiB
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}
declare -A rss_before=() rss_after=()
probe_value=probe-$RANDOM$RANDOM
for system in raft-kv etcd; do
    for i in 1 2 3; do rss_before[$system:$i]=$(rss_mib "${pid[$system:$i]}"); done
    log "loading $KEYS values of $VALUE_SIZE bytes into $system"
    if [ "$system" = etcd ]; then
        target_args=(--target etcd --etcd-endpoints "$etcd_endpoints")
    else
        target_args=(--server "$rk_servers")
    fi
    "$client_bin" bench "${target_args[@]}" --json --quiet --timeout 10s -c 64 \
        --workload put --keys "$KEYS" --key-prefix mem- --preload --ops 1 \
        --value-size "$VALUE_SIZE" >"$dir/load-$system.json" 2>>"$dir/bench.log" \
        || die "loading $system failed (see $dir/bench.log)"
    errors=$(jq -r '.errors // 0' "$dir/load-$system.json")
    [ "$errors" = 0 ] || log "loading $system: $errors errors"
    # A write after the load, read through every member: each has applied it all.
    leader=$(wait_healthy "$system")
    put "$system" "$leader" restart-probe "$probe_value" 10 || die "$system: probe write failed"
    for i in 1 2 3; do
        [ "$(get "$system" "$i" restart-probe 10)" = "$probe_value" ] \
            || die "$system: member $i does not read the probe key"
    done
    for i in 1 2 3; do rss_after[$system:$i]=$(rss_mib "${pid[$system:$i]}"); done
    log "$system RSS after load: ${rss_after[$system:1]} / ${rss_after[$system:2]} / ${rss_after[$system:3]} MiB"
done

# --- 3. cold restart ----------------------------------------------------
declare -A stop_ms=() ready_ms=() took=() disk_mib=() keys_after=()
keys_total() { # system -> number of keys a linearizable count finds
    local port
    port=$(port_of "$1" 1)
    if [ "$1" = etcd ]; then
        curl -fsS --max-time 10 -X POST "http://127.0.0.1:$port/v3/kv/range" \
            -d '{"key":"AA==","range_end":"AA==","count_only":true}' 2>/dev/null | jq -r '.count // 0' || echo -
    else
        curl -fsS --max-time 10 "http://127.0.0.1:$port/status" 2>/dev/null | jq -r '.keys // "-"' || echo -
    fi
}
for system in raft-kv etcd; do
    log "cold restart of $system"
    t0=$(now_us)
    stop_members "$system" TERM 1 2 3
    stop_ms[$system]=$((($(now_us) - t0) / 1000))
    if [ "$system" = etcd ]; then
        disk_mib[$system]=$(du -sm "$dir/etcd" | cut -f1)
    else
        disk_mib[$system]=$(du -sm "$dir/raft-kv" | cut -f1)
    fi
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    t0=$(now_us)
    for i in 1 2 3; do start_member "$system" "$i"; done
    t1=""
    while [ -z "$t1" ] && [ $SECONDS -lt "$deadline" ]; do
        for i in 1 2 3; do
            if [ "$(get "$system" "$i" restart-probe "$PROBE_TIMEOUT")" = "$probe_value" ]; then
                t1=$(now_us)
                break
            fi
        done
        [ -n "$t1" ] || sleep 0.01
    done
    [ -n "$t1" ] || die "$system: no linearizable read within ${HEALTH_TIMEOUT}s of the restart"
    ready_ms[$system]=$(((t1 - t0) / 1000))
    wait_healthy "$system" >/dev/null
    keys_after[$system]=$(keys_total "$system")
    if [ "$system" = raft-kv ]; then
        took[$system]=""
        for i in 1 2 3; do
            # The newest "loaded persisted state" line of node i (this restart).
            t=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/raft-kv-$i.log" \
                | grep 'loaded persisted state' | tail -1 | grep -o 'took_ms=[0-9]*' | cut -d= -f2 || true)
            took[$system]+="${took[$system]:+ / }${t:--}"
        done
    fi
    log "$system: stopped in ${stop_ms[$system]} ms; first linearizable read ${ready_ms[$system]} ms after the start"
done

# --- the table ----------------------------------------------------------
stats() { # "ms ms ..." -> "median | min | max"
    if [ -z "$1" ]; then echo "- | - | -"; return; fi
    tr ' ' '\n' <<<"$1" | sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.0f | %d | %d\n", m, v[1], v[NR] }'
}
mem_row() { # system
    local s=$1
    awk -v k="$KEYS" -v b1="${rss_before[$s:1]}" -v b2="${rss_before[$s:2]}" -v b3="${rss_before[$s:3]}" \
        -v a1="${rss_after[$s:1]}" -v a2="${rss_after[$s:2]}" -v a3="${rss_after[$s:3]}" -v s="$s" 'BEGIN {
        f = 1000000 / k; sa = a1 + a2 + a3; sb = b1 + b2 + b3
        printf "| %s | %d | %.1f | %.1f / %.1f / %.1f | %.1f | %.0f | %.0f / %.0f / %.0f | %.0f |\n",
            s, k, sb, a1, a2, a3, sa, sa * f, a1 * f, a2 * f, a3 * f, (sa - sb) * f }'
}
raft_kv_version=$("$client_bin" --version 2>/dev/null || echo raft-kv)
table=$(
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/compare_failover.sh\`"
    echo "(RUNS=$RUNS KEYS=$KEYS, ${VALUE_SIZE}-byte values, PROBE_TIMEOUT=${PROBE_TIMEOUT}s)."
    echo
    machine_lines
    echo "- raft-kv: $raft_kv_version, 3 nodes on loopback, fsync on, default election settings (--tick-ms 50 --election-ticks 10: timeout 500-1000 ms)"
    echo "- etcd: ${etcd_version:-etcd}, 3 members on loopback, defaults (fsync on, --heartbeat-interval 100 --election-timeout 1000)"
    echo
    echo "Failover: SIGKILL the leader; time until the first write is acknowledged through a surviving"
    echo "member (curl tries the two survivors in turn, each request cut after ${PROBE_TIMEOUT}s); ms over $RUNS runs."
    echo
    echo "| system | median ms | min | max | runs (ms) | failed runs |"
    echo "|---|---:|---:|---:|---|---:|"
    for s in raft-kv etcd; do
        echo "| $s | $(stats "${failover[$s]}") | ${failover[$s]:--} | ${failover_failed[$s]} |"
    done
    echo
    echo "Memory: VmRSS after loading $KEYS values of $VALUE_SIZE bytes (\`raft-kv-client bench --preload\`, 64 connections)."
    echo "\"per million\" scales the RSS to 1,000,000 values (RSS x 1e6 / KEYS; the idle footprint is included, so"
    echo "small KEYS overstate it); \"growth\" scales only the increase over the RSS before the load."
    echo
    echo "| system | values | RSS before, sum (MiB) | RSS after, per member (MiB) | sum | MiB per million values, sum | per member | growth per million, sum |"
    echo "|---|---:|---:|---|---:|---:|---|---:|"
    for s in raft-kv etcd; do mem_row "$s"; done
    echo
    echo "Cold restart with those values: SIGTERM all three members (\"stop\": until all exited), start all"
    echo "three, time until a linearizable read of a known key succeeds through any member."
    echo
    echo "| system | stop ms | start to first linearizable read, ms | data on disk, sum (MiB) | keys after restart | raft-kv \"loaded persisted state\" took_ms per node |"
    echo "|---|---:|---:|---:|---:|---|"
    for s in raft-kv etcd; do
        echo "| $s | ${stop_ms[$s]} | ${ready_ms[$s]} | ${disk_mib[$s]} | ${keys_after[$s]} | ${took[$s]:--} |"
    done
)
echo
echo "$table"
if [ "$OUT" != - ]; then
    mkdir -p "$(dirname "$OUT")"
    {
        echo "# raft-kv vs etcd: failover, memory, cold restart"
        echo
        echo "$table"
    } >"$OUT"
    log "table written to $OUT"
fi
