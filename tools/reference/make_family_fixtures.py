#!/usr/bin/env python3
"""Writes the fixtures of the other torchvision layouts (families.py), deterministically.

  make_family_fixtures.py [--out Tests/MaskRCNNTests/Fixtures] [--only v2|faster|faster_v2|tutorial]

Fixtures/<name>/ for name in v2, faster, faster_v2, tutorial:
  weights.pth          torch.save(model.state_dict()), zip format (v2 files carry BatchNorm2d's
                       num_batches_tracked, as a trained v2 checkpoint does)
  image0.png, image1.png  the two synthetic images (tiny.synthetic_image), lossless
  labels.txt           the class names, one a line, background first (tutorial only; the
                       .pth has no names, which is why --labels exists)
  stages.safetensors   torchvision's output of every stage for the batch of both images:
    image.I (U8 H×W×3), transform.image_sizes (I64 2×2), features.0..3, features.pool,
    rpn.objectness.L / rpn.deltas.L (v2 layouts: the two-conv RPN head), proposals.I,
    proposal_scores.I, box_head.class_logits / box_head.box_regression (v2 layouts:
    FastRCNNConvFCHead), detections.I.{boxes,scores,labels} (resized frame),
    detections.I.mask_probs (mask models: the first MASK_PROBS_MAX detections),
    final.I.{boxes,scores,labels} (original frame), final.I.masks (mask models: first
    final_masks_max pasted masks ≥ 0.5, U8).
The canvas is 128×128 (min_size 96), so the files stay a few hundred KB; transform.images
is not stored: segd's preprocess is the v1 fixtures' (checked there to 1e-5), and the
stage tests here feed segd's own preprocessed batch to the backbone.
"""
import argparse
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import families  # noqa: E402
import make_fixtures as mf  # noqa: E402
import tiny  # noqa: E402

REPO = mf.REPO
MASK_PROBS_MAX = 12
SIZE_LIMIT = 2_500_000  # bytes, all files written here together


def stage_tensors(r, final, images, cfg, v2):
    t = OrderedDict()
    for i, u8 in enumerate(images):
        t[f"image.{i}"] = torch.from_numpy(u8.copy())
    image_list, _ = r["transform"]
    t["transform.image_sizes"] = torch.tensor(image_list["image_sizes"], dtype=torch.int64)
    for k, v in r["backbone"].items():
        t[f"features.{k}"] = v
    if v2:
        logits, deltas = r["rpn_head"]
        for lvl, (o, d) in enumerate(zip(logits, deltas)):
            t[f"rpn.objectness.{lvl}"] = o
            t[f"rpn.deltas.{lvl}"] = d
    proposals, _ = r["rpn"]
    boxes_f, scores_f = r["rpn_filter"]
    for i, p in enumerate(proposals):
        assert torch.equal(p, boxes_f[i])
        t[f"proposals.{i}"] = p
        t[f"proposal_scores.{i}"] = scores_f[i]
    if v2:
        class_logits, box_regression = r["box_predictor"]
        t["box_head.class_logits"] = class_logits
        t["box_head.box_regression"] = box_regression
    dets, _ = r["roi_heads"]
    for i, d in enumerate(dets):
        t[f"detections.{i}.boxes"] = d["boxes"]
        t[f"detections.{i}.scores"] = d["scores"]
        t[f"detections.{i}.labels"] = d["labels"]
        if "masks" in d:
            t[f"detections.{i}.mask_probs"] = d["masks"][:MASK_PROBS_MAX]
    for i, f in enumerate(final):
        t[f"final.{i}.boxes"] = f["boxes"]
        t[f"final.{i}.scores"] = f["scores"]
        t[f"final.{i}.labels"] = f["labels"]
        if "masks" in f:
            t[f"final.{i}.masks"] = (f["masks"][: cfg["final_masks_max"], 0] >= 0.5).to(torch.uint8)
    return OrderedDict((k, v.contiguous()) for k, v in t.items())


