#!/usr/bin/env python3
"""Parity between segd and torchvision on the same weights and images.

  parity.py --segd .build/release/segd --weights r50_seed0.pth IMAGES...

Runs torchvision's Mask R-CNN (by default maskrcnn_resnet50_fpn exactly as
/work/shared/bench/peer_torchvision.py builds it, then the given weights) and
`segd batch IMAGES --out DIR --weights W --score T --json-only`, reads segd's
per-image JSON, and compares the detections one-to-one in order:

  count       same number of detections
  labels      the same label at every position
  boxes       max |difference| of x1,y1,x2,y2 in original-image pixels <= --box-tol (0.01)
  scores      max |difference| <= --score-tol (1e-4)
  masks       IoU of the binary masks (torchvision: mask >= 0.5) >= --iou-min (0.99)

Prints one line per image and a verdict; exits 0 when every image passes, 1 when
one does not, 2 when segd fails. torchvision runs one image at a time (--tv-batch N
to batch): with a batch the padded canvas, and so the border pixels of the
features, depend on the other images, so segd must batch the same way.

Options: --model r50|r50_v2|tiny|basic|v2|tutorial (architecture of the weights;
r50_v2 is maskrcnn_resnet50_fpn_v2 (tiny.build_r50_v2); tiny/basic are the fixture models
of tools/reference/tiny.py, v2/tutorial those of families.py, whose min_size / max_size
segd needs as --segd-arg=--min-size=96 --segd-arg=--max-size=160), --score T (0.05), --segd-out DIR (read
an existing segd output instead of running segd), --segd-arg ARG (extra argument
for segd, repeatable), --threads N (torch threads, 1), --json FILE (full report).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def read_segd_json(path):
    """segd's per-image JSON -> list of detections in file order, each
    {"box": [x1, y1, x2, y2] original pixels, "label": int, "score": float,
     "rle": COCO RLE dict {"size": [h, w], "counts": bytes | list}}.
    The only place that knows segd's JSON schema (instances with `box` [x, y, w, h],
    `category_id`, `score`, `segmentation`); adjust here if it changes."""
    with open(path) as f:
        doc = json.load(f)
    instances = doc.get("instances", doc.get("detections")) if isinstance(doc, dict) else doc
    out = []
    for inst in instances:
        x, y, w, h = inst.get("box", inst.get("bbox"))
        seg = dict(inst["segmentation"] if "segmentation" in inst else inst["mask"])
        if isinstance(seg["counts"], str):
            seg["counts"] = seg["counts"].encode()
        out.append({"box": [x, y, x + w, y + h], "label": int(inst["category_id"]),
                    "score": float(inst["score"]), "rle": seg})
    return out


def find_segd_json(out_dir, image_path):
    """segd writes `a/b.jpg` as `OUT/a/b.json`; for images given on the command line
    the folder part is not known here, so look for the stem anywhere under OUT."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    direct = os.path.join(out_dir, stem + ".json")
    if os.path.isfile(direct):
        return direct
    hits = [os.path.join(d, f) for d, _, fs in os.walk(out_dir) for f in fs if f == stem + ".json"]
    if len(hits) != 1:
        raise FileNotFoundError(f"{len(hits)} files named {stem}.json under {out_dir}")
    return hits[0]


def load_image(path):
    """RGB float 3 x H x W in [0, 1], EXIF orientation applied (segd applies it too)."""
    import torch
    from PIL import Image, ImageOps
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0


def build_model(kind, weights, score):
    import tiny
    if kind == "r50":
        m = tiny.build_r50(weights, score)
    elif kind == "r50_v2":
        m = tiny.build_r50_v2(weights, score)
    elif kind in ("v2", "tutorial"):
        import families
        m, _ = families.build(kind)
        m.load_state_dict(tiny.load_state_dict(weights))
        m.roi_heads.score_thresh = score
    else:
        m, _ = tiny.build(kind)
        m.load_state_dict(tiny.load_state_dict(weights))
        m.roi_heads.score_thresh = score
    return m.eval()


def run_torchvision(a, dtype="float32"):
    """torchvision's detections; dtype float64 runs the same model in double precision,
    the reference that shows how far any float32 implementation (torchvision's own
    included) lands from the exact result."""
    import torch
    from pycocotools import mask as mask_util
    torch.set_num_threads(a.threads)
    model = build_model(a.model, a.weights, a.score)
    if dtype == "float64":
        model = model.double()
    results = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(a.images), a.tv_batch):
            chunk = a.images[s:s + a.tv_batch]
            for o in model([load_image(p).to(getattr(torch, dtype)) for p in chunk]):
                dets = []
                masks = (o["masks"][:, 0] >= 0.5).numpy().astype(np.uint8)
                for b, l, sc, mk in zip(o["boxes"].tolist(), o["labels"].tolist(), o["scores"].tolist(), masks):
                    dets.append({"box": b, "label": l, "score": sc,
                                 "rle": mask_util.encode(np.asfortranarray(mk))})
                results.append(dets)
    return results, time.perf_counter() - t0


def run_segd(a, out_dir):
    cmd = [a.segd, "batch", *a.images, "--out", out_dir, "--weights", a.weights,
           "--score", repr(a.score), "--json-only", *a.segd_arg]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd)
    if p.returncode != 0:
        sys.exit(f"segd exited with {p.returncode}")
    return time.perf_counter() - t0


def mask_iou(rle_a, rle_b):
    from pycocotools import mask as mask_util

    def norm(r):
        if isinstance(r["counts"], list):  # uncompressed RLE
            return mask_util.frPyObjects(r, *r["size"])
        return r
    a, b = norm(rle_a), norm(rle_b)
    if list(a["size"]) != list(b["size"]):
        return 0.0
    if mask_util.area(a) == 0 and mask_util.area(b) == 0:
        return 1.0
    return float(mask_util.iou([a], [b], [0])[0, 0])


