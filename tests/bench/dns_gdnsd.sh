#!/usr/bin/env bash
# DNS throughput: floe's balanced name (live.stream.example.org, answered
# from relay state) against gdnsd serving the same name as a static record,
# both pinned to core 0 with one UDP worker, dnsperf on core 1. Alternating
# rounds of: saturated (queries/s) and fixed rate (server CPU microseconds
# per query, from /proc/PID/stat). Prints every run and the median ratios.
#
# With ECS=on, floe has listener pools (the balanced name answers a venue
# network differently), every query carries EDNS, and each round also runs
# both servers with an EDNS Client Subnet option in every query (a subnet
# inside the venue's network): the ECS ratio is floe with ECS over floe
# without (issue #13: within 10 %).
#
# Usage: [RRL=on|off] [ECS=on|off] tests/bench/dns_gdnsd.sh [seconds per run=10] [fixed rate=40000] [rounds=4]
# Needs: dnsperf, gdnsd, dig, taskset, python3 (tests/run --install-only).
set -euo pipefail
cd "$(dirname "$0")/../.."
for t in dnsperf gdnsd dig taskset python3; do
  command -v "$t" >/dev/null || { echo "missing $t: run tests/run --install-only" >&2; exit 1; }
done
DUR=${1:-10}
RATE=${2:-40000}
# Response-rate limiting: RRL=on (default) limits dnsperf's address like any
# other (no loopback exemption) at a rate it never reaches, so every query
# pays the check; RRL=off turns it off. Compare the two for RRL's cost.
case "${RRL:-on}" in
  on) RRL='rrl_responses_per_second = 100000000
rrl_exempt = []' ;;
  off) RRL='rrl_responses_per_second = 0' ;;
  *) echo "RRL=on or RRL=off" >&2; exit 1 ;;
esac
case "${ECS:-off}" in
  on) POOLS='[[group]]
name = "venue"
relays = ["relay-1"]
[[pool]]
name = "hall"
networks = ["10.1.0.0/16"]
order = ["venue", "*"]'
      # EDNS without options; EDNS with ECS 10.1.2.0/24 (family 1, source
      # 24, scope 0, three address bytes).
      PLAIN="-e" ; WITH_ECS="-E 8:000118000a0102" ;;
  off) POOLS='' ; PLAIN='' ; WITH_ECS='' ;;
  *) echo "ECS=on or ECS=off" >&2; exit 1 ;;
