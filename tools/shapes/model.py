"""The sample model: torchvision's own MaskRCNN on a narrow ResNet-18 + FPN.

Everything here is torchvision's classes (`BackboneWithFPN`, `FeaturePyramidNetwork`,
`RPNHead`, `TwoMLPHead`, `FastRCNNPredictor`, `MaskRCNNHeads`, `MaskRCNNPredictor`,
`MaskRCNN`), so the state-dict names are torchvision's current ones. The only thing
that is not torchvision's is the ResNet width: torchvision's `ResNet` hard-codes 64
stem channels, and ResNet-18 at full width alone is 44.7 MB of fp32. `NarrowResNet` is
torchvision's `ResNet` layout (same attribute names: conv1, bn1, layer1..4, each block a
torchvision `BasicBlock` with conv1/bn1/conv2/bn2/downsample.0/.1) with the widths as a
parameter. segd reads the widths, the block counts and the FPN/head widths from the
state dict's shapes; `config_from_state_dict` here does the same, so nothing about the
architecture needs to be guessed from the file name.

Normalization: trained with `nn.BatchNorm2d` (eps 1e-5) and exported as torchvision's
`FrozenBatchNorm2d(eps=1e-5)` with the running statistics — see train.py for how the
last part of training runs with the statistics frozen so the two are the same model.
"""
import json
from dataclasses import dataclass, asdict, field

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import TwoMLPHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

CLASS_NAMES = ["__background__", "circle", "square", "triangle", "star", "hexagon"]
FROZEN_BN_EPS = 1e-5
IMAGE_MEAN = [0.485, 0.456, 0.406]   # torchvision's defaults, kept so segd's path is the usual one
IMAGE_STD = [0.229, 0.224, 0.225]


@dataclass
class Config:
    stem: int = 32
    widths: tuple = (32, 64, 128, 256)
    blocks: tuple = (2, 2, 2, 2)          # ResNet-18 layout
    fpn_channels: int = 64
    representation_size: int = 128       # TwoMLPHead fc6/fc7 (256 would push the file over 15 MB)
    mask_layers: tuple = (64, 64, 64, 64)
    mask_dim_reduced: int = 64
    num_classes: int = len(CLASS_NAMES)
    min_size: int = 384
    max_size: int = 640
    image_mean: list = field(default_factory=lambda: list(IMAGE_MEAN))
    image_std: list = field(default_factory=lambda: list(IMAGE_STD))
    box_score_thresh: float = 0.05
    box_detections_per_img: int = 100

    def to_json(self):
        return json.dumps(asdict(self))


class NarrowResNet(nn.Module):
    """torchvision.models.resnet.ResNet (BasicBlock) with configurable widths; no fc."""

    def __init__(self, stem, widths, blocks, norm_layer, zero_init_residual=True):
        super().__init__()
        self._norm_layer = norm_layer
        self.inplanes = stem
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], blocks[0], 1)
        self.layer2 = self._make_layer(widths[1], blocks[1], 2)
        self.layer3 = self._make_layer(widths[2], blocks[2], 2)
        self.layer4 = self._make_layer(widths[3], blocks[3], 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d,)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock) and isinstance(m.bn2, nn.BatchNorm2d):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes, n, stride):
        norm_layer = self._norm_layer
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                norm_layer(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, norm_layer=norm_layer)]
        self.inplanes = planes
        for _ in range(1, n):
            layers.append(BasicBlock(self.inplanes, planes, norm_layer=norm_layer))
        return nn.Sequential(*layers)


def config_for_training(args):
    """The Config train.py builds from its arguments (also read back from a checkpoint's
    saved arguments; runs from before --widths/--representation-size used the defaults)."""
    return Config(min_size=args.min_size, max_size=args.max_size,
                  widths=tuple(getattr(args, "widths", Config.widths)),
                  representation_size=getattr(args, "representation_size", Config.representation_size))


