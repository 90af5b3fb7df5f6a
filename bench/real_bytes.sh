#!/usr/bin/env bash
# Bytes per sample on real exporter data: Assay vs VictoriaMetrics vs Prometheus.
#
# The side-by-side (`compare.sh`) measures bytes on a generated fleet whose counter increments
# are drawn at random, so its values carry 0.7–1.0 bytes of entropy per sample whatever the
# codec. This script measures the same three stores on what real exporters expose instead:
# Debian's `prometheus` scrapes Debian's `prometheus-node-exporter`, itself, VictoriaMetrics
# and Assay every SCRAPE for DURATION seconds, keeps the samples in its own TSDB and
# remote-writes every one of them to Assay and to VictoriaMetrics (all on 127.0.0.1, fresh
# temp data dirs, started here and stopped on exit). Then:
#   Prometheus: POST /api/v1/admin/tsdb/snapshot (head written as blocks), du the snapshot;
#   VictoriaMetrics: GET /internal/force_flush, wait 5 s, stop it, du the data dir without
#   cache/ (the caches it saves at a stop: 1.8 MB of 2.9 here; recorded apart);
#   Assay: a clean stop (the current segment is packed, the views snapshot written), du
#   ledger/ and views/ separately.
# Each store's bytes are divided by the samples it says it stored
# (prometheus_tsdb_head_samples_appended_total, vm_rows_inserted_total,
# assay_samples_committed_total); the three counts are printed and must agree within the
# samples of the last second.
#
# Knobs: SCRAPE=1s DURATION=900 RESULTS=FILE TMPBASE=/tmp
#        KEEP=DIR  copy the three data dirs there at the end (e.g. to rebuild Assay's views
#                  from the same ledger with another build: `assay rebuild --data-dir DIR/assay`)
# A 1 s scrape interval gathers ~4 M samples in 15 min here; at 15 s the same size takes
# almost 4 h. Counter increments per interval are smaller at 1 s (fewer bits), for all three.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
SCRAPE="${SCRAPE:-1s}"
DURATION="${DURATION:-900}"
TMPBASE="${TMPBASE:-/tmp}"
RESULTS="${RESULTS:-/tmp/assay-real-bytes-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"

work="$(mktemp -d "$TMPBASE/assay-real-bytes.XXXXXX")"
pids=()

cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 600); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

# shellcheck source=bench/lib.sh
source "$here/lib.sh"
up() { # URL NAME PID
    if wait_up "$1" "$3" 300; then
        log "$2 up (pid $3)"
        return 0
    fi
    echo "$2 did not come up; its log:" >&2
    tail -50 "$work/$2.log" >&2
    return 1
}
# metric URL NAME: the sum of NAME's samples in URL's /metrics (labels ignored).
metric() {
    curl -sf "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d\n", s}'
}

echo "== packages"
need=()
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v jq >/dev/null || need+=(jq)
if ((${#need[@]})); then
    apt-get update -qq
    # policy-rc.d keeps the packages' services from being started: everything here runs by hand.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends "${need[@]}"
fi

echo "== build (release)"
(cd "$repo" && cargo build --release -p assay)
assay="$CARGO_TARGET_DIR/release/assay"
: >"$RESULTS"
commit="$(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet || echo ' (dirty)')"
echo "date $(date -u +%FT%TZ); commit $commit; victoria-metrics $(dpkg-query -W -f '${Version}' victoria-metrics);" \
    "prometheus $(dpkg-query -W -f '${Version}' prometheus); node-exporter $(dpkg-query -W -f '${Version}' prometheus-node-exporter)"

ne_port="$(free_port)"
prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" >"$work/node-exporter.log" 2>&1 &
pids+=($!)
up "http://127.0.0.1:$ne_port/metrics" node-exporter "$!"

a_port="$(free_port)"
a_url="http://127.0.0.1:$a_port"
mkdir -p "$work/assay-data"
"$assay" serve --data-dir "$work/assay-data" --listen "127.0.0.1:$a_port" >"$work/assay.log" 2>&1 &
a_pid=$!
pids+=("$a_pid")
up "$a_url/healthz" assay "$a_pid"

v_port="$(free_port)"
v_url="http://127.0.0.1:$v_port"
victoria-metrics -storageDataPath="$work/vm-data" -httpListenAddr="127.0.0.1:$v_port" \
    -retentionPeriod=1 >"$work/victoriametrics.log" 2>&1 &
v_pid=$!
pids+=("$v_pid")
up "$v_url/health" victoriametrics "$v_pid"

p_port="$(free_port)"
p_url="http://127.0.0.1:$p_port"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: $SCRAPE
  scrape_timeout: $SCRAPE
scrape_configs:
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:$ne_port"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$p_port"]}]
  - job_name: victoriametrics
    static_configs: [{targets: ["127.0.0.1:$v_port"]}]
  - job_name: assay
    static_configs: [{targets: ["127.0.0.1:$a_port"]}]
