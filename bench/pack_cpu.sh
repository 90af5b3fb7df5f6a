#!/usr/bin/env bash
# What packing ledger segments costs a node under remote write: runs the same load
# (10k series × ROUNDS rounds, 4 connections, 5,000-sample requests) against a fresh node
# with `[ledger] pack_segments` on, then off, REPS times interleaved, and prints each run's
# samples/s, server CPU-s per million samples and peak RSS. Builds release binaries first.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
ROUNDS="${ROUNDS:-720}"
REPS="${REPS:-2}"
PORT="${PORT:-19611}"
(cd "$repo" && cargo build --release -p assay -p assay-bench)
assay="$CARGO_TARGET_DIR/release/assay"
bench="$CARGO_TARGET_DIR/release/assay-bench"
work="$(mktemp -d /tmp/assay-pack-cpu.XXXXXX)"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for rep in $(seq "$REPS"); do
    for pack in true false; do
        d="$work/$pack-$rep"
        mkdir -p "$d"
        printf '[ledger]\npack_segments = %s\n' "$pack" >"$d/assay.toml"
        "$assay" serve --data-dir "$d/data" --listen "127.0.0.1:$PORT" --config "$d/assay.toml" \
            >"$d/out" 2>"$d/err" &
        pid=$!
        sleep 1.5
        r="$("$bench" remote-write --url "http://127.0.0.1:$PORT" --path /api/v1/write \
            --connections 4 --batch 5000 --series 10000 --rounds "$ROUNDS" --interval 15s \
            --server-pid "$pid" 2>&1 | grep -E 'samples/s|CPU s' | tr '\n' ' ')"
        echo "pack_segments=$pack rep=$rep load=$(cut -d' ' -f1 /proc/loadavg): $r"
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        pid=""
        rm -rf "$d"
    done
done
