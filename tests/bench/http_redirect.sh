#!/usr/bin/env bash
# HTTP redirect throughput: floe's `GET /live.ogg` -> 302 against nginx's
# `return 302`, both pinned to the same single core (0), wrk on the other (1),
# with keep-alive and with `Connection: close`. Prints requests/s, server CPU
# microseconds per request (from /proc/PID/stat), and floe/nginx ratios.
#
# Then a latency run at half of each server's keep-alive saturation rate
# with an open-loop client (tests/bench/http_latency.rs: fixed rate,
# latency from each request's scheduled time): p50/p99/p99.9 per server
# (target: floe's p99 under 1 ms). hey and wrk cannot do this: on one core
# they saturate well below half of floe's rate.
#
# Last, with `perf` (linux-perf) present: system calls per request of each
# server under `Connection: close` (perf's syscall tracepoints; a count,
# so unlike CPU time it does not move with the machine's other load).
#
# Usage: tests/bench/http_redirect.sh [seconds per run, default 10]
# Environment: FLOE_BIN=path runs that floe binary instead of building
# target/release/floe (to alternate an old and a new build on a noisy
# machine); NGINX_LISTEN=deferred gives nginx's listener that option
# (TCP_DEFER_ACCEPT, as floe's listeners have).
# Needs: wrk, nginx, taskset, python3 (tests/run --install-only installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
for t in wrk nginx taskset python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: run tests/run --install-only" >&2; exit 1; }
done
if [ -n "${FLOE_BIN:-}" ]; then
  FLOE=$(realpath "$FLOE_BIN")
else
  cargo build --release --quiet
  FLOE=$PWD/target/release/floe
