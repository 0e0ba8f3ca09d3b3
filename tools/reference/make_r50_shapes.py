#!/usr/bin/env python3
"""Writes Tests/MaskRCNNTests/Fixtures/shapes/torchvision_r50.json: the state-dict key
names and shapes of torchvision's four R50-FPN detection builders, with torchvision's
parameter count of each, so that a test can build each full-size architecture (from
zero-filled tensors of those shapes) without a 170 MB .pth in the repository.

  make_r50_shapes.py [--out PATH]

The count is that of torchvision's weights metadata (`_COCO_..._Weights.DEFAULT.meta
["num_params"]`): the v1 builders are counted with FrozenBatchNorm2d (weights=None would
build nn.BatchNorm2d, whose γ, β are parameters; a COCO model has FrozenBatchNorm2d).
"""
import argparse
import json
import os

import torch
from torchvision.models.detection import (FasterRCNN_ResNet50_FPN_V2_Weights, FasterRCNN_ResNet50_FPN_Weights,
                                          MaskRCNN_ResNet50_FPN_V2_Weights, MaskRCNN_ResNet50_FPN_Weights,
                                          fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, maskrcnn_resnet50_fpn,
                                          maskrcnn_resnet50_fpn_v2)
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDERS = [(maskrcnn_resnet50_fpn, MaskRCNN_ResNet50_FPN_Weights), (maskrcnn_resnet50_fpn_v2, MaskRCNN_ResNet50_FPN_V2_Weights),
            (fasterrcnn_resnet50_fpn, FasterRCNN_ResNet50_FPN_Weights), (fasterrcnn_resnet50_fpn_v2, FasterRCNN_ResNet50_FPN_V2_Weights)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "MaskRCNNTests", "Fixtures", "shapes", "torchvision_r50.json"))
    a = ap.parse_args()
    out = {}
    for builder, weights in BUILDERS:
        v1 = not builder.__name__.endswith("_v2")
        # weights_backbone=None, weights=None: no download. For v1, FrozenBatchNorm2d as in
        # the COCO checkpoint (what is_trained selects).
        if v1:
            # what the builder makes when is_trained: resnet50(norm_layer=FrozenBatchNorm2d)
            backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
            m = (MaskRCNN if builder is maskrcnn_resnet50_fpn else FasterRCNN)(backbone, num_classes=91)
        else:
            m = builder(weights=None, weights_backbone=None)
        params = sum(p.numel() for p in m.parameters())
        published = weights.DEFAULT.meta["num_params"]
        assert params == published, (builder.__name__, params, published)
        out[builder.__name__] = {"num_params": params,
                                 "shapes": {k: list(v.shape) for k, v in m.state_dict().items()}}
        print(f"{builder.__name__}: {params} parameters, {len(m.state_dict())} tensors")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"{os.path.relpath(a.out, REPO)}: {os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
