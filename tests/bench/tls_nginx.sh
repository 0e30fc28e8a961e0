#!/usr/bin/env bash
# TLS handshake cost: floe's HTTPS `GET /live.ogg` -> 302 against nginx's
# `return 302`, one new connection and one TLS 1.3 handshake per request,
# the same ECDSA P-256 certificate (made here with openssl), both servers
# pinned to the same single core (0), the client on the other (1).
# Prints handshake-redirects per second, server CPU microseconds per
# handshake-redirect (from /proc/PID/stat) and floe/nginx ratios for:
#   full       full handshakes, closed loop (saturation)
#   paced      full handshakes at one fixed rate for both servers (open loop,
#              60 % of the lower saturation rate, or the RATE given)
#   resumed    a client that offers the session tickets it was given, as a
#              returning browser does (saturation); `resumed` is the share
#              of handshakes the server accepted as resumptions
# The client is tests/bench/tls_handshake.rs (see there why not h2load).
# Fails (exit 1) when a run has a failed handshake, an error or an answer
# other than 302, or when the paced client could not keep its pace.
#
# Usage: tests/bench/tls_nginx.sh [seconds per run, default 10] [paced rate]
# Needs: nginx, openssl, taskset, python3, curl (tests/run --install-only).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
PACED=${2:-}
for t in nginx openssl taskset python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: run tests/run --install-only" >&2; exit 1; }
done
cargo build --release --quiet
FLOE=$PWD/target/release/floe
CLIENT=$(cargo bench --bench tls_handshake --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p')
[ -x "$CLIENT" ] || { echo "could not build tests/bench/tls_handshake.rs" >&2; exit 1; }
source tests/bench/lib.sh
chmod 755 "$WORK"

read -r P_STATUS P_NGINX P_FLOE P_DNS < <(free_ports 4)
NAME=floe.test

# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj "/CN=$NAME" \
  -addext "subjectAltName=DNS:$NAME" 2>/dev/null
chmod 644 "$WORK/key.pem"

# The fake relay's status (unlimited room, so every request is a 302) is a
# static file served by a second, plain nginx server block. nginx 1.22
# allows TLS 1.3 only when told; its defaults otherwise (session tickets
# on, with a key of its own; no shared session cache), as a stock
# `listen 443 ssl` server has.
printf '#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n/live.ogg\t0\tunlimited\tunlimited\nEND\t1\n' > "$WORK/floe-slots.xsl"
cat > "$WORK/nginx.conf" <<NGX
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$P_STATUS; location = /floe-slots.xsl { default_type text/plain; alias $WORK/floe-slots.xsl; } }
  server {
    listen 127.0.0.1:$P_NGINX ssl;
    server_name $NAME;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /live.ogg { add_header Cache-Control no-store; return 302 https://127.0.0.1:$P_STATUS/live.ogg; }
  }
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
listen = []
tls_listen = ["127.0.0.1:$P_FLOE"]
workers = 1
[[http.tls_certificate]]
cert = "cert.pem"
key = "key.pem"
[poll]
interval = "1s"
# One client address: a budget no client reaches, so every request is a
# 302 that takes a grant; the budget's check is still paid.
[select]
grants_per_client = 1000000000
[[relay]]
name = "relay-1"
url = "http://127.0.0.1:$P_STATUS"
https_url = "https://127.0.0.1:$P_STATUS"
addresses = ["127.0.0.1"]
status = { kind = "xslt" }
[[stream]]
name = "live"
mounts = ["/live.ogg"]
TOML
RUST_LOG=warn taskset -c 0 "$FLOE" serve --config "$WORK/floe.toml" &
pids+=($!)
FLOE_PID=$!

# code PORT: the HTTP status of GET /live.ogg over TLS (000: none yet).
code() {
  curl -sk -o /dev/null -w '%{http_code}' --resolve "$NAME:$1:127.0.0.1" "https://$NAME:$1/live.ogg" || true
}
for _ in $(seq 100); do
  [ "$(code "$P_FLOE")" = 302 ] && [ "$(code "$P_NGINX")" = 302 ] && break
  sleep 0.1
done
for p in "$P_FLOE" "$P_NGINX"; do
  c=$(code "$p")
  [ "$c" = 302 ] || { echo "port $p did not redirect over TLS (HTTP $c)" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# What every handshake must negotiate with both servers (the client offers
# AES-128-GCM first, as browsers do).
PARAMS=X25519/TLS13_AES_128_GCM_SHA256
# run PID PORT CONNECTIONS [client args]: one client run against one
# server; prints "rps us_per_handshake resumed_share p99_us server_core
# client_core" (the cores: CPU time over the run's time); a run with
# errors, non-302 answers or skipped starts marks the bench failed.
run() {
  local pid=$1 port=$2 conns=$3; shift 3
  local before after out t0 t1
  before=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  out=$(taskset -c 1 "$CLIENT" "127.0.0.1:$port" "$NAME" /live.ogg "$DUR" "$conns" "$@")
  t1=$(date +%s.%N)
  after=$(cpu_ticks "$pid")
  read -r rps ok non302 errors resumed _p50 p99 _max skipped params client_core <<<"$out"
  if [ "$non302" != 0 ] || [ "$errors" != 0 ] || [ "$skipped" != 0 ] || [ "$ok" = 0 ]; then
    echo "port $port $*: $ok redirects, $non302 not 302, $errors errors, $skipped starts skipped" >&2
    touch "$WORK/failed"
  fi
  if [ "$params" != "$PARAMS" ]; then
    echo "port $port $*: negotiated $params, not $PARAMS" >&2
    touch "$WORK/failed"
  fi
  python3 -c "print(f'{$rps:.0f} {($after-$before)/$HZ*1e6/max($ok,1):.1f} {$resumed/max($ok,1):.2f} $p99 {($after-$before)/$HZ/($t1-$t0):.2f} $client_core')"
}

echo "TLS 1.3 handshake-redirect benchmark: ${DUR}s per run, servers on core 0, client on core 1"
echo "one connection, one handshake (ECDSA P-256, $PARAMS) and one GET per redirect"
printf '%-10s %10s %10s %12s %12s %7s %7s %9s %9s\n' mode floe_rps nginx_rps floe_us/hs nginx_us/hs rps_x cpu_x floe_res nginx_res
# line MODE CONNS [client args]: floe then nginx, one line of results.
line() {
  local mode=$1 conns=$2; shift 2
  read -r f_rps f_us f_res f_p99 f_core f_client < <(run "$FLOE_PID" "$P_FLOE" "$conns" "$@")
  read -r n_rps n_us n_res n_p99 n_core n_client < <(run "$NGINX_PID" "$P_NGINX" "$conns" "$@")
  python3 -c "print(f'{\"$mode\":<10} {$f_rps:>10.0f} {$n_rps:>10.0f} {$f_us:>12.1f} {$n_us:>12.1f} {$f_rps/$n_rps:>7.2f} {$f_us/$n_us:>7.2f} {$f_res:>9.2f} {$n_res:>9.2f}')"
  LAST_F=$f_rps LAST_N=$n_rps
  echo "           core 0 busy: floe $f_core, nginx $n_core; client's core: $f_client, $n_client"
  [ "$mode" = paced ] && echo "           p99 of a whole connection at that rate: floe ${f_p99} us, nginx ${n_p99} us"
  return 0
}
line full 32
[ -n "$PACED" ] || PACED=$(python3 -c "print(round(min($LAST_F, $LAST_N) * 0.6))")
echo "paced: $PACED handshakes/s for both"
line paced 256 --rate "$PACED"
line resumed 32 --resume
echo "rps_x = floe/nginx rate; cpu_x = floe/nginx server CPU per handshake-redirect (target <= 1)"
echo "floe_res/nginx_res = share of handshakes resumed (full and paced: 0 by design)"
echo "a saturation rate is the server's only when its core 0 is ~1.00 busy (other load on"
echo "the machine takes from both cores); the CPU per handshake stands either way"
[ ! -e "$WORK/failed" ] || { echo "FAILED: a run had errors (see above)" >&2; exit 1; }
