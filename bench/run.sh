#!/usr/bin/env bash
# Assay benchmark driver: builds release binaries, records the machine baseline, starts a
# fresh node in a temp data dir on 127.0.0.1, runs the ingest matrix, the latency run,
# disk bytes/sample, stops the node, runs the Merkle proof benchmarks, prints a table.
#
# Environment knobs (all optional):
#   DURATION=10s        length of each ingest/latency run
#   BATCHES="1000 10000" CLIENTS="1 4 16 64"   the ingest matrix
#   SERIES=100000       distinct series per ingest run (split over clients, at least one
#                       batch per client); one untimed warm-up pass creates them first
#   RATE=100000         latency run target, samples/s
#   BIG_PROOF=1         also build the 10^8-leaf tree (~6.4 GB RAM, ~1 min); 0 skips it
#   PROFILE=0           1: perf record -g the server during one extra batch=10000 run
#   PROFILE_CLIENTS=16  clients of that profiled run
#   RESULTS=FILE        where the JSON lines go (default: a file under /tmp, printed)
#   TMPBASE=DIR         where the temp data dir is created (default /tmp; must be the
#                       disk you want to measure, not tmpfs)
# Everything started here is stopped and the temp dir removed on exit (trap).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
DURATION="${DURATION:-10s}"
BATCHES="${BATCHES:-1000 10000}"
CLIENTS="${CLIENTS:-1 4 16 64}"
SERIES="${SERIES:-100000}"
RATE="${RATE:-100000}"
BIG_PROOF="${BIG_PROOF:-1}"
PROFILE="${PROFILE:-0}"
PROFILE_CLIENTS="${PROFILE_CLIENTS:-16}"
TMPBASE="${TMPBASE:-/tmp}"
RESULTS="${RESULTS:-/tmp/assay-bench-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"

work="$(mktemp -d "$TMPBASE/assay-bench.XXXXXX")"
node_pid=""
perf_pid=""

cleanup() {
    local rc=$?
    if [[ -n "$perf_pid" ]] && kill -0 "$perf_pid" 2>/dev/null; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    stop_node
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

stop_node() {
    if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
        stop_pid "$node_pid" 100
        wait "$node_pid" 2>/dev/null || true
    fi
    node_pid=""
}


start_node() {
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    "$assay" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/node.log" 2>&1 &
    node_pid=$!
    wait_up "$url/healthz" "$node_pid" 100 && return 0
    echo "the node did not come up; its log:" >&2
    cat "$work/node.log" >&2
    return 1
}

# Runs assay-bench with --json: the human summary goes to the terminal, the JSON line
# (its last line, merged with $TAG when set) to $RESULTS.
bench() {
    local out tag="${TAG:-}"
    [[ -n "$tag" ]] || tag='{}'
    out="$("$benchbin" --json "$@")"
    printf '%s\n' "$out" | sed '$d'
    printf '%s\n' "$out" | tail -n 1 | jq -c --argjson tag "$tag" '. + $tag' >>"$RESULTS"
}

echo "== build (release)"
(cd "$repo" && cargo build --release -p assay -p assay-bench)
assay="$CARGO_TARGET_DIR/release/assay"
benchbin="$CARGO_TARGET_DIR/release/assay-bench"
: >"$RESULTS"

echo "== machine"
model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
fs="$(df -T "$work" | awk 'NR==2 {print $1" "$2}')"
mem="$(free -g | awk '/^Mem:/ {print $2" GiB"}')"
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:    $(nproc) × $model ($(lscpu | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | head -n 1) guest)"
echo "memory: $mem"
echo "kernel: $(uname -r)"
echo "disk:   $fs (temp dir $work)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other work on the machine skews results)"
echo "commit: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$repo" && git diff --quiet 2>/dev/null || echo ' (dirty)')"
jq -nc --arg m "$model" --arg n "$(nproc)" --arg fs "$fs" --arg mem "$mem" --arg k "$(uname -r)" \
    '{bench:"machine", cpu_model:$m, cpus:($n|tonumber), filesystem:$fs, memory:$mem, kernel:$k}' >>"$RESULTS"
bench fsync-probe --dir "$work" --count 1000 --bytes 4096
bench fsync-probe --dir "$work" --count 200 --bytes 1048576

echo "== node"
mkdir -p "$work/data"
start_node
echo "node at $url (pid $node_pid), data dir $work/data"

echo "== ingest matrix ($DURATION each; generator and node share $(nproc) cores)"
for b in $BATCHES; do
    for c in $CLIENTS; do
        bench ingest --url "$url" --batch "$b" --clients "$c" --duration "$DURATION" --series "$SERIES"
    done
done

echo "== latency at $RATE samples/s"
bench latency --url "$url" --rate "$RATE" --batch 1000 --duration "$DURATION"