remote_write:
  - url: $a_url/api/v1/write
  - url: $v_url/api/v1/write
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
    --web.listen-address="127.0.0.1:$p_port" --web.enable-admin-api \
    --storage.tsdb.retention.time=15d >"$work/prometheus.log" 2>&1 &
p_pid=$!
pids+=("$p_pid")
up "$p_url/-/ready" prometheus "$p_pid"

log "scraping 4 targets every $SCRAPE for $DURATION s"
for ((t = 0; t < DURATION; t += 60)); do
    sleep $((DURATION - t < 60 ? DURATION - t : 60))
    log "$(metric "$p_url" prometheus_tsdb_head_samples_appended_total) samples in Prometheus," \
        "$(metric "$p_url" prometheus_tsdb_head_series) series"
done

# Stop scraping (an empty scrape config, reloaded) so the three stores end with the same
# samples; then let remote write drain.
printf 'global:\n  scrape_interval: %s\nscrape_configs: []\nremote_write:\n  - url: %s\n  - url: %s\n' \
    "$SCRAPE" "$a_url/api/v1/write" "$v_url/api/v1/write" >"$work/prometheus.yml"
kill -HUP "$p_pid"
sleep 20
series="$(metric "$p_url" prometheus_tsdb_head_series)"
p_samples="$(metric "$p_url" prometheus_tsdb_head_samples_appended_total)"
p_failed="$(metric "$p_url" prometheus_remote_storage_samples_failed_total)"
p_pending="$(metric "$p_url" prometheus_remote_storage_samples_pending)"
log "Prometheus: $p_samples samples in $series series; remote write failed $p_failed, pending $p_pending"

name="$(curl -sf -XPOST "$p_url/api/v1/admin/tsdb/snapshot" | jq -r .data.name)"
p_bytes="$(bytes_of "$work/prom-data/snapshots/$name")"

curl -sf "$v_url/internal/force_flush" >/dev/null
sleep 5
v_samples="$(metric "$v_url" vm_rows_inserted_total)"
stop_pid "$v_pid" 1200
# Without cache/: what VictoriaMetrics writes there at a stop is rebuilt on demand.
v_bytes="$(du -sb --exclude=cache "$work/vm-data" | cut -f1)"
v_cache="$(bytes_of "$work/vm-data/cache")"

a_samples="$(metric "$a_url" assay_samples_committed_total)"
stop_pid "$a_pid" 1200
a_ledger="$(bytes_of "$work/assay-data/ledger")"
a_views="$(bytes_of "$work/assay-data/views")"
a_raw="$(find "$work/assay-data/ledger" -name '*.seg' -printf '%s\n' | awk '{s += $1} END {print s + 0}')"

jq -n --arg c "$commit" --arg scrape "$SCRAPE" --argjson d "$DURATION" --argjson series "$series" \
    --argjson pn "$p_samples" --argjson pb "$p_bytes" --argjson vn "$v_samples" --argjson vb "$v_bytes" --argjson vc "$v_cache" \
    --argjson an "$a_samples" --argjson al "$a_ledger" --argjson av "$a_views" --argjson ar "$a_raw" \
    '{bench:"real_bytes", commit:$c, scrape:$scrape, duration_s:$d, series:$series,
      prometheus:{samples:$pn, blocks_bytes:$pb, bytes_per_sample:($pb/$pn)},
      victoriametrics:{samples:$vn, bytes:$vb, bytes_per_sample:($vb/$vn), cache_bytes_not_counted:$vc},
      assay:{samples:$an, ledger_bytes:$al, ledger_raw_segment_bytes:$ar, views_bytes:$av,
             views_bytes_per_sample:($av/$an), ledger_bytes_per_sample:($al/$an),
             total_bytes_per_sample:(($al+$av)/$an)}}' | tee -a "$RESULTS"
if [[ -n "${KEEP:-}" ]]; then
    mkdir -p "$KEEP"
    cp -a "$work/assay-data" "$KEEP/assay"
    cp -a "$work/vm-data" "$KEEP/victoriametrics"
    cp -a "$work/prom-data" "$KEEP/prometheus"
    log "data dirs kept in $KEEP"
fi
echo "(results: $RESULTS)"
