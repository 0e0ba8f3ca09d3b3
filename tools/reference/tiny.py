"""Small Mask R-CNNs built from torchvision's own classes, for test fixtures.

Every module is torchvision's (ResNet blocks, FrozenBatchNorm2d, BackboneWithFPN,
RPNHead, TwoMLPHead, FastRCNNPredictor, MaskRCNNHeads, MaskRCNNPredictor,
MaskRCNN), so the state-dict names and the computation are exactly those of
`maskrcnn_resnet50_fpn`; only the widths, depths and sizes are small.

  build("tiny")   Bottleneck ResNeXt [2,1,1,1], groups 2, FrozenBN eps 0.0, 5 classes
  build("basic")  BasicBlock ResNet [1,1,1,1], FrozenBN eps 1e-5, 3 classes
  build_r50(...)  maskrcnn_resnet50_fpn as /work/shared/bench/peer_torchvision.py builds it

The weights are seed-fixed random draws; see `randomize` for what differs from
torchvision's own initialisation and why.
"""
import json
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

# One dict per model; everything a builder needs, and what the fixture metadata says.
CONFIGS = {
    "tiny": dict(
        seed=0,
        block="Bottleneck",
        layers=[2, 1, 1, 1],
        stem_width=8,
        planes=[8, 16, 24, 32],  # Bottleneck expansion 4 -> stage outputs 32/64/96/128
        groups=2,
        width_per_group=32,  # inner 3x3 width = int(planes * 32/64) * 2 = planes -> 8/16/24/32
        fpn_out_channels=16,
        representation_size=32,
        mask_layers=[16, 16, 16, 16],
        mask_dim_reduced=16,
        classes=["__background__", "a", "b", "c", "d"],
        frozen_bn_eps=0.0,
        frozen_bn_eps_str="0.0",
        min_size=192,
        max_size=320,
        cls_std=2.0,
        bg_logit=7.1,
        # fixture images (H, W, seed): landscape 100x116 -> 192x222, portrait 124x108 -> 220x192
        # (both upscaled, min_size bound), padded batch 224x224
        images=[(100, 116, 11), (124, 108, 12)],
        final_masks_max=20,
    ),
    "basic": dict(
        seed=1,
        block="BasicBlock",
        layers=[1, 1, 1, 1],
        stem_width=8,
        planes=[8, 16, 24, 32],  # BasicBlock expansion 1 -> stage outputs 8/16/24/32
        groups=1,
        width_per_group=64,  # BasicBlock only supports 1 / 64
        fpn_out_channels=16,
        representation_size=32,
        mask_layers=[16, 16, 16, 16],
        mask_dim_reduced=16,
        classes=["__background__", "a", "b"],
        frozen_bn_eps=1e-5,
        frozen_bn_eps_str="1e-5",
        min_size=160,
        max_size=256,
        cls_std=2.0,
        bg_logit=6.6,
        # landscape 90x104 -> 160x184 (upscaled), portrait 190x168 -> 180x160 (downscaled),
        # padded batch 192x192
        images=[(90, 104, 21), (190, 168, 22)],
        final_masks_max=8,
    ),
}


def synthetic_image(h, w, seed):
    """Deterministic RGB uint8 H x W x 3: smooth gradients and a sinusoid, a dozen
    filled ellipses and rectangles (some overlapping, some cut by the border) and
    +-6 of seeded noise so that no region is exactly flat (flat regions give exactly
    tied scores whose order torch leaves unspecified). Pure numpy: no Pillow drawing
    code whose rasterisation might change between versions."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3), np.float64)
    img[..., 0] = 40 + 170 * x / w
    img[..., 1] = 30 + 160 * y / h
    img[..., 2] = 120 + 60 * np.sin(2 * np.pi * (x / w + 0.5 * y / h) * 1.5)
    for i in range(12):
        color = rng.uniform(0, 255, 3)
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        rx, ry = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
        if i % 2 == 0:
            inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
        else:
            inside = (np.abs(x - cx) <= rx) & (np.abs(y - cy) <= ry)
        # a gentle shading inside each shape, so shapes are not flat either
        shade = 1.0 + 0.15 * ((x - cx) / max(rx, 1) - (y - cy) / max(ry, 1)) / 2
        img[inside] = np.clip(color * shade[..., None], 0, 255)[inside]
    img += rng.uniform(-6, 6, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def fixture_images(cfg):
    """The config's synthetic images, H x W x 3 uint8 each."""
    return [synthetic_image(h, w, seed) for h, w, seed in cfg["images"]]