def compare(tv, sg, a):
    """One image: torchvision's and segd's detections, position by position."""
    r = {"n_torchvision": len(tv), "n_segd": len(sg), "label_mismatches": 0,
         "box_max_diff": 0.0, "score_max_diff": 0.0, "mask_iou_min": 1.0, "first_problem": None}
    for i, (t, s) in enumerate(zip(tv, sg)):
        box = max(abs(x - y) for x, y in zip(t["box"], s["box"]))
        score = abs(t["score"] - s["score"])
        iou = mask_iou(t["rle"], s["rle"])
        r["label_mismatches"] += t["label"] != s["label"]
        r["box_max_diff"] = max(r["box_max_diff"], box)
        r["score_max_diff"] = max(r["score_max_diff"], score)
        r["mask_iou_min"] = min(r["mask_iou_min"], iou)
        if r["first_problem"] is None and (t["label"] != s["label"] or box > a.box_tol
                                           or score > a.score_tol or iou < a.iou_min):
            r["first_problem"] = {"index": i, "torchvision": {k: t[k] for k in ("box", "label", "score")},
                                  "segd": {k: s[k] for k in ("box", "label", "score")}, "mask_iou": iou}
    r["pass"] = (len(tv) == len(sg) and r["label_mismatches"] == 0 and r["box_max_diff"] <= a.box_tol
                 and r["score_max_diff"] <= a.score_tol and r["mask_iou_min"] >= a.iou_min)
    return r


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 1.0


def matched(ref, got, iou_min=0.95, score_tol=0.01):
    """Detections of `ref` matched one-to-one (greedy, highest score first) by a detection
    of `got` with the same label, box IoU >= iou_min and |score difference| <= score_tol:
    the order-insensitive agreement (two detections with near-equal scores may swap)."""
    used = set()
    n = 0
    for t in sorted(ref, key=lambda d: -d["score"]):
        best, best_iou = None, iou_min
        for j, s in enumerate(got):
            if j in used or s["label"] != t["label"] or abs(s["score"] - t["score"]) > score_tol:
                continue
            iou = box_iou(t["box"], s["box"])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
            n += 1
    return n, max(len(ref), len(got))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--segd", default="segd", help="segd binary")
    ap.add_argument("--weights", required=True, help=".pth (or .safetensors) state dict")
    ap.add_argument("--model", choices=["r50", "r50_v2", "tiny", "basic", "v2", "tutorial"], default="r50")
    ap.add_argument("--score", type=float, default=0.05)
    ap.add_argument("--segd-out", help="read this existing segd output folder instead of running segd")
    ap.add_argument("--segd-arg", action="append", default=[], help="extra argument for segd (repeatable)")
    ap.add_argument("--tv-batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--box-tol", type=float, default=0.01)
    ap.add_argument("--score-tol", type=float, default=1e-4)
    ap.add_argument("--iou-min", type=float, default=0.99)
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--float64", action="store_true",
                    help="also run torchvision in float64 and report how far torchvision-float32 and segd each are from it")
    a = ap.parse_args()

    tmp = None
    if a.segd_out:
        out_dir, segd_s = a.segd_out, None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="parity-")
        out_dir = tmp.name
        segd_s = run_segd(a, out_dir)
    tv_all, tv_s = run_torchvision(a)
    tv64_all = run_torchvision(a, "float64")[0] if a.float64 else None

    report = {"images": {}, "seconds": {"torchvision": tv_s, "segd": segd_s},
              "tolerances": {"box": a.box_tol, "score": a.score_tol, "mask_iou": a.iou_min}}
    ok = True
    for path, tv in zip(a.images, tv_all):
        sg = read_segd_json(find_segd_json(out_dir, path))
        r = compare(tv, sg, a)
        report["images"][path] = r
        ok &= r["pass"]
        print(f"{'PASS' if r['pass'] else 'FAIL'} {path}: detections tv {r['n_torchvision']} segd {r['n_segd']}, "
              f"label mismatches {r['label_mismatches']}, box max |d| {r['box_max_diff']:.4g} px, "
              f"score max |d| {r['score_max_diff']:.3g}, mask IoU min {r['mask_iou_min']:.4f}")
        if r["first_problem"]:
            print(f"     first problem: {json.dumps(r['first_problem'])}")
        m, n = matched(tv, sg)
        r["matched"] = [m, n]
        print(f"     matched one-to-one (label, box IoU >= 0.95, |d score| <= 0.01): {m}/{n}")
        if tv64_all is not None:
            tv64 = tv64_all[a.images.index(path)]
            for name, dets in (("torchvision-float32", tv), ("segd", sg)):
                q = compare(tv64, dets, a)
                m, n = matched(tv64, dets)
                r[f"{name}_vs_float64"] = q
                print(f"     {name} vs torchvision-float64: box max |d| {q['box_max_diff']:.4g} px, "
                      f"score max |d| {q['score_max_diff']:.3g}, label mismatches {q['label_mismatches']}, "
                      f"mask IoU min {q['mask_iou_min']:.4f}, matched {m}/{n}")
    n_pass = sum(r["pass"] for r in report["images"].values())
    print(f"verdict: {'PASS' if ok else 'FAIL'} ({n_pass}/{len(a.images)} images within tolerance: boxes "
          f"{a.box_tol} px, same labels in the same order, scores {a.score_tol}, mask IoU >= {a.iou_min})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if tmp:
        tmp.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