fi
LATENCY=$(cargo bench --bench http_latency --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p')
[ -x "$LATENCY" ] || { echo "could not build tests/bench/http_latency.rs" >&2; exit 1; }
source tests/bench/lib.sh
# nginx's workers (not root) serve the fake relay status file from $WORK.
chmod 755 "$WORK"

read -r P_STATUS P_NGINX P_FLOE P_DNS < <(free_ports 4)

# The fake relay's status (unlimited room, so every request is a 302) is a
# static file served by a second nginx server block.
printf '#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n/live.ogg\t0\tunlimited\tunlimited\nEND\t1\n' > "$WORK/floe-slots.xsl"
cat > "$WORK/nginx.conf" <<NGX
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$P_STATUS; location = /floe-slots.xsl { default_type text/plain; alias $WORK/floe-slots.xsl; } }
  server { listen 127.0.0.1:$P_NGINX ${NGINX_LISTEN:-}; location = /live.ogg { add_header Cache-Control no-store; return 302 http://127.0.0.1:$P_STATUS/live.ogg; } }
}
NGX
taskset -c 0 nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
pids+=($!)
NGINX_PID=$!

mkdir -p "$WORK/zones"
cp zones/*.zone "$WORK/zones/"
cat > "$WORK/floe.toml" <<TOML
[dns]
listen = ["127.0.0.1:$P_DNS"]
zones = "zones"
udp_workers = 1
[http]
listen = ["127.0.0.1:$P_FLOE"]
workers = 1
[poll]
interval = "1s"
# wrk is one address: a budget no client reaches, so every request is a
# 302 that takes a grant; the budget's check (a hash and a CAS) is still paid.
[select]
grants_per_client = 1000000000
[[relay]]
name = "relay-1"
url = "http://127.0.0.1:$P_STATUS"
addresses = ["127.0.0.1"]
status = { kind = "xslt" }
[[stream]]
name = "live"
mounts = ["/live.ogg"]
TOML
RUST_LOG=warn taskset -c 0 "$FLOE" serve --config "$WORK/floe.toml" &
pids+=($!)
FLOE_PID=$!

# Until both redirect (floe's first poll may come before nginx serves the
# status: then it answers 503 until the next poll, 1 s later).
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_NGINX/live.ogg")" = 302 ] &&
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_FLOE/live.ogg")" = 302 ] && break
  sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_FLOE/live.ogg")
[ "$code" = 302 ] || { echo "floe did not redirect (HTTP $code)" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME PID URL [extra wrk args]: prints "rps us_per_req"
run() {
  local pid=$1 url=$2; shift 2
  local before after out rps reqs
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" "$@" "$url")
  after=$(cpu_ticks "$pid")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
  [ -z "$non2xx" ] || { echo "unexpected non-3xx answers: $non2xx" >&2; }
  python3 -c "print(f'{$rps:.0f} {($after-$before)/$HZ*1e6/max($reqs,1):.2f}')"
}

echo "HTTP redirect benchmark: ${DUR}s per run, servers on core 0, wrk on core 1, 64 connections"
printf '%-22s %12s %12s %14s %14s %8s %8s\n' mode floe_rps nginx_rps floe_us/req nginx_us/req rps_x cpu_x
# saturate MODE: one wrk run per server, one line of results.
saturate() {
  local mode=$1 extra=()
  [ "$mode" = close ] && extra=(-H "Connection: close")
  read -r f_rps f_us < <(run "$FLOE_PID" "http://127.0.0.1:$P_FLOE/live.ogg" "${extra[@]}")
  read -r n_rps n_us < <(run "$NGINX_PID" "http://127.0.0.1:$P_NGINX/live.ogg" "${extra[@]}")
  python3 -c "print(f'{\"$mode\":<22} {$f_rps:>12.0f} {$n_rps:>12.0f} {$f_us:>14.2f} {$n_us:>14.2f} {$f_rps/$n_rps:>8.2f} {$f_us/$n_us:>8.2f}')"
  [ "$mode" = keepalive ] && { F_SAT=$f_rps; N_SAT=$n_rps; }
  return 0
}
# Keep-alive first, then latency, then Connection: close last: a close run
# leaves ~200k sockets in TIME_WAIT whose reaping over the next minute
# stalls both cores for milliseconds (seen as the load client's own send
# lag), which would spoil a latency run after it.
saturate keepalive
# latency URL RATE: the open-loop client (tests/bench/http_latency.rs) on
# core 1 at RATE requests/s over 32 keep-alive connections, latency from
# each request's scheduled time: "rps p50 p99 p99.9 max (us) non_302
# incomplete max_send_lag_us".
latency() {
  taskset -c 1 "$LATENCY" "$1" "$2" "$DUR" 32
}
echo
echo "latency at half of each server's keep-alive saturation (open loop, fixed rate, 32 connections, client on core 1)"
printf '%-8s %9s %9s %9s %9s %9s %8s %10s %8s\n' server rps p50_us p99_us p99.9_us max_us non_302 incomplete lag_us
for server in floe nginx; do
  if [ "$server" = floe ]; then port=$P_FLOE sat=$F_SAT; else port=$P_NGINX sat=$N_SAT; fi
  read -r rps p50 p99 p999 max non302 incomplete lag < <(latency "http://127.0.0.1:$port/live.ogg" "$(python3 -c "print(round($sat / 2))")")
  printf '%-8s %9s %9s %9s %9s %9s %8s %10s %8s\n' "$server" "$rps" "$p50" "$p99" "$p999" "$max" "$non302" "$incomplete" "$lag"
  [ "$server" = floe ] && F_P99=$p99
done
python3 -c "print(f'floe p99 at half load: {$F_P99:.0f} us (target < 1000 us): ' + ('PASS' if $F_P99 < 1000 else 'MISS'))"
echo
printf '%-22s %12s %12s %14s %14s %8s %8s\n' mode floe_rps nginx_rps floe_us/req nginx_us/req rps_x cpu_x
saturate close
echo "rps_x = floe/nginx requests per second (target >= 1); cpu_x = floe/nginx CPU per request (lower is better)"

# syscalls PID PORT: system calls per request of PID while wrk asks PORT
# with Connection: close, the most frequent first.
syscalls() {
  perf stat -e 'syscalls:sys_enter_*' -p "$1" -o "$WORK/perf-stat" -- sleep "$DUR" >/dev/null 2>&1 &
  local perf_pid=$! out reqs
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H "Connection: close" "http://127.0.0.1:$2/live.ogg")
  wait "$perf_pid" || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v r="$reqs" '/syscalls:sys_enter_/ {gsub(",", "", $1); n = $1 / r; if (n >= 0.01) {sub("syscalls:sys_enter_", "", $2); printf "%s %.2f\n", $2, n}}' "$WORK/perf-stat" |
    sort -k2 -rn | awk '{t += $2; s = s sprintf(" %s %.2f", $1, $2)} END {printf "%.2f:%s\n", t, s}'
}
echo
if command -v perf >/dev/null && perf stat -e 'syscalls:sys_enter_close' -- true >/dev/null 2>&1; then
  echo "system calls per request, Connection: close (total: each)"
  echo "floe  $(syscalls "$FLOE_PID" "$P_FLOE")"
  echo "nginx $(syscalls "$NGINX_PID" "$P_NGINX")"
else
  echo "(no system call counts: perf with syscall tracepoints is not available)"
fi
