#!/usr/bin/env bash
# Poller scale: floe watching 1,000 relays x 20 mounts polled every 2 s
# (targets, issue #12: under 5 % of one core and a poll's result in the
# snapshot within 100 ms; 5,000 x 20 under 10 % of a core and 150 MiB).
#
# One python3 asyncio process plays the relays: 1,000 listening ports on
# 127.0.0.1, each answering GET /floe-slots.xsl with a fixed pre-rendered
# floe-slots body (10 streams x /sN.ogg + /sN.mp3 = 20 mounts, listener
# counts differing per relay), HTTP/1.1 keep-alive. floe runs with its
# defaults except loopback ports and `[poll] interval = "2s"`; each stream
# has a balanced DNS name. After /healthz says the first poll round is done
# and a settle period, the script measures over a window: floe's CPU
# (utime+stime from /proc/PID/stat, percent of one core), VmRSS sampled every
# second and VmHWM (/proc/PID/status), the polls the relays answered (the
# relay process counts them: no /metrics scrape inside the window, whose
# 20,000 mount series would cost floe CPU and memory of their own) and the
# snapshot generation rate (x-floe-generation header of a cheap 404). One
# /metrics scrape after the window cross-checks the poll count, poll errors
# and relay states, and its own cost is printed. Per-thread CPU shows which
# part of floe spends it.
#
# Usage: tests/bench/poll_scale.sh [window seconds=30]
# Env: RELAYS=1000 STREAMS=10 (2 mounts each) INTERVAL=2 SETTLE=10 (seconds)
#      DNS_NAMES=1 (0: streams without balanced DNS names)
#      RELAY_V6=0 (1: each relay also gets an IPv6 address, ::ffff:127.1.x.y;
#      all addresses are DNS data only, never contacted)
#      FLOE_NO_BUILD=1 uses target/release/floe as it is (no cargo build).
#      FLOE_BIN=PATH runs that binary instead (no cargo build; for comparing
#      two builds, alternating).
#      FLOE_WRAPPER="heaptrack -o FILE" runs floe under a profiler (the
#      figures are then the profiled floe's: for finding where memory goes).
# Needs: python3, curl (tests/run --install-only installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-30}
RELAYS=${RELAYS:-1000}
STREAMS=${STREAMS:-10}
INTERVAL=${INTERVAL:-2}
SETTLE=${SETTLE:-10}
DNS_NAMES=${DNS_NAMES:-1}
RELAY_V6=${RELAY_V6:-0}
for t in python3 curl getconf; do
  command -v "$t" >/dev/null || { echo "missing $t: run tests/run --install-only" >&2; exit 1; }
done
if [ -n "${FLOE_BIN:-}" ]; then
  FLOE=$(realpath "$FLOE_BIN")
else
  [ "${FLOE_NO_BUILD:-}" = 1 ] || cargo build --release --quiet
  FLOE=$PWD/target/release/floe
fi
[ -x "$FLOE" ] || { echo "no $FLOE: build it (cargo build --release)" >&2; exit 1; }

