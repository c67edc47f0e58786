#!/usr/bin/env bash
# Adding a member to a loaded cluster: how long a new node with a large
# state takes from `member add` to voter, and what the change costs the
# writers meanwhile.
#
# Starts a 3-node raft-kv cluster on loopback (fsync on), preloads KEYS keys
# of VALUE_SIZE bytes, then runs a closed-loop put load (CONNS connections)
# for the whole measurement. After BEFORE seconds of load it adds node 4
# (`raft-kv-client member add 4 URL`), starts it with --join, and waits until
# the leader lists it as a voter (automatic promotion once caught up). Every
# half second it samples the leader's applied index, so the report shows
# puts per second before the change, while node 4 catches up (snapshot
# transfer + log) and after its promotion.
#
# Environment:
#   KEYS=1000000       keys preloaded (the state node 4 has to receive)
#   VALUE_SIZE=100     value size in bytes
#   CONNS=64           put connections during the measurement
#   BEFORE=10          seconds of load before the add
#   AFTER=10           seconds of load after the promotion
#   RAFT_KV_PORTS="5001 5002 5003"; node 4 takes the first port + 3
#   BENCH_DIR=...      data and logs (default: a fresh dir in /var/tmp)
#   KEEP=1             keep the default BENCH_DIR after the run
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup member_add.sh

KEYS=${KEYS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
CONNS=${CONNS:-64}
BEFORE=${BEFORE:-10}
AFTER=${AFTER:-10}
# No etcd here: its ports are only placeholders for ports_from_env.
ports_from_env "5001 5002 5003" "2679 12679 22679" "2680 12680 22680"
port4=$((rk_ports[0] + 3))
for p in "${rk_ports[@]}" "$port4"; do
    if port_busy "$p"; then die "port $p is already in use"; fi
done
url4=http://127.0.0.1:$port4

build_raft_kv
make_bench_dir raft-kv-member-add
start_raft_kv_cluster
wait_raft_kv_serving
node4_pid="" bench_pid=""
# Expanded when the script exits.
# shellcheck disable=SC2016
on_exit '[ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null; [ -z "$node4_pid" ] || kill -KILL "$node4_pid" 2>/dev/null'

client() { "$client_bin" --server "$rk_servers" --timeout 10s "$@"; }

log "preloading $KEYS keys of $VALUE_SIZE bytes"
client bench --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" --preload \
    --ops 1 --connections 64 --key-prefix k- --quiet >/dev/null

leader_url() {
    client status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s.get("leader") or "")' 2>/dev/null
}
applied() { # url -> applied index
    curl -fsS "$1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["applied_index"])'
}
is_voter4() {
    client member list --json 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("yes" if not m["joint"] and any(x["id"] == 4 and x["role"] == "voter" for x in m["members"]) else "no")'
}

leader_id=$(leader_url)
[ -n "$leader_id" ] || die "no leader"
lurl=http://127.0.0.1:${rk_ports[$((leader_id - 1))]}
log "leader: node $leader_id; load: $CONNS connections of puts"
client bench --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --connections "$CONNS" --duration 1h --key-prefix k- --quiet >"$dir/bench.out" 2>&1 &
bench_pid=$!

samples="$dir/samples.tsv"
: >"$samples"
t0=$(date +%s.%N)
phase=before
sample() {
    printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$(applied "$lurl")" "$phase" >>"$samples"
}
until (( $(date +%s) - ${t0%.*} >= BEFORE )); do sample; sleep 0.5; done

phase=catch-up
t_add=$(date +%s.%N)
client member add 4 "$url4" >/dev/null
"$server_bin" --node-id 4 --port "$port4" --join "$lurl" --data-dir "$dir/raft-kv/node-4" \
    --web-dir "$root/web/dist" --log-level "${RK_LOG_LEVEL:-warn}" >>"$dir/raft-kv-4.log" 2>&1 &
node4_pid=$!
disown "$node4_pid"
deadline=$((SECONDS + 600))
until [ "$(is_voter4)" = yes ]; do
    [ $SECONDS -lt $deadline ] || die "node 4 was not promoted within 600 s; see $dir/raft-kv-4.log"
    sample
    sleep 0.5
done
t_voter=$(date +%s.%N)
phase=after
t_end=$(awk -v t="$t_voter" -v a="$AFTER" 'BEGIN { printf "%.3f", t + a }')
while awk -v now="$(date +%s.%N)" -v end="$t_end" 'BEGIN { exit !(now < end) }'; do sample; sleep 0.5; done
kill "$bench_pid" 2>/dev/null || true
bench_pid=""

echo
echo "# member add under load ($(date -u +%Y-%m-%dT%H:%MZ))"
measure_machine
machine_lines
echo "- State: $KEYS keys of $VALUE_SIZE bytes; load: $CONNS connections of puts (closed loop)"
awk -v a="$t_add" -v v="$t_voter" 'BEGIN { printf "- From `member add` to voter: %.1f s\n", v - a }'
awk -F'\t' '
    NR > 1 { dt = $1 - t; if (dt > 0) { rate[$3] += ($2 - i); time[$3] += dt; r = ($2 - i) / dt
             if (!($3 in lo) || r < lo[$3]) lo[$3] = r } }
    { t = $1; i = $2 }
    END { for (p in rate) printf "- %s: %.0f puts/s on average, lowest half-second %.0f/s\n", p, rate[p] / time[p], lo[p] }
' "$samples" | sort
echo "- Samples (time, leader applied index, phase): $samples"
