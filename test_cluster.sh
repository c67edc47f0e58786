#!/usr/bin/env bash
# The seed's demo, against a fresh cluster of its own: writes, reads from
# each node, shows the status, kills the leader, shows the new leader and
# that the data is still there.
set -euo pipefail
cd "$(dirname "$0")"

work=$(mktemp -d -t raft-kv-demo.XXXXXX)
out="$work/run_cluster.out"
RAFT_KV_DATA="$work/data" ./run_cluster.sh >"$out" 2>&1 &
cluster=$!
cleanup() {
    kill -TERM "$cluster" 2>/dev/null || true
    wait "$cluster" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cli=./target/release/raft-kv-client
deadline=$((SECONDS + 600))
until grep -q "cluster is running" "$out" 2>/dev/null; do
    if ! kill -0 "$cluster" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
        cat "$out" >&2
        echo "test_cluster.sh: the cluster did not start" >&2
        exit 1
    fi
    sleep 0.5
done

show() { printf '\n$ %s\n' "$*"; "$@"; }

show $cli --server http://127.0.0.1:3001 put mykey myvalue
show $cli --server http://127.0.0.1:3001 put other "hello world"
for p in 3001 3002 3003; do
    show $cli --server "http://127.0.0.1:$p" get mykey
done
show $cli --server http://127.0.0.1:3001 status
show $cli --server http://127.0.0.1:3001 cluster

leader=$($cli --server http://127.0.0.1:3001 --json status | sed -n 's/.*"leader":\([0-9]*\).*/\1/p')
echo
# By the process id run_cluster.sh recorded: only the node this demo
# started, never another raft-kv-server on the machine.
leader_pid=$(cat "$work/data/node-$leader.pid")
echo "==> killing the leader, node $leader (pid $leader_pid, SIGKILL)"
kill -KILL "$leader_pid"

survivors=()
for i in 1 2 3; do [ "$i" != "$leader" ] && survivors+=("http://127.0.0.1:300$i"); done
servers=$(IFS=,; echo "${survivors[*]}")
until $cli --server "$servers" --timeout 2s put after-failover yes >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "no new leader" >&2; exit 1; }
done
# Exits 3: the killed node does not answer, as the table shows.
show $cli --server "$servers" cluster || true
show $cli --server "$servers" get mykey
show $cli --server "$servers" get other
show $cli --server "$servers" get after-failover
echo
echo "demo finished: a new leader was elected and the data survived"
