#!/usr/bin/env python3
"""Writes Tests/ResultsTests/Fixtures/rle_fixtures.json: binary masks with the COCO RLE
that pycocotools produces for them, so the Swift encoder can be checked byte for byte.

Each case holds the mask as row-major bits (numpy.packbits, MSB first, base64), the
pycocotools `encode` string, `area`, `toBbox` and the decoded run count. Masks are chosen
to hit the encoder's edge cases: empty, full, a single pixel at each corner, runs that
cross column boundaries, odd and degenerate sizes, random blobs, and a large 300x400 one
whose counts exercise multi-chunk and negative deltas.

Usage: ~/.venvs/peer/bin/python tools/reference/make_rle_fixtures.py [output.json]
"""
import base64
import json
import pathlib
import sys

import numpy as np
import pycocotools
import pycocotools.mask as mask_utils

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "Tests" / "ResultsTests" / "Fixtures" / "rle_fixtures.json"


def blobs(rng, h, w, n, noise=0.0):
    """Union of n random filled ellipses, optionally with salt-and-pepper noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), dtype=bool)
    for _ in range(n):
        cy, cx = rng.uniform(-0.1 * h, 1.1 * h), rng.uniform(-0.1 * w, 1.1 * w)
        ry, rx = rng.uniform(1, 0.4 * h + 1), rng.uniform(1, 0.4 * w + 1)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    if noise > 0:
        m ^= rng.random((h, w)) < noise
    return m.astype(np.uint8)


def cases():
    rng = np.random.default_rng(20240611)
    out = []

    def add(name, m):
        out.append((name, np.asarray(m, dtype=np.uint8)))

    add("empty_5x4", np.zeros((5, 4)))
    add("full_5x4", np.ones((5, 4)))
    add("empty_0x0", np.zeros((0, 0)))
    add("empty_0x3", np.zeros((0, 3)))
    add("empty_3x0", np.zeros((3, 0)))
    for corner, (y, x) in {"tl": (0, 0), "tr": (0, 5), "bl": (3, 0), "br": (3, 5)}.items():
        m = np.zeros((4, 6)); m[y, x] = 1
        add(f"pixel_{corner}_4x6", m)
    add("single_1x1_on", np.ones((1, 1)))
    add("single_1x1_off", np.zeros((1, 1)))
    add("row_1x7", np.array([[0, 1, 1, 0, 1, 0, 1]]))
    add("row_1x7_full", np.ones((1, 7)))
    add("col_7x1", np.array([[1], [1], [0], [0], [1], [1], [1]]))
    add("col_7x1_last", np.array([[0], [0], [0], [0], [0], [0], [1]]))
    m = np.zeros((13, 17)); m[3:9, 4:12] = 1
    add("rect_13x17", m)
    m = np.zeros((13, 17)); m[:, 0] = 1; m[0, :] = 1; m[:, -1] = 1; m[-1, :] = 1
    add("frame_13x17", m)
    m = np.zeros((13, 17)); m[0:5, 0:3] = 1
    add("touch_top_left_13x17", m)
    m = np.zeros((13, 17)); m[8:, 12:] = 1
    add("touch_bottom_right_13x17", m)
    m = np.zeros((13, 17)); m[5:, 6:9] = 1  # runs that end a column and begin the next
    add("bottom_band_13x17", m)
    m = np.zeros((13, 17)); m[:, 6:9] = 1  # one run spanning three whole columns
    add("full_columns_13x17", m)
    m = np.zeros((13, 17)); m[2:11, 4] = 1; m[5, 3:14] = 1  # plus sign
    add("plus_13x17", m)
    add("checker_9x8", (np.indices((9, 8)).sum(axis=0) % 2))
    add("checker_8x9_inv", 1 - (np.indices((8, 9)).sum(axis=0) % 2))
    for i in range(6):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        add(f"blobs_{i}_{h}x{w}", blobs(rng, h, w, int(rng.integers(1, 5))))
    add("noise_31x29", (rng.random((31, 29)) < 0.5))
    add("blobs_noise_300x400", blobs(rng, 300, 400, 12, noise=0.02))
    # Long runs: counts above 2^10 and 2^15 need 3-4 chunks; deltas go negative.
    m = np.zeros((300, 400)); m[:, 100:260] = 1; m[150:160, 300] = 1
    add("long_runs_300x400", m)
    return out


def main():
    out_path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    records = []
    for name, m in cases():
        h, w = m.shape
        rle = mask_utils.encode(np.asfortranarray(m))
        assert rle["size"] == [h, w], (name, rle["size"])
        decoded = mask_utils.decode(rle)
        assert decoded.shape == (h, w) and np.array_equal(decoded, m), name
        bits = np.packbits(m.reshape(-1)) if m.size else np.zeros(0, np.uint8)
        records.append({
            "name": name,
            "height": h,
            "width": w,
            "bits": base64.b64encode(bits.tobytes()).decode("ascii"),
            "counts": rle["counts"].decode("ascii"),
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    doc = {
        "generator": "tools/reference/make_rle_fixtures.py",
        "pycocotools": pycocotools.__version__ if hasattr(pycocotools, "__version__") else
        __import__("importlib.metadata").metadata.version("pycocotools"),
        "numpy": np.__version__,
        "bits": "row-major (y*width+x), numpy.packbits MSB first, base64",
        "cases": records,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(records)} cases to {out_path}")


if __name__ == "__main__":
    main()
