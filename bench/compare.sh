#!/usr/bin/env bash
# Side by side: Assay vs VictoriaMetrics vs Prometheus, one server at a time, same load.
#
# For each server: start it by hand on 127.0.0.1 with a fresh temp data dir, push HOURS of
# history for SERIES node_exporter-like series (one sample per series every INTERVAL s of
# sample time, ending a minute before now, sent as fast as the server answers) with
# `assay-bench remote-write` over Prometheus remote write 1.0, and measure:
#   ingest samples/s, server CPU-seconds per million samples (/proc/PID/stat, all threads),
#   request latency, errors by status; then disk bytes/sample after a flush; then the ten
#   dashboard queries of `assay-bench queries` over the whole history (step 60 s, REPS
#   timed runs each); then the server's peak RSS (VmHWM). Then, unless BIG_SERIES=0, a fresh
#   server of each kind takes BIG_ROUNDS rounds of BIG_SERIES active series (ingest only).
#   With PROFILE=1 a last fresh Assay is profiled (perf record, cpu-clock) under the load.
#
# Environment knobs (all optional):
#   SERVERS="assay victoriametrics prometheus"   which servers, in this order
#   SERIES=10000 HOURS=24 INTERVAL=15            the history (24 h × 10k = 57.6M samples)
#   CONNECTIONS=4 BATCH=5000                      the generator
#   REPS=7                                        timed runs per query (0: no queries)
#   BIG_SERIES=1000000 BIG_ROUNDS=3               the high-cardinality ingest (0: skip)
#   PROFILE=1 PROFILE_ROUNDS=240                  perf profile of Assay (0: skip)
#   RESULTS=FILE TMPBASE=/tmp                     JSON lines out; where data dirs live
#
# Servers: Debian's victoria-metrics (1.79) and prometheus (2.42) packages, installed here
# if missing (not their systemd services: each is started by hand). VictoriaMetrics runs
# with -search.disableCache so repeated queries are computed, as on the other two.
# Everything started here is stopped and the temp dirs removed on exit (trap).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
SERVERS="${SERVERS:-assay victoriametrics prometheus}"
SERIES="${SERIES:-10000}"
HOURS="${HOURS:-24}"
INTERVAL="${INTERVAL:-15}"
CONNECTIONS="${CONNECTIONS:-4}"
BATCH="${BATCH:-5000}"
REPS="${REPS:-7}"
BIG_SERIES="${BIG_SERIES:-1000000}"
BIG_ROUNDS="${BIG_ROUNDS:-3}"
PROFILE="${PROFILE:-1}"
PROFILE_ROUNDS="${PROFILE_ROUNDS:-240}"
TMPBASE="${TMPBASE:-/tmp}"
RESULTS="${RESULTS:-/tmp/assay-compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
rounds=$((HOURS * 3600 / INTERVAL))

work="$(mktemp -d "$TMPBASE/assay-compare.XXXXXX")"
srv_pid=""
srv_name=""
perf_pid=""

