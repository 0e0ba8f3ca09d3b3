#!/bin/bash
# Builds the libFuzzer harnesses: fuzz/build.sh [OUTDIR]   (default .build/fuzz)
# Each harness is compiled with the Imaging sources into one executable, with libFuzzer
# and AddressSanitizer (swiftc -sanitize=fuzzer,address). Needs the same Debian -dev
# packages as the package build (libturbojpeg0-dev, libspng-dev, libwebp-dev, libtiff-dev,
# libheif-dev, libfreetype-dev). FUZZ_TARGETS="webp tiff" builds only those.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.build/fuzz}
SWIFTC=${SWIFTC:-$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)}
mkdir -p "$OUT"
for lower in ${FUZZ_TARGETS:-jpeg png webp tiff heif}; do
  case $lower in jpeg) h=JPEG ;; png) h=PNG ;; webp) h=WebP ;; tiff) h=TIFF ;; heif) h=HEIF ;; esac
  echo "building $OUT/fuzz-$lower"
  "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g \
    -module-name Imaging -module-cache-path "$OUT/module-cache" \
    -I Sources/CTurboJPEG -I Sources/CSPNG -I Sources/CWebP -I Sources/CTIFF -I Sources/CHeif \
    -I Sources/CFreeType -I /usr/include/freetype2 \
    Sources/Imaging/*.swift fuzz/FuzzSupport.swift "fuzz/Fuzz$h.swift" \
    -lturbojpeg -lspng -lwebp -lwebpdemux -ltiff -lheif -lfreetype -o "$OUT/fuzz-$lower" 2>&1 \
    | { grep -v "Cannot export local symbol" || true; }
done