class SmallResNet(ResNet):
    """torchvision's ResNet with a custom stem width and per-stage widths.

    torchvision hard-codes 64 for the stem and 64/128/256/512 for the stages; this
    subclass only replaces those numbers and reuses `ResNet._make_layer`, so the
    module tree (conv1, bn1, layer1.0.conv1, ..., layerK.0.downsample.0/.1) and the
    forward pass are torchvision's. No avgpool/fc: the FPN extractor drops them.
    """

    def __init__(self, block, layers, stem_width, planes, groups=1, width_per_group=64, norm_layer=None):
        nn.Module.__init__(self)
        norm_layer = norm_layer or nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = stem_width
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):  # not used by the detector (IntermediateLayerGetter walks children)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def stage_channels(cfg):
    exp = Bottleneck.expansion if cfg["block"] == "Bottleneck" else BasicBlock.expansion
    return [p * exp for p in cfg["planes"]]


def randomize(model, cfg):
    """Seed-dependent changes to torchvision's initialisation, applied under no_grad.

    - FrozenBatchNorm2d statistics: weight U(0.5,1.5), bias N(0,0.1), running_mean
      N(0,0.1), running_var U(0.5,1.5), so that folding BN into the convolutions (and
      the epsilon) is exercised. A fresh FrozenBatchNorm2d is the identity.
    - RPN head: torchvision draws N(0, 0.01) weights, which give objectness logits of
      about 1e-3 whose ranking is decided by near-ties; top-k and NMS would then be
      too fragile for a reference. Redrawn with He-like scales so the logits spread
      over a few units and the deltas are moderate (proposals move off the anchors).
    The box classifier is calibrated afterwards, see `calibrate_classifier`.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        head = model.rpn.head
        c = head.cls_logits.in_channels
        conv = head.conv[0][0]
        conv.weight.normal_(0.0, (2.0 / (c * 9)) ** 0.5)
        conv.bias.normal_(0.0, 0.1)
        head.cls_logits.weight.normal_(0.0, (1.0 / c) ** 0.5)
        head.cls_logits.bias.normal_(0.0, 0.5)
        head.bbox_pred.weight.normal_(0.0, 0.2 * (1.0 / c) ** 0.5)
        head.bbox_pred.bias.zero_()


def to_input(u8):
    """H x W x 3 uint8 -> 3 x H x W float32 in [0,1], as ToTensor / peer_torchvision do."""
    return torch.from_numpy(u8).permute(2, 0, 1).float() / 255.0


def calibrate_classifier(model, cfg):
    """Data-dependent rescaling of the box classifier (cls_score) on the config's two
    synthetic images (run as one batch, as the fixture does). With random weights the box-head features (after ReLU) are dominated by a
    common mean, so one class wins every RoI with a near-constant score (100
    detections all of one label, scores within 0.05 of each other). Here each class's
    logit is centred over the RoIs of the calibration batch and scaled to standard
    deviation cfg["cls_std"], and the background logit gets +cfg["bg_logit"], so that
    labels vary and scores spread from near 1 down through the 0.05 threshold.
    The direction of each weight row stays the seed's random draw."""
    feats = []
    h = model.roi_heads.box_head.register_forward_hook(lambda _m, _i, out: feats.append(out.detach().clone()))
    with torch.no_grad():
        model([to_input(u8) for u8 in fixture_images(cfg)])
    h.remove()
    f = feats[0].double()
    mu = f.mean(0)
    lin = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        w = lin.weight.double()
        std = ((f - mu) @ w.t()).std(0)
        w = w * (cfg["cls_std"] / std)[:, None]
        b = -(w @ mu)
        b[0] += cfg["bg_logit"]
        lin.weight.copy_(w.float())
        lin.bias.copy_(b.float())


def build(name, **overrides):
    """The named small model (see CONFIGS), in eval mode, weights seed-fixed."""
    cfg = dict(CONFIGS[name], **overrides)
    torch.manual_seed(cfg["seed"])
    norm = partial(FrozenBatchNorm2d, eps=cfg["frozen_bn_eps"])
    block = Bottleneck if cfg["block"] == "Bottleneck" else BasicBlock
    body = SmallResNet(block, cfg["layers"], cfg["stem_width"], cfg["planes"],
                       groups=cfg["groups"], width_per_group=cfg["width_per_group"], norm_layer=norm)
    out = cfg["fpn_out_channels"]
    # What _resnet_fpn_extractor(body, 3) builds, with the in-channel list taken from
    # the real stage widths (_resnet_fpn_extractor assumes torchvision's 256*2^k).
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               stage_channels(cfg), out, extra_blocks=LastLevelMaxPool())
    ncls = len(cfg["classes"])
    rep = cfg["representation_size"]
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=cfg["min_size"],
        max_size=cfg["max_size"],
        box_head=TwoMLPHead(out * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, ncls),
        mask_head=MaskRCNNHeads(out, cfg["mask_layers"], 1),
        mask_predictor=MaskRCNNPredictor(cfg["mask_layers"][-1], cfg["mask_dim_reduced"], ncls),
    )
    randomize(model, cfg)
    model.eval()
    calibrate_classifier(model, cfg)
    return model, cfg