cleanup() {
    local rc=$?
    if [[ -n "$perf_pid" ]] && kill -0 "$perf_pid" 2>/dev/null; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Appends a JSON object (arg 1) merged with {server, phase, load} to $RESULTS.
record() {
    jq -c --arg s "$srv_name" --arg p "$phase" --arg l "$(loadavg)" \
        '. + {server:$s, phase:$p, load:$l}' <<<"$1" >>"$RESULTS"
}

stop_server() {
    if [[ -n "$srv_pid" ]] && kill -0 "$srv_pid" 2>/dev/null; then
        stop_pid "$srv_pid" 1200
        wait "$srv_pid" 2>/dev/null || true
    fi
    srv_pid=""
}

# start_server NAME: a fresh data dir $data, URL $url, pid $srv_pid.
start_server() {
    srv_name="$1"
    local port health
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    data="$work/$srv_name-data-$phase"
    rm -rf "$data"
    mkdir -p "$data"
    case "$srv_name" in
    assay)
        "$assay" serve --data-dir "$data" --listen "127.0.0.1:$port" >"$work/$srv_name.log" 2>&1 &
        health="/healthz"
        ;;
    victoriametrics)
        victoria-metrics -storageDataPath="$data" -httpListenAddr="127.0.0.1:$port" \
            -retentionPeriod=1 -search.disableCache >"$work/$srv_name.log" 2>&1 &
        health="/health"
        ;;
    prometheus)
        printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' >"$work/prometheus.yml"
        prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$data" \
            --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
            --web.enable-admin-api --storage.tsdb.retention.time=15d \
            >"$work/$srv_name.log" 2>&1 &
        health="/-/ready"
        ;;
    esac
    srv_pid=$!
    if wait_up "$url$health" "$srv_pid" 300; then
        log "$srv_name up at $url (pid $srv_pid), data $data"
        return 0
    fi
    echo "$srv_name did not come up; its log:" >&2
    tail -50 "$work/$srv_name.log" >&2
    return 1
}


# Flushes to disk and records the bytes (arg 1: samples stored).
measure_disk() {
    local samples="$1" j
    case "$srv_name" in
    victoriametrics)
        curl -sf "$url/internal/force_flush" >/dev/null
        sleep 5
        j="$(jq -n --argjson t "$(bytes_of "$data")" --argjson n "$samples" \
            '{bench:"disk", total_bytes:$t, samples:$n, total_bytes_per_sample:($t/$n),
              note:"data dir after /internal/force_flush + 5 s (indexdb + data parts)"}')"
        ;;
    prometheus)
        local name
        name="$(curl -sf -XPOST "$url/api/v1/admin/tsdb/snapshot" | jq -r .data.name)"
        local snap wal all
        snap="$(bytes_of "$data/snapshots/$name")"
        wal="$(bytes_of "$data/wal")"
        all="$(du -sb --exclude=snapshots "$data" | awk '{print $1}')"
        j="$(jq -n --argjson s "$snap" --argjson w "$wal" --argjson t "$all" --argjson n "$samples" \
            '{bench:"disk", blocks_bytes:$s, wal_bytes:$w, total_bytes:$t, samples:$n,
              blocks_bytes_per_sample:($s/$n), total_bytes_per_sample:($t/$n),
              note:"blocks = admin snapshot (all data as blocks, head included); total = data dir (WAL + blocks + head chunks)"}')"
        ;;
    assay)
        # Full ledger segments are packed by a background thread (as VictoriaMetrics
        # flushes): wait until only the segment being appended to is raw. The sizes are
        # measured after the clean stop (the views snapshot is written then): see below.
        local waited=0
        while (($(find "$data/ledger" -name '*.seg' | wc -l) > 1 && waited < 600)); do
            sleep 1
            waited=$((waited + 1))
        done
        log "assay: packing caught up after ${waited} s"
        return 0
        ;;
    esac
    record "$j"
    echo "$j"
}

measure_assay_disk_after_stop() {
    local samples="$1" j
    local packs raw
    packs="$(find "$data/ledger" -name '*.pack' -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
    raw="$(find "$data/ledger" -name '*.seg' -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
    j="$(jq -n --argjson l "$(bytes_of "$data/ledger")" --argjson v "$(bytes_of "$data/views")" \
        --argjson t "$(bytes_of "$data")" --argjson n "$samples" --argjson p "$packs" --argjson r "$raw" \
        '{bench:"disk", ledger_bytes:$l, ledger_pack_bytes:$p, ledger_raw_segment_bytes:$r,
          views_bytes:$v, total_bytes:$t, samples:$n,
          ledger_bytes_per_sample:($l/$n), views_bytes_per_sample:($v/$n),
          total_bytes_per_sample:($t/$n),
          note:"after a clean stop: ledger (signed Merkle log: packs + the raw segment being appended to) and views (time-series snapshot + chunk files)"}')"
    record "$j"
    echo "$j"
}

