#!/usr/bin/env python3
"""COCO box and mask AP (pycocotools) on held-out shapes scenes.

Ground truth: 200 scenes of seed 1000 (train.py uses seed 0; seeds are separate
streams), written by generate.py to --gt (created if missing):

    python tools/shapes/generate.py /tmp/shapes_val --count 200 --seed 1000

Torchvision on the exported weights (reads the images from the files, as segd does):

    python tools/shapes/evaluate.py --weights samples/model/shapes_r18.safetensors

segd's per-image JSON outputs instead (run segd on /tmp/shapes_val/images first):

    segd batch /tmp/shapes_val/images --out /tmp/segd_val --weights samples/model/shapes_r18.safetensors
    python tools/shapes/evaluate.py --segd /tmp/segd_val

Both print pycocotools' summary for boxes and masks, then AP and AP50 per class and
class-agnostic (pycocotools with useCats=0: a detection matches a shape whatever its
label), which separates naming the shape from finding and outlining it.

Each segd JSON is matched to its ground-truth image by file stem (000123.jpg ->
000123.json anywhere under the folder). The schema is read in one place,
`read_segd_instances`.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import model as M  # noqa: E402

VAL_SEED, VAL_COUNT = 1000, 200


def read_segd_instances(path):
    """segd per-image JSON -> [{category_id, score, bbox [x,y,w,h], segmentation RLE}].
    The only place that knows segd's schema: {"instances": [{"category_id", "score",
    "box": [x, y, w, h], "segmentation" (or "mask"): {"size": [h, w], "counts": str}}, ...]}."""
    with open(path) as f:
        doc = json.load(f)
    out = []
    for inst in doc["instances"]:
        seg = inst["segmentation"] if "segmentation" in inst else inst["mask"]
        out.append(dict(category_id=int(inst["category_id"]), score=float(inst["score"]),
                        bbox=[float(v) for v in inst["box"]],
                        segmentation=dict(size=list(seg["size"]), counts=seg["counts"])))
    return out


def ensure_gt(gt_dir, count, seed):
    ann = os.path.join(gt_dir, "annotations.json")
    if not os.path.exists(ann):
        print(f"generating {count} held-out scenes (seed {seed}) in {gt_dir}", file=sys.stderr)
        generate.write_dataset(gt_dir, count, seed)
    return ann


def load_rgb(path):
    """Decoded RGB as segd sees it (EXIF orientation applied; generated images have none)."""
    from PIL import ImageOps
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


@torch.no_grad()
def torchvision_results(model, coco, gt_dir, mask_threshold=0.5):
    results = []
    for k, img_id in enumerate(sorted(coco.getImgIds())):
        info = coco.loadImgs(img_id)[0]
        pil = load_rgb(os.path.join(gt_dir, info["file_name"]))
        x = M.to_tensor(pil)
        out = model([x])[0]
        masks = (out["masks"][:, 0] > mask_threshold).numpy().astype(np.uint8)
        for box, label, score, m in zip(out["boxes"].tolist(), out["labels"].tolist(),
                                        out["scores"].tolist(), masks):
            rle = mask_util.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = box
            results.append(dict(image_id=img_id, category_id=int(label), score=float(score),
                                bbox=[x1, y1, x2 - x1, y2 - y1], segmentation=rle))
        if (k + 1) % 50 == 0:
            print(f"{k + 1} images", file=sys.stderr, flush=True)
    return results


def segd_results(coco, segd_dir):
    by_stem = {}
    for root, _, files in os.walk(segd_dir):
        for f in files:
            if f.endswith(".json") and f != "coco_results.json" and not f.endswith(".error.json"):
                by_stem[os.path.splitext(f)[0]] = os.path.join(root, f)
    results, missing = [], []
    for img_id in sorted(coco.getImgIds()):
        stem = os.path.splitext(os.path.basename(coco.loadImgs(img_id)[0]["file_name"]))[0]
        if stem not in by_stem:
            missing.append(stem)
            continue
        for inst in read_segd_instances(by_stem[stem]):
            results.append(dict(image_id=img_id, **inst))
    if missing:
        print(f"warning: no segd output for {len(missing)} images (e.g. {missing[:3]}); "
              "they count as images with no detections", file=sys.stderr)
    return results


def coco_eval(coco, results):
    stats = {}
    if not results:
        print("no detections")
        return stats
    dt = coco.loadRes(results)
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(coco, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        print(f"\n=== {iou_type} ===")
        ev.summarize()
        stats[iou_type] = dict(AP=ev.stats[0], AP50=ev.stats[1], AP75=ev.stats[2],
                               APs=ev.stats[3], APm=ev.stats[4], APl=ev.stats[5])
        print_per_class(coco, ev)
        ev = COCOeval(coco, dt, iou_type)
        ev.params.useCats = 0  # boxes/masks matched whatever their label: the class-free part
        ev.evaluate()
        ev.accumulate()
        print(f"class-agnostic: AP {mean_precision(ev.eval['precision']):.3f} "
              f"AP50 {mean_precision(ev.eval['precision'][:1]):.3f}")
    return stats


def mean_precision(p):
    """pycocotools' average over the precision array's valid (> -1) cells."""
    p = p[..., 0, 2]  # area 'all', maxDets 100
    p = p[p > -1]
    return float(p.mean()) if p.size else float("nan")


def print_per_class(coco, ev):
    p = ev.eval["precision"]  # IoU thresholds x recall x classes x areas x maxDets
    for k, cat in enumerate(ev.params.catIds):
        name = coco.cats[cat]["name"]
        print(f"{name:>10}: AP {mean_precision(p[:, :, k:k + 1]):.3f} "
              f"AP50 {mean_precision(p[:1, :, k:k + 1]):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="exported .safetensors: evaluate torchvision on it")
    src.add_argument("--segd", help="folder of segd per-image JSON files")
    ap.add_argument("--gt", default="/tmp/shapes_val", help="held-out set (made if missing)")
    ap.add_argument("--count", type=int, default=VAL_COUNT)
    ap.add_argument("--seed", type=int, default=VAL_SEED)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="evaluate the first N images only")
    ap.add_argument("--save-results", help="write the detections as a COCO results file")
    ap.add_argument("--stats-out", help="write the AP numbers as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    coco = COCO(ensure_gt(args.gt, args.count, args.seed))
    if args.limit:  # a quick look: only the first N images count
        keep = set(sorted(coco.getImgIds())[:args.limit])
        coco.dataset["images"] = [i for i in coco.dataset["images"] if i["id"] in keep]
        coco.dataset["annotations"] = [a for a in coco.dataset["annotations"]
                                       if a["image_id"] in keep]
        coco.createIndex()
    if args.weights:
        model, cfg, _ = M.load_safetensors(args.weights)
        results = torchvision_results(model, coco, args.gt)
    else:
        results = segd_results(coco, args.segd)
    if args.save_results:
        with open(args.save_results, "w") as f:
            json.dump(results, f)
    stats = coco_eval(coco, results)
    print("\nsummary:", json.dumps({k: {m: round(v, 4) for m, v in s.items()}
                                     for k, s in stats.items()}))
    if args.stats_out:
        with open(args.stats_out, "w") as f:
            json.dump(stats, f, indent=1)


if __name__ == "__main__":
    main()
