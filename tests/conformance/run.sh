#!/usr/bin/env bash
# PromQL conformance: runs queries.txt against Debian's Prometheus (2.42) and Assay on the
# same generated data and compares the answers (see tests/conformance/README.md).
#
#   tests/conformance/run.sh                       CI gate: fails if a query listed in
#                                                  expected-pass.txt stops passing
#   tests/conformance/run.sh --filter rate -v      any harness flag is passed through
#   tests/conformance/run.sh --write-expected-pass tests/conformance/expected-pass.txt
#
# Needs root (or sudo) only to install the `prometheus` package when it is missing. Every
# step is bounded in time; both servers are stopped and the work dir removed on any exit.
# Exit: 0 gate passed, 1 gate failed, 2 harness/setup error, 124 a step timed out.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
report="${CONFORMANCE_REPORT:-$CARGO_TARGET_DIR/conformance-report.json}"
step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x /usr/bin/prometheus || ! -x /usr/bin/promtool ]]; then
  step "installing Debian's prometheus package"
  sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Other installs may hold the dpkg lock: wait for it. A stale index gives 404s: refresh
  # once and retry. The package's own service (if systemd starts it) is never used: the
  # harness starts its own process on a free port with its own data dir.
  install=("${sudo[@]}" timeout 900 apt-get -o DPkg::Lock::Timeout=600 install -y -qq
           --no-install-recommends prometheus)
  if ! "${install[@]}" >/dev/null; then
    "${sudo[@]}" timeout 600 apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    "${install[@]}" >/dev/null
  fi
fi

# CONFORMANCE_PROFILE=debug reuses the test build (what scripts/test.sh does: a release
# build would double CI's compile time); the default is release.
profile="${CONFORMANCE_PROFILE:-release}"
case "$profile" in
  release) build_flags=(--release); bin="$CARGO_TARGET_DIR/release" ;;
  debug) build_flags=(); bin="$CARGO_TARGET_DIR/debug" ;;
  *) echo "CONFORMANCE_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
step "building assay and the harness ($profile)"
(cd "$root" && timeout 3600 cargo build "${build_flags[@]}" --locked -p assay -p assay-conformance)

work="$(mktemp -d "${TMPDIR:-/tmp}/assay-conformance.XXXXXX")"
cleanup() {
  # The harness stops both servers itself; this covers it being killed (pid files it wrote).
  local f
  for f in "$work"/*.pid; do
    [[ -e "$f" ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "running the corpus (report: $report)"
mkdir -p "$(dirname "$report")"
timeout 1800 "$bin/assay-conformance" \
  --prometheus /usr/bin/prometheus --promtool /usr/bin/promtool \
  --assay "$bin/assay" \
  --corpus "$here/queries.txt" --known-differences "$here/known-differences.txt" \
  --expected-pass "$here/expected-pass.txt" --min-pass-rate 100 \
  --work-dir "$work" --json "$report" "$@"