peak_rss() {
    local kb
    kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$srv_pid/status")"
    record "$(jq -n --argjson kb "$kb" '{bench:"rss", peak_rss_bytes:($kb*1024)}')"
    echo "peak RSS (VmHWM) $((kb / 1024)) MiB"
}

# remote_write ROUNDS SERIES [extra args]: the load, recorded; sets $rw (its JSON line).
remote_write() {
    local r="$1" s="$2" out
    shift 2
    log "$srv_name: remote write $s series × $r rounds (load $(loadavg))"
    out="$("$benchbin" --json remote-write --url "$url" --path /api/v1/write \
        --connections "$CONNECTIONS" --batch "$BATCH" --series "$s" --rounds "$r" \
        --interval "${INTERVAL}s" --server-pid "$srv_pid" "$@")"
    printf '%s\n' "$out" | sed '$d'
    rw="$(printf '%s\n' "$out" | tail -n 1)"
    record "$rw"
}

echo "== packages"
need=()
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v prometheus >/dev/null || need+=(prometheus)
command -v jq >/dev/null || need+=(jq)
if [[ "$PROFILE" == "1" ]] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

echo "== build (release)"
(cd "$repo" && cargo build --release -p assay -p assay-bench)
assay="$CARGO_TARGET_DIR/release/assay"
benchbin="$CARGO_TARGET_DIR/release/assay-bench"
: >"$RESULTS"

echo "== machine"
model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
commit="$(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet || echo ' (dirty)')"
vmv="$(dpkg-query -W -f '${Version}' victoria-metrics)"
pv="$(dpkg-query -W -f '${Version}' prometheus)"
echo "date $(date -u +%FT%TZ); $(nproc) × $model; $(free -g | awk '/^Mem:/ {print $2}') GiB; $(df -T "$work" | awk 'NR==2 {print $2}') at $work"
echo "commit $commit; victoria-metrics $vmv; prometheus $pv; load $(loadavg)"
srv_name="" phase="machine"
record "$(jq -n --arg m "$model" --arg n "$(nproc)" --arg c "$commit" --arg vm "$vmv" --arg p "$pv" \
    --arg fs "$(df -T "$work" | awk 'NR==2 {print $2}')" \
    '{bench:"machine", cpu_model:$m, cpus:($n|tonumber), commit:$c, victoria_metrics:$vm, prometheus:$p, filesystem:$fs}')"

for name in $SERVERS; do
    phase="history"
    echo
    echo "== $name: $SERIES series × $HOURS h at ${INTERVAL} s ($((SERIES * rounds)) samples), then queries"
    start_server "$name"
    remote_write "$rounds" "$SERIES"
    samples="$(jq .samples_ok <<<"$rw")"
    t0="$(jq .start_ms <<<"$rw")"
    t1="$(jq .end_ms <<<"$rw")"
    measure_disk "$samples"
    if [[ "$REPS" != "0" ]]; then
        log "$name: queries (load $(loadavg))"
        out="$("$benchbin" --json queries --url "$url" --start-ms "$t0" --end-ms "$t1" --step 60 --reps "$REPS")"
        printf '%s\n' "$out" | sed '$d'
        record "$(printf '%s\n' "$out" | tail -n 1)"
    fi
    peak_rss
    if [[ "$name" == assay ]]; then
        # The view's in-memory compressed samples (what the time-series store holds; its
        # snapshot file stores raw values).
        record "$(curl -sf "$url/metrics" | awk -v n="$samples" '
            $1 == "assay_tsdb_sample_bytes" {b = $2} $1 == "assay_tsdb_samples" {s = $2}
            END {printf "{\"bench\":\"tsdb_memory\",\"sample_bytes\":%d,\"tsdb_samples\":%d,\"bytes_per_sample\":%.3f}\n", b, s, b / (s ? s : n)}')"
        tail -n 1 "$RESULTS"
    fi
    stop_server
    if [[ "$name" == assay ]]; then
        measure_assay_disk_after_stop "$samples"
    fi
    rm -rf "$data"
