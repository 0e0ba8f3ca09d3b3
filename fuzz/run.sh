#!/bin/sh
# Runs the harnesses (jpeg png webp tiff heif, or those named in FUZZ_TARGETS) one after
# the other for FUZZ_SECONDS each (default 600), seeded
# from the committed image fixtures plus the generated seeds in fuzz/seeds/. The
# working corpus lives in .build/fuzz/corpus-<fmt> (kept between runs); crashes are
# written to .build/fuzz/artifacts/. Exit status is non-zero when a harness found one.
set -eu
cd "$(dirname "$0")/.."
OUT=.build/fuzz
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_JOBS=${FUZZ_JOBS:-1}
fuzz/build.sh "$OUT"
mkdir -p "$OUT/artifacts"
status=0
for fmt in ${FUZZ_TARGETS:-jpeg png webp tiff heif}; do
  case $fmt in jpeg) ext=jpg ;; tiff) ext=tif ;; heif) ext='[ha][ev][ii][cf]' ;; *) ext=$fmt ;; esac
  corpus="$OUT/corpus-$fmt"
  mkdir -p "$corpus"
  # Fixtures over 16 KB left out: the 47 KB zTXt bomb inflates 48 MB per execution and
  # cut the PNG harness from ~30,000 to ~130 executions/s (its limit path is tested anyway).
  find Tests/ImagingTests/Fixtures -name "*.$ext" -size -16k -exec cp -n {} "$corpus"/ \;
  cp -n fuzz/seeds/"$fmt"/* "$corpus"/ 2>/dev/null || true
  echo "fuzzing $fmt for ${FUZZ_SECONDS}s (corpus $corpus)"
  LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" nice -n 19 "$OUT/fuzz-$fmt" "$corpus" -max_total_time="$FUZZ_SECONDS" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$fmt-" ${FUZZ_ARGS:-} 2>&1 | tee "$OUT/fuzz-$fmt.log" | grep -v '^#[0-9]*	\(NEW\|REDUCE\)' || true
  if ls "$OUT/artifacts/$fmt-"* >/dev/null 2>&1; then status=1; fi
done
exit $status
