#!/usr/bin/env python3
"""Checks a `segd batch` output folder with pycocotools (developer tool; CI checks the
structure without Python):

  check_coco.py OUT [--gt GT.json]

- every per-image JSON's masks decode with pycocotools, to the recorded area and size;
- coco_results.json loads with COCO.loadRes, against GT.json when given, else against a
  ground truth built from coco_image_ids.json (images only), and its records agree
  with the per-image JSON files.
Exits 0 when everything checks, 1 otherwise.
"""
import argparse, json, os, sys

from pycocotools import mask as mask_util
from pycocotools.coco import COCO


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gt")
    a = ap.parse_args()
    problems = 0
    per_image = {}
    for d, _, files in os.walk(a.out):
        for f in files:
            if not f.endswith(".json") or f.startswith("coco_") or f.endswith(".error.json"):
                continue
            p = os.path.join(d, f)
            doc = json.load(open(p))
            per_image[doc["source"]["path"]] = doc
            for i, inst in enumerate(doc["instances"]):
                rle = dict(inst["mask"]); rle["counts"] = rle["counts"].encode()
                h, w = rle["size"]
                if (h, w) != (doc["image"]["height"], doc["image"]["width"]):
                    print(f"{p}: instance {i}: mask size {rle['size']} is not the image's"); problems += 1
                m = mask_util.decode(rle)
                if int(m.sum()) != inst["area"] or int(mask_util.area(rle)) != inst["area"]:
                    print(f"{p}: instance {i}: area {inst['area']} but the mask has {int(m.sum())}"); problems += 1
    ids = json.load(open(os.path.join(a.out, "coco_image_ids.json")))
    if a.gt:
        gt = COCO(a.gt)
    else:
        gt = COCO()
        gt.dataset = {"images": ids, "annotations": [], "categories": [{"id": i} for i in range(1, 1000)]}
        gt.createIndex()
    res = gt.loadRes(os.path.join(a.out, "coco_results.json"))
    n_inst = sum(len(d["instances"]) for d in per_image.values())
    n_res = len(res.dataset["annotations"])
    if n_res != n_inst:
        print(f"coco_results.json has {n_res} records, the per-image files {n_inst} instances"); problems += 1
    print(f"{len(per_image)} per-image files, {n_inst} instances; coco_results.json loads with loadRes: "
          f"{n_res} records over {len(ids)} images; {problems} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
