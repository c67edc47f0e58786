#!/usr/bin/env bash
# Builds raft-kv (server, CLI and the dashboard) in release mode and starts a
# 3-node cluster on ports 3001-3003, data under ./data (or $RAFT_KV_DATA).
# Ctrl-C stops all three nodes cleanly. Re-running finds the old data;
# `--clean` starts from empty. `--tls` generates a throwaway CA and member
# certificates (`raft-kv-server gen-certs`) and starts the nodes with https
# and mutual TLS between members (data under ./data-tls).
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    echo "usage: ./run_cluster.sh [--clean] [--tls]"
    echo "  --clean   delete the cluster's data before starting"
    echo "  --tls     https for clients, mutual TLS between members, with a throwaway CA"
    echo "            (certificates in DATA/certs; data in ./data-tls by default)"
    echo "  env RAFT_KV_DATA=DIR  keep the data in DIR (default ./data)"
}

clean=0
tls=0
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        --tls) tls=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_cluster.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

# A TLS cluster keeps its own data: the member URLs (http or https) are
# part of the replicated configuration.
if [ "$tls" = 1 ]; then
    data=${RAFT_KV_DATA:-./data-tls}
    scheme=https
else
    data=${RAFT_KV_DATA:-./data}
    scheme=http
fi
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

tls_flags=()
curl_tls=()
cli_tls=""
if [ "$tls" = 1 ]; then
    certs="$data/certs"
    if [ ! -s "$certs/ca.pem" ]; then
        echo "==> generating a throwaway CA and certificates in $certs"
        ./target/release/raft-kv-server gen-certs "$certs" --nodes 3 >/dev/null
    fi
    curl_tls=(--cacert "$certs/ca.pem")
    cli_tls=" --cacert $certs/ca.pem"
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
    if [ "$tls" = 1 ]; then
        # Clients need no certificate here (so the dashboard opens in a
        # browser that trusts ca.pem); add --trusted-ca-file "$certs/ca.pem"
        # to require one (the CLI then adds --cert/--key client*.pem).
        tls_flags=(
            --cert-file "$certs/node-$i.pem" --key-file "$certs/node-$i-key.pem"
            --peer-cert-file "$certs/node-$i.pem" --peer-key-file "$certs/node-$i-key.pem"
            --peer-trusted-ca-file "$certs/ca.pem"
        )
    fi
    ./target/release/raft-kv-server \
        --node-id "$i" --port "${ports[$((i - 1))]}" --peers 1,2,3 \
        ${tls_flags[@]+"${tls_flags[@]}"} \
        --data-dir "$data/node-$i" \
        --cluster-token-file "$token_file" \
        --web-dir web/dist \
        >>"$data/node-$i.log" 2>&1 &
    pids+=($!)
    echo $! >"$data/node-$i.pid"
done

deadline=$((SECONDS + 30))
for p in "${ports[@]}"; do
    until curl -fsS ${curl_tls[@]+"${curl_tls[@]}"} "$scheme://127.0.0.1:$p/healthz" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "run_cluster.sh: node on port $p did not start; see $data/node-*.log" >&2
            exit 1
        fi
        sleep 0.2
    done
done

cat <<MSG

raft-kv cluster is running:
  node 1  $scheme://127.0.0.1:3001   (dashboard: $scheme://127.0.0.1:3001/)
  node 2  $scheme://127.0.0.1:3002
  node 3  $scheme://127.0.0.1:3003

Try:
  ./target/release/raft-kv-client$cli_tls --server $scheme://127.0.0.1:3001 put mykey myvalue
  ./target/release/raft-kv-client$cli_tls --server $scheme://127.0.0.1:3002 get mykey
  ./target/release/raft-kv-client$cli_tls --server $scheme://127.0.0.1:3001 cluster
  curl -s ${curl_tls[*]+${curl_tls[*]} }$scheme://127.0.0.1:3001/status

Data and logs: $data/   (cluster token: $token_file)
Press Ctrl-C to stop all three nodes.
MSG

wait "${pids[@]}"
