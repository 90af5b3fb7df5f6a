#!/usr/bin/env bash
# Interleaved A/B of node builds under the side-by-side's remote-write load (10k series ×
# ROUNDS rounds, 4 connections, 5,000-sample requests, 15 s apart in sample time), a fresh
# node and data dir per run. For each run: samples/s, server CPU-s per million samples, peak
# RSS, the request p99, and per thread kind the CPU time and the time spent runnable but
# waiting for a CPU (from /proc/PID/task/*/schedstat), which tells a CPU-bound load from a
# latency-bound one.
#
#   bench/ingest_ab.sh ROUNDS REPS DIR...     each DIR holds an `assay` and an `assay-bench`
#
# Copy each build's binaries into its own DIR first (`cargo build --release -p assay
# -p assay-bench`; note `-p assay`, the package of the `assay` binary). The machine's speed
# drifts by ±20 % within an hour: compare builds only within one interleaved invocation.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
if [[ $# -lt 3 ]]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
rounds="$1" reps="$2"
shift 2
for d in "$@"; do
    [[ -x "$d/assay" && -x "$d/assay-bench" ]] || { echo "$d: no assay or assay-bench binary" >&2; exit 2; }
done
work="$(mktemp -d /tmp/assay-ingest-ab.XXXXXX)"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

# CPU and run-queue wait (seconds) and time slices, summed per thread name.
threads() {
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t/comm") $(cat "$t/schedstat")"
    done 2>/dev/null | awk '{c[$1] += $2; w[$1] += $3; n[$1] += $4}
        END {for (k in c) printf "%s %.3f %.3f %d\n", k, c[k] / 1e9, w[k] / 1e9, n[k]}' | sort
}

for rep in $(seq "$reps"); do
    for d in "$@"; do
        port=$((19400 + RANDOM % 500))
        data="$work/data"
        rm -rf "$data"
        "$d/assay" serve --data-dir "$data" --listen "127.0.0.1:$port" >"$work/log" 2>&1 &
        pid=$!
        wait_up "http://127.0.0.1:$port/healthz" "$pid" 100 || { cat "$work/log" >&2; exit 1; }
        threads "$pid" >"$work/before"
        out="$("$d/assay-bench" --json remote-write --url "http://127.0.0.1:$port" \
            --path /api/v1/write --connections 4 --batch 5000 --series 10000 \
            --rounds "$rounds" --interval 15s --server-pid "$pid" | tail -n 1)"
        threads "$pid" >"$work/after"
        hwm="$(awk '/VmHWM/ {print int($2 / 1024) " MiB"}' /proc/"$pid"/status)"
        kill -TERM "$pid"
        wait "$pid" || true
        pid=""
        printf '%s rep %s: %s samples/s, %s CPU-s per M, p99 %s ms, peak RSS %s, load %s\n' \
            "$d" "$rep" "$(jq .samples_per_s <<<"$out")" "$(jq .server_cpu_s_per_million <<<"$out")" \
            "$(jq .latency.p99_ms <<<"$out")" "$hwm" "$(cut -d' ' -f1 /proc/loadavg)"
        join "$work/before" "$work/after" | awk '$5 - $2 > 0.01 {
            printf "    %-16s cpu %6.2f s  waiting for a CPU %6.2f s  slices %d\n", $1, $5 - $2, $6 - $3, $7 - $4}'
    done
done
