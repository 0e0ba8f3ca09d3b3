#!/usr/bin/env bash
# What the HTTP endpoint costs the pipeline: W2-style folder throughput of `segd watch`
# (decode, inference, RLE JSON, annotated JPEG per image) with service.http_listen off
# against on with a scraper fetching /metrics every 100 ms, in one run, rounds alternating
# off/on/on/off so that drift on a shared machine falls on both alike.
#
#   tools/bench/http_overhead.sh        (ROUNDS=4 COPIES=2 SEGD=.build/release/segd WORKLOAD=w2|samples)
#
# Weights and images: W2's (.bench/r50_seed0.safetensors, .bench/img/*.jpg; see
# ../shared/bench/WORKLOAD.md), else the sample model and samples/*.jpg. Each round drops
# COPIES × the images into a fresh inbox at once (renamed in from a staging folder on the
# same file system) and times until the log has them all done; every copy gets a distinct
# trailing byte after the JPEG's end, so none is skipped as a duplicate. The scraper is one
# Python process on a kept-alive connection (the cost of a real Prometheus, which runs
# elsewhere, is one request; not a process start every 100 ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEGD=${SEGD:-.build/release/segd}
ROUNDS=${ROUNDS:-4}
COPIES=${COPIES:-2}
INTERVAL=${INTERVAL:-0.1}
if [ "${WORKLOAD:-w2}" = w2 ] && [ -f .bench/r50_seed0.safetensors ] && ls .bench/img/*.jpg >/dev/null 2>&1; then
  WEIGHTS=.bench/r50_seed0.safetensors; IMAGES=(.bench/img/*.jpg); SCORE=0.0; WHICH="W2 (R50 seed 0, score 0)"
else
  WEIGHTS=samples/model/shapes_r18.safetensors; IMAGES=(samples/shapes_0*.jpg); SCORE=null; WHICH="sample model and samples/*.jpg"
fi
[ -x "$SEGD" ] || { echo "no $SEGD (swift build -c release)"; exit 2; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
T=$(mktemp -d /tmp/segd-http-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
N=$(( ${#IMAGES[@]} * COPIES ))
echo "segd http overhead: $WHICH, $N images a round, $ROUNDS rounds each, scraper every ${INTERVAL}s"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

cat > "$T/scrape.py" <<'EOF'
import http.client, socket, sys, time
class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
path, interval, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
n, errors, worst, conn = 0, 0, 0.0, None
try:
    while True:
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = UnixConnection(path)
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            body = r.read()
            n += 1
            worst = max(worst, time.monotonic() - t0)
            if r.status != 200 or b"segd_inference_count" not in body:
                errors += 1
        except OSError:
            errors += 1
            conn = None
        open(out, "w").write(f"{n} {errors} {worst * 1000:.1f}\n")
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
except KeyboardInterrupt:
    pass
EOF

# One round: $1 = off | on. Prints images per second.
round() {
  local mode=$1 r=$T/$1-$2
  mkdir -p "$r/in" "$r/staging"
  local listen="[]"
  [ "$mode" = on ] && listen="[\"unix:$r/segd.sock\"]"
  cat > "$r/pipeline.yml" <<EOF
model:
  weights: $PWD/$WEIGHTS
  score_threshold: $SCORE
inputs:
  directories: [$r/in]
outputs:
  directory: $r/out
after:
  success: keep
  failure: keep
  failed_directory: $r/failed
state_directory: $r/state
log_level: info
service:
  http_listen: $listen
EOF
  local i=0
  for c in $(seq 1 "$COPIES"); do
    for f in "${IMAGES[@]}"; do
      i=$((i + 1))
      { cat "$f"; printf '%04d' "$i"; } > "$r/staging/$(printf 'i%03d' $i).jpg"
    done
  done
  "$SEGD" watch --config "$r/pipeline.yml" > "$r/log" 2>&1 &
  local pid=$!
  until grep -qE '^[^ ]+ +info +ready ' "$r/log" 2>/dev/null; do sleep 0.05; kill -0 $pid || { cat "$r/log"; exit 1; }; done
  local spid=
  if [ "$mode" = on ]; then
    python3 "$T/scrape.py" "$r/segd.sock" "$INTERVAL" "$r/scrapes" &
    spid=$!
    sleep 0.5
  fi
  local t0 t1
  t0=$(date +%s.%N)
  for f in "$r"/staging/*.jpg; do mv "$f" "$r/in/"; done
  until [ "$(grep -cE '^[^ ]+ +info +done ' "$r/log" || true)" -ge "$N" ]; do sleep 0.05; kill -0 $pid || { cat "$r/log"; exit 1; }; done
  t1=$(date +%s.%N)
  if [ -n "$spid" ]; then kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; fi
  # segd's own CPU time (user + system, all threads) per image: what answering the scrapes
  # costs shows here even when the wall-clock figure is noisy.
  local cpu; cpu=$(awk -v tck="$(getconf CLK_TCK)" -v n="$N" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / tck / n }' "/proc/$pid/stat")
  kill -TERM $pid; wait $pid || true
  local failed; failed=$(grep -cE '^[^ ]+ +warning +failed ' "$r/log" || true)
  [ "$failed" = 0 ] || { echo "round $mode $2: $failed failed"; grep -E ' failed ' "$r/log" | head -3; exit 1; }
  local ips; ips=$(python3 -c "import sys; print(f'{$N / ($t1 - $t0):.4f}')")
  local extra=""
  [ -f "$r/scrapes" ] && extra=" (scrapes, errors, slowest ms: $(cat "$r/scrapes"))"
  echo "round $2 $mode: $ips images/s, segd CPU $cpu s/image$extra" >&2
  echo "$ips $cpu"
}

offs=(); ons=()
for k in $(seq 1 "$ROUNDS"); do
  # off, on, on, off, off, on, ...: neither mode always goes first.
  if [ $((k % 2)) = 1 ]; then
    offs+=("$(round off "$k")"); ons+=("$(round on "$k")")
  else
    ons+=("$(round on "$k")"); offs+=("$(round off "$k")")
  fi
done
python3 - "${offs[*]}" "${ons[*]}" <<'EOF'
import statistics, sys
def split(s):
    v = [float(x) for x in s.split()]
    return v[0::2], v[1::2]
off, offcpu = split(sys.argv[1])
on, oncpu = split(sys.argv[2])
mo, mn = statistics.median(off), statistics.median(on)
co, cn = statistics.median(offcpu), statistics.median(oncpu)
print(f"off: median {mo:.3f} images/s  ({', '.join(f'{x:.3f}' for x in off)}); segd CPU {co:.3f} s/image")
print(f"on + /metrics every 100 ms: median {mn:.3f} images/s  ({', '.join(f'{x:.3f}' for x in on)}); segd CPU {cn:.3f} s/image")
print(f"on/off throughput: {mn / mo:.4f}  ({(mn / mo - 1) * 100:+.2f} %; target: within 2 %); CPU per image on/off: {cn / co:.4f}")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
