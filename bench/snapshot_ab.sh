#!/usr/bin/env bash
# Before/after of two raft-kv-server binaries under a growing state, alternated
# A B A B (ROUNDS times): each run starts a fresh 3-node cluster on ports
# 4101-4103, runs wrk new-key puts at 64 then 256 connections for SECS each
# (the state grows to about a million keys), and prints wrk's RESULT lines and
# a STATE line (keys, VmRSS per member, snapshot bytes written, snapshots per
# member). Needs wrk and the wrk scripts of WRK_DIR (rk_put.lua, bench_common.lua).
#   bench/snapshot_ab.sh OLD_BIN NEW_BIN [SECS] [-- extra server flags]
# Not a test: ratios between runs of one invocation only.
set -u
a=${1:?usage: snapshot_ab.sh OLD_BIN NEW_BIN [SECS]} b=${2:?} secs=${3:-30}
shift $(($# < 3 ? $# : 3)); [ "${1:-}" = -- ] && shift
WRK_DIR=${WRK_DIR:-/work/shared/bench-wrk}
ROUNDS=${ROUNDS:-2}
peers="1=http://127.0.0.1:4101,2=http://127.0.0.1:4102,3=http://127.0.0.1:4103"
one() { # name bin [flags]
    local name=$1 bin=$2 d i L="" pids=()
    shift 2
    d=$(mktemp -d -p /var/tmp "snapshot-ab-$name.XXXXXX")
    for i in 1 2 3; do
        "$bin" --node-id $i --port 410$i --peers "$peers" --data-dir "$d/node-$i" \
            --log-level info "$@" >>"$d/n$i.log" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 1 100); do
        for i in 1 2 3; do
            curl -fsS "http://127.0.0.1:410$i/status" 2>/dev/null | grep -q '"role":"leader"' \
                && L=http://127.0.0.1:410$i
        done
        [ -n "$L" ] && break
        sleep 0.2
    done
    for c in 64 256; do
        (cd "$WRK_DIR" && RUN_ID=$RANDOM LABEL=$name-put$c wrk -t2 -c$c -d"${secs}s" --timeout 10s \
            --latency -s rk_put.lua "$L" 2>&1 | grep '^RESULT')
    done
    sleep 3
    local keys rss="" snap
    keys=$(curl -fsS "$L/status" | python3 -c 'import sys,json; print(json.load(sys.stdin)["keys"])')
    for i in 0 1 2; do rss+=" $(awk '/VmRSS/ {print $2}' "/proc/${pids[$i]}/status")"; done
    snap=$(grep -h "snapshot taken" "$d"/n*.log | sed 's/.*bytes=\([0-9]*\).*/\1/' | awk '{s+=$1} END {print s+0}')
    echo "STATE label=$name keys=$keys rss_kb=[$rss ] snapshot_bytes_all_members=$snap snapshots_per_member=[ $(grep -hc 'snapshot taken' "$d"/n*.log | tr '\n' ' ')]"
    kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
    rm -rf "$d"
}
for r in $(seq 1 "$ROUNDS"); do
    one "old$r" "$a" "$@"
    one "new$r" "$b" "$@"
done
