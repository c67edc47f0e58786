#!/usr/bin/env bash
# What clients see during a rolling restart: SIGTERM (the leader hands
# leadership to its most caught-up follower before exiting) against SIGKILL
# (the members must elect a new leader after an election timeout).
#
# A fresh 3-node raft-kv cluster (release build, fsync on). Node 1 is the
# clients' endpoint: leadership is moved off it first, so the rolling
# restart of the two other members (the leader first, then the remaining
# follower, each waited for until `/readyz` says it is caught up) is what
# the clients live through, not their own endpoint's downtime. CLIENTS
# sequential curl loops put new keys through node 1 (a follower forwards to
# the leader, and waits up to --leader-wait-ms for one) while that happens.
# Each request is one line: HTTP status and time. Per signal, ROUNDS times,
# alternating TERM and KILL: requests, failures by status, the slowest
# request and how many took over 100 ms.
#
# Environment:
#   ROUNDS=3                rounds, each one TERM run and one KILL run
#   CLIENTS=4               concurrent request loops
#   RAFT_KV_PORTS="4101 4102 4103"
#   BENCH_DIR=...           data and logs (default: a fresh dir in /var/tmp)
#   KEEP=1                  keep the default BENCH_DIR after the run
#
# Not a test: run_tests.sh does not run it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup rolling_restart.sh

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || die "CLIENTS must be a positive integer"

ports_from_env "4101 4102 4103" "2479 12479 22479" "2480 12480 22480"
ensure_commands curl=curl jq=jq
build_raft_kv
check_ports_free
make_bench_dir raft-kv-rolling
RK_LOG_LEVEL='warn,raft_kv_server::node=info'

status_of() { # i -> /status JSON of member i ("" when it does not answer)
    curl -fsS --max-time 1 "http://127.0.0.1:${rk_ports[$(($1 - 1))]}/status" 2>/dev/null || true
}

leader_id() { # the leader member 1 knows of (empty if none)
    status_of 1 | jq -r '.leader // empty'
}

wait_ready() { # i: until member i answers /readyz with 200
    local deadline=$((SECONDS + 60)) p=${rk_ports[$(($1 - 1))]}
    until curl -fsS --max-time 1 "http://127.0.0.1:$p/readyz" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "member $1 not ready; see $dir/raft-kv-$1.log"
        sleep 0.05
    done
}

move_leadership_off_1() {
    local deadline=$((SECONDS + 30)) l
    while :; do
        l=$(leader_id)
        if [ -n "$l" ] && [ "$l" != 1 ]; then return; fi
        [ $SECONDS -lt $deadline ] || die "leadership did not leave member 1"
        if [ "$l" = 1 ]; then
            "$client_bin" --server "http://127.0.0.1:${rk_ports[0]}" --token "$(cat "$dir/token")" \
                transfer-leader 2 >/dev/null 2>&1 || true
        fi
        sleep 0.1
    done
}

client_loop() { # n out: sequential puts through member 1 until $dir/stop exists
    local n=$1 out=$2 k=0 url="http://127.0.0.1:${rk_ports[0]}/key"
    while [ ! -e "$dir/stop" ]; do
        k=$((k + 1))
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 \
            -X PUT -H 'content-type: application/json' -d '{"value":"v"}' \
            "$url/rr-$n-$k" >>"$out" || echo "000 10" >>"$out"
    done
}

one_run() { # signal label
    local sig=$1 label=$2 leader other c loops=() out
    out="$dir/$label.txt"
    rm -rf "$dir/raft-kv" "$dir/stop"
    : >"$out"
    start_raft_kv_cluster
    wait_raft_kv_serving
    move_leadership_off_1
    leader=$(leader_id)
    other=$((leader == 2 ? 3 : 2))
    for c in $(seq 1 "$CLIENTS"); do
        client_loop "$c" "$out" &
        loops+=($!)
    done
    sleep 1 # load running before the first restart
    local i
    for i in "$leader" "$other"; do
        stop_members raft-kv "$sig" "$i"
        start_member raft-kv "$i"
        wait_ready "$i"
    done
    sleep 1
    touch "$dir/stop"
    wait "${loops[@]}"
    stop_members raft-kv TERM 1 2 3
    awk -v label="$label" -v sig="$sig" '
        { n++; code[$1]++; if ($2 > max) max = $2; if ($2 > 0.1) slow++ }
        END {
            failed = n - code["200"]; detail = ""
            for (c in code) if (c != "200") detail = detail " " c ":" code[c]
            printf "| %s | %s | %d | %d%s | %d | %.0f |\n", label, sig, n, failed,
                (detail == "" ? "" : " (" substr(detail, 2) ")"), slow, max * 1000
        }' "$out"
}

head -c 24 /dev/urandom | base64 >"$dir/token"
RK_ARGS=(--cluster-token-file "$dir/token")
measure_machine
echo "# Rolling restart: SIGTERM (handoff) vs SIGKILL"
echo
machine_lines
echo "- $CLIENTS sequential curl loops putting new keys through member 1; the leader, then the other follower restarted; each waited for until ready"
echo
echo "| run | signal | requests | failed (by status) | over 100 ms | slowest (ms) |"
echo "|---|---|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
    one_run TERM "term-$r"
    one_run KILL "kill-$r"
done
