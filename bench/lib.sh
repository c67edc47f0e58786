# shellcheck shell=bash
# Shared by the bench scripts: `source "$(dirname "$0")/lib.sh"` after
# `set -euo pipefail`. Not runnable on its own.
#
# What it gives a script:
#   log / die                      messages on stderr (die exits 1)
#   bench_setup NAME               cd to the repository root ($root), and the
#                                  exit trap that stops every member started
#                                  here and removes $dir (kept with BENCH_DIR
#                                  or KEEP=1)
#   ensure_etcd                    Debian's etcd-server and etcd-client when
#                                  `etcd` or `etcdctl` is missing; $etcd_version
#   ensure_commands CMD=PKG...     install PKG (Debian) when CMD is missing
#   build_raft_kv                  release build (client features from
#                                  $CLIENT_FEATURES); sets $server_bin, $client_bin
#   ports_from_env RK ECLIENT EPEER  defaults of RAFT_KV_PORTS, ETCD_CLIENT_PORTS
#                                  and ETCD_PEER_PORTS (three ports each) into
#                                  rk_ports, etcd_client_ports, etcd_peer_ports,
#                                  and the URL lists $rk_servers, $etcd_endpoints
#   check_ports_free               die when one of those ports is taken
#   make_bench_dir PREFIX          $dir: BENCH_DIR or a fresh directory
#   measure_machine                $cores $cpu $kernel $memory $load, and the
#                                  disk's durable-append latency $fsync_ms
#                                  (median), $fsync_p99_ms, $fsync_method
#   machine_lines                  that record as markdown list items
#   start_member SYSTEM I          start member I (1..3) of etcd or raft-kv;
#                                  its pid goes to pid[SYSTEM:I]
#   start_etcd_cluster / start_raft_kv_cluster
#   stop_members SYSTEM SIGNAL I...  signal members and wait until they exit
#   member_pids SYSTEM             the running members' pids
#   wait_etcd_serving / wait_raft_kv_serving
#                                  until a write commits through every member
#   on_exit CMD...                 run CMD (before the members stop) on exit
#
# Variables a script may set before starting members:
#   ETCD_TOKEN (--initial-cluster-token, "bench"), RK_LOG_LEVEL (raft-kv
#   --log-level, "warn"), RK_ARGS (an array of more raft-kv flags),
#   SERVE_TIMEOUT (s, 60: the wait_*_serving deadline).
#
# The variables set here are read by the scripts that source it.
# shellcheck disable=SC2034

log() { echo "==> $*" >&2; }
die() { echo "${bench_name:-bench}: $*" >&2; exit 1; }

# --- setup and exit -----------------------------------------------------
declare -A pid=()
bench_exit_hooks=()
dir=""