def alone_tensors(model, images, cfg):
    t = OrderedDict()
    for i, u8 in enumerate(images):
        with torch.no_grad():
            f = model([tiny.to_input(u8)])[0]
        t[f"alone.{i}.boxes"] = f["boxes"]
        t[f"alone.{i}.scores"] = f["scores"]
        t[f"alone.{i}.labels"] = f["labels"]
        if "masks" in f:
            t[f"alone.{i}.masks"] = (f["masks"][: cfg["final_masks_max"], 0] >= 0.5).to(torch.uint8)
    return t


def write_model(name, outdir):
    import torchvision
    from PIL import Image
    model, cfg = families.build(name)
    os.makedirs(outdir, exist_ok=True)
    sd = model.state_dict()
    written = []
    p = os.path.join(outdir, "weights.pth")
    torch.save(sd, p)
    written.append(p)
    fresh, _ = families.build(name)  # loads back strictly
    fresh.load_state_dict(torch.load(p, map_location="cpu", weights_only=True), strict=True)
    images = tiny.fixture_images(cfg)
    for i, u8 in enumerate(images):
        p = os.path.join(outdir, f"image{i}.png")
        Image.fromarray(u8).save(p, optimize=False)
        written.append(p)
    if name == "tutorial":
        p = os.path.join(outdir, "labels.txt")
        with open(p, "w") as f:
            f.write("\n".join(cfg["classes"]) + "\n")
        written.append(p)
    r, final = mf.run_stages(model, images)
    tensors = stage_tensors(r, final, images, cfg, cfg["v2"])
    tensors.update(alone_tensors(model, images, cfg))
    p = os.path.join(outdir, "stages.safetensors")
    mf.save_safetensors(tensors, p, {"model": name, "torch": torch.__version__, "torchvision": torchvision.__version__,
                                     "classes": str(cfg["classes"]), "final_masks_max": str(cfg["final_masks_max"]),
                                     # a .pth does not carry torchvision's min_size / max_size: the tests set them
                                     "min_size": str(cfg["min_size"]), "max_size": str(cfg["max_size"])})
    written.append(p)
    print(f"{name}: {sum(v.numel() for v in sd.values())} numbers in {len(sd)} tensors, "
          f"{sum(v.numel() for v in model.parameters())} parameters")
    print("\n".join(mf.describe(tensors)))
    sizes = r["transform"][0]["image_sizes"]
    for i, f in enumerate(final):
        s = f["scores"]
        print(f"{name}: image {i} {tuple(images[i].shape[:2])} -> resized {tuple(sizes[i])}: {len(r['rpn'][0][i])} proposals, "
              f"{len(s)} detections, scores {float(s.max()):.3f}..{float(s.min()):.3f}, "
              f"per label {torch.bincount(f['labels'], minlength=len(cfg['classes'])).tolist()}")
    for line in mf.robustness(model, r):
        print(f"{name}: {line}")
    for i in range(len(images)):
        s = tensors[f"alone.{i}.scores"]
        print(f"{name}: image {i} alone: {len(s)} detections, scores {float(s.max()):.3f}..{float(s.min()):.3f}")
    for path in written:
        print(f"  {os.path.relpath(path, REPO)}  {os.path.getsize(path)} bytes  sha256 {mf.sha(path)}")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "MaskRCNNTests", "Fixtures"))
    ap.add_argument("--only", choices=list(families.CONFIGS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    written = []
    for name in families.CONFIGS:
        if a.only in (None, name):
            written += write_model(name, os.path.join(a.out, name))
    total = sum(os.path.getsize(p) for p in written)
    print(f"total {total} bytes ({total / 1e6:.2f} MB) in {len(written)} files")
    if a.only is None and total >= SIZE_LIMIT:
        sys.exit(f"fixtures exceed {SIZE_LIMIT} bytes")


if __name__ == "__main__":
    main()