done

if [[ "$BIG_SERIES" != "0" ]]; then
    for name in $SERVERS; do
        phase="big"
        echo
        echo "== $name: $BIG_SERIES active series × $BIG_ROUNDS rounds (ingest only)"
        start_server "$name"
        remote_write "$BIG_ROUNDS" "$BIG_SERIES" --max-lead-rounds 1
        peak_rss
        stop_server
        rm -rf "$data"
    done
fi

if [[ "$PROFILE" == "1" ]]; then
    phase="profile"
    echo
    echo "== assay under perf: $SERIES series × $PROFILE_ROUNDS rounds"
    start_server assay
    # No PMU in this VM guest: cpu-clock sampling. Release builds have no frame pointers,
    # so DWARF unwinding gives the call chains.
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$srv_pid" -o "$work/perf.data" \
        >/dev/null 2>"$work/perf.log" &
    perf_pid=$!
    sleep 0.5
    remote_write "$PROFILE_ROUNDS" "$SERIES"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=""
    prof="${RESULTS%.jsonl}.perf.txt"
    {
        echo "## self time: perf report --no-children --sort symbol -g none"
        perf report -i "$work/perf.data" --no-children --stdio -g none --sort symbol \
            --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | head -50 || true
        echo
        echo "## by thread: --sort comm"
        perf report -i "$work/perf.data" --no-children --stdio -g none --sort comm 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -12 || true
        echo
        echo "## inclusive time of Assay's own functions: --children"
        perf report -i "$work/perf.data" --children --stdio -g none --sort symbol \
            --percent-limit 2 2>/dev/null | grep -E 'assay_|sha2|snap|prost|sync_data|fdatasync|write' |
            head -50 || true
    } >"$prof"
    head -70 "$prof"
    echo "(profile: $prof)"
    stop_server
    rm -rf "$data"
fi

echo
echo "load at end: $(loadavg)"
echo "== results ($RESULTS)"
jq -s -r '
  def r(x): if x == null then "-" else ((x * 100 | round) / 100 | tostring) end;
  def mb(x): if x == null then "-" else ((x / 1048576) | round | tostring) + " MiB" end;
  (["server","phase","samples/s","CPU-s per 1M","req p50/p99 ms","errors","peak RSS","load"] | "| " + join(" | ") + " |"),
  "|---|---|---|---|---|---|---|---|",
  (.[] | select(.bench == "remote_write") |
    "| \(.server) | \(.phase) \(.series)×\(.rounds) | \(.samples_per_s) | \(r(.server_cpu_s_per_million)) | \(r(.latency.p50_ms)) / \(r(.latency.p99_ms)) | \(.errors) \(.errors_by_status|tostring) | \(mb(.server_peak_rss_bytes)) | \(.load) |"),
  "",
  (.[] | select(.bench == "disk") | "disk \(.server): \(del(.bench, .server, .phase, .load) | tostring)"),
  (.[] | select(.bench == "rss") | "peak RSS \(.server) \(.phase): \(mb(.peak_rss_bytes))"),
  (.[] | select(.bench == "tsdb_memory") | "assay view in memory: \(.sample_bytes) B for \(.tsdb_samples) samples = \(.bytes_per_sample) B/sample"),
  "",
  ([.[] | select(.bench == "queries")] | select(length > 0) |
    "| query | " + ([.[] | .server] | join(" | ")) + " |",
    "|---" + ("|---" * length) + "|"),
  ([.[] | select(.bench == "queries")] | select(length > 0) as $q |
    ($q[0].queries | keys | sort_by(ltrimstr("q") | split("_")[0] | tonumber)[]) as $k |
    "| \($k) | " + ([$q[] | .queries[$k] |
        if .status == "ok" then "\(.p50_ms) / \(.p90_ms) ms (\(.series) series)" else "\(.status) (\(.http))" end] | join(" | ")) + " |")
' "$RESULTS"