bench_setup() { # script name (for messages)
    bench_name=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
    root=$PWD
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

on_exit() { # command...
    bench_exit_hooks+=("$*")
}

bench_cleanup() {
    trap - EXIT
    local hook running=() key
    for hook in "${bench_exit_hooks[@]}"; do eval "$hook" || true; done
    for key in "${!pid[@]}"; do
        [ -z "${pid[$key]}" ] || running+=("${pid[$key]}")
    done
    if [ "${#running[@]}" -gt 0 ]; then
        log "stopping the clusters"
        kill -TERM "${running[@]}" 2>/dev/null || true
        reap 15 "${running[@]}"
    fi
    if [ -n "$dir" ]; then
        if [ -z "${BENCH_DIR:-}" ] && [ -z "${KEEP:-}" ]; then
            rm -rf "$dir"
        else
            echo "data and logs kept in $dir" >&2
        fi
    fi
}

# pid: running and not a zombie (members are disowned, so `wait` cannot
# tell; /proc can).
alive() {
    [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Wait for the given pids to exit (up to $1 seconds), then SIGKILL the rest
# and wait for them too.
reap() {
    local grace=$1 p deadline
    shift
    deadline=$((SECONDS + grace))
    for p in "$@"; do
        while alive "$p" && [ $SECONDS -lt "$deadline" ]; do sleep 0.02; done
    done
    for p in "$@"; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
        while alive "$p"; do sleep 0.02; done
    done
}

# --- tools --------------------------------------------------------------
ensure_commands() { # cmd=package...
    local spec need=()
    for spec in "$@"; do
        command -v "${spec%%=*}" >/dev/null 2>&1 || need+=("${spec#*=}")
    done
    [ "${#need[@]}" -gt 0 ] || return 0
    log "installing ${need[*]} (Debian)"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" \
        || { "${sudo[@]}" apt-get update && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y "${need[@]}"; } \
        || die "could not install ${need[*]}"
}

ensure_etcd() {
    ensure_commands etcd=etcd-server etcdctl=etcd-client
    # sed reads to the end: `head -1` could make etcd die of SIGPIPE, which
    # pipefail and set -e would turn into a silent exit.
    etcd_version=$(etcd --version 2>/dev/null | sed -n 1p)
}

build_raft_kv() {
    local features=()
    [ -z "${CLIENT_FEATURES:-}" ] || features=(--features "raft-kv-client/$CLIENT_FEATURES")
    log "building raft-kv-server and raft-kv-client (release${CLIENT_FEATURES:+, client features $CLIENT_FEATURES})"
    cargo build --release -p raft-kv-server -p raft-kv-client ${features[@]+"${features[@]}"}
    local target_dir=${CARGO_TARGET_DIR:-$root/target}
    server_bin=$target_dir/release/raft-kv-server
    client_bin=$target_dir/release/raft-kv-client
    if [ ! -x "$server_bin" ] || [ ! -x "$client_bin" ]; then
        die "release binaries not found in $target_dir/release"
    fi
}

# --- ports --------------------------------------------------------------
ports_from_env() { # default raft-kv ports, etcd client ports, etcd peer ports
    read -r -a rk_ports <<<"${RAFT_KV_PORTS:-$1}"
    read -r -a etcd_client_ports <<<"${ETCD_CLIENT_PORTS:-$2}"
    read -r -a etcd_peer_ports <<<"${ETCD_PEER_PORTS:-$3}"
    if [ "${#rk_ports[@]}" != 3 ] || [ "${#etcd_client_ports[@]}" != 3 ] \
        || [ "${#etcd_peer_ports[@]}" != 3 ]; then
        die "RAFT_KV_PORTS, ETCD_CLIENT_PORTS and ETCD_PEER_PORTS name three ports each"
    fi
    local i p
    etcd_initial="" rk_peers="" etcd_endpoints="" rk_servers=""
    for i in 1 2 3; do
        etcd_initial+="${etcd_initial:+,}e$i=http://127.0.0.1:${etcd_peer_ports[$((i - 1))]}"
        rk_peers+="${rk_peers:+,}$i=http://127.0.0.1:${rk_ports[$((i - 1))]}"
    done
    for p in "${etcd_client_ports[@]}"; do etcd_endpoints+="${etcd_endpoints:+,}http://127.0.0.1:$p"; done
    for p in "${rk_ports[@]}"; do rk_servers+="${rk_servers:+,}http://127.0.0.1:$p"; done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
    local p
    for p in "${rk_ports[@]}" "${etcd_client_ports[@]}" "${etcd_peer_ports[@]}"; do
        if port_busy "$p"; then die "port $p is already in use"; fi
    done
}

port_of() { # system i -> client port
    if [ "$1" = etcd ]; then echo "${etcd_client_ports[$(($2 - 1))]}"; else echo "${rk_ports[$(($2 - 1))]}"; fi
}

# --- data directory and the machine -------------------------------------
make_bench_dir() { # prefix of the default directory's name
    dir=${BENCH_DIR:-$(mktemp -d -p /var/tmp "$1.XXXXXX")}
    mkdir -p "$dir"
}

measure_machine() {
    cores=$(nproc)
    cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
    kernel=$(uname -sr)
    memory=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
    filesystem=$(stat -f -c %T "$dir" 2>/dev/null || echo unknown)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    measure_fsync
    log "machine: $cores cores; $kernel; durable 200-byte append ${fsync_ms} ms (median); load $load"
}

# How long a small durable append takes in the data directory, as a WAL
# append does (bench/fsync_probe.py: FSYNC_SAMPLES=200 appends of 200 bytes,
# each followed by fdatasync; median and p99). Without python3: dd with
# O_DSYNC, 100 writes of 512 bytes, the mean only.
measure_fsync() {
    local samples=${FSYNC_SAMPLES:-200} out
    if command -v python3 >/dev/null 2>&1 \
        && out=$(python3 "$root/bench/fsync_probe.py" "$dir/fsync-probe" "$samples"); then
        read -r fsync_ms fsync_p99_ms <<<"$out"
        fsync_method="fdatasync after a 200-byte append: median ${fsync_ms} ms, p99 ${fsync_p99_ms} ms ($samples appends to one file in the data directory, $filesystem)"
    else
        local dd_out dd_secs
        dd_out=$(LC_ALL=C dd if=/dev/zero of="$dir/fsync-probe" bs=512 count=100 oflag=dsync 2>&1 | tail -1)
        rm -f "$dir/fsync-probe"
        dd_secs=$(awk -F', ' '{print $(NF-1)}' <<<"$dd_out" | awk '{print $1}')
        fsync_ms=$(awk -v s="$dd_secs" 'BEGIN { printf "%.3f", s * 1000 / 100 }')
        fsync_p99_ms=""
        fsync_method="a 512-byte write with O_DSYNC: mean ${fsync_ms} ms (dd, 100 writes in the data directory, $filesystem)"
    fi
}

# The machine record as markdown list items (after measure_machine).
machine_lines() {
    echo "- Machine: $cores cores${cpu:+ ($cpu)}${memory:+, $memory memory}; $kernel; load average at start: $load"
    echo "- Disk: $fsync_method"
}

# --- members ------------------------------------------------------------
start_member() { # system i; logs are appended across restarts
    local system=$1 i=$2
    if [ "$system" = etcd ]; then
        local c=http://127.0.0.1:${etcd_client_ports[$((i - 1))]}
        local p=http://127.0.0.1:${etcd_peer_ports[$((i - 1))]}
        # With an existing data dir etcd ignores the --initial-cluster* flags.
        etcd --name "e$i" --data-dir "$dir/etcd/e$i" \
            --listen-client-urls "$c" --advertise-client-urls "$c" \
            --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
            --initial-cluster "$etcd_initial" --initial-cluster-token "${ETCD_TOKEN:-bench}" \
            --initial-cluster-state new >>"$dir/etcd-e$i.log" 2>&1 &
    else
        "$server_bin" --node-id "$i" --port "${rk_ports[$((i - 1))]}" --peers "$rk_peers" \
            --data-dir "$dir/raft-kv/node-$i" --web-dir "$root/web/dist" \
            --log-level "${RK_LOG_LEVEL:-warn}" ${RK_ARGS[@]+"${RK_ARGS[@]}"} \
            >>"$dir/raft-kv-$i.log" 2>&1 &
    fi
    pid[$system:$i]=$!
    # Out of the job table: no "Killed" notices on stderr; the shell still
    # reaps it, and reap() polls /proc instead of `wait`.
    disown "$!"
}

start_etcd_cluster() {
    local i
    for i in 1 2 3; do start_member etcd "$i"; done
}

start_raft_kv_cluster() {
    local i
    for i in 1 2 3; do start_member raft-kv "$i"; done
}

stop_members() { # system signal i...
    local system=$1 sig=$2 i pids=()
    shift 2
    for i in "$@"; do
        [ -z "${pid[$system:$i]:-}" ] || pids+=("${pid[$system:$i]}")
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill "-$sig" "${pids[@]}" 2>/dev/null || true
    reap 60 "${pids[@]}"
    for i in "$@"; do pid[$system:$i]=""; done
}

member_pids() { # system -> the running members' pids, one line
    local i found=()
    for i in 1 2 3; do
        [ -z "${pid[$1:$i]:-}" ] || found+=("${pid[$1:$i]}")
    done
    echo "${found[*]}"
}

# Serving = a write commits through every member.
wait_etcd_serving() {
    local deadline=$((SECONDS + ${SERVE_TIMEOUT:-60})) p
    for p in "${etcd_client_ports[@]}"; do
        until curl -fsS -X POST "http://127.0.0.1:$p/v3/kv/put" \
            -d '{"key":"aGVhbHRo","value":"b2s="}' >/dev/null 2>&1; do
            [ $SECONDS -lt $deadline ] || die "etcd on port $p is not serving; see $dir/etcd-e*.log"
            sleep 0.2
        done
    done
}

wait_raft_kv_serving() {
    local deadline=$((SECONDS + ${SERVE_TIMEOUT:-60})) p
    for p in "${rk_ports[@]}"; do
        until "$client_bin" --server "http://127.0.0.1:$p" --timeout 2s put health ok >/dev/null 2>&1; do
            [ $SECONDS -lt $deadline ] || die "raft-kv on port $p is not serving; see $dir/raft-kv-*.log"
            sleep 0.2
        done
    done
}
