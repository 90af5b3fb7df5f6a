#!/usr/bin/env bash
# Runs every Assay test on a fresh machine: formatting, lints, unit and property tests,
# the ledger's crash simulation, end-to-end tests against the real binary, the
# interoperability check with Go's sumdb/note + sumdb/tlog, and Prometheus remote-writing to
# Assay with promtool comparing answers (Go tools and Prometheus installed from Debian).
#
#   scripts/test.sh            everything (what CI runs)
#   ASSAY_SIM_SEEDS=100000 scripts/test.sh   a longer crash simulation
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
step() { printf '\n==> %s\n' "$*" >&2; }

step "independent verifier (Go sumdb/note + sumdb/tlog)"
tools="$CARGO_TARGET_DIR/interop"
tests/interop/build.sh "$tools" >/dev/null
export TLOGCHECK="$tools/tlogcheck" ASSAY_REQUIRE_INTEROP=1

step "Prometheus 2.42 from Debian (a peer in the end-to-end tests)"
scripts/apt-install.sh prometheus
export ASSAY_REQUIRE_PROMETHEUS=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (cargo nextest)"
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
cargo nextest run --workspace --locked --no-fail-fast --failure-output final

step "PromQL conformance against Prometheus 2.42 (tests/conformance)"
CONFORMANCE_PROFILE=debug tests/conformance/run.sh
