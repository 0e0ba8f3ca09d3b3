#!/usr/bin/env python3
"""Writes the op-level test fixtures from torch/torchvision (deterministic).

  make_op_fixtures.py [--check]

Tests/TensorTests/Fixtures/ops.safetensors          (TensorTests: Tensor ops and kernels)
Tests/MaskRCNNTests/Fixtures/ops/boxes.safetensors  (MaskRCNNTests.OpTests: box kernels,
                                                     RoIAlign, anchors, mask paste)

Every expected tensor is what torch / torchvision computes on CPU in float32 for the
stored inputs; nothing is re-derived. The Swift tests name the cases they expect, so a
case dropped here fails there. Integer tensors (indices, geometry) are I64; the paste
expectations are U8. Layout of names: `<op>.<case>.<tensor>`; per-case parameters that
the Swift side needs (conv geometry, k of top-k) are stored as I64 tensors too, so
Python and Swift cannot drift apart.

--check regenerates into a temporary directory and compares with the committed files.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import boxes as box_ops
from torchvision.ops import MultiScaleRoIAlign

from make_fixtures import save_safetensors  # noqa: E402  (this folder is on sys.path when run)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPS = "Tests/TensorTests/Fixtures/ops.safetensors"
BOXES = "Tests/MaskRCNNTests/Fixtures/ops/boxes.safetensors"
SIZE_LIMIT = 1_500_000  # bytes, both files together
PASTE_BAND = 1e-5  # pixels whose torch probability is within this of 0.5 are not compared


def i64(*v):
    return torch.tensor(v, dtype=torch.int64)


# ---------------------------------------------------------------- Tensor ops

def conv_cases(g, t):
    """conv.<name>.{geom,x,w,b?,r?,y}; geom = [in, out, k, stride, pad, dilation, groups,
    transposed, relu, has_bias, has_residual]."""
    cases = [
        # name,          N, in, H,  W,  out, k, s, p, d, groups, transposed, relu, bias, residual
        ("c1x1",          2, 16, 9, 11, 24, 1, 1, 0, 1, 1, 0, 0, 1, 0),
        ("c3x3_relu",     2, 8, 10, 12, 16, 3, 1, 1, 1, 1, 0, 1, 1, 0),
        ("c7s2p3",        1, 3, 23, 19, 8, 7, 2, 3, 1, 1, 0, 1, 1, 0),
        ("c7s2p3_nobias", 1, 3, 23, 19, 8, 7, 2, 3, 1, 1, 0, 0, 0, 0),
        ("c3x3_nobias",   1, 5, 7, 6, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0),   # C not a multiple of 8: padded blocks
        ("g2",            2, 8, 9, 9, 16, 3, 1, 1, 1, 2, 0, 0, 1, 0),
        ("g4s2_relu",     1, 16, 11, 10, 16, 3, 2, 1, 1, 4, 0, 1, 1, 0),  # ResNeXt downsampling 3×3
        ("dw_x2",         1, 16, 8, 9, 32, 3, 1, 1, 1, 16, 0, 1, 1, 0),  # depthwise, multiplier 2
        ("dil2",          1, 8, 12, 13, 8, 3, 1, 2, 2, 1, 0, 0, 0, 0),
        ("dil2_g2",       1, 8, 12, 13, 8, 3, 1, 2, 2, 2, 0, 0, 1, 0),
        ("res",           2, 16, 8, 8, 16, 1, 1, 0, 1, 1, 0, 0, 1, 1),
        ("res_relu",      2, 8, 8, 7, 32, 3, 1, 1, 1, 1, 0, 1, 1, 1),    # ReLU after the add
        ("res_relu_s2",   1, 16, 9, 9, 24, 1, 2, 0, 1, 1, 0, 1, 0, 1),
        ("t2s2_relu",     2, 16, 7, 7, 8, 2, 2, 0, 1, 1, 1, 1, 1, 0),   # mask head conv5_mask
        ("t2s2_g2",       1, 8, 5, 6, 12, 2, 2, 0, 1, 2, 1, 0, 1, 0),
        ("t3s2p1_nobias", 1, 6, 5, 4, 4, 3, 2, 1, 1, 1, 1, 0, 0, 0),
    ]
    for (name, n, cin, h, w, cout, k, s, p, d, grp, tr, relu, has_b, has_r) in cases:
        x = torch.randn(n, cin, h, w, generator=g)
        fan = cin // grp * k * k
        if tr:
            wt = torch.randn(cin, cout // grp, k, k, generator=g) / fan ** 0.5
        else:
            wt = torch.randn(cout, cin // grp, k, k, generator=g) / fan ** 0.5
        b = torch.randn(cout, generator=g) * 0.5 if has_b else None
        if tr:
            y = F.conv_transpose2d(x, wt, b, stride=s, padding=p, dilation=d, groups=grp)
        else:
            y = F.conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=grp)
        pre = f"conv.{name}."
        if has_r:
            r = torch.randn(y.shape, generator=g)
            t[pre + "r"] = r
            y = y + r
        if relu:
            y = F.relu(y)
        t[pre + "geom"] = i64(cin, cout, k, s, p, d, grp, tr, relu, has_b, has_r)
        t[pre + "x"] = x
        t[pre + "w"] = wt
        if b is not None:
            t[pre + "b"] = b
        t[pre + "y"] = y

    # A residual that is itself a convolution's output (blocked layout, so Conv2d writes
    # the sum into its storage): y = relu(conv3x3(x) + conv1x1(x)), a ResNet block.
    x = torch.randn(2, 8, 9, 10, generator=g)
    wa = torch.randn(16, 8, 1, 1, generator=g) / 8 ** 0.5
    ba = torch.randn(16, generator=g) * 0.5
    wb = torch.randn(16, 8, 3, 3, generator=g) / 72 ** 0.5
    bb = torch.randn(16, generator=g) * 0.5
    t.update({"chain.x": x, "chain.wa": wa, "chain.ba": ba, "chain.wb": wb, "chain.bb": bb,
              "chain.y": F.relu(F.conv2d(x, wb, bb, padding=1) + F.conv2d(x, wa, ba))})


def linear_cases(g, t):
    for name, shape, o, relu in [("rows", (37, 48), 20, 0), ("rows_relu", (5, 64), 33, 1),
                                 ("one_row", (1, 7), 3, 1), ("flatten4d", (6, 4, 3, 3), 10, 1)]:
        x = torch.randn(*shape, generator=g)
        i = x[0].numel()
        w = torch.randn(o, i, generator=g) / i ** 0.5
        b = torch.randn(o, generator=g) * 0.5
        y = F.linear(torch.flatten(x, 1), w, b)
        if relu:
            y = F.relu(y)
        t.update({f"linear.{name}.x": x, f"linear.{name}.w": w, f"linear.{name}.b": b,
                  f"linear.{name}.relu": i64(relu), f"linear.{name}.y": y})


def pool_cases(g, t):
    for name, shape, k, s, p in [("k3s2p1", (2, 5, 13, 14), 3, 2, 1), ("k3s2p1_even", (1, 3, 8, 8), 3, 2, 1),
                                 ("k1s2p0", (2, 5, 7, 9), 1, 2, 0), ("k1s2p0_even", (1, 4, 6, 8), 1, 2, 0)]:
        # All negative in part of the input: a padded cell must never win (PyTorch pads with −∞).
        x = torch.randn(*shape, generator=g) - 1.5
        t.update({f"pool.{name}.x": x, f"pool.{name}.kspad": i64(k, s, p),
                  f"pool.{name}.y": F.max_pool2d(x, k, s, p)})
    # On a convolution's (blocked) output: conv.c1x1 then the ResNet stem's pool.
    t["pool.after_conv.y"] = F.max_pool2d(t["conv.c1x1.y"], 3, 2, 1)


def upsample_cases(g, t):
    top = torch.randn(2, 6, 5, 7, generator=g)
    lat = torch.randn(2, 6, 10, 14, generator=g)
    t.update({"up.plain.top": top, "up.plain.lateral": lat,
              "up.plain.y": lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")})
    # FPN-like: both from 1×1 convolutions (oneDNN's blocked layout), 16 channels.
    xt = torch.randn(1, 8, 4, 5, generator=g)
    xl = torch.randn(1, 12, 8, 10, generator=g)
    wt = torch.randn(16, 8, 1, 1, generator=g) / 8 ** 0.5
    wl = torch.randn(16, 12, 1, 1, generator=g) / 12 ** 0.5
    bt = torch.randn(16, generator=g) * 0.5
    bl = torch.randn(16, generator=g) * 0.5
    inner_top = F.conv2d(xt, wt, bt)
    inner_lat = F.conv2d(xl, wl, bl)
    t.update({"up.conv.xt": xt, "up.conv.xl": xl, "up.conv.wt": wt, "up.conv.wl": wl, "up.conv.bt": bt,
              "up.conv.bl": bl, "up.conv.top": inner_top,
              "up.conv.y": inner_lat + F.interpolate(inner_top, size=inner_lat.shape[-2:], mode="nearest")})


def resize_cases(g, t):
    # ATen has two float bilinear kernels: a "channels last" one (outH + outW ≤ 128, or
    # C == 3 on one thread) computing w00·a + w01·b + w10·c + w11·d, and the generic
    # separable one h0·(w0·a + w1·b) + h1·(w0·c + w1·d), which Resize.bilinear follows.
    # The cases cover both (`path` says which, 0 generic, 1 channels last).
    for name, (c, h, w), (oh, ow) in [("up_frac", (3, 7, 9), (16, 21)), ("down_frac", (2, 40, 33), (13, 10)),
                                      ("up_int", (1, 5, 6), (10, 18)), ("same", (1, 8, 8), (8, 8)),
                                      ("mixed", (2, 17, 40), (31, 12)), ("mask_up", (1, 30, 30), (97, 83)),
                                      ("mask_down", (1, 30, 30), (71, 9)), ("big_down", (1, 100, 90), (64, 80))]:
        x = torch.rand(1, c, h, w, generator=g) * 4 - 2
        y = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)
        path = int(oh + ow <= 128 or c == 3)
        t.update({f"resize.{name}.x": x[0], f"resize.{name}.y": y[0], f"resize.{name}.path": i64(path)})


def kernel_cases(g, t):
    x = torch.randn(40, 7, generator=g) * 3
    x[0] = 100 + torch.randn(7, generator=g)     # exp overflows without the max subtraction
    x[1] = -100 + torch.randn(7, generator=g)
    x[2] = 0.25                                  # all equal
    x[3, 0] = 60                                 # one dominant: others underflow towards 0
    x[4] = torch.tensor([1e-3, -1e-3, 0, 2e-3, 0, 0, -5e-4])
    t["softmax.x"] = x
    t["softmax.y"] = torch.softmax(x, dim=1)
    s = torch.cat([torch.linspace(-20, 20, 401), torch.tensor([-100.0, -88.0, -30.0, 0.0, 30.0, 88.0, 100.0]),
                   torch.randn(200, generator=g) * 4])
    t["sigmoid.x"] = s
    t["sigmoid.y"] = torch.sigmoid(s)

    def topk(name, v, k):
        kk = min(k, v.numel())
        vals, idx = torch.topk(v, kk, sorted=True)
        t.update({f"topk.{name}.x": v, f"topk.{name}.k": i64(k), f"topk.{name}.values": vals,
                  f"topk.{name}.indices": idx})
    topk("random", torch.randn(1000, generator=g), 100)
    topk("random_half", torch.randn(63, generator=g), 31)           # k·64 > n: nth_element path in ATen
    topk("ties", torch.randint(0, 10, (200,), generator=g).float(), 37)
    topk("ties_many", torch.randint(0, 5, (3000,), generator=g).float() * 0.5, 100)
    topk("all_equal", torch.full((50,), 0.125), 10)
    topk("k_gt_n", torch.randn(13, generator=g), 20)
    topk("k_eq_n", torch.randn(9, generator=g), 9)
    topk("neg", -torch.rand(500, generator=g) * 1e-3 - 5, 7)

    # Reorder round trip: 13 channels (padded inside oneDNN's 8-channel blocks).
    t["reorder.x"] = torch.randn(2, 13, 5, 6, generator=g)


def make_ops():
    g = torch.Generator().manual_seed(20240601)
    t = {}
    conv_cases(g, t)
    linear_cases(g, t)
    pool_cases(g, t)
    upsample_cases(g, t)
    resize_cases(g, t)
    kernel_cases(g, t)
    return t


# ---------------------------------------------------------------- MaskRCNN kernels

def random_boxes(g, n, lo, hi, wmin, wmax):
    x1 = torch.rand(n, generator=g) * (hi - lo) + lo
    y1 = torch.rand(n, generator=g) * (hi - lo) + lo
    w = torch.rand(n, generator=g) * (wmax - wmin) + wmin
    h = torch.rand(n, generator=g) * (wmax - wmin) + wmin
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def clustered_boxes(g, n, centres, spread, wmin, wmax):
    """Boxes jittered around a few centres, so that most pairs overlap heavily."""
    c = centres[torch.randint(0, len(centres), (n,), generator=g)]
    ctr = c + torch.randn(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * (wmax - wmin) + wmin
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)


def decode_cases(g, t):
    ref = random_boxes(g, 200, -20, 300, 0.5, 200)
    ref[0] = torch.tensor([10.0, 10.0, 10.0, 10.0])      # zero-size reference box
    ref[1] = torch.tensor([0.0, 0.0, 1e-3, 2e-3])
    d = torch.randn(200, 4, generator=g)
    d[:20, 2:] = torch.rand(20, 2, generator=g) * 30 - 5  # dw, dh far past log(1000/16) ≈ 4.135
    d[20:30, 2:] = -torch.rand(10, 2, generator=g) * 30   # very negative: boxes shrink to a point
    d[30] = torch.tensor([0.0, 0.0, 4.135166556742356, 4.135166556742356])  # right at the clamp
    t["decode.reference"] = ref
    t["decode.deltas"] = d
    for name, wts, scale in [("w1", (1.0, 1.0, 1.0, 1.0), 1.0), ("w10", (10.0, 10.0, 5.0, 5.0), 5.0)]:
        coder = det_utils.BoxCoder(wts)
        # (10, 10, 5, 5): deltas are scaled up so that dw/5 still crosses the clamp.
        dd = d * scale
        t[f"decode.{name}.deltas"] = dd
        t[f"decode.{name}.boxes"] = coder.decode_single(dd, ref)
    # clip_boxes_to_image and remove_small_boxes, the two other per-box steps.
    b = random_boxes(g, 100, -60, 260, 0, 120)
    b[:5, 2] = b[:5, 0] + torch.tensor([0.0, 1e-3, 0.0099, 0.01, 0.0101])
    t["clip.boxes"] = b
    t["clip.size"] = i64(150, 200)  # (h, w)
    t["clip.out"] = box_ops.clip_boxes_to_image(b, (150, 200))
    t["small.keep"] = box_ops.remove_small_boxes(t["clip.out"], 0.01)


def reference_nms(boxes, scores, thr):
    """torchvision's CPU kernel transcribed (stable descending sort, IoU > thr in double),
    to check that the fixture really exercises what the Swift side claims."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    sup = [False] * len(order)
    keep = []
    for a, i in enumerate(order):
        if sup[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if sup[j]:
                continue
            w = torch.clamp(torch.minimum(x2[i], x2[j]) - torch.maximum(x1[i], x1[j]), min=0)
            h = torch.clamp(torch.minimum(y2[i], y2[j]) - torch.maximum(y1[i], y1[j]), min=0)
            inter = w * h
            if float(inter / (area[i] + area[j] - inter)) > thr:
                sup[j] = True
    return keep


def nms_cases(g, t):
    centres = torch.rand(6, 2, generator=g) * 200
    b = clustered_boxes(g, 300, centres, 8, 30, 70)
    s = torch.randint(0, 40, (300,), generator=g).float() / 40  # many identical scores
    t["nms.clustered.boxes"] = b
    t["nms.clustered.scores"] = s
    for thr, name in [(0.5, "0.5"), (0.7, "0.7"), (0.3, "0.3")]:
        keep = torchvision.ops.nms(b, s, thr)
        t[f"nms.clustered.keep_{name}"] = keep
    assert t["nms.clustered.keep_0.5"].tolist() == reference_nms(b, s, 0.5)

    # Integer boxes whose IoU is exactly 3/5 (and 2/5): torchvision compares the float
    # IoU with the threshold as a *double*, so with thr = 0.6 (double) the float 3/5 =
    # 0.6000000238 is > thr and suppresses; compared with Float(0.6) it would not.
    ib = torch.tensor([[0, 0, 4, 1], [1, 0, 5, 1], [10, 0, 15, 1], [12, 0, 17, 1], [20, 0, 24, 1], [21, 0, 25, 1],
                       [30, 0, 32, 5], [30, 1, 32, 6], [40, 0, 43, 1], [41, 0, 45, 1]], dtype=torch.float32)
    iscore = torch.tensor([0.9, 0.8, 0.9, 0.9, 0.5, 0.5, 0.7, 0.7, 0.3, 0.2])
    t["nms.exact.boxes"] = ib
    t["nms.exact.scores"] = iscore
    for thr, name in [(0.6, "0.6"), (0.4, "0.4"), (0.5, "0.5")]:
        t[f"nms.exact.keep_{name}"] = torchvision.ops.nms(ib, iscore, thr)
        assert t[f"nms.exact.keep_{name}"].tolist() == reference_nms(ib, iscore, thr)

    # batched_nms on both of torchvision's code paths.
    #  small: 600 boxes (numel 2400 ≤ 4000) → coordinate trick.
    #  large: 1500 boxes (numel 6000 > 4000) → per-class NMS, then an (unstable) sort by score.
    # Each case keeps a different set on the other path, so a test also sees which path ran.
    for name, n, ngroups, hi in [("small", 600, 6, 900), ("large", 1500, 5, 300)]:
        centres = torch.rand(8, 2, generator=g) * hi
        bb = clustered_boxes(g, n, centres, 10, 20, 120)
        ss = torch.randint(0, 200, (n,), generator=g).float() / 200
        ids = torch.randint(0, ngroups, (n,), generator=g)
        # 30 pairs with IoU 0.5 up to rounding, on 2⁻¹²-px coordinates, plus one box
        # that sets max = 1000.37. The trick's offsets g·1001.37 round the shifted
        # coordinates to 2⁻¹¹–2⁻¹⁰ px, which moves float IoUs across 0.5 for some pairs:
        # the two paths keep different sets (asserted below).
        for k in range(30):
            x, y = (torch.randint(0, 4000 * 512, (2,), generator=g).float() / 4096).tolist()
            a, b = (torch.randint(40 * 512, 400 * 512, (2,), generator=g).float() / 4096).tolist()
            bb[2 * k] = torch.tensor([x, y, x + 2 * a, y + b])
            bb[2 * k + 1] = torch.tensor([x + a / 2, y, x + a / 2 + a, y + b])
            ss[2 * k], ss[2 * k + 1] = 0.999, 0.998
            ids[2 * k] = ids[2 * k + 1] = 1 + k % (ngroups - 1)
        bb[60] = torch.tensor([900.0, 900.0, 1000.37, 990.0])
        keep = box_ops.batched_nms(bb, ss, ids, 0.5)
        path = box_ops._batched_nms_coordinate_trick if n * 4 <= 4000 else box_ops._batched_nms_vanilla
        assert torch.equal(keep, path(bb, ss, ids, 0.5))
        t.update({f"bnms.{name}.boxes": bb, f"bnms.{name}.scores": ss, f"bnms.{name}.groups": ids,
                  f"bnms.{name}.keep": keep})
        other = box_ops._batched_nms_vanilla if n * 4 <= 4000 else box_ops._batched_nms_coordinate_trick
        o = other(bb, ss, ids, 0.5)
        differs = not torch.equal(torch.sort(keep)[0], torch.sort(o)[0])
        print(f"  bnms.{name}: kept {len(keep)}; the other path keeps {len(o)} ({'different' if differs else 'same'} set)")
        assert differs, "each case must come out differently on the other path"


def roialign_cases(g, t):
    # Two images of different sizes in one 256×256 canvas; P2..P5 at strides 4..32.
    sizes = [(240, 200), (180, 256)]
    c = 2
    feats = {str(l): torch.randn(2, c, 256 // 2 ** (l + 2), 256 // 2 ** (l + 2), generator=g) for l in range(4)}
    for k, v in feats.items():
        t[f"roi.features.{k}"] = v
    t["roi.image_sizes"] = torch.tensor(sizes, dtype=torch.int64)
    boxes = []
    for i, (h, w) in enumerate(sizes):
        b = torch.cat([
            random_boxes(g, 6, 0, min(h, w) - 60, 8, 100),      # level 2 (√area < 112)
            random_boxes(g, 5, 0, min(h, w) - 150, 112, 220),   # level 3
            random_boxes(g, 4, -40, 60, 224, 440),               # level 4, overhanging right/bottom
            random_boxes(g, 3, -150, 0, 450, 600),               # level 5: overhanging on all sides
        ])
        extra = torch.tensor([
            [-30.0, -20.0, 40.0, 50.0],          # partly outside (top-left)
            [w - 50.0, h - 30.0, w + 40.0, h + 60.0],  # partly outside (bottom-right)
            [w + 20.0, 10.0, w + 80.0, 70.0],    # entirely outside: every sample is zero
            [50.0, 60.0, 50.0, 60.0],            # zero area (level clamps to P2)
            [50.0, 60.0, 50.3, 90.0],            # width 0.3 px: roi width clamps to 1
            [12.25, 17.5, 13.0, 18.0],           # tiny
            [0.0, 0.0, float(w), float(h)],      # the whole image
            [100.0, 100.0, 212.0, 212.0],        # √area = 112 exactly: the level-3 boundary
            [10.0, 10.0, 234.0, 234.0],          # √area = 224 exactly: the level-4 boundary
        ])
        b = torch.cat([b, extra])
        boxes.append(b)
        t[f"roi.boxes.{i}"] = b
    for s in (7, 14):
        pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=s, sampling_ratio=2)
        out = pooler(feats, boxes, sizes)
        t[f"roi.out{s}"] = out
        levels = pooler.map_levels(boxes)
        if s == 7:
            print(f"  roi: rois per level {torch.bincount(levels, minlength=4).tolist()}")


def anchor_cases(t):
    # custom: odd sizes make base anchors of exactly ±12.5, ±20.5 (torch.round: half to even).
    for name, sizes, ratios, hw in [("default", (32, 64, 128, 256, 512), (0.5, 1.0, 2.0), (224, 320)),
                                    ("custom", (25, 41, 100, 250, 600), (0.25, 1.0, 3.0, 0.7), (64, 96))]:
        gen = AnchorGenerator(tuple((s,) for s in sizes), (ratios,) * 5)
        h, w = hw
        grids = []
        gh, gw = h // 4, w // 4
        for _ in range(4):
            grids.append((gh, gw))
            gh, gw = gh // 2, gw // 2
        # P6 is max_pool2d(P5, 1, 2, 0): ⌈P5/2⌉, not a divisor of the canvas.
        grids.append(((grids[-1][0] - 1) // 2 + 1, (grids[-1][1] - 1) // 2 + 1))
        images = ImageList(torch.zeros(1, 3, h, w), [(h - 5, w - 7)])
        fmaps = [torch.zeros(1, 1, a, b) for a, b in grids]
        anchors = gen(images, fmaps)[0]
        t.update({f"anchors.{name}.sizes": torch.tensor(sizes, dtype=torch.float32),
                  f"anchors.{name}.ratios": torch.tensor(ratios, dtype=torch.float32),
                  f"anchors.{name}.canvas": i64(h, w),
                  f"anchors.{name}.grids": torch.tensor(grids, dtype=torch.int64),
                  f"anchors.{name}.anchors": anchors})


def paste_cases(g, t):
    h, w = 64, 80
    n = 18
    # Smooth blobs: a 7×7 logit grid upsampled to 28×28, plus noise, through a sigmoid.
    coarse = torch.randn(n, 1, 7, 7, generator=g) * 3
    logits = F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)
    probs = torch.sigmoid(logits + torch.randn(n, 1, 28, 28, generator=g) * 0.3)
    probs[1, 0, :, :14] = 1.0      # half full, half empty
    probs[1, 0, :, 14:] = 0.0
    boxes = torch.tensor([
        [0.0, 0.0, 30.0, 20.0],          # touching the top-left corner
        [10.0, 5.0, 70.0, 60.0],
        [-12.0, -7.5, 25.0, 30.0],       # overhanging top-left
        [55.0, 40.0, 95.0, 75.0],        # overhanging bottom-right
        [-20.0, -20.0, 100.0, 90.0],     # larger than the image
        [float(w - 1), 10.0, float(w), 30.0],  # one column at the right border
        [20.0, 20.0, 21.0, 21.0],        # 1×1
        [33.3, 12.7, 33.6, 12.9],        # sub-pixel
        [40.0, 40.0, 40.0, 40.0],        # zero size
        [3.7, 9.2, 47.9, 13.1],          # thin, fractional
        [60.5, -3.25, 79.75, 63.5],      # right edge, fractional
        [5.5, 50.5, 75.5, 64.0],         # bottom edge
        [12.0, 8.0, 52.0, 48.0],
        [0.0, 0.0, 80.0, 64.0],          # exactly the image
        [70.0, 58.0, 79.9, 63.9],
        [-5.0, 30.0, 10.0, 34.0],
        [25.0, -2.0, 27.5, 70.0],        # tall, thin
        [1.0, 1.0, 78.0, 3.0],           # wide, flat
    ])
    assert len(boxes) == n
    pasted = paste_masks_in_image(probs, boxes, (h, w))[:, 0]
    expected = (pasted >= 0.5).to(torch.uint8) + 2 * ((pasted - 0.5).abs() <= PASTE_BAND).to(torch.uint8)
    t.update({"paste.probs": probs[:, 0], "paste.boxes": boxes, "paste.image": i64(h, w),
              "paste.expected": expected})
    print(f"  paste: {int((expected >= 2).sum())} pixels within {PASTE_BAND} of 0.5 (not compared),"
          f" {int((expected == 1).sum())} set")


def make_boxes():
    g = torch.Generator().manual_seed(20240602)
    t = {}
    decode_cases(g, t)
    nms_cases(g, t)
    roialign_cases(g, t)
    anchor_cases(t)
    paste_cases(g, t)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare")
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "generator": "tools/reference/make_op_fixtures.py"}
    out_dir = tempfile.mkdtemp() if args.check else REPO
    total = 0
    for rel, make in [(OPS, make_ops), (BOXES, make_boxes)]:
        print(rel)
        t = make()
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_safetensors(t, path, meta)
        size = os.path.getsize(path)
        total += size
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        print(f"  {len(t)} tensors, {size:,} bytes, sha256 {sha[:16]}")
        if args.check:
            same = open(path, "rb").read() == open(os.path.join(REPO, rel), "rb").read()
            print("  identical to the committed file" if same else "  DIFFERS from the committed file")
    print(f"total {total:,} bytes")
    if total >= SIZE_LIMIT:
        sys.exit(f"fixtures reach {total:,} bytes, limit {SIZE_LIMIT:,}")


if __name__ == "__main__":
    main()