# The relay process holds 1,000 listeners + 1,000 connections, floe 1,000
# connections: raise the soft fd limit (inherited by both).
need=$((RELAYS * 2 + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
  { echo "fd limit $(ulimit -n) < $need (hard limit $(ulimit -Hn))" >&2; exit 1; }

source tests/bench/lib.sh

# ---- The fake relays: one asyncio process, RELAYS ports on 127.0.0.1. ----
# It binds every port itself (port 0), writes "control_port port1 port2 ..."
# to $WORK/ports once all listen, and answers GET / on the control port with
# "requests connections open bad".
cat > "$WORK/relays.py" <<'PY'
import asyncio, os, socket, sys
relays, streams, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
st = {"requests": 0, "connections": 0, "open": 0, "bad": 0}

def response(i):
    lines = ["#floe-slots 1", "#mount\tlisteners\tmax_listeners\tfree"]
    for s in range(streams):
        for j, ext in enumerate(("ogg", "mp3")):
            cur = (i * 7 + s * 3 + j) % 40
            lines.append(f"/s{s}.{ext}\t{cur}\t100\t{100 - cur}")
    lines.append(f"END\t{2 * streams}")
    body = ("\n".join(lines) + "\n").encode()
    head = ("HTTP/1.1 200 OK\r\nServer: Icecast 2.4.4\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-cache\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

class Relay(asyncio.Protocol):
    def __init__(self, resp):
        self.resp, self.buf = resp, b""
    def connection_made(self, t):
        self.t = t
        st["connections"] += 1
        st["open"] += 1
    def connection_lost(self, exc):
        st["open"] -= 1
    def data_received(self, data):
        self.buf += data
        while True:
            k = self.buf.find(b"\r\n\r\n")
            if k < 0:
                break
            head, self.buf = self.buf[:k], self.buf[k + 4:]
            st["requests"] += 1
            if head.startswith(b"GET /floe-slots.xsl "):
                self.t.write(self.resp)
            else:
                st["bad"] += 1
                self.t.write(NOT_FOUND)
        if len(self.buf) > 65536:
            self.t.close()

class Control(asyncio.Protocol):
    def connection_made(self, t):
        body = f"{st['requests']} {st['connections']} {st['open']} {st['bad']}\n".encode()
        t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        t.close()

def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    return s

async def main():
    loop = asyncio.get_running_loop()
    ports = []
    ctl = listen()
    await loop.create_server(Control, sock=ctl)
    for i in range(relays):
        s = listen()
        resp = response(i)
        await loop.create_server(lambda r=resp: Relay(r), sock=s)
        ports.append(s.getsockname()[1])
    with open(out + ".tmp", "w") as f:
        f.write(" ".join(map(str, [ctl.getsockname()[1]] + ports)) + "\n")
    os.rename(out + ".tmp", out)
    await asyncio.Event().wait()

asyncio.run(main())
PY
python3 "$WORK/relays.py" "$RELAYS" "$STREAMS" "$WORK/ports" 2>"$WORK/relays.log" &
pids+=($!)
RELAYS_PID=$!
for _ in $(seq 200); do
  [ -s "$WORK/ports" ] && break
  kill -0 "$RELAYS_PID" 2>/dev/null || { cat "$WORK/relays.log" >&2; echo "fake relays failed to start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$WORK/ports" ] || { echo "fake relays did not start in 20 s" >&2; exit 1; }
read -r P_CTL RELAY_PORTS < "$WORK/ports"
read -ra RELAY_PORTS <<<"$RELAY_PORTS"
[ "${#RELAY_PORTS[@]}" = "$RELAYS" ] || { echo "expected $RELAYS relay ports, got ${#RELAY_PORTS[@]}" >&2; exit 1; }
sample=$(curl -s "http://127.0.0.1:${RELAY_PORTS[0]}/floe-slots.xsl")
[ "$(head -1 <<<"$sample")" = "#floe-slots 1" ] || { echo "fake relay answers badly: $sample" >&2; exit 1; }

# ---- floe's config: RELAYS relays, STREAMS streams of 2 mounts. ----
# floe's ports are picked once the relays hold theirs.
read -r P_HTTP P_DNS < <(free_ports 2)

mkdir -p "$WORK/zones"
cat > "$WORK/zones/stream.example.org.zone" <<'ZONE'
$ORIGIN stream.example.org.
$TTL 300
@ 60 IN SOA ns1.stream.example.org. hostmaster.example.org. ( 1 3600 600 1209600 60 )
@ IN NS ns1.stream.example.org.
ns1 IN A 127.0.0.53
ZONE
{
  cat <<TOML
[dns]
listen = ["127.0.0.1:$P_DNS"]
zones = "zones"
[http]
listen = ["127.0.0.1:$P_HTTP"]
[poll]
interval = "${INTERVAL}s"
TOML
  for ((s = 0; s < STREAMS; s++)); do
    printf '[[stream]]\nname = "s%d"\nmounts = ["/s%d.ogg", "/s%d.mp3"]\n' "$s" "$s" "$s"
    if [ "$DNS_NAMES" = 1 ]; then printf 'dns = ["s%d.stream.example.org."]\n' "$s"; fi
  done
  for ((i = 0; i < RELAYS; i++)); do
    # DNS data only (never contacted): loopback addresses, unique per relay.
    a="127.1.$((i / 250)).$((i % 250 + 1))"
    if [ "$RELAY_V6" = 1 ]; then a="$a\", \"::ffff:$a"; fi
    printf '[[relay]]\nname = "relay-%04d"\nurl = "http://127.0.0.1:%d"\naddresses = ["%s"]\nstatus = { kind = "xslt" }\n' \
      "$i" "${RELAY_PORTS[$i]}" "$a"
  done
} > "$WORK/floe.toml"
"$FLOE" check --config "$WORK/floe.toml" >"$WORK/check.log" 2>&1 ||
  { cat "$WORK/check.log" >&2; echo "floe check failed" >&2; exit 1; }

# FLOE_WRAPPER (e.g. "heaptrack -o /tmp/floe.ht") runs floe under a profiler;
# the figures are then floe's under it, for finding where memory goes only.
# shellcheck disable=SC2086
RUST_LOG=warn ${FLOE_WRAPPER:-} "$FLOE" serve --config "$WORK/floe.toml" >"$WORK/floe.log" 2>&1 &
pids+=($!)
FLOE_PID=$!
if [ -n "${FLOE_WRAPPER:-}" ]; then
  # The wrapper's floe child: the process whose executable is $FLOE.
  for _ in $(seq 100); do
    for p in $(pgrep -f "serve --config $WORK/floe.toml" || true); do
      [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$FLOE" ] && FLOE_PID=$p
    done
    [ "$FLOE_PID" != "${pids[-1]}" ] && break
    sleep 0.1
  done
  pids+=("$FLOE_PID")
fi
BASE="http://127.0.0.1:$P_HTTP"

now() { date +%s.%N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
relay_stats() { curl -s --max-time 5 "http://127.0.0.1:$P_CTL/"; } # requests connections open bad
generation() {
  curl -s --max-time 5 -D - -o /dev/null "$BASE/explain/__poll_scale_none__" |
    awk 'tolower($1) == "x-floe-generation:" {print $2 + 0}'
}
# Per-thread CPU ticks, grouped by thread name: "name<TAB>ticks<TAB>threads".
threads() {
  python3 - "$1" <<'PY'
import os, sys, collections
pid = sys.argv[1]
acc = collections.defaultdict(lambda: [0, 0])
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        raw = open(f"/proc/{pid}/task/{tid}/stat").read()
    except OSError:
        continue
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()
    acc[name][0] += int(f[11]) + int(f[12])
    acc[name][1] += 1
for name, (ticks, n) in sorted(acc.items()):
    print(f"{name}\t{ticks}\t{n}")
PY
}
HZ=$(getconf CLK_TCK)

# ---- Wait for the first poll round (/healthz 200), then settle. ----
t_start=$(now)
healthy=0
for _ in $(seq 600); do
  kill -0 "$FLOE_PID" 2>/dev/null || { cat "$WORK/floe.log" >&2; echo "floe exited" >&2; exit 1; }
  if [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200 ]; then healthy=1; break; fi
  sleep 0.1
done
[ "$healthy" = 1 ] || { tail -20 "$WORK/floe.log" >&2; echo "floe not healthy after 60 s (first poll round not done)" >&2; exit 1; }
t_healthy=$(python3 -c "print(f'{$(now) - $t_start:.2f}')")
echo "floe healthy ${t_healthy}s after start ($RELAYS relays x $((STREAMS * 2)) mounts, interval ${INTERVAL}s); settling ${SETTLE}s, then measuring ${DUR}s"
sleep "$SETTLE"

# ---- The window: no /metrics scrape inside it. ----
read -r r0 _ _ _ < <(relay_stats)
g0=$(generation)
threads "$FLOE_PID" > "$WORK/threads0"
relay_c0=$(cpu_ticks "$RELAYS_PID")
c0=$(cpu_ticks "$FLOE_PID")
t0=$(now)
rss_max=0
rss_sum=0
rss_n=0
end=$(python3 -c "print($t0 + $DUR)")
while python3 -c "import sys, time; sys.exit(0 if time.time() < $end else 1)"; do
  sleep 1
  kill -0 "$FLOE_PID" 2>/dev/null || { cat "$WORK/floe.log" >&2; echo "floe exited during the window" >&2; exit 1; }
  rss=$(status_kib "$FLOE_PID" VmRSS)
  rss_sum=$((rss_sum + rss)); rss_n=$((rss_n + 1))
  if [ "$rss" -gt "$rss_max" ]; then rss_max=$rss; fi
done
c1=$(cpu_ticks "$FLOE_PID")
t1=$(now)
relay_c1=$(cpu_ticks "$RELAYS_PID")
threads "$FLOE_PID" > "$WORK/threads1"
g1=$(generation)
read -r r1 conns open bad < <(relay_stats)
rss_end=$(status_kib "$FLOE_PID" VmRSS)
hwm=$(status_kib "$FLOE_PID" VmHWM)
nthreads=$(awk '$1 == "Threads:" {print $2}' "/proc/$FLOE_PID/status")
nfds=$(ls "/proc/$FLOE_PID/fd" | wc -l)

# ---- After the window: one /metrics scrape (cross-check, and its cost). ----
mc0=$(cpu_ticks "$FLOE_PID")
mt0=$(now)
curl -s --max-time 30 -o "$WORK/metrics" "$BASE/metrics"
mt1=$(now)
mc1=$(cpu_ticks "$FLOE_PID")
hwm_after=$(status_kib "$FLOE_PID" VmHWM)
read -r m_polls m_errors m_up m_relays < <(awk '
  /^floe_poll_duration_seconds_count[{ ]/ {polls += $NF}
  /^floe_poll_errors_total[{ ]/ {errors += $NF}
  /^floe_relay_state[{]/ && /state="up"/ {up += $NF}
  /^floe_relay_state[{]/ && /state="up"/ {n++}
  END {printf "%d %d %d %d\n", polls, errors, up, n}' "$WORK/metrics")
read -r r_total _ _ _ < <(relay_stats)

python3 - <<PY
relays, mounts, dur = $RELAYS, $((STREAMS * 2)), $t1 - $t0
expected = relays / $INTERVAL
polls = $r1 - $r0
pps = polls / dur
cpu = ($c1 - $c0) / $HZ / dur * 100
relay_cpu = ($relay_c1 - $relay_c0) / $HZ / dur * 100
rss, rss_max, rss_avg, hwm = $rss_end / 1024, $rss_max / 1024, $rss_sum / max(1, $rss_n) / 1024, $hwm / 1024
gens = ($g1 - $g0) / dur
mark = lambda ok: "PASS" if ok else "MISS"
# Targets of issue #12: 1,000 x 20 under 5 % and 100 MiB; 5,000 x 20 under 10 % and 150 MiB.
cpu_t, mem_t = (5, 100) if relays <= 1000 else (10, 150)
print()
print("poll scale benchmark ($("$FLOE" --version 2>/dev/null | head -1 || echo '?'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))")
print(f"  relays                      {relays}")
print(f"  mounts per relay            {mounts} ({relays * mounts} relay x mount cells), {$STREAMS} streams, balanced DNS names: {'yes' if $DNS_NAMES else 'no'}, relay addresses: {'IPv4 + IPv6' if $RELAY_V6 else 'IPv4 only'}")
print(f"  window                      {dur:.1f} s (after healthy in ${t_healthy} s + ${SETTLE} s settle)")
print(f"  polls answered              {polls} = {pps:.1f}/s (expected {expected:.0f}/s; {pps / expected:.2f}x)")
print(f"  relay connections           {$conns} accepted in total, {$open} open (keep-alive: ~{relays} expected), {$bad} bad requests")
print(f"  snapshot generations        {$g1 - $g0} = {gens:.1f}/s (builds spaced 20 ms or 60x their cost, whichever is longer)")
print(f"  poll -> snapshot            within ~{1000 / max(gens, 0.001):.0f} ms (one build spacing)   target < 100 ms at 1,000 relays")
print(f"  floe CPU                    {cpu:.2f} % of one core   target < {cpu_t} %     {cpu / cpu_t:.2f}x  {mark(cpu < cpu_t)}")
print(f"  floe RSS (end / avg / max)  {rss:.1f} / {rss_avg:.1f} / {rss_max:.1f} MiB   target < {mem_t} MiB   {rss_max / mem_t:.2f}x  {mark(rss_max < mem_t)}")
print(f"  floe peak RSS (VmHWM)       {hwm:.1f} MiB   target < {mem_t} MiB   {hwm / mem_t:.2f}x  {mark(hwm < mem_t)}")
print(f"  floe threads / open fds     $nthreads / $nfds")
print(f"  fake relays' CPU            {relay_cpu:.1f} % of one core (python3, not floe)")
print()
print("after the window, one /metrics scrape (not part of the numbers above):")
print(f"  size {$(stat -c %s "$WORK/metrics") / 1048576:.1f} MiB, {($mt1 - $mt0) * 1000:.0f} ms, floe CPU {($mc1 - $mc0) / $HZ * 1000:.0f} ms, VmHWM after {$hwm_after / 1024:.1f} MiB")
print(f"  polls counted by floe {$m_polls} (relays answered {$r_total}), poll errors {$m_errors}, relays up {$m_up} of {$m_relays}")
print()
print("floe CPU by thread during the window (% of one core; 'floe' is the main thread's runtime:")
print("relay pollers, snapshot builds, /metrics; 'floe-dns-plan' draws the DNS answer plans):")
t0 = {l.split("\t")[0]: (int(l.split("\t")[1]), int(l.split("\t")[2])) for l in open("$WORK/threads0")}
rows = []
for l in open("$WORK/threads1"):
    name, ticks, n = l.rstrip("\n").split("\t")
    rows.append(((int(ticks) - t0.get(name, (0, 0))[0]) / $HZ / dur * 100, name, n))
for pct, name, n in sorted(rows, reverse=True):
    print(f"  {name:<20} x{n:<3} {pct:6.2f} %")
PY

# Setup failures (not missed targets) exit non-zero.
fail=0
python3 -c "import sys; sys.exit(0 if ($r1 - $r0) / ($t1 - $t0) >= 0.8 * $RELAYS / $INTERVAL else 1)" 2>/dev/null ||
  { echo "FAIL: far fewer polls than $RELAYS per ${INTERVAL}s" >&2; fail=1; }
[ "$m_errors" = 0 ] || { echo "FAIL: $m_errors failed polls" >&2; fail=1; }
[ "$m_up" = "$RELAYS" ] || { echo "FAIL: only $m_up of $RELAYS relays up" >&2; fail=1; }
[ "$bad" = 0 ] || { echo "FAIL: $bad requests for another path than /floe-slots.xsl" >&2; fail=1; }
if [ -s "$WORK/floe.log" ]; then echo "floe log (warnings):"; tail -5 "$WORK/floe.log"; fi
exit "$fail"