def to_tensor(pil):
    """PIL RGB -> float CHW tensor in [0, 1], what torchvision's MaskRCNN takes."""
    return torch.from_numpy(np.array(pil, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0


def frozen_bn(c):
    return FrozenBatchNorm2d(c, eps=FROZEN_BN_EPS)


def build(cfg: Config, frozen=True, **train_kwargs):
    """MaskRCNN for `cfg`. frozen=True: FrozenBatchNorm2d(eps=1e-5), as segd runs it;
    frozen=False: nn.BatchNorm2d(eps=1e-5) for training. train_kwargs go to MaskRCNN
    (training-only knobs such as rpn_batch_size_per_image)."""
    norm = frozen_bn if frozen else (lambda c: nn.BatchNorm2d(c, eps=FROZEN_BN_EPS))
    body = NarrowResNet(cfg.stem, cfg.widths, cfg.blocks, norm)
    backbone = BackboneWithFPN(
        body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=list(cfg.widths), out_channels=cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool())
    rep = cfg.representation_size
    model = MaskRCNN(
        backbone, num_classes=None,
        min_size=cfg.min_size, max_size=cfg.max_size,
        image_mean=cfg.image_mean, image_std=cfg.image_std,
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, cfg.num_classes),
        mask_head=MaskRCNNHeads(cfg.fpn_channels, list(cfg.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_dim_reduced,
                                         cfg.num_classes),
        box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        **train_kwargs)
    return model


def config_from_state_dict(sd, meta=None):
    """Architecture from tensor shapes (+ the safetensors metadata for what shapes can't say)."""
    body = "backbone.body."
    cfg = Config()
    cfg.stem = sd[body + "conv1.weight"].shape[0]
    widths, blocks = [], []
    for li in range(1, 5):
        widths.append(sd[f"{body}layer{li}.0.conv1.weight"].shape[0])
        n = 0
        while f"{body}layer{li}.{n}.conv1.weight" in sd:
            n += 1
        blocks.append(n)
        if f"{body}layer{li}.0.conv3.weight" in sd:
            raise ValueError("Bottleneck blocks are not what this tool builds")
    cfg.widths, cfg.blocks = tuple(widths), tuple(blocks)
    cfg.fpn_channels = sd["backbone.fpn.layer_blocks.0.0.weight"].shape[0]
    cfg.representation_size = sd["roi_heads.box_head.fc6.weight"].shape[0]
    layers = []
    while f"roi_heads.mask_head.{len(layers)}.0.weight" in sd:
        layers.append(sd[f"roi_heads.mask_head.{len(layers)}.0.weight"].shape[0])
    cfg.mask_layers = tuple(layers)
    cfg.mask_dim_reduced = sd["roi_heads.mask_predictor.conv5_mask.weight"].shape[1]
    cfg.num_classes = sd["roi_heads.box_predictor.cls_score.weight"].shape[0]
    if meta:
        cfg.min_size = int(meta["min_size"])
        cfg.max_size = int(meta["max_size"])
        cfg.image_mean = json.loads(meta["image_mean"])
        cfg.image_std = json.loads(meta["image_std"])
        cfg.box_score_thresh = float(meta["box_score_thresh"])
        cfg.box_detections_per_img = int(meta["box_detections_per_img"])
        assert float(meta["frozen_bn_eps"]) == FROZEN_BN_EPS, meta["frozen_bn_eps"]
    return cfg


def load_safetensors(path, score_thresh=None):
    """torchvision MaskRCNN with FrozenBatchNorm2d(eps=1e-5), from an exported file, strict."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    sd = load_file(path)
    cfg = config_from_state_dict(sd, meta)
    if score_thresh is not None:
        cfg.box_score_thresh = score_thresh
    model = build(cfg, frozen=True)
    model.load_state_dict(sd, strict=True)
    return model.eval(), cfg, meta


def param_count(model):
    return sum(t.numel() for t in model.state_dict().values())
