# Shell functions the bench scripts share; `source "$here/lib.sh"` (here: the bench dir).

# A line with the UTC time in front.
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

# A TCP port on 127.0.0.1 free at the time of asking.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Bytes under the given paths (0 when none exists).
bytes_of() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}'; }

# wait_up URL PID TENTHS: 0 once URL answers 2xx, 1 when PID exits first or TENTHS tenths of a
# second pass.
wait_up() {
    local _
    for _ in $(seq "$3"); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_pid PID TENTHS: SIGTERM, then SIGKILL if PID still runs after TENTHS tenths of a second
# (Assay writes its views snapshot at a clean stop: give it time, boundedly).
stop_pid() {
    local _
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq "$2"); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
}
