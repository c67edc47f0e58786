#!/usr/bin/env bash
# Builds raft-kv (server, CLI and the dashboard) in release mode and starts a
# 3-node cluster on ports 3001-3003, data under ./data (or $RAFT_KV_DATA).
# Ctrl-C stops all three nodes cleanly. Re-running finds the old data;
# `--clean` starts from empty.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    echo "usage: ./run_cluster.sh [--clean]"
    echo "  --clean   delete the cluster's data before starting"
    echo "  env RAFT_KV_DATA=DIR  keep the data in DIR (default ./data)"
}

clean=0
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_cluster.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

data=${RAFT_KV_DATA:-./data}
ports=(3001 3002 3003)

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${ports[@]}"; do
    if port_busy "$p"; then
        echo "run_cluster.sh: port $p is already in use (another cluster running?)" >&2
        exit 1
    fi
done

echo "==> building raft-kv-server and raft-kv-client (release)"
cargo build --release -p raft-kv-server -p raft-kv-client
echo "==> building the dashboard"
./web/build.sh

if [ "$clean" = 1 ]; then
    rm -rf "$data"
fi
mkdir -p "$data"
token_file="$data/cluster-token"
if [ ! -s "$token_file" ]; then
    (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$token_file")
fi

pids=()
stop() {
    trap - INT TERM EXIT
    if [ "${#pids[@]}" -gt 0 ]; then
        echo
        echo "==> stopping the cluster"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop INT TERM EXIT

for i in 1 2 3; do
    ./target/release/raft-kv-server \
        --node-id "$i" --port "${ports[$((i - 1))]}" --peers 1,2,3 \
        --data-dir "$data/node-$i" \
        --cluster-token-file "$token_file" \
        --web-dir web/dist \
        >>"$data/node-$i.log" 2>&1 &
    pids+=($!)
    echo $! >"$data/node-$i.pid"
done

deadline=$((SECONDS + 30))
for p in "${ports[@]}"; do
    until curl -fsS "http://127.0.0.1:$p/healthz" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "run_cluster.sh: node on port $p did not start; see $data/node-*.log" >&2
            exit 1
        fi
        sleep 0.2
    done
done

cat <<MSG

raft-kv cluster is running:
  node 1  http://127.0.0.1:3001   (dashboard: http://127.0.0.1:3001/)
  node 2  http://127.0.0.1:3002
  node 3  http://127.0.0.1:3003

Try:
  ./target/release/raft-kv-client --server http://127.0.0.1:3001 put mykey myvalue
  ./target/release/raft-kv-client --server http://127.0.0.1:3002 get mykey
  ./target/release/raft-kv-client cluster
  curl -s http://127.0.0.1:3001/status

Data and logs: $data/   (cluster token: $token_file)
Press Ctrl-C to stop all three nodes.
MSG

wait "${pids[@]}"
