#!/bin/bash
# Load and soak for `segd watch` (issue 7). Not part of `make test`; run by hand.
#
#   tools/hostile/soak.sh burst  [N]                 N files (default 10000) moved in at once
#   tools/hostile/soak.sh steady RATE SECONDS        RATE files/s for SECONDS (e.g. 5 3600)
#
# Environment: SEGD (binary; default .build/release/segd, else .build/debug/segd),
# WEIGHTS (default the tiny test model), MIN_SIZE/MAX_SIZE (model input size; default
# 32/48 so that the pipeline, not the network, is what is measured), WORK (workspace;
# default a new /tmp/segd-soak.XXXX, kept), TIMEOUT_S (wait for the backlog, default 3600),
# SAMPLE_S (seconds between samples, default 5).
#
# Every file is the same small JPEG with a unique tail after its EOI marker: decoders
# ignore it, the journal's content hash does not, so each file is a new job.
# Prints a sample line every SAMPLE_S (elapsed, moved in, done, failed, RSS, open fds,
# threads) and a summary: lost (moved in, in neither done/ nor failed/), duplicated
# (an input moved twice, or more result JSONs than inputs), RSS and fd first/last/max.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-burst}
SEGD=${SEGD:-$( [ -x .build/release/segd ] && echo .build/release/segd || echo .build/debug/segd )}
WEIGHTS=${WEIGHTS:-Tests/MaskRCNNTests/Fixtures/tiny/weights.safetensors}
MIN_SIZE=${MIN_SIZE:-32}; MAX_SIZE=${MAX_SIZE:-48}
TIMEOUT_S=${TIMEOUT_S:-3600}; SAMPLE_S=${SAMPLE_S:-5}
WORK=${WORK:-$(mktemp -d /tmp/segd-soak.XXXX)}
SEED=Tests/ImagingTests/Fixtures/baseline.jpg
[ -x "$SEGD" ] || { echo "no segd binary at $SEGD (swift build first)" >&2; exit 2; }
case $mode in
  burst) N=${2:-10000}; RATE=0; DURATION=0 ;;
  steady) RATE=${2:?rate files/s}; DURATION=${3:?seconds}; N=$((RATE * DURATION)) ;;
  *) echo "usage: $0 burst [N] | steady RATE SECONDS" >&2; exit 2 ;;
esac
# A fresh workspace only: leftovers (a previous daemon still draining into done/) would
# be counted as duplicates.
[ -z "$(ls -A "$WORK" 2>/dev/null)" ] || { echo "$WORK is not empty; use a new WORK" >&2; exit 2; }
mkdir -p "$WORK"/{in,staging,out,done,failed,state}
cat > "$WORK/pipeline.yml" <<YML
model:
  weights: $(realpath "$WEIGHTS")
  min_size: $MIN_SIZE
  max_size: $MAX_SIZE
inputs:
  directories: [$WORK/in]
  stable_ms: 500
outputs:
  directory: $WORK/out
  annotated: false
after:
  success: move
  done_directory: $WORK/done
  failed_directory: $WORK/failed
state_directory: $WORK/state
batching:
  max_batch: 4
  max_delay_ms: 20
log_level: info
YML
echo "workspace $WORK; making $N files" >&2
# perl (in every Debian base system) writes them 50x faster than a cp+printf per file.
perl -e 'local $/; open(S, "<", $ARGV[0]) or die; $s = <S>;
  for $i (0 .. $ARGV[2] - 1) { open(F, ">", sprintf("%s/staging/s%06d.jpg", $ARGV[1], $i)) or die;
                               print F $s, sprintf("segd-soak-%08d", $i); close F }' "$SEED" "$WORK" "$N"
"$SEGD" watch --config "$WORK/pipeline.yml" 2> "$WORK/segd.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q ' ready' "$WORK/segd.log" && break; sleep 0.2; done
grep -q ' ready' "$WORK/segd.log" || { echo "segd did not become ready:" >&2; tail "$WORK/segd.log" >&2; exit 1; }

count() { find "$1" -type f ! -name '*.error.json' | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
fds() { ls /proc/$pid/fd | wc -l; }
threads() { awk '/^Threads/ {print $2}' /proc/$pid/status; }
start=$(date +%s.%N)
moved=0
samples="$WORK/samples.tsv"
printf 'elapsed_s\tmoved\tdone\tfailed\trss_kib\tfds\tthreads\n' > "$samples"
sample() {
  local t; t=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}')
  printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\n' "$t" "$moved" "$(count "$WORK/done")" "$(count "$WORK/failed")" "$(rss)" "$(fds)" "$(threads)" | tee -a "$samples"
}
last_sample=0
if [ "$RATE" = 0 ]; then
  # one rename(2) per file, as fast as mv can issue them
  find "$WORK/staging" -name '*.jpg' -print0 | xargs -0 mv -t "$WORK/in/"
  moved=$N
else
  for ((i = 0; i < N; i++)); do
    mv "$(printf '%s/staging/s%06d.jpg' "$WORK" "$i")" "$WORK/in/"; moved=$((i + 1))
    # pace: file i is due at i/RATE seconds
    due=$(awk -v i="$moved" -v r="$RATE" -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {d = s + i / r - n; print (d > 0 ? d : 0)}')
    sleep "$due"
    if (( $(date +%s) - last_sample >= SAMPLE_S )); then last_sample=$(date +%s); sample; fi
  done
fi
deadline=$(( $(date +%s) + TIMEOUT_S ))
while (( $(count "$WORK/done") + $(count "$WORK/failed") < N )) && (( $(date +%s) < deadline )); do
  kill -0 $pid 2>/dev/null || { echo "segd exited" >&2; break; }
  sample; sleep "$SAMPLE_S"
done
sample
end=$(date +%s.%N)
kill -TERM $pid; wait $pid || true; trap - EXIT

done_n=$(count "$WORK/done"); failed_n=$(count "$WORK/failed")
left=$(find "$WORK/in" -type f | wc -l)
seen=$( (cd "$WORK/done" && ls; cd "$WORK/failed" && ls) | { grep -v '\.error\.json$' || true; } | sed 's/~[0-9]*\././' | sort -u | wc -l)
dup_moves=$( (cd "$WORK/done" && ls; cd "$WORK/failed" && ls) | grep -c '~[0-9]*\.' || true)
jsons=$(find "$WORK/out" -name '*.json' | wc -l)
lost=$((N - seen))
awk -F'\t' -v n="$N" -v d="$done_n" -v f="$failed_n" -v l="$lost" -v left="$left" -v dm="$dup_moves" -v j="$jsons" \
    -v secs="$(awk -v s="$start" -v e="$end" 'BEGIN {print e - s}')" '
  NR == 2 {r0 = $5; f0 = $6} NR > 1 {r1 = $5; f1 = $6; if ($5 > rmax) rmax = $5; if ($6 > fmax) fmax = $6}
  END {
    printf "files %d: done %d, failed %d, lost %d (still in inbox %d), duplicated %d (double moves %d, result JSONs %d)\n", n, d, f, l, left, dm + (j > d ? j - d : 0), dm, j
    printf "time %.1f s, %.1f files/s\n", secs, (d + f) / secs
    printf "RSS KiB first %d last %d max %d; open fds first %d last %d max %d\n", r0, r1, rmax, f0, f1, fmax
  }' "$samples"
echo "samples: $samples, log: $WORK/segd.log" >&2
