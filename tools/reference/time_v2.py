#!/usr/bin/env python3
"""W1-style timing of maskrcnn_resnet50_fpn_v2: segd and torchvision on the same weights and
images, one after the other in one run (../shared/bench/WORKLOAD.md W1: model only, score 0
so every image has 100 detections, 2 threads, median seconds per image after a warm-up).

  time_v2.py --segd .build/release/segd IMAGES...   [--weights .bench/r50v2_seed0.pth]
             [--threads 2] [--repeat 2] [--precision fp32]

The weights are tiny.build_r50_v2's (seed 0, random BatchNorm2d statistics), exported to
--weights when the file does not exist. Prints both medians and segd's speed relative to
torchvision. A benchmark: run it on an otherwise idle machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--segd", default=".build/release/segd")
    ap.add_argument("--weights", default=".bench/r50v2_seed0.pth")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--precision", default="fp32", help="segd --precision (fp32: torchvision's arithmetic)")
    a = ap.parse_args()
    if not os.path.exists(a.weights):
        os.makedirs(os.path.dirname(a.weights) or ".", exist_ok=True)
        torch.save(tiny.build_r50_v2().state_dict(), a.weights)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.segd, "bench", "--weights", a.weights, "--score", "0", "--repeat", str(a.repeat),
                          "--precision", a.precision] + a.images, env=env, check=True, capture_output=True, text=True).stdout
    segd = float([l for l in out.splitlines() if l.startswith("seconds_per_image")][-1].split()[1])

    torch.set_num_threads(a.threads)
    m = tiny.build_r50_v2(a.weights, score=0.0)
    xs = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0 for p in a.images]
    times, dets = [], []
    with torch.inference_mode():
        m([xs[0]])  # warm-up
        for _ in range(a.repeat):
            for x in xs:
                t = time.perf_counter()
                o = m([x])
                times.append(time.perf_counter() - t)
                dets.append(len(o[0]["boxes"]))
    tv = statistics.median(times)
    print(f"maskrcnn_resnet50_fpn_v2, {len(xs)} images x {a.repeat} passes, {a.threads} threads, "
          f"torchvision detections/image {statistics.mean(dets):.1f}")
    print(f"segd ({a.precision})  {segd:.3f} s/image")
    print(f"torchvision f32  {tv:.3f} s/image")
    print(f"segd speed vs torchvision: {tv / segd:.2f}x")


if __name__ == "__main__":
    main()
