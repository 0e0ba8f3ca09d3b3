"""Small torchvision detectors of the other layouts segd loads, for test fixtures.

Every module is torchvision's, so the state-dict names and the computation are those of
the named builder; only widths, depths and sizes are small (fixtures of a few hundred KB):

  build("v2")         maskrcnn_resnet50_fpn_v2's layout: nn.BatchNorm2d (eps 1e-5) in the
                      ResNet, FPN norm_layer=BatchNorm2d, RPNHead(conv_depth=2),
                      FastRCNNConvFCHead(4 conv+BN, 1 FC), MaskRCNNHeads(norm_layer=BatchNorm2d)
  build("faster")     fasterrcnn_resnet50_fpn's layout (FrozenBN eps 0.0, TwoMLPHead, no mask head)
  build("faster_v2")  fasterrcnn_resnet50_fpn_v2's layout (v2 without the mask head)
  build("tutorial")   the detection tutorial's fine-tuned shape: a v1 Mask R-CNN built for 91
                      COCO classes (FrozenBN eps 0.0, as the COCO checkpoint), then its
                      box_predictor and mask_predictor replaced by 3-class ones exactly as
                      the tutorial does (FastRCNNPredictor(in_features, 3),
                      MaskRCNNPredictor(in_features_mask, hidden_layer, 3))

Weights: seeded random draws changed as in tiny.py (random BN statistics, a He-scaled RPN
head, the box classifier calibrated on the fixture images) so that every decision the
reference makes is away from ties; each bg_logit was picked among 5.8/6.0/6.2/6.4 for the
widest margin to the 0.05 score threshold (make_family_fixtures.py prints the margins).
"""
from functools import partial

import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

import tiny

COMMON = dict(stem_width=8, fpn_out_channels=8, min_size=96, max_size=160, cls_std=2.0,
              # landscape 60x70 -> 96x112, portrait 72x64 -> 108x96 (both upscaled); padded 128x128
              images=[(60, 70, 31), (72, 64, 32)], final_masks_max=6)

CONFIGS = {
    "v2": dict(COMMON, seed=5, block="Bottleneck", layers=[1, 1, 1, 1], planes=[4, 8, 12, 16], groups=1, width_per_group=64,
               v2=True, masks=True, box_convs=[8, 8, 8, 8], representation_size=32, mask_layers=[8, 8, 8, 8],
               mask_dim_reduced=8, classes=["__background__", "cat", "dog", "bird"], bg_logit=6.2),
    "faster": dict(COMMON, seed=6, block="BasicBlock", layers=[1, 1, 1, 1], planes=[8, 16, 24, 32], groups=1, width_per_group=64,
                   v2=False, masks=False, frozen_bn_eps=0.0, representation_size=32,
                   classes=["__background__", "a", "b", "c"], bg_logit=5.8),
    "faster_v2": dict(COMMON, seed=7, block="Bottleneck", layers=[1, 1, 1, 1], planes=[4, 8, 12, 16], groups=1, width_per_group=64,
                      v2=True, masks=False, box_convs=[8, 8, 8, 8], representation_size=32,
                      classes=["__background__", "a", "b", "c"], bg_logit=6.0),
    "tutorial": dict(COMMON, seed=8, block="Bottleneck", layers=[1, 1, 1, 1], planes=[4, 8, 12, 16], groups=1, width_per_group=64,
                     v2=False, masks=True, frozen_bn_eps=0.0, representation_size=32, mask_layers=[8, 8, 8, 8],
                     mask_dim_reduced=8, classes=["__background__", "pedestrian", "cyclist"], bg_logit=5.0),
}


def stage_channels(cfg):
    exp = Bottleneck.expansion if cfg["block"] == "Bottleneck" else BasicBlock.expansion
    return [p * exp for p in cfg["planes"]]


def randomize(model):
    """As tiny.randomize, for BatchNorm2d as well as FrozenBatchNorm2d, and for every
    conv of a deeper RPN head."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, nn.BatchNorm2d):
                m.num_batches_tracked.fill_(1000)  # as after training: must be accepted and ignored
        head = model.rpn.head
        c = head.cls_logits.in_channels
        for block in head.conv:
            block[0].weight.normal_(0.0, (2.0 / (c * 9)) ** 0.5)
            block[0].bias.normal_(0.0, 0.1)
        head.cls_logits.weight.normal_(0.0, (1.0 / c) ** 0.5)
        head.cls_logits.bias.normal_(0.0, 0.5)
        head.bbox_pred.weight.normal_(0.0, 0.2 * (1.0 / c) ** 0.5)
        head.bbox_pred.bias.zero_()


def build(name):
    cfg = dict(CONFIGS[name])
    torch.manual_seed(cfg["seed"])
    v2 = cfg["v2"]
    norm = nn.BatchNorm2d if v2 else partial(FrozenBatchNorm2d, eps=cfg["frozen_bn_eps"])
    block = Bottleneck if cfg["block"] == "Bottleneck" else BasicBlock
    body = tiny.SmallResNet(block, cfg["layers"], cfg["stem_width"], cfg["planes"],
                            groups=cfg["groups"], width_per_group=cfg["width_per_group"], norm_layer=norm)
    out = cfg["fpn_out_channels"]
    # _resnet_fpn_extractor(body, layers, norm_layer=nn.BatchNorm2d for v2) with the real stage widths
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               stage_channels(cfg), out, extra_blocks=LastLevelMaxPool(),
                               norm_layer=nn.BatchNorm2d if v2 else None)
    ncls = len(cfg["classes"])
    rep = cfg["representation_size"]
    kw = dict(min_size=cfg["min_size"], max_size=cfg["max_size"])
    if v2:
        kw["rpn_head"] = RPNHead(out, 3, conv_depth=2)
        kw["box_head"] = FastRCNNConvFCHead((out, 7, 7), cfg["box_convs"], [rep], norm_layer=nn.BatchNorm2d)
    else:
        kw["box_head"] = TwoMLPHead(out * 7 * 7, rep)
    if name == "tutorial":
        model = MaskRCNN(backbone, num_classes=None, box_predictor=FastRCNNPredictor(rep, 91),
                         mask_head=MaskRCNNHeads(out, cfg["mask_layers"], 1),
                         mask_predictor=MaskRCNNPredictor(cfg["mask_layers"][-1], cfg["mask_dim_reduced"], 91), **kw)
        # torchvision's "TorchVision Object Detection Finetuning Tutorial", get_model_instance_segmentation
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, ncls)
        in_features_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
        hidden_layer = cfg["mask_dim_reduced"]
        model.roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, hidden_layer, ncls)
    elif cfg["masks"]:
        mask_norm = nn.BatchNorm2d if v2 else None
        model = MaskRCNN(backbone, num_classes=None, box_predictor=FastRCNNPredictor(rep, ncls),
                         mask_head=MaskRCNNHeads(out, cfg["mask_layers"], 1, norm_layer=mask_norm),
                         mask_predictor=MaskRCNNPredictor(cfg["mask_layers"][-1], cfg["mask_dim_reduced"], ncls), **kw)
    else:
        model = FasterRCNN(backbone, num_classes=None, box_predictor=FastRCNNPredictor(rep, ncls), **kw)
    randomize(model)
    model.eval()
    tiny.calibrate_classifier(model, cfg)
    return model, cfg
