#!/usr/bin/env bash
# Benchmarks of ../shared/bench/WORKLOAD.md, segd and the peer (torchvision) in one run on
# this machine, so that the figure is a ratio (these machines are shared and noisy).
#
#   tools/bench/run.sh [W1|W2|MEM|all]      (make bench runs all)
#
# PY: a Python with torch, torchvision, pycocotools, pillow, safetensors (for the peer and
# to export the seed-0 weights); without it only segd is measured.
# SEGD: the segd binary (default .build/release/segd). Workload files go to .bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
W=.bench
B=../shared/bench
SEGD=${SEGD:-.build/release/segd}
PY=${PY:-}
if [ -z "$PY" ] && [ -x "$HOME/.venvs/peer/bin/python" ]; then PY=$HOME/.venvs/peer/bin/python; fi
mkdir -p "$W"
if [ ! -f "$W/r50_seed0.pth" ] || [ ! -d "$W/img" ]; then
  [ -n "$PY" ] || { echo "no $W/r50_seed0.pth and no PY to export it (see $B/WORKLOAD.md)"; exit 2; }
  "$PY" "$B/peer_torchvision.py" export "$W"
  "$PY" "$B/peer_torchvision.py" images "$W/img" 6
fi
IMGS=$(ls "$W"/img/*.jpg)
last() { tail -n 1 | awk '{print $2}'; }

if [ "$WHAT" = W1 ] || [ "$WHAT" = all ]; then
  echo "== W1: model only, score 0 (100 detections/image), seconds per image (median)"
  segd_s=$("$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 3 $IMGS 2>/dev/null | tee /dev/stderr | last)
  if [ -n "$PY" ]; then
    peer_s=$("$PY" "$B/peer_torchvision.py" model $IMGS | tee /dev/stderr | last)
    echo "W1 segd ${segd_s} s/image, peer ${peer_s} s/image, segd/peer $(python3 -c "print(round($segd_s/$peer_s, 3))")"
  fi
fi
if [ "$WHAT" = W2 ] || [ "$WHAT" = all ]; then
  echo "== W2: folder end to end (decode, infer, RLE JSON, annotated JPEG), images per second"
  rm -rf "$W/segd-out" "$W/peer-out"
  t0=$(date +%s.%N)
  "$SEGD" batch "$W/img" --out "$W/segd-out" --weights "$W/r50_seed0.pth" --score 0 2>/dev/null
  t1=$(date +%s.%N)
  segd_ips=$(python3 -c "print(round(6/($t1-$t0), 4))")
  echo "segd images_per_second $segd_ips (process wall time, model load included)"
  if [ -n "$PY" ]; then
    peer_ips=$("$PY" "$B/peer_torchvision.py" folder "$W/img" "$W/peer-out" | tee /dev/stderr | last)
    echo "W2 segd ${segd_ips} img/s, peer ${peer_ips} img/s, segd/peer speed $(python3 -c "print(round($segd_ips/$peer_ips, 3))")"
  fi
fi
if [ "$WHAT" = MEM ] || [ "$WHAT" = all ]; then
  echo "== Memory: peak RSS for W1 with one image"
  /usr/bin/time -v "$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 1 "$W/img/w00.jpg" 2>&1 >/dev/null | grep "Maximum resident" | sed 's/^\s*/segd: /'
  if [ -n "$PY" ]; then
    /usr/bin/time -v "$PY" "$B/peer_torchvision.py" model --repeat 1 "$W/img/w00.jpg" 2>&1 >/dev/null | grep "Maximum resident" | sed 's/^\s*/peer: /'
  fi
fi