esac
cargo build --release --quiet
FLOE=$PWD/target/release/floe
source tests/bench/lib.sh
read -r P_STATUS P_FLOE P_DNS P_GDNSD < <(free_ports 4)
# fake relay: python http server serving floe-slots
mkdir -p "$WORK/www"
printf '#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n/live.ogg\t0\t1000\t1000\nEND\t1\n' > "$WORK/www/floe-slots.xsl"
(cd "$WORK/www" && exec taskset -c 1 python3 -m http.server "$P_STATUS" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
mkdir -p "$WORK/zones"
cp zones/*.zone "$WORK/zones/"
cat > "$WORK/floe.toml" <<TOML
[dns]
listen = ["127.0.0.1:$P_DNS"]
zones = "zones"
udp_workers = 1
$RRL
[http]
listen = ["127.0.0.1:$P_FLOE"]
workers = 1
[poll]
interval = "1s"
[[relay]]
name = "relay-1"
url = "http://127.0.0.1:$P_STATUS"
addresses = ["192.0.2.11"]
status = { kind = "xslt" }
[[relay]]
name = "relay-2"
url = "http://127.0.0.1:$P_STATUS"
addresses = ["192.0.2.12"]
status = { kind = "xslt" }
[[stream]]
name = "live"
mounts = ["/live.ogg"]
dns = ["live.stream.example.org."]
$POOLS
TOML
RUST_LOG=warn taskset -c 0 "$FLOE" serve --config "$WORK/floe.toml" &
pids+=($!)
FLOE_PID=$!
# gdnsd: same zone, the balanced name as a static record.
mkdir -p "$WORK/gdnsd/zones"
sed -n '/^\$ORIGIN/,$p' zones/stream.example.org.zone > "$WORK/gdnsd/zones/stream.example.org"
printf 'live 20 IN A 192.0.2.11\nlive 20 IN A 192.0.2.12\n' >> "$WORK/gdnsd/zones/stream.example.org"
cat > "$WORK/gdnsd/config" <<CFG
options => {
  listen => [ 127.0.0.1:$P_GDNSD ]
  udp_threads => 1
  tcp_threads => 1
}
CFG
taskset -c 0 gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 &
pids+=($!)
GDNSD_PID=$!
for _ in $(seq 100); do
  dig @127.0.0.1 -p "$P_DNS" live.stream.example.org A +short +time=1 | grep -q 192.0.2 &&
  dig @127.0.0.1 -p "$P_DNS" live.stream.example.org TXT +short +time=1 | grep -q candidates &&
  dig @127.0.0.1 -p "$P_GDNSD" live.stream.example.org A +short +time=1 | grep -q 192.0.2 && break
  sleep 0.1
done
dig @127.0.0.1 -p "$P_DNS" live.stream.example.org A +norec | grep -E "flags|IN\s+A"
dig @127.0.0.1 -p "$P_GDNSD" live.stream.example.org A +norec | grep -E "flags|IN\s+A"
if [ -n "$WITH_ECS" ]; then
  dig @127.0.0.1 -p "$P_DNS" live.stream.example.org A +norec +subnet=10.1.2.0/24 | grep -E "CLIENT-SUBNET|IN\s+A"
  dig @127.0.0.1 -p "$P_GDNSD" live.stream.example.org A +norec +subnet=10.1.2.0/24 | grep -E "CLIENT-SUBNET|IN\s+A"
fi
echo "live.stream.example.org A" > "$WORK/q.txt"
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
run() { # name pid port mode [dnsperf options]
  local name=$1 pid=$2 port=$3 mode=$4 extra=${5:-} args
  if [ "$mode" = max ]; then args="-c 8 -q 500"; else args="-c 4 -q 200 -Q $RATE"; fi
  args="$args $extra"
  local c0 c1 out
  c0=$(cpu "$pid")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/q.txt" -l "$DUR" $args 2>&1)
  c1=$(cpu "$pid")
  local qps done_q
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
  local lost; lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  # Every answer must be NOERROR: a malformed query would measure errors.
  local codes; codes=$(echo "$out" | awk '/Response codes/ {$1=$2=""; print}')
  case "$codes" in
    *NOERROR*100.00%*) ;;
    *) echo "$name $mode: response codes$codes, not all NOERROR" >&2; exit 1 ;;
  esac
  python3 -c "print(f'$name $mode: qps={float($qps):.0f} completed=$done_q lost=$lost cpu_us_per_q={($c1-$c0)/$tck*1e6/max(1,$done_q):.2f}')" | tee -a "$WORK/results"
}
ROUNDS=${3:-4}
for round in $(seq "$ROUNDS"); do
  run floe $FLOE_PID $P_DNS max "$PLAIN"
  run gdnsd $GDNSD_PID $P_GDNSD max "$PLAIN"
  run gdnsd $GDNSD_PID $P_GDNSD rate "$PLAIN"
  run floe $FLOE_PID $P_DNS rate "$PLAIN"
  if [ -n "$WITH_ECS" ]; then
    run floe_ecs $FLOE_PID $P_DNS max "$WITH_ECS"
    run gdnsd_ecs $GDNSD_PID $P_GDNSD max "$WITH_ECS"
    run gdnsd_ecs $GDNSD_PID $P_GDNSD rate "$WITH_ECS"
    run floe_ecs $FLOE_PID $P_DNS rate "$WITH_ECS"
  fi
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (\w+): qps=(\d+) .* cpu_us_per_q=([\d.]+)", line)
    if m:
        runs.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[4])))
med = lambda k, i: statistics.median(r[i] for r in runs[k])
print(f"median floe/gdnsd: qps (saturated) {med(('floe','max'),0)/med(('gdnsd','max'),0):.2f}x, "
      f"CPU per query saturated {med(('floe','max'),1)/med(('gdnsd','max'),1):.2f}x, "
      f"at a fixed rate {med(('floe','rate'),1)/med(('gdnsd','rate'),1):.2f}x "
      "(targets: qps >= 1, CPU <= 1)")
if ("floe_ecs", "rate") in runs:
    print(f"median floe with ECS / floe without: CPU per query saturated "
          f"{med(('floe_ecs','max'),1)/med(('floe','max'),1):.2f}x, at a fixed rate "
          f"{med(('floe_ecs','rate'),1)/med(('floe','rate'),1):.2f}x (target <= 1.10); "
          f"floe/gdnsd with ECS: qps {med(('floe_ecs','max'),0)/med(('gdnsd_ecs','max'),0):.2f}x, "
          f"CPU at a fixed rate {med(('floe_ecs','rate'),1)/med(('gdnsd_ecs','rate'),1):.2f}x")
PY
