#!/usr/bin/env python3
"""Export a train.py result as segd's model file (and a torchvision .pth for reference).

    python tools/shapes/export.py /tmp/shapes_run/final.pt \
        --out samples/model/shapes_r18.safetensors --pth /tmp/shapes_r18.pth

The safetensors file holds the state dict of torchvision's MaskRCNN built with
FrozenBatchNorm2d(eps=1e-5) — torchvision's current key names, float32, contiguous;
BatchNorm's `num_batches_tracked` counters are dropped (FrozenBatchNorm2d has none) —
and the metadata segd reads (format, arch, name, classes, frozen_bn_eps, min_size,
max_size, image_mean, image_std, box_score_thresh, box_detections_per_img, trained_by).

Before writing, the export is checked: the key set must equal a fresh FrozenBN model's,
and the model loaded back from the written file (strict) must give the same detections
as the trained nn.BatchNorm2d module in eval mode on a few held-out scenes.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402


def frozen_state_dict(train_sd):
    return {k: v.detach().to(torch.float32).contiguous().clone()
            for k, v in train_sd.items() if not k.endswith("num_batches_tracked")}


def metadata(cfg, command, name):
    return {
        "format": "segd-maskrcnn",
        "arch": "maskrcnn_resnet_fpn",
        "name": name,
        "classes": json.dumps(M.CLASS_NAMES),
        "frozen_bn_eps": "1e-05",
        "min_size": str(cfg.min_size),
        "max_size": str(cfg.max_size),
        "image_mean": json.dumps(cfg.image_mean),
        "image_std": json.dumps(cfg.image_std),
        "box_score_thresh": str(cfg.box_score_thresh),
        "box_detections_per_img": str(cfg.box_detections_per_img),
        "trained_by": command,
    }


@torch.no_grad()
def compare(trained, exported, n_scenes=4, seed=1000):
    """Max differences between the two models' eval outputs on held-out scenes."""
    worst = dict(boxes=0.0, scores=0.0, masks=0.0, count_mismatch=0)
    for i in range(n_scenes):
        img, _ = T.scene_tensors(seed, i)
        a, b = trained([img])[0], exported([img])[0]
        if len(a["boxes"]) != len(b["boxes"]) or not torch.equal(a["labels"], b["labels"]):
            worst["count_mismatch"] += 1
            continue
        if len(a["boxes"]) == 0:
            continue
        worst["boxes"] = max(worst["boxes"], (a["boxes"] - b["boxes"]).abs().max().item())
        worst["scores"] = max(worst["scores"], (a["scores"] - b["scores"]).abs().max().item())
        worst["masks"] = max(worst["masks"], (a["masks"] - b["masks"]).abs().max().item())
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="train.py's final.pt (or a ckpt.pt of a run in progress)")
    ap.add_argument("--out", default="samples/model/shapes_r18.safetensors")
    ap.add_argument("--pth", default="/tmp/shapes_r18.pth", help="torch zip checkpoint, not committed")
    ap.add_argument("--name", default="shapes-r18w32-fpn64")
    args = ap.parse_args()
    torch.set_num_threads(1)

    ck = torch.load(args.ckpt, weights_only=False, map_location="cpu")
    if "state_dict" not in ck:  # a periodic ckpt.pt (for a look at a run in progress)
        a = ck["args"]
        ck = dict(state_dict=ck["model"], command=f"tools/shapes/train.py (checkpoint at "
                  f"iteration {ck['iter']} of {a['iters']}, seed {a['seed']})",
                  config=json.loads(M.config_for_training(argparse.Namespace(**a)).to_json()))
    cfg = M.Config(**{k: tuple(v) if isinstance(v, list) and k in ("widths", "blocks", "mask_layers")
                      else v for k, v in ck["config"].items()})
    sd = frozen_state_dict(ck["state_dict"])
    expected = M.build(cfg, frozen=True).state_dict()
    missing, extra = set(expected) - set(sd), set(sd) - set(expected)
    assert not missing and not extra, (missing, extra)
    for k, v in expected.items():
        assert v.shape == sd[k].shape, (k, v.shape, sd[k].shape)

    command = ck["command"]
    meta = metadata(cfg, command, args.name)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(sd, args.out, metadata=meta)
    if args.pth:
        torch.save(sd, args.pth)  # default zip serialization, like torchvision's downloads

    trained = M.build(cfg, frozen=False)
    trained.load_state_dict(ck["state_dict"], strict=True)
    trained.eval()
    exported, cfg2, _ = M.load_safetensors(args.out)
    assert cfg2 == cfg, (cfg2, cfg)
    worst = compare(trained, exported)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {len(sd)} tensors, "
          f"{sum(v.numel() for v in sd.values())} values)")
    print("metadata:", json.dumps(meta, indent=1))
    print("BatchNorm2d(eval) module vs FrozenBatchNorm2d(1e-5) from the file, max |diff|:", worst)
    assert worst["count_mismatch"] == 0 and worst["boxes"] < 1e-2 and worst["scores"] < 1e-4 \
        and worst["masks"] < 1e-4, worst


if __name__ == "__main__":
    main()
