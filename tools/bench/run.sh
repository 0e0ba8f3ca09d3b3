#!/usr/bin/env bash
# Benchmarks of ../shared/bench/WORKLOAD.md, segd and the peers in one run on this machine,
# so that every figure is a ratio (these machines are shared and noisy).
#
#   tools/bench/run.sh [W1|W2|MEM|BATCH|all]      (make bench runs all)
#
# PY: a Python with torch, torchvision, pycocotools, pillow, safetensors (the torchvision
# peers, and to export the seed-0 weights) and openvino, onnx, onnxruntime (the OpenVINO
# peers); without it only segd is measured. SEGD: the segd binary (default
# .build/release/segd). Workload files go to .bench/.
#
# W1 runs, one after another: segd fp32, segd with the default precision (auto: the faster
# of bf16 and fp32, measured, where the CPU computes bf16 natively), torchvision f32 and bf16 autocast, OpenVINO f32 and its
# default (bf16 on AMX), each 2 threads, median s/image over 6 images × 2 passes after a
# warm-up, and prints each one's speed against torchvision f32 and OpenVINO.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
W=.bench
B=../shared/bench
SEGD=${SEGD:-.build/release/segd}
PY=${PY:-}
if [ -z "$PY" ] && [ -x "$HOME/.venvs/peer/bin/python" ]; then PY=$HOME/.venvs/peer/bin/python; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# ISA=AVX2 caps oneDNN (segd's, torch's and OpenVINO's copies) and torch's own kernels at
# AVX2, to measure the AVX2-only path on an AVX-512 machine (an emulation: same cores,
# caches and clocks, so it says how the code paths compare, not what an AVX2 EPYC does).
if [ -n "${ISA:-}" ]; then
  export DNNL_MAX_CPU_ISA=$ISA ONEDNN_MAX_CPU_ISA=$ISA ATEN_CPU_CAPABILITY=$(echo "$ISA" | tr 'A-Z' 'a-z')
  echo "ISA capped at $ISA (DNNL_MAX_CPU_ISA, ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)"
fi
mkdir -p "$W"
if [ ! -f "$W/r50_seed0.pth" ] || [ ! -d "$W/img" ]; then
  [ -n "$PY" ] || { echo "no $W/r50_seed0.pth and no PY to export it (see $B/WORKLOAD.md)"; exit 2; }
  "$PY" "$B/peer_torchvision.py" export "$W"
  "$PY" "$B/peer_torchvision.py" images "$W/img" 6
fi
IMGS=$(ls "$W"/img/*.jpg)
last() { tail -n 1 | awk '{print $2}'; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}x' if b > 0 else '-')" "$1" "$2"; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); flags: $(grep -oE 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"

if [ "$WHAT" = W1 ] || [ "$WHAT" = all ]; then
  echo "== W1: model only, score 0 (100 detections/image), seconds per image (median)"
  declare -A spi
  for p in fp32 auto; do
    spi[segd-$p]=$("$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 2 --precision $p $IMGS 2>&1 | tee -a /dev/stderr | last)
  done
  if [ -n "$PY" ]; then
    # Capped at AVX2 there is no native bf16 for either side: the f32 peers only.
    peers=${PEERS:-$([ -n "${ISA:-}" ] && echo tv-f32,ov-f32 || echo tv-f32,tv-bf16,ov-f32,ov-auto)}
    "$PY" "$B/peer_compare.py" $IMGS --only "$peers" --out "$W/peers" | tee "$W/peers.txt"
    for n in ${peers//,/ }; do
      spi[$n]=$(grep -E "^# $n: " "$W/peers.txt" | sed -E 's/.*seconds_per_image ([0-9.na]+).*/\1/')
    done
  fi
  echo
  printf "%-10s %9s %10s %10s %10s\n" peer s/image "vs tv-f32" "vs ov-f32" "vs ov-auto"
  for n in segd-fp32 segd-auto tv-f32 tv-bf16 ov-f32 ov-auto; do
    [ -n "${spi[$n]:-}" ] || continue
    printf "%-10s %9.3f %10s %10s %10s\n" "$n" "${spi[$n]}" \
      "$([ -n "${spi[tv-f32]:-}" ] && ratio "${spi[tv-f32]}" "${spi[$n]}" || echo -)" \
      "$([ -n "${spi[ov-f32]:-}" ] && ratio "${spi[ov-f32]}" "${spi[$n]}" || echo -)" \
      "$([ -n "${spi[ov-auto]:-}" ] && ratio "${spi[ov-auto]}" "${spi[$n]}" || echo -)"
  done
  echo "(each ratio: how many times faster than that peer in this run)"
fi
if [ "$WHAT" = BATCH ] || [ "$WHAT" = all ]; then
  echo "== W1 by batch size (s/image, median of 2 passes over the 6 images)"
  for p in fp32 auto; do
    for b in 1 2 4; do
      echo "segd $p batch $b: $("$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 2 --precision $p --batch $b $IMGS 2>/dev/null | last) s/image"
    done
  done
fi
if [ "$WHAT" = W2 ] || [ "$WHAT" = all ]; then
  echo "== W2: folder end to end (decode, infer, RLE JSON, annotated JPEG), images per second"
  rm -rf "$W/segd-out" "$W/peer-out"
  t0=$(date +%s.%N)
  "$SEGD" batch "$W/img" --out "$W/segd-out" --weights "$W/r50_seed0.pth" --score 0 2>&1 | grep precision || true
  t1=$(date +%s.%N)
  segd_ips=$(python3 -c "print(round(6/($t1-$t0), 4))")
  echo "segd images_per_second $segd_ips (process wall time, model load included; default precision)"
  if [ -n "$PY" ]; then
    peer_ips=$("$PY" "$B/peer_torchvision.py" folder "$W/img" "$W/peer-out" | tee -a /dev/stderr | last)
    echo "W2 segd ${segd_ips} img/s, peer ${peer_ips} img/s, segd/peer speed $(ratio "$segd_ips" "$peer_ips")"
  fi
fi
if [ "$WHAT" = MEM ] || [ "$WHAT" = all ]; then
  echo "== Memory: peak RSS for W1 with one image, and over 54 inferences (9 passes over the 6 images: flat = no growth)"
  for p in fp32 auto; do
    one=$(/usr/bin/time -v "$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 1 --precision $p "$W/img/w00.jpg" 2>&1 >/dev/null | grep "Maximum resident" | awk '{print $NF}')
    fifty=$(/usr/bin/time -v "$SEGD" bench --weights "$W/r50_seed0.pth" --score 0 --repeat 9 --precision $p $IMGS 2>&1 >/dev/null | grep "Maximum resident" | awk '{print $NF}')
    echo "segd $p: 1 image $((one / 1024)) MiB, 54 inferences $((fifty / 1024)) MiB"
  done
  if [ -n "$PY" ]; then
    /usr/bin/time -v "$PY" "$B/peer_torchvision.py" model --repeat 1 "$W/img/w00.jpg" 2>&1 >/dev/null | grep "Maximum resident" | sed 's/^\s*/peer: /'
  fi
fi