if [[ "$PROFILE" == "1" ]]; then
    echo "== profile: perf record -g on the node during batch=10000 clients=$PROFILE_CLIENTS"
    # Release builds have no frame pointers: DWARF unwinding gives usable call chains.
    perf record -F 999 --call-graph dwarf,16384 -p "$node_pid" -o "$work/perf.data" \
        >/dev/null 2>"$work/perf.log" &
    perf_pid=$!
    sleep 0.5
    TAG='{"profiled":true}' bench ingest --url "$url" --batch 10000 --clients "$PROFILE_CLIENTS" --duration "$DURATION" --series "$SERIES"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=""
    prof="${RESULTS%.jsonl}.perf.txt"
    {
        echo "## flat (self time): perf report --no-children --stdio -g none"
        perf report -i "$work/perf.data" --no-children --stdio -g none --percent-limit 0.3 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -60 || true
        echo
        echo "## by thread: perf report --no-children --stdio -g none --sort comm"
        perf report -i "$work/perf.data" --no-children --stdio -g none --sort comm 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -10 || true
        echo
        echo "## inclusive (children) time of Assay's own functions: perf report --children --stdio -g none"
        perf report -i "$work/perf.data" --children --stdio -g none --percent-limit 1 2>/dev/null \
            | grep -E 'assay_[a-z_]+::|sha2::|sync_data|fdatasync|serde_json::de' | head -60 || true
        echo
        echo "## callers of the top self-time symbols: perf report --no-children --stdio -g caller,2,callee,function,percent"
        perf report -i "$work/perf.data" --no-children --stdio -g caller,2,callee,function,percent \
            --percent-limit 2.5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -800 || true
    } >"$prof"
    head -40 "$prof"
    echo "(full profile: $prof)"
fi

echo "== disk"
bench disk --data-dir "$work/data" --url "$url"
stop_node

echo "== proofs (node stopped: the benchmark has both cores)"
bench proof --leaves 1000000
if [[ "$BIG_PROOF" == "1" ]]; then
    bench proof --leaves 100000000
fi

echo
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== results ($RESULTS)"
echo "| benchmark | parameters | result | latency | notes |"
echo "|---|---|---|---|---|"
jq -r '
  def f(x): if x == null then "-" else (x|tostring) end;
  if .bench == "fsync_probe" then
    "| fsync-probe | \(.write_bytes) B append + fdatasync × \(.count) | \(.fsyncs_per_s) fsync/s | p50 \(.fsync.p50_us) µs, p99 \(.fsync.p99_us) µs | \(.mb_per_s) MB/s |"
  elif .bench == "ingest" then
    "| ingest\(if .profiled then " (under perf)" else "" end) | batch \(.batch), clients \(.clients), \(.series) series | \(.samples_per_s) samples/s, \(.requests_per_s) req/s, \(.errors) errors | p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms | \(.server.entries_per_block) entries/block; durable \(.server.durable_ms_per_block) ms, applied \(.server.applied_ms_per_block) ms per block; generator \(f(.generator_cpu_s)) CPU s; warm-up (new series) \(f(.warmup.samples_per_s)) samples/s |"
  elif .bench == "latency" then
    "| latency | \(.rate_target) samples/s target, batch \(.batch) | \(.achieved_samples_per_s) samples/s, \(.errors) errors | push→visible p50 \(.push_to_visible.p50_ms) ms, p99 \(.push_to_visible.p99_ms) ms, max \(.push_to_visible.max_ms) ms | push→2xx p99 \(.push_to_2xx.p99_ms) ms; \(.push_to_visible.count) probes, \(.never_visible) never visible |"
  elif .bench == "disk" then
    "| disk | ledger after all runs | \(.bytes_per_sample) B/sample | - | \(.samples) samples, \(.apparent_bytes) B; encoded entries \(f(.entry_bytes_per_sample)) B/sample |"
  elif .bench == "proof" then
    "| proof | \(.leaves) leaves | build \(.build_s) s, \(.memory_bytes_per_leaf) B/leaf, peak RSS \(.peak_rss_bytes/1e6|floor) MB | inclusion verify mean \(.inclusion_verify.mean_us) µs, p99 \(.inclusion_verify.p99_us) µs; gen mean \(.inclusion_gen.mean_us) µs, p99 \(.inclusion_gen.p99_us) µs | consistency gen p99 \(.consistency_gen.p99_us) µs, verify mean \(.consistency_verify.mean_us) µs, p99 \(.consistency_verify.p99_us) µs |"
  else
    "| machine | \(.cpus) × \(.cpu_model) | \(.memory) | - | \(.filesystem), kernel \(.kernel) |"
  end' "$RESULTS"
