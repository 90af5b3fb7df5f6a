#!/usr/bin/env bash
# Builds `tlogcheck`, an independent checkpoint/proof verifier written against the Go
# reference packages golang.org/x/mod/sumdb/{note,tlog}. It shares no code with Assay, so
# a passing check means Assay's bytes are what other transparency-log verifiers expect.
#
# Usage: tests/interop/build.sh <output-dir>     (writes <output-dir>/tlogcheck)
#
# Installs Debian's golang-go and golang-golang-x-mod-dev (Go 1.19, x/mod 0.7) when `go`
# or the x/mod sources are missing; builds in GOPATH mode so no module download is needed.
set -euo pipefail

out="${1:?usage: $0 <output-dir>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gocode=/usr/share/gocode
xmod="$gocode/src/golang.org/x/mod/sumdb"

need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[[ -d "$xmod/note" && -d "$xmod/tlog" ]] || need+=(golang-golang-x-mod-dev)
if ((${#need[@]})); then
  sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  echo "build.sh: installing ${need[*]}" >&2
  # Other installs may hold the dpkg lock: wait for it rather than fail.
  # A stale package index makes install fail with 404s; refresh once and retry.
  if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$here/tlogcheck"
# go refuses to build without a cache dir; CI containers may have no HOME.
[[ -n "${GOCACHE:-}" || -n "${HOME:-}" ]] || export GOCACHE="$scratch/cache"
GO111MODULE=off GOPATH="$gocode:$scratch" GOFLAGS= \
  go build -o "$out/tlogcheck" .
echo "$out/tlogcheck"
