#!/usr/bin/env python3
"""Reference detections of torchvision on two sample images, for segd's Swift tests.

    python tools/shapes/make_sample_fixture.py \
        --weights samples/model/shapes_r18.safetensors \
        --out Tests/PipelineTests/Fixtures/sample_reference.json

torchvision's MaskRCNN with FrozenBatchNorm2d(eps=1e-5), built from the file's shapes
and metadata (model.load_safetensors: strict load, score threshold and sizes from the
metadata), fp32, one thread. Per image: every detection torchvision returns (score >=
box_score_thresh, at most box_detections_per_img) with its box in original-image pixels
as [x1, y1, x2, y2] (torchvision's convention), label (class id) and class name, score,
and the mask pasted into the image and thresholded at 0.5 as COCO RLE (column-major,
compressed `counts` string) with its area. The images are a lossless PNG (exact input)
and a JPEG (decoded by Pillow's libjpeg-turbo; another decoder may differ by a grey
level here and there, so compare JPEG results with a tolerance).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageOps
from pycocotools import mask as mask_util

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

IMAGES = ["samples/shapes_08.png", "samples/shapes_02.jpg"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def detections(model, path):
    pil = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    x = M.to_tensor(pil)
    out = model([x])[0]
    dets = []
    for box, label, score, prob in zip(out["boxes"].tolist(), out["labels"].tolist(),
                                       out["scores"].tolist(), out["masks"][:, 0]):
        m = np.asfortranarray((prob > 0.5).numpy().astype(np.uint8))
        rle = mask_util.encode(m)
        dets.append(dict(box=[round(v, 4) for v in box], label=int(label),
                         class_name=M.CLASS_NAMES[label], score=round(float(score), 6),
                         mask=dict(size=[int(s) for s in rle["size"]],
                                   counts=rle["counts"].decode("ascii")),
                         mask_area=int(m.sum())))
    return dict(file=path, width=pil.width, height=pil.height, detections=dets)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="samples/model/shapes_r18.safetensors")
    ap.add_argument("--out", default="Tests/PipelineTests/Fixtures/sample_reference.json")
    ap.add_argument("images", nargs="*", default=IMAGES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg, meta = M.load_safetensors(args.weights)
    doc = dict(
        description="torchvision reference detections for segd's sample model; "
                    "made by tools/shapes/make_sample_fixture.py",
        weights=args.weights, weights_sha256=sha256(args.weights),
        torch=torch.__version__, torchvision=torchvision.__version__, pillow=PIL.__version__,
        box_format="xyxy, original image pixels", mask_threshold=0.5,
        mask_encoding="COCO RLE (pycocotools, column-major, compressed counts)",
        min_size=cfg.min_size, max_size=cfg.max_size,
        box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        classes=M.CLASS_NAMES,
        images=[dict(detections(model, p), sha256=sha256(p)) for p in args.images],
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for im in doc["images"]:
        top = [(d["class_name"], round(d["score"], 3)) for d in im["detections"][:6]]
        print(f"{im['file']}: {len(im['detections'])} detections, top {top}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
