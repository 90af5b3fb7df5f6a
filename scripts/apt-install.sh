#!/usr/bin/env bash
# Installs Debian packages the tests and benchmarks need, if missing: waits for the dpkg
# lock instead of failing, and refreshes a stale package index once before retrying.
#
# Usage: scripts/apt-install.sh <package>...
set -euo pipefail
(($#)) || { echo "usage: $0 <package>..." >&2; exit 2; }
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
sudo=()
[[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
echo "apt-install: installing ${missing[*]}" >&2
apt=("${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600)
if ! "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  "${apt[@]}" update -qq >/dev/null
  "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
