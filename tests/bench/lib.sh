# Sourced by the benchmark scripts (from the repository root): a work
# directory, $WORK, and the processes the script starts, $pids, all stopped
# on exit (SIGTERM, up to 3 s to go, then SIGKILL) and the directory removed;
# free_ports N prints N free loopback TCP ports.
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 30); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# free_ports N: N distinct free TCP ports on 127.0.0.1, on one line (bound
# together so none repeats; free again once printed).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
}
