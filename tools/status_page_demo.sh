#!/usr/bin/env bash
# The status page after `make run`-sized work, as a PNG: `segd watch` on the sample model
# gets samples/ (12 images) plus two broken files, a minute later six more (altered copies,
# so new content) and three exact copies (skipped as duplicates); then headless chromium
# takes a screenshot of http://127.0.0.1:PORT/.
#
#   tools/status_page_demo.sh OUT.png        (SEGD=.build/release/segd WAIT=60)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-status_page.png}
SEGD=${SEGD:-.build/release/segd}
WAIT=${WAIT:-60}
PORT=${PORT:-18418}
T=$(mktemp -d /tmp/segd-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
mkdir -p "$T/inbox" "$T/staging"
cat > "$T/pipeline.yml" <<EOF
model:
  weights: $PWD/samples/model/shapes_r18.safetensors
inputs:
  directories: [$T/inbox]
outputs:
  directory: $T/out
after:
  done_directory: $T/done
  failed_directory: $T/failed
state_directory: $T/state
service:
  http_listen: ["unix:$T/segd.sock", "127.0.0.1:$PORT"]
EOF
"$SEGD" watch --config "$T/pipeline.yml" > "$T/log" 2>&1 &
until grep -qE '^[^ ]+ +info +ready ' "$T/log"; do sleep 0.1; done
done_count() { grep -cE '^[^ ]+ +(info +done|warning +failed) ' "$T/log" || true; }
cp samples/*.jpg samples/*.png "$T/staging/"
head -c 3000 samples/shapes_02.jpg > "$T/staging/upload_cut_short.jpg"
touch -d '10 minutes ago' "$T/staging/upload_cut_short.jpg"
echo "not an image" > "$T/staging/notes.png"
mv "$T"/staging/* "$T/inbox/"
until [ "$(done_count)" -ge 14 ]; do sleep 0.2; done
sleep "$WAIT"
for i in 1 2 3 4 5 6; do { cat "samples/shapes_0$i.jpg"; printf 'copy%d' $i; } > "$T/staging/second_batch_$i.jpg"; done
for i in 1 2 3; do cp "samples/shapes_0$i.jpg" "$T/staging/again_$i.jpg"; done
mv "$T"/staging/* "$T/inbox/"
until [ "$(done_count)" -ge 20 ] && [ "$(grep -c 'already processed' "$T/log" || true)" -ge 3 ]; do sleep 0.2; done
sleep 3  # the page's journal facts are cached for 2 s
"$SEGD" status --url "unix:$T/segd.sock"
curl -s --unix-socket "$T/segd.sock" http://localhost/metrics > "${OUT%.png}.metrics.txt"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1500 \
  --user-data-dir="$T/chromium" --screenshot="$OUT" "http://127.0.0.1:$PORT/" 2>/dev/null
echo "wrote $OUT and ${OUT%.png}.metrics.txt"