def safetensors_metadata(cfg):
    return {
        "format": "segd-maskrcnn",
        "arch": "maskrcnn_resnet_fpn",
        "frozen_bn_eps": cfg["frozen_bn_eps_str"],
        "min_size": str(cfg["min_size"]),
        "max_size": str(cfg["max_size"]),
        "classes": json.dumps(cfg["classes"]),
    }


def build_r50(weights=None, score=0.05):
    """maskrcnn_resnet50_fpn exactly as /work/shared/bench/peer_torchvision.py `build`
    makes it (seed 0, FrozenBN eps 0.0 with random statistics, classifier x0.1),
    optionally overwritten by a .pth or .safetensors state dict."""
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
    m = MaskRCNN(backbone, num_classes=91, box_score_thresh=score)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, FrozenBatchNorm2d):
                mod.eps = 0.0
                mod.weight.uniform_(0.5, 1.5); mod.bias.normal_(0.0, 0.1)
                mod.running_mean.normal_(0.0, 0.1); mod.running_var.uniform_(0.5, 1.5)
        m.roi_heads.box_predictor.cls_score.weight.mul_(0.1)
    if weights:
        m.load_state_dict(load_state_dict(weights))
    return m.eval()


def build_r50_v2(weights=None, score=0.05):
    """maskrcnn_resnet50_fpn_v2 (torchvision's builder, weights=None), seed 0, with the
    BatchNorm2d statistics drawn as build_r50 draws FrozenBN's (a fresh BN is the
    identity), optionally overwritten by a state dict."""
    from torch import nn
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    torch.manual_seed(0)
    m = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, box_score_thresh=score)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5); mod.bias.normal_(0.0, 0.1)
                mod.running_mean.normal_(0.0, 0.1); mod.running_var.uniform_(0.5, 1.5)
    if weights:
        m.load_state_dict(load_state_dict(weights))
    return m.eval()


def load_state_dict(path):
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


# Key renames from today's torchvision names to those of its 2019 checkpoints
# (maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth). torchvision maps them back in
# _load_from_state_dict of FeaturePyramidNetwork (ops/feature_pyramid_network.py:
# "{block}.{i}.{type}" -> "{block}.{i}.0.{type}"), RPNHead (models/detection/rpn.py:
# "conv.{type}" -> "conv.0.0.{type}") and MaskRCNNHeads (models/detection/mask_rcnn.py:
# "mask_fcn{i+1}.{type}" -> "{i}.0.{type}"), when the stored module version is < 2.
def legacy_key(key):
    import re
    k = re.sub(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.0\.(weight|bias)$",
               r"backbone.fpn.\1.\2.\3", key)
    k = re.sub(r"^rpn\.head\.conv\.0\.0\.(weight|bias)$", r"rpn.head.conv.\1", k)
    k = re.sub(r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$",
               lambda m: f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.{m.group(2)}", k)
    return k


def legacy_prefix(prefix):
    """Module prefix in _metadata under the old names ("" stays "")."""
    k = legacy_key(prefix + ".weight") if prefix else ""
    return k[: -len(".weight")] if k else ""


def legacy_state_dict(sd):
    """`sd` (a model.state_dict()) renamed to the 2019 key names, with a `_metadata`
    that says version 1 for every module, as torch attached it to those checkpoints
    (none of these modules had a `_version` then). Submodules that did not exist in
    2019 (the Conv2dNormActivation wrappers) are dropped from the metadata."""
    out = OrderedDict((legacy_key(k), v) for k, v in sd.items())
    meta = OrderedDict()
    for prefix in sd._metadata:
        old = legacy_prefix(prefix)
        if old == prefix and any(s in prefix for s in ("fpn.inner_blocks.", "fpn.layer_blocks.",
                                                        "rpn.head.conv.", "mask_head.")):
            continue  # wrapper module (e.g. rpn.head.conv.0, conv.0.1 ReLU) absent in 2019
        meta[old] = {"version": 1}
    out._metadata = meta
    return out
