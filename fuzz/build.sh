#!/bin/bash
# Builds the libFuzzer harnesses: fuzz/build.sh [OUTDIR]   (default .build/fuzz)
# Each harness is compiled with the Imaging sources into one executable, with libFuzzer
# and AddressSanitizer (swiftc -sanitize=fuzzer,address). Needs the same Debian -dev
# packages as the package build (libturbojpeg0-dev, libspng-dev, libfreetype-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.build/fuzz}
SWIFTC=${SWIFTC:-$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)}
mkdir -p "$OUT"
for h in JPEG PNG; do
  lower=$(echo "$h" | tr A-Z a-z)
  echo "building $OUT/fuzz-$lower"
  "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g \
    -module-name Imaging -module-cache-path "$OUT/module-cache" \
    -I Sources/CTurboJPEG -I Sources/CSPNG -I Sources/CFreeType -I /usr/include/freetype2 \
    Sources/Imaging/*.swift fuzz/FuzzSupport.swift "fuzz/Fuzz$h.swift" \
    -lturbojpeg -lspng -lfreetype -o "$OUT/fuzz-$lower" 2>&1 \
    | { grep -v "Cannot export local symbol" || true; }
done
